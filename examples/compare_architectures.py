"""Six SAE architectures at matched sparsity on protein embeddings: reconstruction against L0, and dead latents.

Trains, on SCL2205's ``train`` proteins of ``data/per-protein.h5``, with the same number of latents,
epochs and seed:

``topk``, ``gumbel_topk``, ``batchtopk``
    The top-k activations at ``k`` (BatchTopK keeps ``k * batch_size`` a training batch and learns
    one threshold for inference, so its L0 there is close to, not exactly, ``k``);
``matryoshka``
    Top-K at ``k`` whose nested prefixes (1/16, 1/8, 1/4 and 1/2 of the latents) must each
    reconstruct too;
``relu``, ``jumprelu``
    ReLU + L1 and JumpReLU + L0, whose L0 follows from their penalty: each is calibrated first
    (:func:`sklearn_sae.calibration.calibrate_l1_coef`, with fits as long as the final one: a
    penalty's L0 keeps falling as training goes on, so half-length fits chose a weight that left the
    final model about 20% below ``k``) to the same mean L0 ``k`` on the ``eval`` proteins.

Each is scored on the ``test`` proteins: mean L0, FVU and the fraction of latents that never fire.
It writes ``architectures.csv`` and ``architectures.png`` (FVU against L0, the lower left being
better, and the dead fractions) to ``--out``. The defaults (1,024 latents, k 32, 10 epochs) take a
few minutes on two CPU cores.

Usage::

    python examples/compare_architectures.py
    python examples/compare_architectures.py --epochs 30 --n-latents 4096 --device cuda
"""

from __future__ import annotations

import argparse
import time
import warnings
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import pandas as pd  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer, metrics  # noqa: E402
from sklearn_sae.calibration import calibrate_l1_coef  # noqa: E402
from sklearn_sae.datasets import load_embeddings, load_protein_labels  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
MATRYOSHKA_LEVELS = (1 / 16, 1 / 8, 1 / 4, 1 / 2)


def architectures(args):
    """Name to estimator parameters (the penalised ones without their weight, which calibration sets)."""
    top_k = dict(k=args.k)
    return {
        "topk": dict(activation="topk", **top_k),
        "gumbel_topk": dict(activation="gumbel_topk", **top_k),
        "batchtopk": dict(activation="batchtopk", **top_k),
        "matryoshka": dict(activation="topk", matryoshka=MATRYOSHKA_LEVELS, **top_k),
        "relu": dict(activation="relu"),
        "jumprelu": dict(activation="jumprelu"),
    }


def estimator(params, args):
    settings = dict(n_latents=args.n_latents, max_epochs=args.epochs, random_state=args.seed, device=args.device)
    return SparseAutoencoderTransformer(**{**settings, **params})


def run(X_train, X_eval, X_test, args):
    rows = []
    for name, params in architectures(args).items():
        start = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # dead-latent warnings: the table reports them
            if params["activation"] in ("relu", "jumprelu"):  # the calibration's closest fit is the model
                calibration = calibrate_l1_coef(estimator(params, args), X_train, args.k, X_val=X_eval)
                params, sae = {**params, calibration.parameter: calibration.coef}, calibration.estimator
            else:
                sae = estimator(params, args).fit(X_train)
        codes = sae.set_params(sparse_output=True).transform(X_test)
        rows.append({
            "architecture": name,
            "l0": metrics.l0(codes),
            "fvu": 1.0 - sae.score(X_test),
            "dead_fraction": metrics.dead_fraction(codes),
            "l1_coef": params.get("l1_coef"),
            "seconds": time.perf_counter() - start,
        })
        print(f"{name}: L0 {rows[-1]['l0']:.1f}, FVU {rows[-1]['fvu']:.4f}, dead {rows[-1]['dead_fraction']:.1%}, "
              f"{rows[-1]['seconds']:.0f} s", flush=True)
    return pd.DataFrame(rows)


def plot(table, path):
    figure, (pareto, dead) = plt.subplots(1, 2, figsize=(11, 4.2))
    for row in table.itertuples():
        pareto.scatter(row.l0, row.fvu, s=60)
        pareto.annotate(row.architecture, (row.l0, row.fvu), textcoords="offset points", xytext=(5, 4), fontsize=8)
    pareto.set_xlabel("L0 on test proteins (active latents per protein)")
    pareto.set_ylabel("FVU on test proteins (lower is better)")
    pareto.set_title("Reconstruction against sparsity")
    dead.barh(table["architecture"], table["dead_fraction"])
    dead.set_xlabel("fraction of latents that never fire on test proteins")
    dead.set_title("Dead latents")
    figure.tight_layout()
    figure.savefig(path, dpi=120)


def parse_args(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--data", default=str(ROOT / "data" / "per-protein.h5"))
    add("--labels", default=str(ROOT / "data" / "per-protein.labels.csv"), help="CSV with accession and split")
    add("--out", default="results/compare_architectures")
    add("--n-latents", type=int, default=1024)
    add("--k", type=int, default=32, help="the top-k activations' k, and the L0 the others are calibrated to")
    add("--epochs", type=int, default=10)
    add("--seed", type=int, default=0)
    add("--device", default="auto")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    ids, X = load_embeddings(args.data)
    split = load_protein_labels(args.labels, ids=ids)["split"].astype(str).to_numpy()
    table = run(X[split == "train"], X[split == "eval"], X[split == "test"], args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "architectures.csv", index=False)
    plot(table, out / "architectures.png")
    print(table.to_string(index=False, float_format=lambda v: f"{v:.4g}"))
    print(f"wrote architectures.csv and architectures.png to {out}")


if __name__ == "__main__":
    main()
