"""How many times a 10-epoch fit does a default fit take? Issue 32's target, timed fairly on a shared machine.

A default fit (``max_epochs="auto"``) and a 10-epoch fit of the same model
(``max_epochs=10``, the rest the same) of one ``bench_defaults.py`` set, each
fit's CPU seconds (``time.process_time``: this process only, so other jobs
on a shared machine slow it far less than the wall clock of a one-thread
fit), wall seconds and epochs appended to ``OUT/fits.csv``. The first fit in
a Python process costs about a second more CPU than the same fit later (torch
and the package warming up), a large part of a 10-epoch fit on a small set,
so the process state is a choice of the measurement:

``--mode warm``
    An untimed 1-epoch fit first, then ``--repeats`` fits of each length,
    alternating: the ratio a ``GridSearchCV`` or a notebook sees.
``--mode cold``
    One fit, the first of its process (``--lengths`` names which): the ratio
    of two scripts that each fit once, as ``bench_defaults.py`` runs them.

Which code is timed is whichever ``sklearn_sae`` is first on the path:
``--label`` names it. ``--summarise`` prints, per label, mode and seed, the
median default fit's CPU time over the median 10-epoch fit's.

Usage::

    export OMP_NUM_THREADS=1
    PYTHONPATH=. python benchmarks/bench_fit_length.py --out results/length --label branch --seeds 0 1 2
    for length in 10 auto; do  # cold: one fit a process
      PYTHONPATH=. python benchmarks/bench_fit_length.py --out results/length --label branch --seeds 0 \\
          --mode cold --lengths $length
    done
    python benchmarks/bench_fit_length.py --out results/length --summarise
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_defaults import FIXED_FIT_PARAMS, SETS, parse_vary  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer  # noqa: E402

COLUMNS = ["label", "mode", "set", "seed", "repeat", "max_epochs", "epochs", "wall_s", "cpu_s", "fvu_held"]


def timed_fit(params, seed, X_fit, X_held):
    """CPU and wall seconds of one fit, its epochs and held-out FVU."""
    estimator = SparseAutoencoderTransformer(**params, **FIXED_FIT_PARAMS, random_state=seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        wall, cpu = time.perf_counter(), time.process_time()
        estimator.fit(X_fit)
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return dict(epochs=estimator.n_iter_, wall_s=wall, cpu_s=cpu, fvu_held=1.0 - estimator.score(X_held))


def summarise(path):
    """Per label, mode and seed: epochs, held-out FVU and the CPU-time ratio of the medians."""
    fits = pd.read_csv(path)
    rows = []
    for (label, mode, seed), group in fits.groupby(["label", "mode", "seed"], sort=True):
        by_length = group.groupby("max_epochs")
        if not {"10", "auto"} <= set(by_length.groups):
            continue
        auto, ten = by_length.get_group("auto"), by_length.get_group("10")
        rows.append(dict(label=label, mode=mode, seed=seed, epochs=int(auto.epochs.iloc[0]),
                         fvu_held=round(float(auto.fvu_held.iloc[0]), 4),
                         cpu_auto_s=round(float(auto.cpu_s.median()), 2), cpu_10_s=round(float(ten.cpu_s.median()), 2),
                         ratio=round(float(auto.cpu_s.median() / ten.cpu_s.median()), 2), fits=len(group)))
    table = pd.DataFrame(rows)
    means = table.groupby(["label", "mode"])[["epochs", "fvu_held", "ratio"]].mean().round(4).reset_index()
    print(table.to_markdown(index=False), "\n\nmeans over seeds:\n", means.to_markdown(index=False), sep="")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--label", help="names the code version timed")
    parser.add_argument("--set", default="unirep1900-1k", choices=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--mode", choices=["warm", "cold"], default="warm")
    parser.add_argument("--lengths", nargs="+", default=["10", "auto"], choices=["10", "auto"])
    parser.add_argument("--repeats", type=int, default=2, help="fits of each length per seed (warm mode)")
    parser.add_argument("--vary", nargs="+", default=["k=16"], metavar="PARAM=JSON")
    parser.add_argument("--summarise", action="store_true", help="only print the ratios of OUT/fits.csv")
    args = parser.parse_args(argv)
    path = args.out / "fits.csv"
    if args.summarise:
        return summarise(path)
    if args.label is None:
        parser.error("--label is required to time fits")
    if args.mode == "cold" and (len(args.lengths) != 1 or len(args.seeds) != 1):
        parser.error("--mode cold times one fit a process: give one --lengths and one --seeds")
    params = parse_vary(args.vary)
    X_fit, X_held = SETS[args.set]()
    args.out.mkdir(parents=True, exist_ok=True)
    new = not path.exists()
    with path.open("a", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
        if new:
            writer.writeheader()
        if args.mode == "warm":
            timed_fit(dict(params, max_epochs=1), args.seeds[0], X_fit, X_held)
        for seed in args.seeds:
            for repeat in range(args.repeats if args.mode == "warm" else 1):
                for length in args.lengths:
                    max_epochs = 10 if length == "10" else "auto"
                    row = timed_fit(dict(params, max_epochs=max_epochs), seed, X_fit, X_held)
                    writer.writerow(dict(row, label=args.label, mode=args.mode, set=args.set, seed=seed,
                                         repeat=repeat, max_epochs=length))
                    handle.flush()
                    print(f"{args.label} {args.mode} seed {seed} max_epochs={length}: {row['epochs']} epochs, "
                          f"{row['cpu_s']:.2f} s CPU, {row['wall_s']:.2f} s wall", flush=True)


if __name__ == "__main__":
    main()
