"""A ``normalization="layer_norm"`` export loads back as the model it was made from (issue 30).

The export folds SAELens's Bessel factor into the weights; the import folds it out again. Scaling a
float32 by ``r`` and back may land one float32 step away, so the weights come back within one rounding
and the codes within float32 rounding of the original's (``1e-6`` of the largest code), with the same
latents kept on these rows.
"""

import json

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._interop import MARKER_FILE

N_FEATURES = 16
ROUNDING = 1e-6
"""Codes of the reloaded model within this fraction of the largest code of the original."""


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    # Rows of variance about 9, offset from zero, so that the normalisation and pre_bias matter.
    return (3 * rng.normal(size=(300, N_FEATURES)) + rng.normal(size=N_FEATURES)).astype(np.float32)


def _fitted(X, **params):
    settings = dict(n_latents=48, k=4, max_epochs=2, device="cpu", random_state=0) | params
    return SparseAutoencoderTransformer(**settings).fit(X)


@pytest.mark.parametrize("tied", [False, True])
@pytest.mark.parametrize("activation", ["topk", "relu", "jumprelu", "batchtopk"])
def test_layer_norm_export_loads_back_as_the_exported_model(X, tmp_path, activation, tied):
    original = _fitted(X, activation=activation, tied=tied)
    original.export(tmp_path / "sae", "saelens", normalization="layer_norm")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "sae")
    assert loaded.normalize is True and loaded.tied is tied and loaded.activation == activation
    expected, codes = original.transform(X), loaded.transform(X)
    assert (expected > 0).any()
    np.testing.assert_array_equal(codes > 0, expected > 0)
    np.testing.assert_allclose(codes, expected, rtol=0, atol=ROUNDING * np.abs(expected).max())
    # The weights themselves: one float32 rounding of the fold and one of the unfold, at most.
    for name, tensor in original.net_.module_.state_dict().items():
        if tensor.is_floating_point() and name in ("W_enc", "W_dec", "pre_bias"):
            torch.testing.assert_close(loaded.net_.module_.state_dict()[name], tensor, rtol=3e-7, atol=0)


def test_layer_norm_directory_without_our_record_is_still_refused(X, tmp_path):
    _fitted(X).export(tmp_path / "sae", "saelens", normalization="layer_norm")
    (tmp_path / "sae" / MARKER_FILE).unlink()  # now SAELens's own layer norm, which this package does not compute
    with pytest.raises(ValueError, match="normalize_activations='layer_norm'"):
        SparseAutoencoderTransformer.load(tmp_path / "sae")


def test_a_record_saying_layer_norm_does_not_change_a_directory_without_it(X, tmp_path):
    original = _fitted(X, normalize=False)
    original.export(tmp_path / "sae", "saelens")
    marker_path = tmp_path / "sae" / MARKER_FILE
    marker = json.loads(marker_path.read_text())
    marker_path.write_text(json.dumps(marker | {"normalization": "layer_norm"}))
    loaded = SparseAutoencoderTransformer.load(tmp_path / "sae")  # cfg.json has no normalisation: nothing to undo
    assert loaded.normalize is False
    np.testing.assert_array_equal(loaded.transform(X), original.transform(X))
