"""The sweep behind SparseAutoencoderTransformer's defaults, on the shipped protein embeddings.

One factor at a time around a base setting (Top-K, k=32, n_latents=8 x 256,
batch 256, lr 1e-3, 5% warmup, 20 epochs, tied, geometric-median pre-bias):
learning rate, batch size, latents per feature, warmup, tied vs untied
decoder (with and without unit-norm maintenance) and the pre-bias
initialisation. Each fit trains on the train split (80%) and is scored on the
validation split (10%) by NMSE and dead fraction; the per-epoch validation
NMSE of the base setting shows where more epochs stop paying.

Usage::

    python benchmarks/sweep_defaults.py                # about 10 minutes on 2 CPU cores
    python benchmarks/sweep_defaults.py --epochs 5     # a quicker look
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import pandas as pd

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import load_embeddings, train_val_test_split

REPO_ROOT = Path(__file__).resolve().parents[1]


def variations(n_features):
    """Name -> parameters that differ from the base setting."""
    return {
        "base": {},
        "lr=3e-4": dict(lr=3e-4),
        "lr=3e-3": dict(lr=3e-3),
        "lr=1e-2": dict(lr=1e-2),
        "lr=3e-2": dict(lr=3e-2),
        "batch=64": dict(batch_size=64),
        "batch=1024": dict(batch_size=1024),
        "latents=4x": dict(n_latents=4 * n_features),
        "latents=16x": dict(n_latents=16 * n_features),
        "latents=16x+lr=3e-4": dict(n_latents=16 * n_features, lr=3e-4),
        "warmup=0": dict(warmup_steps=0),
        "untied+unit-norm": dict(tied=False, unit_norm_decoder=True),
        "untied+free-norm": dict(tied=False, unit_norm_decoder=False),
        "pre_bias=zeros": dict(pre_bias_init="zeros"),
        "pre_bias=mean": dict(pre_bias_init="mean"),
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", type=Path, default=REPO_ROOT / "data" / "per-protein.h5")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--lr", type=float, default=1e-3, help="learning rate of the base setting")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--only", default=None, help="comma-separated variation names")
    args = parser.parse_args(argv)

    _, X = load_embeddings(args.data)
    X_train, X_val, _ = train_val_test_split(X, random_state=args.seed)
    n_features = X.shape[1]
    base = dict(activation="topk", k=32, n_latents=8 * n_features, batch_size=256, lr=args.lr, warmup_steps=0.05,
                max_epochs=args.epochs, validation_fraction=0.0, device="cpu", random_state=args.seed)
    chosen = variations(n_features)
    if args.only:
        chosen = {name: chosen[name] for name in args.only.split(",")}

    rows, base_curve = [], None
    for name, change in chosen.items():
        sae = SparseAutoencoderTransformer(**{**base, **change})
        start = time.perf_counter()
        sae.fit(X_train, eval_sets={"val": X_val})
        seconds = time.perf_counter() - start
        rows.append({
            "setting": name,
            "val_nmse": sae.history_[-1, "val_nmse"],
            "val_fvu": sae.history_[-1, "val_fvu"],
            "val_dead": sae.history_[-1, "val_dead_fraction"],
            "train_dead_epoch1": sae.history_[0, "train_dead_fraction"],
            "fit_s": seconds,
        })
        print(rows[-1], flush=True)
        if name == "base":
            base_curve = sae.history_[:, "val_nmse"]

    print(f"\n{len(X_train)} training rows, {len(X_val)} validation rows, {args.epochs} epochs; "
          f"base: {base}\n")
    print(pd.DataFrame(rows).to_markdown(index=False, floatfmt=".4g"))
    if base_curve is not None:
        print("\nBase setting, validation NMSE by epoch: " + ", ".join(f"{v:.4f}" for v in base_curve))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
