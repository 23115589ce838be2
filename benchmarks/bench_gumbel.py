"""Does Gumbel-Top-K keep its promise? Top-K against Gumbel-Top-K at the estimator's defaults.

Three settings, each over several seeds (``--seeds``), reporting test FVU,
the fraction of latents that never fire on the test rows, and for synthetic
data the Hungarian MCC and the fraction of true atoms matched at cosine >= 0.9
(``metrics.recovery_scores``, signed cosine):

``card``
    The design card's call, ``SparseAutoencoderTransformer(activation=..., k=64)``
    with every other parameter at its default, on the shipped proteins:
    a random 80% (split seed 0) trains, the last 10% tests.
``demo``
    ``make demo``'s settings (2,048 latents, k=64, batch 64, 50 epochs,
    lr 1e-3, no validation split) on its 80/10/10 split.
``synthetic``
    :func:`sklearn_sae.datasets.make_sparse_signals` with known atoms, at
    several sizes, more latents than true atoms, uniform and power-law atom
    frequencies; ``k`` is the true number of active atoms.

``--anneal`` and ``--candidates`` add Gumbel-Top-K variants (a grid), which
is how the defaults were chosen; the plain run compares the defaults only.

Usage::

    PYTHONPATH=. python benchmarks/bench_gumbel.py --only card --seeds 0 1 2
    PYTHONPATH=. python benchmarks/bench_gumbel.py --only card --seeds 0 1 2 --anneal 0.005 0.01 0.05 0.25 --candidates positive all
    PYTHONPATH=. python benchmarks/bench_gumbel.py --only synthetic --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import itertools
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

from sklearn_sae import SparseAutoencoderTransformer, metrics
from sklearn_sae.datasets import load_embeddings, make_sparse_signals, train_val_test_split

REPO_ROOT = Path(__file__).resolve().parents[1]

SYNTHETIC_SIZES = {
    # name: (n_samples, n_features, n_atoms, n_active, n_latents, frequency_exponent)
    "d32-64atoms-uniform": (8000, 32, 64, 3, 128, 0.0),
    "d64-128atoms-powerlaw": (16000, 64, 128, 4, 512, 1.0),
    "d128-512atoms-powerlaw": (32000, 128, 512, 8, 1024, 1.0),
}


def variants(args):
    """Name -> estimator parameters: Top-K, Gumbel-Top-K at its defaults, and the requested grid."""
    models = {"topk": dict(activation="topk"), "gumbel_topk": dict(activation="gumbel_topk")}
    for fraction, candidates in itertools.product(args.anneal or [], args.candidates or []):
        models[f"gumbel[{candidates},{fraction:g}]"] = dict(
            activation="gumbel_topk", anneal_steps=fraction, gumbel_candidates=candidates
        )
    return models


def fit_and_score(params, X_train, X_test, true_atoms=None):
    sae = SparseAutoencoderTransformer(device="cpu", **params)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # a grid may hold schedules that outlast the fit
        sae.fit(X_train)
    codes = sae.transform(X_test)
    row = {
        "fvu": metrics.fvu(X_test, sae.reconstruct(X_test)),
        "dead": metrics.dead_fraction(codes),
        "fit_s": time.perf_counter() - start,
    }
    if true_atoms is not None:
        summary = metrics.recovery_scores(true_atoms, sae.components_).summary
        row["mcc_hungarian_signed"] = summary["mcc_hungarian_signed"]
        row["recovered_hungarian"] = summary["fraction_recovered_hungarian"]
    return row


def card(args):
    _, X = load_embeddings(args.data)
    order = np.random.default_rng(0).permutation(len(X))
    X_train, X_test = X[order[: int(0.8 * len(X))]], X[order[int(0.9 * len(X)) :]]
    return [
        {"setting": "card", "model": name, "seed": seed, **fit_and_score(dict(params, k=64, random_state=seed), X_train, X_test)}
        for seed in args.seeds
        for name, params in variants(args).items()
    ]


def demo(args):
    _, X = load_embeddings(args.data)
    rows = []
    for seed in args.seeds:
        X_train, _, X_test = train_val_test_split(X, sizes=(0.8, 0.1, 0.1), random_state=seed)
        common = dict(n_latents=2048, k=64, batch_size=64, max_epochs=50, lr=1e-3, validation_fraction=0.0,
                      random_state=seed)
        for name, params in variants(args).items():
            rows.append({"setting": "demo", "model": name, "seed": seed,
                         **fit_and_score({**common, **params}, X_train, X_test)})
    return rows


def synthetic(args):
    rows = []
    for size, (n, d, n_atoms, n_active, n_latents, exponent) in SYNTHETIC_SIZES.items():
        for seed in args.seeds:
            X, atoms, _ = make_sparse_signals(n, d, n_atoms, n_active, frequency_exponent=exponent, noise=0.01,
                                              random_state=seed)
            X_train, X_test = X[: -n // 5], X[-n // 5 :]
            for name, params in variants(args).items():
                rows.append({"setting": size, "model": name, "seed": seed,
                             **fit_and_score(dict(params, n_latents=n_latents, k=n_active, random_state=seed),
                                             X_train, X_test, atoms)})
    return rows


def summarise(table):
    """Mean, min and max over seeds of every metric, per setting and model, with FVU relative to Top-K."""
    topk_fvu = table[table.model == "topk"].groupby(["setting", "seed"]).fvu.first()
    table = table.assign(fvu_vs_topk=table.fvu.values / topk_fvu.loc[list(zip(table.setting, table.seed))].values)
    columns = [c for c in ("fvu", "fvu_vs_topk", "dead", "recovered_hungarian", "mcc_hungarian_signed", "fit_s")
               if c in table]
    summary = table.groupby(["setting", "model"], sort=False)[columns].agg(["mean", "min", "max"])
    summary.columns = [f"{metric}_{stat}" for metric, stat in summary.columns]
    return summary.reset_index()


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "per-protein.h5")
    parser.add_argument("--only", choices=["card", "demo", "synthetic"], nargs="+", default=["card", "demo", "synthetic"])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--anneal", type=float, nargs="*", help="extra Gumbel anneal fractions to try")
    parser.add_argument("--candidates", nargs="*", choices=["positive", "all"], default=["positive"])
    parser.add_argument("--csv", type=Path, help="also write every fit's row here")
    args = parser.parse_args(argv)

    rows = []
    for setting in args.only:
        rows += {"card": card, "demo": demo, "synthetic": synthetic}[setting](args)
        print(f"{setting}: done", flush=True)
    table = pd.DataFrame(rows)
    if args.csv:
        table.to_csv(args.csv, index=False)
    print(summarise(table).to_markdown(index=False, floatfmt=".4g"))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
