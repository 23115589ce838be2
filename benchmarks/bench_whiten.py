"""Does ``whiten=True`` pay? Held-out FVU, dead latents, L0 and sparse probing, with and without it.

Each set is split as ``bench_defaults.py`` splits it (half fitted, half held out up to 4,480 rows), and
each configuration is fitted on the fitted half at its defaults (``k=32``) with and without
``whiten=True``, the same seed for both. Measured on the held-out half: FVU, the fraction of latents dead
there, L0; and, on the sets with labels (the subcellular location of the shipped NEAR proteins and of
the UniRep SCL2205 proteins), ``sklearn_sae.evaluate.sparse_probing`` (probes fitted on the codes of the
fitted half, scored on the held-out half: mean F1 over the classes at 1 and 5 latents), with the same
protocol on the raw dimensions as the reference. Fit seconds are one core's on a shared machine.

Usage::

    OMP_NUM_THREADS=1 PYTHONPATH=. python benchmarks/bench_whiten.py --seeds 0 1 --out results/bench_whiten.csv
    python benchmarks/bench_whiten.py --summarise results/bench_whiten.csv
    python benchmarks/bench_whiten.py --quick                # 600 rows a set, one seed: a smoke run
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_defaults import REPO_ROOT, SETS, split_indices  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer, metrics  # noqa: E402
from sklearn_sae.datasets import load_embeddings  # noqa: E402
from sklearn_sae.evaluate import sparse_probing  # noqa: E402

LABELLED = {
    "near256-all": (REPO_ROOT / "data" / "per-protein.h5", REPO_ROOT / "data" / "per-protein.labels.csv", None),
    "near256-2k": (REPO_ROOT / "data" / "per-protein.h5", REPO_ROOT / "data" / "per-protein.labels.csv", 2000),
    "unirep256": (REPO_ROOT / "build" / "unirep-256.h5", REPO_ROOT / "build" / "unirep-256.labels.csv", None),
    "unirep1900": (REPO_ROOT / "build" / "unirep-1900.h5", REPO_ROOT / "build" / "unirep-1900.labels.csv", None),
}
"""Sets with a ``location`` label per protein: embeddings, labels, rows kept (a fixed subset, as bench_defaults)."""

UNLABELLED = ("synth1024-2k", "synth1900-steep-4k")
CONFIGS = {"default": {}, "whiten": {"whiten": True}}
PROBE_KS = (1, 5)
COLUMNS = ["set", "config", "seed", "seconds", "fvu", "dead_held", "l0", *(f"probe_f1_k{k}" for k in PROBE_KS),
           *(f"raw_f1_k{k}" for k in PROBE_KS)]


def labelled_set(name, max_rows=None):
    """``(X_fit, X_held, y_fit, y_held)`` of a labelled set, split as :func:`bench_defaults.split` splits rows."""
    embeddings, labels_path, subset = LABELLED[name]
    if not embeddings.exists():
        raise FileNotFoundError(f"{embeddings.relative_to(REPO_ROOT)} not found (scripts/build_unirep.py)")
    ids, X = load_embeddings(embeddings)
    location = pd.read_csv(labels_path).set_index("accession")["location"]
    y = location.reindex(ids).to_numpy(dtype=object)
    if subset is not None:  # the same fixed subset as bench_defaults.near256_2k
        keep = np.sort(np.random.default_rng(0).choice(len(X), size=subset, replace=False))
        X, y = X[keep], y[keep]
    fit, held = split_indices(len(X), max_rows=max_rows)
    return (np.ascontiguousarray(X[fit], dtype=np.float32), np.ascontiguousarray(X[held], dtype=np.float32),
            y[fit], y[held])


def mean_probe_f1(table, representation):
    """Mean test F1 over the probed classes, per ``k``, of one representation of a sparse_probing table."""
    rows = table[table["representation"] == representation]
    return {k: float(rows.loc[rows["k"] == k, "f1"].mean()) for k in PROBE_KS}


def run_one(set_name, config, seed, data):
    X_fit, X_held, y_fit, y_held = data
    sae = SparseAutoencoderTransformer(k=32, random_state=seed, device="cpu", verbose=0, **CONFIGS[config])
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae.fit(X_fit)
    seconds = time.perf_counter() - start
    codes_held = sae.transform(X_held)
    row = {"set": set_name, "config": config, "seed": seed, "seconds": round(seconds, 1),
           "fvu": metrics.fvu(X_held, sae.reconstruct(X_held)), "dead_held": metrics.dead_fraction(codes_held),
           "l0": metrics.l0(codes_held)}
    if y_fit is not None:
        table = sparse_probing(sae.transform(X_fit), y_fit, codes_held, y_held, ks=PROBE_KS,
                               X_train=X_fit, X_test=X_held)
        row.update({f"probe_f1_k{k}": f1 for k, f1 in mean_probe_f1(table, "sae").items()})
        row.update({f"raw_f1_k{k}": f1 for k, f1 in mean_probe_f1(table, "raw_top_k").items()})
    return row


def summarise(rows):
    """Per set and config: mean [min, max] over seeds of every measure, and whiten's change against default."""
    frame = pd.DataFrame(rows)
    measures = [c for c in COLUMNS[3:] if c in frame and frame[c].notna().any()]
    for column in measures:
        frame[column] = pd.to_numeric(frame[column])
    lines = ["| set | config | seeds | " + " | ".join(measures) + " |", "|---|---|---:|" + "---:|" * len(measures)]
    for (set_name, config), group in frame.groupby(["set", "config"], sort=False):
        cells = []
        for column in measures:
            values = group[column].dropna()
            cells.append("" if values.empty else f"{values.mean():.3f} [{values.min():.3f}, {values.max():.3f}]")
        lines.append(f"| {set_name} | {config} | {len(group)} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sets", nargs="+", default=[*LABELLED, *UNLABELLED],
                        choices=[*LABELLED, *UNLABELLED])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--out", type=Path, default=None, help="CSV the rows are appended to")
    parser.add_argument("--quick", action="store_true", help="600 rows a set and seed 0: a smoke run")
    parser.add_argument("--summarise", type=Path, default=None, metavar="CSV", help="print the table of a CSV")
    args = parser.parse_args(argv)
    if args.summarise:
        with open(args.summarise, newline="") as handle:
            print(summarise(list(csv.DictReader(handle))))
        return 0
    max_rows, seeds = (600, [0]) if args.quick else (None, args.seeds)
    rows = []
    for set_name in args.sets:
        try:
            data = labelled_set(set_name, max_rows) if set_name in LABELLED else (*SETS[set_name](max_rows), None, None)
        except FileNotFoundError as error:
            print(f"skipping {set_name}: {error}", flush=True)
            continue
        for seed in seeds:
            for config in CONFIGS:
                row = run_one(set_name, config, seed, data)
                rows.append(row)
                print(", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                                for key, value in row.items()), flush=True)
                if args.out is not None:
                    new = not args.out.exists()
                    args.out.parent.mkdir(parents=True, exist_ok=True)
                    with open(args.out, "a", newline="") as handle:
                        writer = csv.DictWriter(handle, fieldnames=COLUMNS)
                        if new:
                            writer.writeheader()
                        writer.writerow(row)
    print(summarise(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
