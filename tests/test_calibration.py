"""calibrate_l1_coef: the L1 weight of a ReLU autoencoder for a target L0."""

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer, metrics
from sklearn_sae.calibration import L1Calibration, calibrate_l1_coef


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 12))
    codes = rng.exponential(size=(400, 24)) * (rng.random((400, 24)) < 0.2)
    return (codes @ atoms).astype(np.float32)


def _template(**params):
    return SparseAutoencoderTransformer(
        48, activation="relu", normalize=False, max_epochs=20, batch_size=32, validation_fraction=0.0,
        device="cpu", random_state=0, **params,
    )


def test_finds_a_weight_with_the_target_l0(data):
    found = calibrate_l1_coef(_template(), data[:300], target_l0=8, X_val=data[300:], rtol=0.15, max_fits=10)
    assert isinstance(found, L1Calibration)
    assert found.l0 == pytest.approx(8, rel=0.15)
    # The returned model is the one measured, fitted with the returned weight.
    assert found.estimator.l1_coef == found.coef
    assert metrics.l0(found.estimator.transform(data[300:])) == pytest.approx(found.l0)
    assert (found.coef, found.l0) in found.trials


def test_l0_falls_as_the_weight_grows_along_the_trials(data):
    found = calibrate_l1_coef(_template(), data, target_l0=8, max_fits=6, rtol=0.0)
    assert len(found.trials) == 6
    weights, l0s = np.array(found.trials).T
    order = np.argsort(weights)
    assert l0s[order][0] > l0s[order][-1]


def test_stops_after_max_fits_with_the_closest_model(data):
    found = calibrate_l1_coef(_template(), data, target_l0=1e-3, max_fits=2)
    assert len(found.trials) == 2
    assert found.l0 == min(l0 for _, l0 in found.trials)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(target_l0=0), "target_l0 must be > 0"),
        (dict(target_l0=5, bracket=(1.0, 0.1)), "bracket must be"),
        (dict(target_l0=5, max_fits=0), "max_fits must be at least 1"),
    ],
)
def test_bad_arguments_get_a_clear_error(data, kwargs, match):
    with pytest.raises(ValueError, match=match):
        calibrate_l1_coef(_template(), data, **kwargs)
