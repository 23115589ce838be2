"""Compare three sparse autoencoders on protein embeddings: ReLU + L1, Top-K and Gumbel-Top-K.

A sparse autoencoder (SAE) rewrites each protein's embedding as a short list
of active "features". How it decides which features fire is the whole
difference between the four models trained here (ReLU at two L1 weights, Top-K and
Gumbel-Top-K), all with the same number
of latents, optimiser (Adam), learning-rate schedule (warmup then cosine) and
data:

``relu``
    ReLU codes made sparse by an L1 penalty, ``loss = NMSE + 1e-3 * L1``, on
    the raw embeddings (``normalize=False``): the seed's setting. Simple and
    smooth, but the number of active latents per protein is whatever the
    penalty leaves (about 270 here, not 64).
``relu_l0``
    The same model with its L1 weight calibrated so that the validation
    split has about ``k`` active latents per protein
    (:func:`sklearn_sae.calibration.calibrate_l1_coef`, a bisection on
    shorter fits): ReLU at the sparsity of the top-k models, so its NMSE
    can be compared with theirs.
``topk``
    Keeps the ``k`` largest pre-activations of each protein and zeroes the
    rest, so every code has at most ``k`` non-zeros; ``loss = NMSE`` on
    per-protein standardised embeddings (``normalize=True``).
``gumbel_topk``
    Top-K with Gumbel noise in training: the selection starts stochastic
    (temperature 1.0) and anneals linearly to hard Top-K (temperature 1e-8)
    over the first ``--anneal-steps`` batches (by default the estimator's,
    0.5% of the run), which gives latents that Top-K would leave dead a chance
    to learn. At inference it is exactly ``topk``. The script prints the
    schedule it used.

The embeddings (by default ``data/per-protein.h5``, 19,074 proteins of
SCL2205 embedded in 256 dimensions, UniProt's ``per-protein.h5`` layout) are
split 80/10/10 into train, validation and test sets. Each model trains on the
train set only; after every epoch it is scored on the validation and test
sets, which makes the training curves. At the end each fitted model is
evaluated once more, in inference mode, on all three splits: that table is
the comparison. Read it for

* NMSE and FVU: reconstruction error (lower is better);
* L0: active latents per protein (at most ``k`` for the top-k models);
* dead fraction: latents that never fire on the split (capacity wasted).

Everything lands in ``--out``: ``history.csv`` (per epoch), ``metrics.csv``
and ``metrics.md`` (final), ``comparison.png`` and ``training_curves.png``.
The defaults (2,048 latents, batch 64, 50 epochs: 11,950 training batches)
take about six minutes on two CPU cores, most of it the L1 calibration
(eight 10-epoch ReLU fits at most). ``--anneal-steps`` takes a fraction of
the run's batches (a float) or a number of batches (an int, such as the
seed's 10000); a schedule longer than the run is reported, and the Gumbel
model is then scored with a hard Top-K it never trained with. For a larger
comparison, train longer on a GPU, e.g.
``--epochs 200 --n-latents 4096 --device cuda``.

Usage::

    python examples/compare_activations.py
    python examples/compare_activations.py --data my/per-protein.h5 --epochs 50 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import metrics as sae_metrics
from sklearn_sae.calibration import calibrate_l1_coef
from sklearn_sae.datasets import load_embeddings, train_val_test_split
from sklearn_sae.plotting import plot_comparison, plot_training_curves

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = REPO_ROOT / "data" / "per-protein.h5"
REBUILD_COMMAND = "python scripts/build_scl2205.py --out data/per-protein.h5 --workers 2"

SPLITS = ("train", "val", "test")
METRICS = ("loss", "nmse", "fvu", "l0", "dead_fraction")
L1_COEF = 1e-3
TAU_START, TAU_END = 1.0, 1e-8
CALIBRATION_EPOCHS = 10
"""Epochs of each fit of the L1 search: a fifth of the default run, since L0 settles early."""


def model_params(*, k, anneal_steps, l1_coef_for_k):
    """The four models of the comparison: name -> estimator parameters."""
    gumbel_schedule = {} if anneal_steps is None else {"anneal_steps": anneal_steps}
    return {
        "relu": dict(activation="relu", l1_coef=L1_COEF, normalize=False),
        "relu_l0": dict(activation="relu", l1_coef=l1_coef_for_k, normalize=False),
        "topk": dict(activation="topk", k=k, l1_coef=0.0, normalize=True),
        "gumbel_topk": dict(
            activation="gumbel_topk", k=k, l1_coef=0.0, normalize=True, tau_start=TAU_START, tau_end=TAU_END,
            **gumbel_schedule,
        ),
    }


def step_count(value):
    """``--anneal-steps``: an int is a number of batches, a float in (0, 1] a fraction of them."""
    number = float(value)
    if number.is_integer() and "." not in value and "e" not in value.lower():
        if number < 1:
            raise argparse.ArgumentTypeError(f"{value} batches: give at least 1, or a fraction in (0, 1]")
        return int(number)
    if not 0 < number <= 1:
        raise argparse.ArgumentTypeError(f"{value} is neither a number of batches nor a fraction in (0, 1]")
    return number


def describe_schedule(sae):
    """One line on the Gumbel schedule a fitted ``gumbel_topk`` model used."""
    activation = sae.net_.module_.activation
    n_batches = int(activation.n_steps)
    return (f"temperature {activation.tau_start:g} -> {activation.tau_end:g} over the first "
            f"{activation.anneal_steps:,} of {n_batches:,} training batches "
            f"({activation.anneal_steps / n_batches:.1%}; anneal_steps={sae.anneal_steps!r}), "
            f"candidates={activation.candidates!r}")


def history_rows(model, history):
    """Long rows ``(model, epoch, split, metrics...)`` from a fitted estimator's ``history_``.

    The ``train`` split comes from the ``train_*`` keys (averaged over the
    epoch's batches in training mode), ``val`` and ``test`` from the eval sets
    (scored after each epoch in inference mode).
    """
    rows = []
    for entry in history:
        for split in SPLITS:
            row = {"model": model, "epoch": entry["epoch"], "split": split}
            for metric in METRICS:
                key = f"{split}_{metric}"
                if key not in entry:
                    raise KeyError(f"history_ of {model!r} has no {key!r} at epoch {entry['epoch']}; "
                                   f"it has {sorted(entry)}.")
                row[metric] = entry[key]
            rows.append(row)
    return rows


def evaluate(sae, X, *, l1_coef):
    """Loss, NMSE, FVU, L0 and dead fraction of a fitted model on ``X``, in inference mode."""
    codes = sae.transform(X)
    X_hat = sae.reconstruct(X)
    nmse = sae_metrics.nmse(X, X_hat)
    return {
        "loss": nmse + l1_coef * sae_metrics.l1(X, codes, normalize=sae.normalize),
        "nmse": nmse,
        "fvu": sae_metrics.fvu(X, X_hat),
        "l0": sae_metrics.l0(codes),
        "dead_fraction": sae_metrics.dead_fraction(codes),
    }


def markdown_table(table, *, digits=4):
    """``table`` as a Markdown table, floats with ``digits`` significant digits."""
    def cell(value):
        return f"{value:.{digits}g}" if isinstance(value, (float, np.floating)) else str(value)

    lines = [
        "| " + " | ".join(table.columns) + " |",
        "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns) + "|",
    ]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA,
        help="HDF5 embeddings, in UniProt's per-protein.h5 layout or the matrix layout")
    add("--out", type=Path, default=Path("results/compare_activations"), help="directory for tables and figures")
    add("--epochs", type=int, default=50, help="training epochs of each model")
    add("--n-latents", type=int, default=2048, help="latents of each model")
    add("--k", type=int, default=64, help="non-zeros per protein of the top-k models")
    add("--batch-size", type=int, default=64, help="proteins per training batch")
    add("--lr", type=float, default=1e-3, help="peak learning rate of Adam")
    add("--device", default="auto", help="'cpu', 'cuda', 'cuda:N', or 'auto' for a GPU when there is one")
    add("--seed", type=int, default=0, help="seed of the split, initialisation, batch order and Gumbel noise")
    add("--anneal-steps", type=step_count, default=None,
        help="batches (int) or fraction of the run's batches (float) over which the Gumbel temperature anneals; "
             "default: the estimator's")
    add("--target-l0", type=float, default=None, help="L0 the calibrated ReLU aims for on the validation split; default: k")
    args = parser.parse_args(argv)
    if not args.data.is_file():
        parser.error(
            f"embeddings file {str(args.data)!r} not found. Rebuild the shipped dataset as data/README.md "
            f"describes ('{REBUILD_COMMAND}' from the repository root, with the '[data]' extra installed), "
            "or pass --data PATH to an HDF5 file of per-protein embeddings."
        )
    return args


def main(argv=None):
    """Train the four models, write tables and figures to ``--out``; return 0."""
    args = parse_args(argv)

    ids, X = load_embeddings(args.data)
    X_train, X_val, X_test = train_val_test_split(X, sizes=(0.8, 0.1, 0.1), random_state=args.seed)
    data = dict(zip(SPLITS, (X_train, X_val, X_test)))
    print(f"{len(ids):,} proteins x {X.shape[1]} dims from {args.data}: "
          + ", ".join(f"{len(rows):,} {split}" for split, rows in data.items()))

    def estimator(**params):
        return SparseAutoencoderTransformer(
            n_latents=args.n_latents, lr=args.lr, batch_size=args.batch_size, max_epochs=args.epochs,
            validation_fraction=0.0, device=args.device, random_state=args.seed, verbose=1, **params,
        )

    target_l0 = args.target_l0 or args.k
    print(f"\n== relu_l0: searching the L1 weight for L0 ~ {target_l0:g} on the validation split "
          f"({CALIBRATION_EPOCHS}-epoch fits)")
    calibration = calibrate_l1_coef(
        estimator(activation="relu", normalize=False).set_params(max_epochs=min(CALIBRATION_EPOCHS, args.epochs),
                                                                 verbose=0),
        X_train, target_l0, X_val=X_val, bracket=(1e-3, 1e-1),
    )
    print("l1_coef -> validation L0: " + ", ".join(f"{c:.3g} -> {l0:.1f}" for c, l0 in calibration.trials))

    history, final = [], []
    params_of = model_params(k=args.k, anneal_steps=args.anneal_steps, l1_coef_for_k=calibration.coef)
    for model, params in params_of.items():
        print(f"\n== {model}: {params}")
        sae = estimator(**params)
        start = time.perf_counter()
        sae.fit(X_train, eval_sets={"val": X_val, "test": X_test})
        print(f"{model} trained in {time.perf_counter() - start:.1f} s")
        if model == "gumbel_topk":
            print(f"gumbel_topk schedule: {describe_schedule(sae)}")
        history += history_rows(model, sae.history_)
        final += [{"model": model, "split": split, **evaluate(sae, rows, l1_coef=params["l1_coef"])}
                  for split, rows in data.items()]

    history = pd.DataFrame(history, columns=["model", "epoch", "split", *METRICS])
    final = pd.DataFrame(final, columns=["model", "split", *METRICS])
    args.out.mkdir(parents=True, exist_ok=True)
    history.to_csv(args.out / "history.csv", index=False)
    final.to_csv(args.out / "metrics.csv", index=False)
    table = markdown_table(final)
    (args.out / "metrics.md").write_text(table)
    comparison = plot_comparison(final, metrics=("loss", "nmse", "l0", "dead_fraction"), splits=SPLITS)
    for name, fig in [("comparison.png", comparison),
                      ("training_curves.png", plot_training_curves(history, metric="nmse", splits=SPLITS))]:
        fig.savefig(args.out / name, dpi=120)
        plt.close(fig)

    print("\nFinal metrics (inference mode):\n")
    print(table)
    print(f"Wrote history.csv, metrics.csv, metrics.md, comparison.png and training_curves.png to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
