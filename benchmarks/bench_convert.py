"""Converting a UniProt-layout file to the matrix layout, and what it buys for random reads.

Writes a synthetic ``per-protein.h5`` (one float16 dataset per accession at the
root, as UniProt ships them) into a temporary folder, then:

1. converts it with ``sklearn_sae.datasets.convert_embeddings``, once per
   compression setting, each in a fresh process so that its peak RSS growth
   (peak RSS ``VmHWM`` during the call minus RSS before it, Linux only) is
   the converter's own;
2. times random reads of blocks of consecutive rows (chunk-aligned, as a
   training loop reading from disk would) and of scattered single rows, from
   the source and from each converted file. The files were just written, so
   these are warm page-cache figures.

With ``--residues L``, it instead writes a per-residue file (one ``(L, dim)``
float16 dataset per protein, as UniProt's ``per-residue.h5``), converts it with
``convert_residue_embeddings`` in a fresh process (seconds, peak RSS growth),
and fits a small SAE for one epoch on the converted rows, read from disk.

Usage::

    python benchmarks/bench_convert.py --proteins 50000 --dim 1024
    python benchmarks/bench_convert.py --proteins 1000 --dim 1024 --residues 400
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from sklearn_sae.datasets import convert_embeddings, convert_residue_embeddings, save_embeddings
from sklearn_sae.datasets._layouts import _fill_uniprot_rows


def _status_bytes(field):
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} in /proc/self/status")


def _convert_in_child(src, dst, compression, results):
    # VmHWM, the peak RSS of this address space, starts afresh with the
    # child's exec (ru_maxrss would carry the parent's peak over); writing
    # 5 to clear_refs resets it to the current RSS, forgetting the imports.
    with open("/proc/self/clear_refs", "w") as clear_refs:
        clear_refs.write("5")
    before = _status_bytes("VmRSS")
    start = time.perf_counter()
    if compression == "residues":
        convert_residue_embeddings(src, dst)
    else:
        convert_embeddings(src, dst, compression=compression)
    seconds = time.perf_counter() - start
    results.put((seconds, _status_bytes("VmHWM") - before))


def convert_measured(src, dst, compression):
    """Convert in a fresh process; return (seconds, peak RSS growth in bytes)."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    child = context.Process(target=_convert_in_child, args=(src, dst, compression, results))
    child.start()
    measured = results.get()
    child.join()
    return measured


def read_blocks_uniprot(path, starts, block_rows):
    with h5py.File(path, "r") as f:
        names = sorted(f.keys())
        out = np.empty((block_rows, f[names[0]].shape[0]), dtype=f[names[0]].dtype)
        start_time = time.perf_counter()
        for start in starts:
            _fill_uniprot_rows(f, path, names[start : start + block_rows], out)
        return time.perf_counter() - start_time


def read_blocks_matrix(path, starts, block_rows):
    with h5py.File(path, "r") as f:
        embeddings = f["embeddings"]
        out = np.empty((block_rows, embeddings.shape[1]), dtype=embeddings.dtype)
        start_time = time.perf_counter()
        for start in starts:
            embeddings.read_direct(out, np.s_[start : start + block_rows])
        return time.perf_counter() - start_time


def read_rows_uniprot(path, rows):
    with h5py.File(path, "r") as f:
        names = sorted(f.keys())
        out = np.empty((1, f[names[0]].shape[0]), dtype=f[names[0]].dtype)
        start_time = time.perf_counter()
        for row in rows:
            _fill_uniprot_rows(f, path, [names[row]], out)
        return time.perf_counter() - start_time


def read_rows_matrix(path, rows):
    with h5py.File(path, "r") as f:
        embeddings = f["embeddings"]
        out = np.empty((1, embeddings.shape[1]), dtype=embeddings.dtype)
        start_time = time.perf_counter()
        for row in rows:
            embeddings.read_direct(out, np.s_[row : row + 1])
        return time.perf_counter() - start_time


def bench_residues(args):
    from sklearn_sae import SparseAutoencoderTransformer

    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as folder:
        src, dst = Path(folder) / "per-residue.h5", Path(folder) / "residues.h5"
        with h5py.File(src, "w") as f:
            for index in range(args.proteins):
                f.create_dataset(f"P{index:07d}", data=rng.normal(size=(args.residues, args.dim)).astype(np.float16))
        n_rows = args.proteins * args.residues
        print(f"{args.proteins:,} proteins x {args.residues} residues x {args.dim} float16: {n_rows:,} rows, "
              f"source {os.path.getsize(src) / 2**20:,.0f} MiB")
        seconds, growth = convert_measured(src, dst, "residues")
        print(f"convert_residue_embeddings: {seconds:.1f} s ({n_rows / seconds:,.0f} residues/s), peak RSS growth "
              f"{growth / 2**20:.0f} MiB, file {os.path.getsize(dst) / 2**20:,.0f} MiB")
        with h5py.File(dst, "r") as f:
            start = time.perf_counter()
            sae = SparseAutoencoderTransformer(n_latents=256, k=8, max_epochs=1, batch_size=4096, lr=1e-3,
                                               device="cpu", random_state=0).fit(f["embeddings"])
            print(f"one-epoch on-disk fit on the residues: {time.perf_counter() - start:.0f} s, "
                  f"validation FVU {sae.history_[-1, 'valid_fvu']:.3f}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--proteins", type=int, default=50_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--block-rows", type=int, default=256, help="rows per random block read")
    parser.add_argument("--blocks", type=int, default=100, help="random blocks read per file")
    parser.add_argument("--rows", type=int, default=2000, help="random single rows read per file")
    parser.add_argument("--residues", type=int, default=None, help="residues per protein: measure per-residue conversion")
    args = parser.parse_args(argv)
    if args.residues:
        return bench_residues(args)

    rng = np.random.default_rng(0)
    ids = np.array([f"P{i:07d}" for i in range(args.proteins)], dtype=object)
    with tempfile.TemporaryDirectory() as folder:
        src = Path(folder) / "per-protein.h5"
        X = rng.normal(size=(args.proteins, args.dim)).astype(np.float16)
        save_embeddings(src, ids, X, layout="uniprot", dtype=np.float16)
        del X
        files = {"source (UniProt layout)": (src, None)}
        print(f"{args.proteins:,} proteins x {args.dim} float16; source {os.path.getsize(src) / 2**20:,.0f} MiB\n")
        print("| compression | convert s | proteins/s | peak RSS growth MiB | file MiB |")
        print("|---|---:|---:|---:|---:|")
        for compression in [None, "lzf", "gzip"]:
            dst = Path(folder) / f"matrix-{compression}.h5"
            seconds, growth = convert_measured(src, dst, compression)
            size = os.path.getsize(dst) / 2**20
            print(f"| {compression} | {seconds:.1f} | {args.proteins / seconds:,.0f} | {growth / 2**20:.0f} | {size:,.0f} |")
            files[f"matrix, {compression}"] = (dst, compression)

        with h5py.File(files["matrix, None"][0]) as f:
            chunk_rows = f["embeddings"].chunks[0]
        n_starts = (args.proteins - args.block_rows) // chunk_rows + 1
        starts = rng.integers(0, n_starts, size=args.blocks) * chunk_rows
        rows = rng.integers(0, args.proteins, size=args.rows)
        print(f"\nRandom reads (warm page cache): {args.blocks} blocks of {args.block_rows} rows at chunk-aligned "
              f"offsets ({chunk_rows}-row chunks), {args.rows} single rows\n")
        print("| file | block reads rows/s | single rows/s |")
        print("|---|---:|---:|")
        for name, (path, compression) in files.items():
            if compression is None and name.startswith("source"):
                block_seconds = read_blocks_uniprot(path, starts, args.block_rows)
                row_seconds = read_rows_uniprot(path, rows)
            else:
                block_seconds = read_blocks_matrix(path, starts, args.block_rows)
                row_seconds = read_rows_matrix(path, rows)
            print(f"| {name} | {args.blocks * args.block_rows / block_seconds:,.0f} | {args.rows / row_seconds:,.0f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
