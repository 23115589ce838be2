"""Rows read a block at a time: the one block loop behind inference, codes I/O and on-disk training.

Torch-free (NumPy only), so that :mod:`sklearn_sae.datasets` and
:mod:`sklearn_sae.interpret` can share it without importing torch.

An input is either *in memory* (an ndarray, already validated) or *on disk*
(an ``h5py.Dataset`` or a ``numpy.memmap``, never loaded whole). Every loop
over the rows of either goes through :func:`iter_row_blocks`, which slices
the first and reads, casts and checks the second into one reused buffer.
"""

from __future__ import annotations

import math
import sys

import numpy as np
import scipy.sparse as sp

__all__ = [
    "BLOCK_ELEMENTS",
    "block_rows_for",
    "is_on_disk",
    "check_on_disk",
    "read_rows",
    "check_values",
    "check_magnitude",
    "magnitude_limit",
    "first_nonfinite_row",
    "iter_row_blocks",
]

BLOCK_ELEMENTS = 2**24
"""Upper bound on the values of the widest array of one block (64 MiB of float32): inference blocks,
blocks of codes written to disk, dense-to-sparse conversions."""


def block_rows_for(*widths: int) -> int:
    """Rows per block such that ``rows * max(widths)`` stays within :data:`BLOCK_ELEMENTS`."""
    return max(1, BLOCK_ELEMENTS // max(1, *widths))


def is_on_disk(X) -> bool:
    """Whether ``X`` is an on-disk array that is read block by block.

    h5py is looked up only if it was imported: an h5py dataset cannot exist otherwise.
    """
    if isinstance(X, np.memmap):
        return True
    h5py = sys.modules.get("h5py")
    return h5py is not None and isinstance(X, h5py.Dataset)


def check_on_disk(X, *, n_features=None, min_rows=1, estimator_name="SparseAutoencoderTransformer"):
    """Check an on-disk array's shape and dtype without reading it; return ``(n_rows, n_features)``."""
    kind = type(X).__name__
    if hasattr(X, "id") and not X.id.valid:
        raise ValueError(
            "The h5py dataset belongs to a file that is closed. Keep the file open while the estimator reads it, "
            "e.g. inside `with h5py.File(path) as f: sae.fit(f['X'])`."
        )
    if len(X.shape) != 2:
        raise ValueError(f"Expected a 2-D {kind} of shape (n_samples, n_features), got shape {tuple(X.shape)}.")
    dtype = np.dtype(X.dtype)
    if dtype.kind not in "fiu":
        raise TypeError(
            f"The {kind} holds dtype {dtype}; only real numbers (float or integer dtypes) can be used. "
            "Convert it to float32 or float16 on disk first."
        )
    n_rows, width = (int(size) for size in X.shape)
    if n_rows < min_rows:
        raise ValueError(
            f"Found array with {n_rows} sample(s) (shape={tuple(X.shape)}) while a minimum of {min_rows} is required."
        )
    if width < 1:
        raise ValueError(f"Found array with 0 feature(s) (shape={tuple(X.shape)}) while a minimum of 1 is required.")
    if n_features is not None and width != n_features:
        raise ValueError(f"X has {width} features, but {estimator_name} is expecting {n_features} features as input.")
    return n_rows, width


def read_rows(source, start: int, stop: int, out: np.ndarray) -> None:
    """Read rows ``start:stop`` of ``source`` into ``out[: stop - start]``, casting to ``out``'s dtype."""
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, reported by the finite check
        if hasattr(source, "read_direct") and np.dtype(source.dtype) == out.dtype and out.flags.c_contiguous:
            source.read_direct(out, np.s_[start:stop], np.s_[0 : stop - start])
        else:
            out[: stop - start] = source[start:stop]


def first_nonfinite_row(X, *, block_rows: int = 4096):
    """The index of the first row of ``X`` holding NaN or inf, or ``None``.

    Checked ``block_rows`` rows at a time, so the boolean temporary stays a few MB on a very large ``X``.
    """
    for start in range(0, X.shape[0], block_rows):
        finite = np.isfinite(X[start : start + block_rows]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


def magnitude_limit(n_features: int) -> float:
    """The largest magnitude a value of a row of ``n_features`` may have: ``sqrt(float32 max / n_features) / 2``.

    The model squares and sums each row in float32 (the row standardisation, the loss), which overflows to inf,
    and then gives NaN or meaningless codes, beyond it (about 2.9e17 for 1,024 features).
    """
    return math.sqrt(np.finfo(np.float32).max / max(n_features, 1)) / 2


def check_magnitude(X, *, name: str = "X", first_row: int | None = None):
    """Return ``X`` (float32, dense or sparse) after checking its values are within :func:`magnitude_limit`.

    ``first_row``, given for a block read from disk, makes the message name the offending row of the whole input.
    """
    values = X.data if sp.issparse(X) else X
    # max and min rather than abs: no temporary copy of a large X.
    largest = max(float(values.max()), -float(values.min())) if values.size else 0.0
    limit = magnitude_limit(X.shape[1])
    if largest <= limit:
        return X
    where = name
    if first_row is not None and not sp.issparse(X):
        where = f"Row {first_row + int(np.argmax(np.abs(X).max(axis=1) > limit))} of {name}"
    raise ValueError(
        f"{where} holds a value of magnitude {largest:.3g}, above {limit:.3g}: float32 computations on rows of "
        f"{X.shape[1]} such values overflow. Rescale {name} (embeddings are usually of order 1)."
    )


def check_values(block: np.ndarray, first_row: int) -> None:
    """The checks of every block read from disk: finite values (the error names the row), then their magnitude.

    The same checks as an in-memory input gets (``validate_data``'s finiteness, then :func:`check_magnitude`).
    """
    bad_row = first_nonfinite_row(block)
    if bad_row is not None:
        raise ValueError(
            f"Row {first_row + bad_row} of the input holds a non-finite value (NaN or infinity, or a number too "
            "large for float32). Remove or impute such rows on disk; the autoencoder cannot be trained or applied "
            "on them."
        )
    check_magnitude(block, name="the input", first_row=first_row)


def iter_row_blocks(X, block_rows: int):
    """Yield ``(start, block)`` for consecutive blocks of at most ``block_rows`` rows of ``X``.

    An in-memory ``X`` yields views of itself. An on-disk ``X`` is read into
    one float32 buffer that is reused, so a block is valid only until the
    next one is drawn, and checked for non-finite values (the error names
    the row). Check an on-disk ``X``'s shape first (:func:`check_on_disk`).
    """
    n_rows = X.shape[0]
    on_disk = is_on_disk(X)
    buffer = np.empty((min(block_rows, n_rows), X.shape[1]), dtype=np.float32) if on_disk else None
    for start in range(0, n_rows, block_rows):
        stop = min(start + block_rows, n_rows)
        if not on_disk:
            yield start, X[start:stop]
            continue
        read_rows(X, start, stop, buffer)
        block = buffer[: stop - start]
        check_values(block, start)
        yield start, block
