"""Fan a grid search over ``k`` and ``l1_coef`` out on a dask cluster, one trial per worker.

scikit-learn's ``GridSearchCV`` runs its fits through joblib; inside
``joblib.parallel_config(backend="dask")`` joblib hands them to the dask
cluster the current ``distributed.Client`` points at, so the same search
runs on a laptop's ``LocalCluster`` or on a cluster of GPU machines.

CPU threads. The estimator never changes torch's thread count: a trial uses
the threads torch starts with in its process, which follow
``MKL_NUM_THREADS`` when it is set (torch's x86 wheels use MKL) and
``OMP_NUM_THREADS`` otherwise, or a ``threadpoolctl`` limit. dask's nanny
starts every worker process with both at 1 (configuration
``distributed.nanny.pre-spawn-environ``; a variable already set in the
environment that starts the cluster wins over it), so with ``threads_per_worker=1``
there is one trial and one torch thread per worker: start as many workers as
cores. To give each trial more threads, start fewer workers and raise both
before creating the cluster, e.g.
``dask.config.set({"distributed.nanny.pre-spawn-environ.OMP_NUM_THREADS": 4,
"distributed.nanny.pre-spawn-environ.MKL_NUM_THREADS": 4})``. (Without dask,
``GridSearchCV(n_jobs=N)`` uses joblib's loky processes, which get both
variables at ``cores // N`` unless they are set already; joblib's threading
backend would share one torch thread pool between concurrent fits and
oversubscribe the cores.)

One GPU per trial. Give each worker its own GPU and one thread:
``dask_cuda.LocalCUDACluster()`` (the ``--gpus`` option below) starts one
single-threaded worker per GPU and rotates ``CUDA_VISIBLE_DEVICES`` so that
each worker's default device, ``cuda:0``, is its own GPU; on several
machines, run ``dask cuda worker SCHEDULER`` on each, or one
``CUDA_VISIBLE_DEVICES=i dask worker SCHEDULER --nthreads 1 --resources GPU=1``
per GPU. Then ``device="cuda"`` puts each trial on its worker's GPU. Declaring
the resource and passing ``resources={"GPU": 1}`` to ``parallel_config`` (as
:func:`grid_search` does when asked) keeps GPU trials off workers without a
GPU. The GPU path was not run when this script was written (no GPU there).

Usage::

    python examples/grid_search_dask.py                       # LocalCluster, 2 workers, CPU
    python examples/grid_search_dask.py --workers 8 --rows 19074 --epochs 20
    python examples/grid_search_dask.py --gpus --device cuda  # needs dask-cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import joblib
import numpy as np
import pandas as pd
from sklearn.model_selection import GridSearchCV

from sklearn_sae import SparseAutoencoderTransformer, load_embeddings

DEFAULT_DATA = Path(__file__).resolve().parents[1] / "data" / "per-protein.h5"
PARAM_GRID = {"k": [16, 32], "l1_coef": [0.0, 1e-3]}


def grid_search(X, estimator, param_grid, *, cv=3, resources=None):
    """``GridSearchCV(estimator, param_grid)`` fitted on ``X`` on the dask cluster of the current client.

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Training rows; the search scores with the estimator's ``score``
        (explained variance).
    estimator : SparseAutoencoderTransformer
        The estimator to tune (or a pipeline ending in one).
    param_grid : dict
        As for ``GridSearchCV``.
    cv : int, default=3
        Cross-validation folds.
    resources : dict, default=None
        Worker resources each batch of fits needs, e.g. ``{"GPU": 1}``; the
        workers must declare them.

    Returns
    -------
    search : GridSearchCV
        Fitted; ``best_estimator_`` was refitted in this process.
    """
    search = GridSearchCV(estimator, param_grid, cv=cv, n_jobs=-1)
    with joblib.parallel_config(backend="dask", **({"resources": resources} if resources else {})):
        search.fit(X)
    return search


def start_cluster(n_workers: int, gpus: bool):
    """A local cluster: ``n_workers`` single-threaded worker processes, or one per GPU with ``gpus``."""
    if gpus:
        from dask_cuda import LocalCUDACluster  # not a dependency of sklearn-sae: pip install dask-cuda

        return LocalCUDACluster(threads_per_worker=1, resources={"GPU": 1})
    from distributed import LocalCluster

    return LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True, dashboard_address=None)


def results_table(search) -> pd.DataFrame:
    """Mean and spread of the validation score of every candidate, best first."""
    results = pd.DataFrame(search.cv_results_)
    columns = [f"param_{name}" for name in search.param_grid] + ["mean_test_score", "std_test_score", "mean_fit_time"]
    return results.sort_values("rank_test_score")[columns].reset_index(drop=True)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="embeddings (.h5, UniProt or matrix layout)")
    parser.add_argument("--rows", type=int, default=2000, help="random rows of the data to search on (0: all)")
    parser.add_argument("--workers", type=int, default=2, help="worker processes of the local cluster")
    parser.add_argument("--gpus", action="store_true", help="one worker per GPU (dask_cuda.LocalCUDACluster)")
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--n-latents", type=int, default=512)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--device", default="cpu", help="'cpu', or 'cuda' with --gpus")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv=None) -> int:
    args = parse_args(argv)
    from distributed import Client

    _, X = load_embeddings(args.data)
    if 0 < args.rows < len(X):
        X = X[np.sort(np.random.default_rng(args.seed).choice(len(X), args.rows, replace=False))]
    estimator = SparseAutoencoderTransformer(
        n_latents=args.n_latents, max_epochs=args.epochs, device=args.device, random_state=args.seed
    )
    started = time.perf_counter()
    with start_cluster(args.workers, args.gpus) as cluster, Client(cluster) as client:
        n_workers = len(client.scheduler_info()["workers"])
        ready = time.perf_counter()
        search = grid_search(X, estimator, PARAM_GRID, cv=args.cv, resources={"GPU": 1} if args.gpus else None)
    done = time.perf_counter()
    print(f"{len(X)} rows x {X.shape[1]} features, {len(search.cv_results_['params'])} candidates x {args.cv} folds "
          f"on {n_workers} workers: cluster up in {ready - started:.1f} s, search (with refit) {done - ready:.1f} s")
    print(results_table(search).to_string(float_format=lambda value: f"{value:.4f}"))
    print(f"best: {search.best_params_}, explained variance {search.best_score_:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
