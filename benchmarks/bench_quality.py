"""Fit quality of the three activations (and AuxK on/off) against MiniBatchDictionaryLearning.

Two data sets:

* ``synthetic``: :func:`sklearn_sae.datasets.make_sparse_signals`, whose true
  atoms are known, so each fit is scored by dictionary recovery (Hungarian MCC
  on the signed cosine, and the fraction of true atoms matched at cosine 0.9 or
  more: ``metrics.recovery_scores``) as well as by reconstruction;
* ``protein``: the shipped ``data/per-protein.h5`` (80/10/10 split), scored by
  test NMSE, FVU, L0 and dead fraction, and by the dead fraction on the
  training rows over the epochs, to see whether Gumbel-Top-K keeps more
  latents alive early in training.

The baseline is scikit-learn's ``MiniBatchDictionaryLearning`` with the same
number of atoms, coding each row with OMP at the same L0 (``k`` non-zeros).

Usage::

    python benchmarks/bench_quality.py                  # both data sets
    python benchmarks/bench_quality.py --quick          # small sizes, about a minute
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.decomposition import MiniBatchDictionaryLearning

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import metrics
from sklearn_sae.datasets import load_embeddings, make_sparse_signals, train_val_test_split

REPO_ROOT = Path(__file__).resolve().parents[1]


def sae_variants(k, anneal_steps, l1_coef, dead_window):
    """Name -> estimator parameters of every SAE that is compared."""
    auxk = dict(aux_k=2 * k, dead_window=dead_window)
    return {
        "relu+L1": dict(activation="relu", l1_coef=l1_coef),
        "topk": dict(activation="topk", k=k),
        "topk+AuxK": dict(activation="topk", k=k, **auxk),
        "gumbel_topk": dict(activation="gumbel_topk", k=k, anneal_steps=anneal_steps),
        "gumbel_topk+AuxK": dict(activation="gumbel_topk", k=k, anneal_steps=anneal_steps, **auxk),
    }


def score(X_test, X_hat, codes):
    return {
        "test_nmse": metrics.nmse(X_test, X_hat),
        "test_fvu": metrics.fvu(X_test, X_hat),
        "test_l0": metrics.l0(codes),
        "test_dead": metrics.dead_fraction(codes),
    }


def _recovery(true_atoms, components):
    """Hungarian MCC (signed) and the fraction of true atoms matched at cosine 0.9 or more."""
    summary = metrics.recovery_scores(true_atoms, components).summary
    return {"mcc_hungarian_signed": summary["mcc_hungarian_signed"],
            "recovered_hungarian": summary["fraction_recovered_hungarian"]}


def run_sae(name, params, common, X_train, X_test, true_atoms=None):
    sae = SparseAutoencoderTransformer(**common, **params)
    start = time.perf_counter()
    sae.fit(X_train)
    seconds = time.perf_counter() - start
    row = {"model": name, "fit_s": seconds, **score(X_test, sae.reconstruct(X_test), sae.transform(X_test))}
    dead = sae.history_[:, "train_dead_fraction"]
    row["train_dead_epoch1"] = dead[0]
    row["train_dead_last"] = dead[-1]
    if true_atoms is not None:
        row.update(_recovery(true_atoms, sae.components_))
    return row


def run_dictionary_learning(n_atoms, k, X_train, X_test, seed, true_atoms=None, max_iter=10):
    dl = MiniBatchDictionaryLearning(
        n_components=n_atoms, batch_size=256, max_iter=max_iter, transform_algorithm="omp",
        transform_n_nonzero_coefs=k, random_state=seed,
    )
    start = time.perf_counter()
    dl.fit(X_train)
    seconds = time.perf_counter() - start
    codes = dl.transform(X_test)
    row = {"model": "MiniBatchDictionaryLearning+OMP", "fit_s": seconds, **score(X_test, codes @ dl.components_, codes)}
    if true_atoms is not None:
        row.update(_recovery(true_atoms, dl.components_))
    return row


def synthetic(args):
    X, atoms, _ = make_sparse_signals(
        args.synthetic_samples, 32, 64, 3, noise=0.01, random_state=args.seed
    )
    X_train, X_test = X[: -len(X) // 5], X[-len(X) // 5 :]
    common = dict(n_latents=128, normalize=False, batch_size=128, lr=1e-2, max_epochs=args.synthetic_epochs,
                  validation_fraction=0.0, device="cpu", random_state=args.seed)
    n_steps = -(-len(X_train) // 128) * args.synthetic_epochs
    rows = [run_sae(name, params, common, X_train, X_test, atoms)
            for name, params in sae_variants(3, n_steps // 10, 0.2, dead_window=len(X_train)).items()]
    rows.append(run_dictionary_learning(128, 3, X_train, X_test, args.seed, atoms))
    return pd.DataFrame(rows)


def protein(args):
    _, X = load_embeddings(args.data)
    X_train, X_val, X_test = train_val_test_split(X, random_state=args.seed)
    if args.protein_rows:
        X_train = X_train[: args.protein_rows]
    common = dict(n_latents=args.n_latents, batch_size=args.batch_size, lr=args.lr, max_epochs=args.protein_epochs,
                  validation_fraction=0.0, device="cpu", random_state=args.seed)
    n_steps = -(-len(X_train) // args.batch_size) * args.protein_epochs
    rows = [run_sae(name, params, common, X_train, X_test)
            for name, params in sae_variants(args.k, n_steps // 2, 1e-3, dead_window=len(X_train)).items()]
    rows.append(run_dictionary_learning(args.n_latents, args.k, X_train, X_test, args.seed, max_iter=2))
    return pd.DataFrame(rows)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "per-protein.h5")
    parser.add_argument("--only", choices=["synthetic", "protein"], default=None)
    parser.add_argument("--quick", action="store_true", help="small sizes, about a minute")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--batch-size", type=int, default=256)
    args = parser.parse_args(argv)
    args.synthetic_samples, args.synthetic_epochs = (2000, 10) if args.quick else (5000, 40)
    args.protein_epochs, args.protein_rows = (2, 2000) if args.quick else (20, None)

    pd.set_option("display.width", 200)
    pd.set_option("display.float_format", "{:.4g}".format)
    if args.only in (None, "synthetic"):
        print("\n## Synthetic signals (64 true atoms in 32 dims, 3 active per row, 128 latents)\n")
        print(synthetic(args).to_markdown(index=False, floatfmt=".4g"))
    if args.only in (None, "protein"):
        print(f"\n## Protein embeddings ({args.data.name}, {args.n_latents} latents, k={args.k})\n")
        print(protein(args).to_markdown(index=False, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
