"""Gumbel-Top-K's ``"auto"`` start: with ``lr="auto"`` the noise anneals from 0.3 over the learning-rate warmup."""

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


def _schedule(sae):
    activation = sae.net_.module_.activation
    return activation.tau_start, activation.anneal_steps


def test_the_defaults_are_auto():
    params = SparseAutoencoderTransformer().get_params()
    assert (params["tau_start"], params["anneal_steps"]) == ("auto", "auto")


def test_auto_anneals_from_0_3_over_the_warmup_with_lr_auto(X):
    assert _schedule(_fit(X, warmup_steps=7)) == (0.3, 7)
    # A fractional warmup resolves as the warmup does: 30% of 27 batches, the temperature reaching tau_end where the
    # rate peaks.
    assert _schedule(_fit(X, warmup_steps=0.3)) == (0.3, round(0.3 * 27)) == (0.3, 8)
    # At a rate the user chose, the short noisy start from 1.
    assert _schedule(_fit(X, lr=1e-3, warmup_steps=7)) == (1.0, max(1, round(ANNEAL_FRACTION * 27)))


def test_auto_without_a_warmup_starts_as_with_an_explicit_lr():
    from sklearn_sae._params import resolve_gumbel_start

    params = dict(tau_start="auto", anneal_steps="auto", lr="auto", warmup_steps=0)
    assert resolve_gumbel_start(params) == (1.0, ANNEAL_FRACTION)
    assert resolve_gumbel_start({**params, "warmup_steps": 0.0}) == (1.0, ANNEAL_FRACTION)
    assert resolve_gumbel_start({**params, "warmup_steps": 0.2}) == (0.3, 0.2)
    # A given value is kept, each on its own.
    assert resolve_gumbel_start({**params, "warmup_steps": 0.2, "tau_start": 2.0, "anneal_steps": 40}) == (2.0, 40)


def test_a_saved_auto_model_keeps_its_resolved_schedule(X, tmp_path):
    sae = _fit(X, warmup_steps=7)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    activation = loaded.net_.module_.activation
    assert (activation.tau_start, activation.anneal_steps, int(activation.n_steps)) == (0.3, 7, 27)
    assert (loaded.get_params()["tau_start"], loaded.get_params()["anneal_steps"]) == ("auto", "auto")
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
