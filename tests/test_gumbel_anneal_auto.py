"""Gumbel-Top-K's ``anneal_steps="auto"``: the noisy start lasts the learning-rate warmup with ``lr="auto"``."""

import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._params import ANNEAL_FRACTION


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    return rng.normal(size=(600, 24)).astype(np.float32)


def _fit(X, **params):
    # 540 training rows (10% held out) in batches of 64: 9 an epoch, 27 over 3 epochs.
    defaults = dict(activation="gumbel_topk", n_latents=64, k=4, max_epochs=3, batch_size=64, device="cpu",
                    random_state=0, validation_fraction=0.1)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


def _anneal_steps(sae):
    return sae.net_.module_.activation.anneal_steps


def test_the_default_is_auto():
    assert SparseAutoencoderTransformer().get_params()["anneal_steps"] == "auto"


def test_auto_anneals_over_the_warmup_with_lr_auto(X):
    assert _anneal_steps(_fit(X, warmup_steps=7)) == 7
    # A fractional warmup resolves as the warmup does: 30% of 27 batches, the temperature reaching tau_end where the
    # rate peaks.
    assert _anneal_steps(_fit(X, warmup_steps=0.3)) == round(0.3 * 27) == 8
    # At a rate the user chose, the short noisy start.
    assert _anneal_steps(_fit(X, lr=1e-3, warmup_steps=7)) == max(1, round(ANNEAL_FRACTION * 27))


def test_auto_without_a_warmup_anneals_over_the_fraction():
    from sklearn_sae._params import resolve_anneal_steps

    params = dict(anneal_steps="auto", lr="auto", warmup_steps=0)
    assert resolve_anneal_steps(params) == ANNEAL_FRACTION
    assert resolve_anneal_steps({**params, "warmup_steps": 0.0}) == ANNEAL_FRACTION
    assert resolve_anneal_steps({**params, "warmup_steps": 0.2}) == 0.2
    assert resolve_anneal_steps({**params, "anneal_steps": 40}) == 40  # a given length is kept


def test_a_saved_auto_model_keeps_its_resolved_schedule(X, tmp_path):
    sae = _fit(X, warmup_steps=7)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    activation = loaded.net_.module_.activation
    assert (activation.anneal_steps, int(activation.n_steps)) == (7, 27)
    assert loaded.get_params()["anneal_steps"] == "auto"
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))

