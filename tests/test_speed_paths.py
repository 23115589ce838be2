"""The fast paths keep the results of the paths they replace: float16 blocks on disk, the bfloat16 sparse pass."""

import h5py
import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._blocks import check_magnitude, check_values, first_nonfinite_row


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
