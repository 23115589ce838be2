"""The fast paths keep the results of the paths they replace: float16 blocks on disk, the bfloat16 sparse pass."""

import h5py
import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import _sparse_ops
from sklearn_sae._blocks import check_magnitude, check_values, first_nonfinite_row
from sklearn_sae._sparse_ops import topk_sae_encode, topk_sae_forward


class _UnreadableValues(np.ndarray):
    """An array whose values may not be scanned (``max``/``min``), to show that a check does not need them."""

    def max(self, *args, **kwargs):
        raise AssertionError("the values were scanned")

    min = max


def test_float16_rows_are_not_scanned_for_magnitude():
    # No float16 value (at most 65,504) can overflow the float32 sums of any width: scanning them was the
    # largest cost of reading a float16 file.
    block = np.ones((8, 1024), dtype=np.float16).view(_UnreadableValues)
    assert check_magnitude(block) is block
    with pytest.raises(AssertionError, match="scanned"):  # float32 rows still are
        check_magnitude(np.ones((8, 1024), dtype=np.float32).view(_UnreadableValues))


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("row", [0, 5, 4099])
def test_float16_non_finite_rows_are_found(bad, row):
    block = np.full((4100, 3), 0.5, dtype=np.float16)
    block[1] = [65504.0, -65504.0, 6e-8]  # the largest finite and a subnormal float16: finite
    block[row, 2] = bad
    assert first_nonfinite_row(block) == row
    with pytest.raises(ValueError, match=f"Row {10 + row} of the input holds a non-finite value"):
        check_values(block, 10)
    block[row, 2] = 1.0
    assert first_nonfinite_row(block) is None
    assert first_nonfinite_row(block[:, ::2]) is None  # a strided view takes NumPy's own check


def test_a_float16_file_with_a_non_finite_row_is_refused_naming_the_row(tmp_path):
    rows = np.random.default_rng(0).normal(size=(600, 16)).astype(np.float16)
    rows[300, 5] = np.inf
    with h5py.File(tmp_path / "rows.h5", "w") as f:
        f.create_dataset("X", data=rows, chunks=(64, 16))
    with h5py.File(tmp_path / "rows.h5", "r") as f, pytest.raises(ValueError, match="Row 300 of the input"):
        SparseAutoencoderTransformer(n_latents=32, k=4, max_epochs=1, random_state=0, device="cpu").fit(f["X"])


def _parameters(n_features, n_latents, *, tied, seed=0):
    generator = torch.Generator().manual_seed(seed)
    W_enc = (torch.randn(n_latents, n_features, generator=generator) * n_features**-0.5).requires_grad_()
    W_dec = W_enc if tied else (torch.randn(n_latents, n_features, generator=generator) * n_features**-0.5)
    b_lat = (torch.randn(n_latents, generator=generator) * 0.1).requires_grad_()
    pre_bias = (torch.randn(n_features, generator=generator) * 0.1).requires_grad_()
    return W_enc, b_lat, W_dec.requires_grad_() if not tied else W_dec, pre_bias


def _decode_float32(values, indices, W_dec, pre_bias):
    return (values[:, :, None] * W_dec[indices]).sum(1) + pre_bias


@pytest.mark.parametrize("tied", [True, False])
def test_autocast_decode_gathers_bfloat16_atoms_within_tolerance(tied):
    W_enc, b_lat, W_dec, pre_bias = _parameters(64, 256, tied=tied)
    x = torch.randn(128, 64, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_rec, values, indices = topk_sae_forward(x, W_enc, b_lat, W_dec, pre_bias, 8)
    with torch.no_grad():
        exact = _decode_float32(values, indices, W_dec, pre_bias)
    assert x_rec.dtype == values.dtype == torch.float32
    error = ((x_rec - exact).norm() / exact.norm()).item()
    assert 1e-4 < error < 1e-2  # the atoms were read in bfloat16 (float32 matches to about 1e-7), and closely


def test_autocast_selection_reads_bfloat16_pre_activations(monkeypatch):
    seen = []
    topk = _sparse_ops._topk

    def recording_topk(z, k):
        seen.append(z.dtype)
        return topk(z, k)

    monkeypatch.setattr(_sparse_ops, "_topk", recording_topk)
    W_enc, b_lat, _, pre_bias = _parameters(32, 128, tied=True)
    x = torch.randn(16, 32, generator=torch.Generator().manual_seed(1))
    with torch.autocast("cpu", dtype=torch.bfloat16):
        values, _ = topk_sae_encode(x, W_enc, b_lat, pre_bias, 4)
    assert seen[0] == torch.bfloat16 and values.dtype == torch.float32  # no float32 copy of the pre-activations
    seen.clear()
    topk_sae_encode(x, W_enc, b_lat, pre_bias, 4)
    assert seen[0] == torch.float32
