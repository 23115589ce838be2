"""JumpReLU with ``target_l0`` under the automatic length: the warmup is not kept, the fit lands near its L0."""

import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_sparse_signals


@pytest.fixture(scope="module")
def fitted():
    X = make_sparse_signals(n_samples=1200, n_features=32, n_atoms=96, n_active=6, random_state=0)[0] + 3.0
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = SparseAutoencoderTransformer(
            activation="jumprelu", target_l0=12, n_latents=128, device="cpu", random_state=0
        ).fit(X[:600])
    return sae, X[600:]


def test_a_default_target_l0_fit_keeps_an_epoch_after_its_warmup(fitted):
    sae, _ = fitted
    # 540 training rows: 3 batches an epoch, and the warmup is 5% of the 3,000-step budget, 150 steps: 50 epochs,
    # in which the loss may rise while the thresholds settle. None of them may be kept as the best.
    stopping = dict(sae.net_.callbacks_)["early_stopping"]
    assert stopping.best_epoch_ > 50


def test_a_default_target_l0_fit_lands_near_its_target(fitted):
    sae, X_held = fitted
    l0 = (sae.transform(X_held) != 0).sum(axis=1).mean()
    # The final threshold scale aims the validation rows at 12; new rows land near it (measured 11.9).
    assert abs(l0 - 12) <= 1.2
