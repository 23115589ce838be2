"""calibrate_l1_coef says when it cannot reach the target L0, instead of returning a far-off weight silently."""

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.calibration import calibrate_l1_coef


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 12))
    codes = rng.exponential(size=(400, 24)) * (rng.random((400, 24)) < 0.2)
    return (codes @ atoms).astype(np.float32)


def test_a_search_that_cannot_reach_the_target_stops_widening_and_says_why(data):
    # One epoch at a tiny rate: the codes cannot follow any penalty, so a larger weight leaves the L0 where it is.
    template = SparseAutoencoderTransformer(48, activation="relu", max_epochs=1, lr=1e-6, batch_size=32,
                                            validation_fraction=0.0, device="cpu", random_state=0)
    with pytest.warns(UserWarning, match="not within rtol=0.1 of target_l0=2 .* barely moved the L0"):
        found = calibrate_l1_coef(template, data, target_l0=2, max_fits=8)
    assert len(found.trials) == 2  # the bracket's high end, then ten times it: no more fits spent
