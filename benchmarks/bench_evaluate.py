"""The evaluation suite on every activation, over seeds; and its speed on codes of the shipped size.

Two measurements (each can be run alone):

* ``suite``: for each activation and seed, an SAE fitted on SCL2205's ``train`` proteins
  (``data/per-protein.h5``) is measured on the ``test`` proteins: :func:`~sklearn_sae.evaluate.core_metrics`,
  sparse probing of the 13 locations at k = 1, 2, 5 (fitted on ``train`` codes, scored on ``test``),
  the raw-dimension references, and the number of locations :func:`~sklearn_sae.evaluate.feature_splitting`
  calls split; and, on synthetic rows with known atoms (``make_sparse_signals``), the Hungarian
  recovery of the atoms (MCC, fraction at cosine 0.9). Means and ranges over the seeds, because the
  field reports large reseed noise.
* ``speed``: ``core_metrics`` and ``sparse_probing`` (with raw references) on random CSR codes of
  19,074 x 2,048 with 64 non-zeros a row and 13 classes, the size of the shipped set.

Usage::

    OMP_NUM_THREADS=2 python benchmarks/bench_evaluate.py suite speed --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import load_embeddings, load_protein_labels, make_sparse_signals
from sklearn_sae.evaluate import core_metrics, feature_splitting, ground_truth_recovery, sparse_probing

ROOT = Path(__file__).resolve().parents[1]
ACTIVATIONS = ("relu", "topk", "gumbel_topk", "batchtopk", "jumprelu")


def _fit(X, activation, seed, args):
    sae = SparseAutoencoderTransformer(
        activation=activation, k=args.k, n_latents=args.n_latents, max_epochs=args.epochs, random_state=seed,
        device="cpu", sparse_output=True,
        # ReLU and JumpReLU at about the top-k models' sparsity would need calibration; their default penalty is
        # reported as is.
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return sae.fit(X)


def bench_suite(args):
    ids, X = load_embeddings(ROOT / "data" / "per-protein.h5")
    labels = load_protein_labels(ROOT / "data" / "per-protein.labels.csv", ids=ids)
    train, test = (labels["split"] == "train").to_numpy(), (labels["split"] == "test").to_numpy()
    y = labels["location"].astype(str).to_numpy()
    X_synthetic, true_atoms, _ = make_sparse_signals(
        n_samples=8000, n_features=64, n_atoms=128, n_active=4, random_state=0
    )
    rows = []
    for activation in args.activations:
        for seed in args.seeds:
            start = time.perf_counter()
            sae = _fit(X[train], activation, seed, args)
            core = core_metrics(sae, X[test]).iloc[0].to_dict()
            table = sparse_probing(sae.transform(X[train]), y[train], sae.transform(X[test]), y[test],
                                   X_train=X[train], X_test=X[test])
            f1 = table.groupby(["representation", "k"])["f1"].mean()
            synthetic = _fit(X_synthetic, activation, seed, argparse.Namespace(**{**vars(args), "n_latents": 256}))
            recovery = ground_truth_recovery(true_atoms, synthetic.components_)
            rows.append({
                "activation": activation, "seed": seed, **core,
                **{f"probe_f1_k{k}": f1[("sae", k)] for k in (1, 2, 5)},
                "raw_f1_k1": f1[("raw_top_k", 1)], "raw_f1_k5": f1[("raw_top_k", 5)],
                "raw_full_f1": f1.xs("raw_full", level="representation").iloc[0],
                "split_locations": int(feature_splitting(table)["split"].sum()),
                "synthetic_mcc_hungarian_signed": recovery.attrs["mcc_hungarian_signed"],
                "synthetic_recovered_hungarian": recovery.attrs["fraction_recovered_hungarian"],
                "seconds": time.perf_counter() - start,
            })
            print(f"suite: {activation} seed {seed} done in {rows[-1]['seconds']:.0f} s")
    results = pd.DataFrame(rows)
    summary = results.drop(columns="seed").groupby("activation").agg(["mean", "min", "max"])
    columns = ["l0", "explained_variance", "alive", "dense_10pct", "mean_max_cosine", "relative_reconstruction_bias",
               "probe_f1_k1", "probe_f1_k5", "raw_f1_k1", "raw_f1_k5", "raw_full_f1", "split_locations",
               "synthetic_mcc_hungarian_signed", "synthetic_recovered_hungarian"]
    print(f"\nsuite over seeds {list(args.seeds)} ({args.n_latents} latents, k={args.k}, {args.epochs} epochs); "
          "mean [min, max]:\n")
    print("| activation | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for activation in args.activations:
        cells = [f"{summary.loc[activation, (c, 'mean')]:.3g} [{summary.loc[activation, (c, 'min')]:.3g}, "
                 f"{summary.loc[activation, (c, 'max')]:.3g}]" for c in columns]
        print(f"| {activation} | " + " | ".join(cells) + " |")


def bench_speed(args):
    rng = np.random.default_rng(0)
    n_rows, n_latents, k, n_features = 19074, 2048, 64, 256
    columns = np.argsort(rng.random((n_rows, n_latents)), axis=1)[:, :k]
    codes = sp.csr_matrix((rng.random(n_rows * k), columns.ravel(), np.arange(0, n_rows * k + 1, k)),
                          shape=(n_rows, n_latents))
    y = rng.integers(0, 13, n_rows)
    X = rng.normal(size=(n_rows, n_features))

    class Fixed:
        components_ = rng.normal(size=(n_latents, n_features))

        def transform(self, X):
            return codes

        def reconstruct(self, X):
            return 0.9 * X

    start = time.perf_counter()
    core_metrics(Fixed(), X, codes=codes)
    middle = time.perf_counter()
    cut = int(0.8 * n_rows)
    table = sparse_probing(codes[:cut], y[:cut], codes[cut:], y[cut:], X_train=X[:cut], X_test=X[cut:])
    feature_splitting(table)
    end = time.perf_counter()
    print(f"speed: core_metrics {middle - start:.1f} s, sparse_probing + feature_splitting {end - middle:.1f} s, "
          f"total {end - start:.1f} s on {n_rows} x {n_latents} CSR codes")


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    kinds = ["suite", "speed"]
    parser.add_argument("what", nargs="*", help=f"any of {', '.join(kinds)} (default: all)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--activations", nargs="+", default=list(ACTIVATIONS), choices=ACTIVATIONS)
    parser.add_argument("--n-latents", type=int, default=1024)
    parser.add_argument("--k", type=int, default=32)
    parser.add_argument("--epochs", type=int, default=10)
    args = parser.parse_args()
    unknown = set(args.what) - set(kinds)
    if unknown:
        parser.error(f"unknown measurement(s) {sorted(unknown)}; choose from {kinds}")
    for what in args.what or kinds:
        globals()[f"bench_{what}"](args)


if __name__ == "__main__":
    main()
