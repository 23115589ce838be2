"""Does a data-parallel fit (``distributed=True``) train as well as one process?

On the shipped proteins (a random 80% trains, 20% tests; the split follows
the seed), for each seed: one ordinary fit, then fits by two CPU processes
started with ``torchrun --standalone --nproc_per_node 2``. Every fit runs the
same number of epochs, so all see the same total number of training rows;
what changes is how they are cut into optimiser steps:

``1 process``
    ``batch_size=256``: the reference.
``2 x 128``
    128 rows per process and step: an effective batch of 256, the same
    steps as the reference, so the same optimisation up to batch order.
``2 x 256``
    256 rows per process: an effective batch of 512 and half the steps, at
    the reference's learning rate.
``2 x 256, lr x sqrt 2``
    The same, with the learning rate scaled by the square root of the
    batch growth (a common rule for Adam).

Reported: test score (1 - FVU, higher is better) and its ratio to the
reference's, the fraction of latents that never fire on the test rows, and
wall time (two processes share this machine's two cores with everything
else running on it: times are indicative only).

Usage::

    PYTHONPATH=. python benchmarks/bench_distributed.py --seeds 0 1 2 --epochs 10
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pandas as pd
from sklearn.model_selection import train_test_split

from sklearn_sae import SparseAutoencoderTransformer, metrics
from sklearn_sae.datasets import load_embeddings

REPO_ROOT = Path(__file__).resolve().parents[1]

REFERENCE_BATCH = 256
REFERENCE_LR = 1e-2  # one fixed rate for every setting, so that only the processes and batches differ

SETTINGS = {
    # name: (processes, batch_size per process, lr)
    "1 process": (1, REFERENCE_BATCH, REFERENCE_LR),
    "2 x 128": (2, REFERENCE_BATCH // 2, REFERENCE_LR),
    "2 x 256": (2, REFERENCE_BATCH, REFERENCE_LR),
    "2 x 256, lr x sqrt 2": (2, REFERENCE_BATCH, REFERENCE_LR * math.sqrt(2)),
}


def split(data, seed):
    _, X = load_embeddings(data)
    X_train, X_test = train_test_split(X, test_size=0.2, random_state=seed)
    return X_train, X_test


def fit_and_score(args, *, batch_size, lr, distributed):
    """Fit on the seed's training rows and score on its test rows (run by every process of a launch)."""
    X_train, X_test = split(args.data, args.seed)
    start = time.perf_counter()
    sae = SparseAutoencoderTransformer(
        batch_size=batch_size, lr=lr, max_epochs=args.epochs, device="cpu", random_state=args.seed,
        distributed=distributed,
    ).fit(X_train)
    seconds = time.perf_counter() - start
    codes = sae.transform(X_test)
    return {
        "score": sae.score(X_test),
        "dead_fraction": metrics.dead_fraction(codes),
        "steps": sum("train_loss" in batch for batch in sae.history_[-1, "batches"]) * args.epochs,  # this process's
        "seconds": seconds,
    }


def worker(args):
    """One process of a ``torchrun`` launch: fit data-parallel; the main process writes the result."""
    from sklearn_sae._distributed import is_main_process

    result = fit_and_score(args, batch_size=args.batch_size, lr=args.lr, distributed=True)
    if is_main_process():
        Path(args.out).write_text(json.dumps(result))


def launch(args, *, processes, batch_size, lr):
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder) / "result.json"
        command = [
            sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}",
            __file__, "--worker", f"--seed={args.seed}", f"--epochs={args.epochs}", f"--data={args.data}",
            f"--batch-size={batch_size}", f"--lr={lr}", f"--out={out}",
        ]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        subprocess.run(command, check=True, env=env, cwd=REPO_ROOT, stdout=subprocess.DEVNULL)
        return json.loads(out.read_text())


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, default=10)
    parser.add_argument("--data", default=str(REPO_ROOT / "data" / "per-protein.h5"))
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--seed", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--batch-size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--lr", type=float, help=argparse.SUPPRESS)
    parser.add_argument("--out", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        return worker(args)

    import torch

    torch.set_num_threads(1)  # as each launched process has (OMP_NUM_THREADS=1)
    rows = []
    for seed in args.seeds:
        args.seed = seed
        for name, (processes, batch_size, lr) in SETTINGS.items():
            if processes == 1:
                result = fit_and_score(args, batch_size=batch_size, lr=lr, distributed=False)
            else:
                result = launch(args, processes=processes, batch_size=batch_size, lr=lr)
            rows.append({"seed": seed, "setting": name, **result})
            print(rows[-1], flush=True)
    table = pd.DataFrame(rows)
    reference = table[table.setting == "1 process"].set_index("seed")["score"]
    table["score / 1 process"] = table.score / table.seed.map(reference)
    summary = table.groupby("setting", sort=False).agg(
        score=("score", "mean"),
        score_sd=("score", "std"),
        ratio_min=("score / 1 process", "min"),
        ratio_mean=("score / 1 process", "mean"),
        dead_fraction=("dead_fraction", "mean"),
        steps=("steps", "first"),
        seconds=("seconds", "median"),
    )
    print(table.round(4).to_string(index=False))
    print(summary.round(4).to_string())


if __name__ == "__main__":
    main()
