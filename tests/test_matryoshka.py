"""Matryoshka training: nested prefixes of the dictionary that each reconstruct, with the top-k activations."""

import pickle
import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._model import SAEOutput, nmse_loss
from sklearn_sae._training import SAELoss
from sklearn_sae.datasets import make_hierarchical_signals


@pytest.fixture(scope="module")
def X():
    return make_hierarchical_signals(n_samples=1200, n_features=24, n_parents=8, children_per_parent=3,
                                     random_state=0)[0]


def _fit(X, **params):
    defaults = dict(n_latents=32, k=4, max_epochs=4, device="cpu", random_state=0, matryoshka=(0.25, 0.5))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


def test_the_loss_is_the_mean_nmse_over_the_levels():
    x = torch.randn(6, 5)
    prefixes = (0.5 * x, 0.8 * x)
    output = SAEOutput(0.9 * x, torch.zeros(6, 3), None, None, prefixes)
    terms = SAELoss()(output, x)
    expected = torch.stack([nmse_loss(p, x) for p in prefixes] + [nmse_loss(0.9 * x, x)]).mean()
    assert torch.allclose(terms.total, expected) and torch.allclose(terms.nmse, nmse_loss(0.9 * x, x))


@pytest.mark.parametrize("activation", ["topk", "gumbel_topk", "batchtopk"])
def test_each_prefix_reconstructs_and_its_fvu_is_recorded(X, activation):
    sae = _fit(X, activation=activation, anneal_steps=0.2)
    last = sae.history_[-1]
    for split in ("train", "valid"):
        levels = [last[f"{split}_fvu_level0"], last[f"{split}_fvu_level1"], last[f"{split}_fvu"]]
        assert all(0 < level < 1 for level in levels)  # every prefix explains some of the variance
        assert levels[0] >= levels[1] - 0.02 and levels[1] >= levels[2] - 0.02  # more atoms, no worse
    module = sae.net_.module_
    assert module.prefixes == (8, 16)
    x = torch.from_numpy(X[:50])
    with torch.no_grad():
        module.eval()
        output = module(x)
        _, mu, sigma = module.preprocess(x)
        codes = torch.as_tensor(sae.transform(X[:50]))
        first_eight = (codes[:, :8] @ module.decoder_weight[:8] + module.pre_bias) * sigma + mu
    torch.testing.assert_close(output.prefix_x_hats[0], first_eight, rtol=1e-5, atol=1e-5)


def test_save_load_pickle_and_partial_fit_keep_the_levels(X, tmp_path):
    sae = _fit(X)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert list(loaded.matryoshka) == [0.25, 0.5] and loaded.net_.module_.prefixes == (8, 16)
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(sae)).transform(X), sae.transform(X))
    incremental = SparseAutoencoderTransformer(n_latents=32, k=4, device="cpu", random_state=0, lr=1e-3,
                                               matryoshka=(0.25, 0.5))
    incremental.partial_fit(X[:600]).partial_fit(X[600:])
    assert "train_fvu_level1" in incremental.history_[-1]


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(activation="relu"), "top-k activations"),
        (dict(matryoshka=(0.5, 0.25)), "increasing fractions"),
        (dict(matryoshka=(0.0, 0.5)), "increasing fractions"),
        (dict(matryoshka=(1.0,)), "increasing fractions"),
        (dict(matryoshka=(0.01, 0.02), n_latents=32), "distinct"),
    ],
)
def test_levels_that_make_no_sense_are_refused(X, params, message):
    params = {"matryoshka": (0.25, 0.5), **params}
    with pytest.raises(ValueError, match=message):
        _fit(X, **params)
