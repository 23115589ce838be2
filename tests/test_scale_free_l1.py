"""The L1 penalty under ``normalize=True`` divides by the norm of the row the encoder takes: ``l1_coef`` means the
same on embeddings of any scale."""

import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer, metrics
from sklearn_sae.datasets import make_sparse_signals


@pytest.fixture(scope="module")
def X():
    X = make_sparse_signals(n_samples=500, n_features=16, n_atoms=48, n_active=3, random_state=0)[0]
    # Rows of variance about 1, so that the standardisation's epsilon (1e-5) moves neither scale's rows measurably.
    return (X / X.std(axis=1, keepdims=True)).astype(np.float32)


def _fit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(
            n_latents=48, activation="relu", l1_coef=0.05, max_epochs=3, batch_size=64, device="cpu", random_state=0,
        ).fit(X)


def test_scaling_the_embeddings_leaves_a_relu_fit_unchanged(X):
    small, large = _fit(X), _fit(1000 * X)
    for key in ("train_loss", "valid_loss", "valid_nmse", "valid_l1", "valid_l0"):
        np.testing.assert_allclose(large.history_[:, key], small.history_[:, key], rtol=1e-3, err_msg=key)
    codes_small, codes_large = small.transform(X), large.transform(1000 * X)
    np.testing.assert_allclose(codes_large, codes_small, rtol=1e-3, atol=1e-4)
    assert (codes_small == 0).mean() > 0.3  # the penalty is doing something: many codes are zero


def test_the_l1_metric_follows_the_model_normalisation():
    X = np.array([[1.0, 2.0, 3.0, 6.0], [0.0, -1.0, 1.0, 0.0], [2.0, 2.0, 2.0, 2.0]])
    codes = np.array([[1.0, 0.0], [0.5, 0.5], [3.0, 0.0]])
    standardised = torch.nn.functional.layer_norm(torch.tensor(X), (4,), eps=1e-5).numpy()
    norms = np.linalg.norm(standardised[:2], axis=1)
    with pytest.warns(UserWarning, match="1 of the 3 rows of X are constant"):
        value = metrics.l1(X, codes, normalize=True)
        assert value == pytest.approx(np.mean([1.0, 1.0] / norms))
        assert metrics.l1(1000 * X, codes, normalize=True) == pytest.approx(value, rel=1e-4)  # the epsilon aside
    assert metrics.l1(X[:2], codes[:2], normalize=False) == pytest.approx(np.mean([1.0 / np.sqrt(50), 1 / np.sqrt(2)]))


def test_the_metrics_standardise_as_the_model_does():
    from sklearn_sae._model import LAYER_NORM_EPS

    assert metrics._LAYER_NORM_EPS == LAYER_NORM_EPS
