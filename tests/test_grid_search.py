"""Grid search in several processes: torch's threads per worker, and the dask recipe of examples/grid_search_dask.py."""

import json
import os
import uuid

import joblib
import numpy as np
import pytest
from conftest import load_example
from sklearn.model_selection import GridSearchCV

from sklearn_sae import SparseAutoencoderTransformer

GRID = {"k": [2, 4], "l1_coef": [0.0, 1e-3]}


def recording_estimator(directory, **params):
    """A transformer whose ``fit`` first writes its process id and torch's thread count to ``directory``.

    The class is made inside a function so that cloudpickle sends it to the workers by value:
    they cannot import the tests.
    """

    class ThreadRecordingTransformer(SparseAutoencoderTransformer):
        def fit(self, X, y=None, **fit_params):
            import torch

            record = {"pid": os.getpid(), "torch_threads": torch.get_num_threads()}
            (directory / f"{uuid.uuid4().hex}.json").write_text(json.dumps(record))
            return super().fit(X, y, **fit_params)

    defaults = dict(n_latents=8, max_epochs=1, batch_size=32, device="cpu", random_state=0)
    return ThreadRecordingTransformer(**{**defaults, **params})


def worker_records(directory):
    records = [json.loads(path.read_text()) for path in directory.iterdir()]
    return [record for record in records if record["pid"] != os.getpid()]  # the refit runs here


def unset_thread_variables(monkeypatch):
    """Start from an environment without thread limits, and restore the caller's afterwards.

    Setting before deleting makes monkeypatch remember each variable, also when it was unset: the dask
    nanny writes its own values into this process's environment, and they must not outlive the test.
    """
    for variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        monkeypatch.setenv(variable, "")
        monkeypatch.delenv(variable)


@pytest.fixture
def rows():
    return np.random.default_rng(0).normal(size=(90, 6)).astype(np.float32)


def test_process_workers_share_the_cores_between_them(rows, tmp_path, monkeypatch):
    # joblib's loky workers get OMP_NUM_THREADS and MKL_NUM_THREADS = cores // n_jobs unless the variables are
    # set already, and torch follows them (MKL's first): two trials on two cores run one torch thread each,
    # not two each.
    unset_thread_variables(monkeypatch)
    n_jobs = 2
    GridSearchCV(recording_estimator(tmp_path), GRID, cv=2, n_jobs=n_jobs).fit(rows)
    records = worker_records(tmp_path)
    assert len(records) == len(GRID["k"]) * len(GRID["l1_coef"]) * 2
    assert {record["torch_threads"] for record in records} == {max(joblib.cpu_count() // n_jobs, 1)}


def test_dask_grid_search_recipe(rows, tmp_path, monkeypatch):
    workers, local = tmp_path / "workers", tmp_path / "local"  # each search's records, apart
    workers.mkdir()
    local.mkdir()
    distributed = pytest.importorskip("distributed", reason="the recipe needs dask.distributed (the 'scale' extra)")
    example = load_example("grid_search_dask")
    unset_thread_variables(monkeypatch)  # variables set here would override the nanny's defaults
    # Workers that declare a GPU resource, as a GPU cluster's would; the trials run on their CPUs here.
    cluster = distributed.LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None, resources={"GPU": 1}
    )
    with cluster, distributed.Client(cluster):
        search = example.grid_search(rows, recording_estimator(workers), GRID, cv=2, resources={"GPU": 1})
    # The same search in this process: the cluster changes where the trials run, not what they find.
    in_process = GridSearchCV(recording_estimator(local), GRID, cv=2).fit(rows)
    assert search.cv_results_["params"] == in_process.cv_results_["params"]
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], in_process.cv_results_["mean_test_score"],
                               rtol=1e-5)
    assert np.ptp(search.cv_results_["mean_test_score"]) > 0.01  # the candidates really differ
    assert search.best_params_ == in_process.best_params_
    table = example.results_table(search)
    assert len(table) == 4 and table["mean_test_score"].is_monotonic_decreasing
    records = worker_records(workers)
    assert len(records) == 8  # every trial ran on a worker, none in this process
    assert {record["torch_threads"] for record in records} == {1}  # the nanny's OMP_NUM_THREADS=MKL_NUM_THREADS=1
