"""How far is SAELens's "layer_norm" from this package's normalisation? The tolerance of ``normalization="layer_norm"``.

A model fitted with ``normalize=True`` standardises each row with the biased
variance plus 1e-5 under the square root; SAELens's ``"layer_norm"`` divides
by the Bessel-corrected std plus 1e-5 and multiplies back by the std alone.
``SparseAutoencoderTransformer.export(..., format="saelens",
normalization="layer_norm")`` folds the Bessel factor into the weights; the
eps cannot be folded. This script fits a Top-K and a ReLU model on rows of
three scales, exports each, loads it with ``sae_lens.SAE.load_from_disk`` and
compares SAELens's codes and reconstructions of held-out rows with the
estimator's:

- ``same support``: fraction of rows whose set of non-zero latents agrees;
- ``code err``: max over all entries of ``|code difference|`` over the largest code;
- ``code err (same support)``: the same over the rows whose support agrees;
- ``recon err``: median and max over rows of ``||x_hat_saelens - x_hat|| / ||x - row mean||``.

Usage::

    PYTHONPATH=. python benchmarks/bench_interop_layer_norm.py
"""

from __future__ import annotations

import tempfile

import numpy as np
import torch

from sklearn_sae import SparseAutoencoderTransformer, load_embeddings


def compare(X, activation, n_latents=512, k=16, n_train=3000, n_test=2000):
    import sae_lens

    estimator = SparseAutoencoderTransformer(
        n_latents, activation=activation, k=k, max_epochs=2, device="cpu", random_state=0
    ).fit(X[:n_train])
    X_test = X[-n_test:]
    with tempfile.TemporaryDirectory() as directory:
        estimator.export(directory, "saelens", normalization="layer_norm")
        sae = sae_lens.SAE.load_from_disk(directory)
        with torch.no_grad():
            codes = sae.encode(torch.from_numpy(X_test)).numpy()
            recon = sae(torch.from_numpy(X_test)).numpy()
    ours, ours_recon = estimator.transform(X_test), estimator.reconstruct(X_test)
    same = ((codes != 0) == (ours != 0)).all(axis=1)
    scale = np.abs(ours).max()
    spread = np.linalg.norm(X_test - X_test.mean(axis=1, keepdims=True), axis=1)
    recon_err = np.linalg.norm(recon - ours_recon, axis=1) / spread
    return {
        "median row variance": float(np.median(X_test.var(axis=1))),
        "same support": float(same.mean()),
        "code err": float(np.abs(codes - ours).max() / scale),
        "code err (same support)": float(np.abs(codes - ours)[same].max() / scale) if same.any() else float("nan"),
        "recon err median": float(np.median(recon_err)),
        "recon err max": float(recon_err.max()),
    }


def main():
    _, proteins = load_embeddings("data/per-protein.h5")
    proteins = np.asarray(proteins, dtype=np.float32)
    datasets = {
        "shipped NEAR": proteins,
        "NEAR x 10": proteins * 10,
        "N(0, 1), 256 features": np.random.default_rng(0).normal(size=(5000, 256)).astype(np.float32),
    }
    print("| data | activation | median row variance | same support | code err | code err (same support) "
          "| recon err median | recon err max |")
    print("|---|---|---|---|---|---|---|---|")
    for name, X in datasets.items():
        for activation in ("topk", "relu"):
            row = compare(X, activation)
            print(f"| {name} | {activation} | " + " | ".join(f"{value:.3g}" for value in row.values()) + " |")


if __name__ == "__main__":
    main()
