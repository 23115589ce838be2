"""How long load_embeddings takes on a UniProt-layout file, against a plain per-key h5py loop.

Writes a synthetic ``per-protein.h5`` (one float16 dataset per accession at the
root, as UniProt ships them) into a temporary folder, then times, interleaved,
``sklearn_sae.datasets.load_embeddings`` and the obvious
``np.stack([f[key][()] for key in f])``. Swiss-Prot's file holds about 570,000
proteins of 1,024 dimensions; scale ``--proteins`` up to see that size.

Usage::

    python benchmarks/bench_load.py --proteins 100000 --dim 1024
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from sklearn_sae.datasets import load_embeddings, save_embeddings


def plain_loop(path):
    with h5py.File(path, "r") as f:
        keys = list(f.keys())
        return keys, np.stack([f[key][()] for key in keys]).astype(np.float32)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proteins", type=int, default=100_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args(argv)

    rng = np.random.default_rng(0)
    ids = np.array([f"P{i:07d}" for i in range(args.proteins)], dtype=object)
    X = rng.normal(size=(args.proteins, args.dim)).astype(np.float16)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "per-protein.h5"
        save_embeddings(path, ids, X, layout="uniprot", dtype=np.float16)
        times = {"load_embeddings": [], "plain h5py loop": []}
        for _ in range(args.repeats):
            for name, load in [("load_embeddings", load_embeddings), ("plain h5py loop", plain_loop)]:
                start = time.perf_counter()
                loaded_ids, loaded = load(path)
                times[name].append(time.perf_counter() - start)
                assert len(loaded_ids) == args.proteins and loaded.shape == X.shape
    print(f"{args.proteins:,} proteins x {args.dim} float16, UniProt layout, {args.repeats} repeats (median)\n")
    print("| reader | median s | proteins/s |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {args.proteins / median:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
