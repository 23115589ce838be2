"""Shared test helpers, and each pytest-xdist worker's share of the cores."""

import importlib.util
import os
from pathlib import Path

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


def _cores() -> int:
    """The cores this process may run on (the affinity mask where the platform has one)."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def pytest_configure(config):
    """Under pytest-xdist (``make test``), give each worker process its share of the cores.

    Torch and numpy's BLAS start a thread per core in every process: ``n`` workers on ``n`` cores would run
    ``n * n`` threads that wait on each other. Processes the tests start (launchers, examples, joblib's
    workers) choose their own threads, as a user's would.
    """
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers is None:
        return
    import threadpoolctl
    import torch

    threads = max(1, _cores() // int(workers))
    torch.set_num_threads(threads)
    threadpoolctl.threadpool_limits(threads)


def load_example(name):
    """The script ``examples/{name}.py`` as a module: examples/ is not a package, so load it by path."""
    spec = importlib.util.spec_from_file_location(name, EXAMPLES / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
