"""JumpReLU with ``target_l0`` under the automatic length: one default fit lands near its L0."""

import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._params import training_settings
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


def test_the_target_pull_defaults_to_3e_3():
    params = SparseAutoencoderTransformer(activation="jumprelu", target_l0=12).get_params()
    assert training_settings(params).l0_coef == 3e-3


def test_a_default_target_l0_fit_keeps_an_epoch_after_its_warmup_and_lands_within_10_percent(fitted):
    sae, X_held = fitted
    codes = sae.transform(X_held)
    assert abs((codes != 0).sum(axis=1).mean() - 12) <= 1.2
    stopping = dict(sae.net_.callbacks_)["early_stopping"]
    assert stopping.best_epoch_ > stopping.start_epoch  # never an epoch of the warmup, where the thresholds settle
