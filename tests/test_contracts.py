"""The contracts of inverse_transform and components_, stated exactly."""

import pickle
import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer

X = np.random.default_rng(0).normal(loc=0.3, scale=2.0, size=(300, 16)).astype(np.float32)


def _fit(**params):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(k=4, n_latents=32, max_epochs=2, random_state=0, device="cpu",
                                            **params).fit(X)


def test_inverse_transform_is_reconstruct_in_the_standardised_space_under_normalize():
    sae = _fit(normalize=True)
    decoded = sae.inverse_transform(sae.transform(X))
    # The codes do not hold a row's mean and scale: those of the input row (the model's layer norm: biased
    # variance plus 1e-5) turn the decoded row into reconstruct's output.
    mean = X.mean(axis=1, keepdims=True)
    scale = np.sqrt(X.var(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(decoded * scale + mean, sae.reconstruct(X), rtol=1e-5, atol=1e-5)


def test_inverse_transform_is_reconstruct_without_normalize():
    sae = _fit(normalize=False)
    np.testing.assert_allclose(sae.inverse_transform(sae.transform(X)), sae.reconstruct(X), rtol=1e-5, atol=1e-5)


def test_components_is_copied_once_per_fitted_model():
    sae = _fit()
    atoms = sae.components_
    assert sae.components_ is atoms and not atoms.flags.writeable
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae.partial_fit(X)
    assert sae.components_ is not atoms
    np.testing.assert_array_equal(sae.components_, sae.net_.module_.decoder_weight.detach().numpy())
    assert not np.array_equal(sae.components_, atoms)


def test_a_pickle_does_not_carry_the_copy_of_the_atoms():
    sae = _fit()
    atoms = sae.components_
    restored = pickle.loads(pickle.dumps(sae))
    assert "_components" not in restored.__dict__
    np.testing.assert_array_equal(restored.components_, atoms)


@pytest.mark.parametrize("method", ["transform", "reconstruct", "score"])
def test_inference_leaves_the_cached_atoms_alone(method):
    sae = _fit()
    atoms = sae.components_
    getattr(sae, method)(X)
    assert sae.components_ is atoms
