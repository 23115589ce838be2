"""Fitting on rows that stay on disk: speed, memory and quality against the in-memory fit.

Three measurements (each can be run alone):

* ``speed``: rows per second of a streaming fit on a warm HDF5 file of float16 rows at
  ``--width`` (1024) against the in-memory fit of the same rows as float32, same settings.
  Each arm runs ``--repeats`` times, alternating; the best time counts. ``--json PATH``
  writes its figures to a file as well (``gpu_check.py`` reads it).
* ``memory``: peak RSS growth (``VmHWM`` after the fit minus ``VmRSS`` before it, in a
  fresh child process) of a one-epoch streaming fit on an HDF5 file of ``--memory-gib``
  GiB of float32 rows. An HDF5 file, not a memmap: the pages a memmap maps count in RSS
  although the kernel can drop them at will, which would measure the page cache.
* ``read``: rows per second of the batch iterators alone (no training), streaming from a warm
  float16 HDF5 file against slicing an in-memory float32 tensor: the ceiling a fast GPU sees.
* ``readahead``: rows per second of the on-disk batches consumed by a stand-in for a training
  step of tunable cost (``--work`` matrix products per batch, which release the GIL as a GPU
  step would), with and without reading the next window in the background; windows of
  ``--window-mib`` so that a file of ``--rows`` rows spans many of them.
* ``quality``: held-out ``score`` of streaming and in-memory fits of the same synthetic
  rows over several seeds.

Run with the same thread setting for both arms, e.g.::

    OMP_NUM_THREADS=1 python benchmarks/bench_streaming.py speed memory quality
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_sparse_signals


def _write_h5(path, n_rows, width, dtype, chunk_rows=256, seed=0):
    """Random rows written in slabs, so writing a large file needs little memory."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        dataset = f.create_dataset("X", shape=(n_rows, width), dtype=dtype, chunks=(chunk_rows, width))
        slab = max(chunk_rows, (64 << 20) // (width * 4))
        for start in range(0, n_rows, slab):
            stop = min(start + slab, n_rows)
            dataset[start:stop] = (rng.standard_normal((stop - start, width), dtype=np.float32) + 0.5).astype(dtype)


def _warm(path):
    with open(path, "rb") as f:
        while f.read(64 << 20):
            pass


def bench_speed(args, tmp):
    path = Path(tmp) / "speed.h5"
    _write_h5(path, args.rows, args.width, np.float16)
    _warm(path)
    params = dict(k=32, batch_size=args.batch_size, max_epochs=1, random_state=0, device=args.device)
    with h5py.File(path, "r") as f:
        X_disk = f["X"]
        X_memory = X_disk[:].astype(np.float32)
        times = {"in-memory": [], "streaming": []}
        for _ in range(args.repeats):
            for name, X in (("in-memory", X_memory), ("streaming", X_disk)):
                start = time.perf_counter()
                sae = SparseAutoencoderTransformer(**params).fit(X)
                times[name].append(time.perf_counter() - start)
    n_seen = args.rows  # one epoch: training and validation rows are both read once
    rates = {name: n_seen / min(values) for name, values in times.items()}
    print(f"speed: {args.rows} rows x {args.width} (float16 on disk), n_latents={sae.n_latents_}, k=32, "
          f"batch_size={args.batch_size}, 1 epoch, device={args.device}, "
          f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS', 'unset')}")
    for name, values in times.items():
        tries = [round(v, 2) for v in values]
        print(f"  {name:10s} best {min(values):7.2f} s of {tries}  -> {rates[name]:9.0f} rows/s")
    print(f"  streaming / in-memory rows per second: {rates['streaming'] / rates['in-memory']:.2f}")
    if args.json:
        figures = {"device": args.device, "rows": args.rows, "width": args.width, "n_latents": int(sae.n_latents_),
                   "batch_size": args.batch_size, "seconds": times, "rows_per_s": rates,
                   "streaming_over_in_memory": rates["streaming"] / rates["in-memory"]}
        Path(args.json).write_text(json.dumps(figures, indent=1), encoding="utf-8")


def bench_read(args, tmp):
    import torch

    from sklearn_sae._rows import InMemoryRows, OnDiskRows

    n_rows = 5 * args.rows
    path = Path(tmp) / "read.h5"
    _write_h5(path, n_rows, args.width, np.float16)
    _warm(path)

    def one_epoch(rows):
        # What a fit's iterator does with each batch on the CPU: lay out the epoch, read, cast to float32.
        batches = rows.epoch(args.batch_size, seed=0, epoch=0, shuffle=True)
        n_seen = sum(len(batches[index].float()) for index in range(len(batches)))
        batches.release()
        return n_seen

    with h5py.File(path, "r") as f:
        in_memory = InMemoryRows(torch.from_numpy(f["X"][:].astype(np.float32)))
        for name, rows in (("in-memory", in_memory), ("streaming", OnDiskRows(f["X"]))):
            start = time.perf_counter()
            n_seen = one_epoch(rows)
            seconds = time.perf_counter() - start
            print(f"read: {name:10s} {n_seen} rows x {args.width} in {seconds:.2f} s -> {n_seen / seconds:9.0f} rows/s")


def bench_readahead(args, tmp):
    import statistics

    import torch

    from sklearn_sae._rows import BlockBatches, OnDiskRows

    path = Path(tmp) / "readahead.h5"
    _write_h5(path, 5 * args.rows, args.width, np.float16)
    _warm(path)
    weight = torch.randn(args.width, 64)

    def rows_per_second(rows, read_ahead, work):
        batches = BlockBatches(rows, rows.blocks, args.batch_size, shuffle=True, seed=0, read_ahead=read_ahead,
                               buffer_bytes=args.window_mib << 20)
        batches.set_epoch(1)
        start, n_seen = time.perf_counter(), 0
        for index in range(len(batches)):
            x = batches[index].float()
            n_seen += len(x)
            for _ in range(work):
                x @ weight
        batches.release()
        return n_seen / (time.perf_counter() - start)

    with h5py.File(path, "r") as f:
        rows = OnDiskRows(f["X"])
        for work in args.work:
            rates = {True: [], False: []}
            for _ in range(args.repeats):
                for read_ahead in (True, False):
                    rates[read_ahead].append(rows_per_second(rows, read_ahead, work))
            ahead, in_turn = statistics.median(rates[True]), statistics.median(rates[False])
            print(f"readahead: work {work}: {ahead:9.0f} rows/s reading ahead, {in_turn:9.0f} in turn "
                  f"(median of {args.repeats}) -> {ahead / in_turn:.2f}x")


def _peak_growth_child(path, n_latents, batch_size, device, in_memory=False):
    """Run in a fresh process: one-epoch fit on the file; print RSS before and peak after, in MiB.

    ``in_memory=True`` loads the rows first (inside the measured span), as a fit of an array would.
    """

    def status(key):
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(key):
                return int(line.split()[1]) / 1024

    with h5py.File(path, "r") as f:
        X = f["X"]
        sae = SparseAutoencoderTransformer(
            n_latents=n_latents, k=8, batch_size=batch_size, max_epochs=1, random_state=0, device=device
        )
        before = status("VmRSS")
        start = time.perf_counter()
        sae.fit(X[:] if in_memory else X)
        seconds = time.perf_counter() - start
        print(f"{before:.0f} {status('VmHWM'):.0f} {seconds:.1f} {sae.score(X[:10_000]):.4f}")


def bench_memory(args, tmp):
    width = 256
    n_rows = int(args.memory_gib * (1 << 30)) // (width * 4)
    path = Path(tmp) / "memory.h5"
    start = time.perf_counter()
    _write_h5(path, n_rows, width, np.float32, chunk_rows=1024)
    print(f"memory: wrote {n_rows} x {width} float32 ({path.stat().st_size / (1 << 30):.2f} GiB) "
          f"in {time.perf_counter() - start:.0f} s")
    code = (
        "import sys; sys.path.insert(0, {here!r}); from bench_streaming import _peak_growth_child as run; "
        "run({path!r}, {n_latents}, {batch_size}, {device!r}, {in_memory})"
    ).format(here=str(Path(__file__).parent), path=str(path), n_latents=args.memory_latents,
             batch_size=args.memory_batch_size, device=args.device, in_memory=args.memory_in_memory)
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout.split()
    before, peak, seconds, score = float(out[0]), float(out[1]), float(out[2]), float(out[3])
    arm = "in-memory (X[:] loaded)" if args.memory_in_memory else "streaming"
    print(f"  {arm}, one epoch, n_latents={args.memory_latents}, k=8, batch_size={args.memory_batch_size}: {seconds:.0f} s "
          f"({n_rows / seconds:.0f} rows/s); RSS before fit {before:.0f} MiB, peak {peak:.0f} MiB, "
          f"growth {peak - before:.0f} MiB; score on 10k rows {score:.3f}")


def bench_quality(args, tmp):
    rows = make_sparse_signals(n_samples=25_000, n_features=64, n_atoms=256, n_active=4, noise=0.05, random_state=0)[0]
    X, X_test = rows[:20_000], rows[20_000:]  # one draw of the dictionary; the last 5k rows are held out
    path = Path(tmp) / "quality.npy"
    np.save(path, X)
    X_disk = np.load(path, mmap_mode="r")
    scores = {"in-memory": [], "streaming": []}
    for seed in range(args.seeds):
        params = dict(n_latents=256, k=4, max_epochs=5, random_state=seed, device=args.device)
        scores["in-memory"].append(SparseAutoencoderTransformer(**params).fit(X).score(X_test))
        scores["streaming"].append(SparseAutoencoderTransformer(**params).fit(X_disk).score(X_test))
    print(f"quality: make_sparse_signals 20k x 64 (256 atoms, 4 active, noise 0.05), n_latents=256, k=4, 5 epochs, "
          f"held-out score on 5k rows, seeds 0..{args.seeds - 1}")
    for name, values in scores.items():
        spread = np.std(values, ddof=1)
        print(f"  {name:10s} mean {np.mean(values):.4f} sd {spread:.4f}  {np.round(values, 4).tolist()}")


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kinds = ["speed", "read", "readahead", "memory", "quality"]
    parser.add_argument("what", nargs="*", help=f"any of {', '.join(kinds)} (default: all)")
    parser.add_argument("--rows", type=int, default=20_000, help="rows of the speed file")
    parser.add_argument("--width", type=int, default=1024)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--memory-gib", type=float, default=4.0)
    parser.add_argument("--memory-latents", type=int, default=256)
    parser.add_argument("--memory-batch-size", type=int, default=4096)
    parser.add_argument("--memory-in-memory", action="store_true", help="measure the in-memory fit instead")
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--work", type=int, nargs="+", default=[0, 1, 3], help="readahead: products per batch")
    parser.add_argument("--window-mib", type=int, default=4, help="readahead: shuffle window size")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--tmp", default=None, help="folder for the files (default: a temporary one)")
    parser.add_argument("--json", default=None, help="speed: also write its figures to this JSON file")
    args = parser.parse_args(argv)
    unknown = set(args.what) - set(kinds)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {kinds}")
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        for what in args.what or kinds:
            globals()[f"bench_{what}"](args, tmp)


if __name__ == "__main__":
    main()
