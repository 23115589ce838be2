"""Per-latent summaries of a code matrix, and the checks every interpretation function shares.

Codes are the non-negative activations of a sparse autoencoder, one row per
protein and one column per latent. They may be dense or any SciPy sparse
format; they are read as CSC (one contiguous block of non-zeros per latent)
and never densified.
"""

from __future__ import annotations

import math

import numbers

import numpy as np
import pandas as pd
import scipy.sparse as sp

from .._blocks import BLOCK_ELEMENTS

__all__ = ["latent_scale", "latent_stats", "split_signs", "split_signs_names"]


def latent_stats(codes) -> pd.DataFrame:
    """Summary statistics of each latent over the rows of ``codes``.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)
        Non-negative activations, e.g. the output of
        ``SparseAutoencoderTransformer.transform``. Never densified.

    Returns
    -------
    pandas.DataFrame
        Indexed by latent (index name ``"latent"``), with columns

        ``n_active``
            number of rows where the latent is non-zero;
        ``density``
            ``n_active / n_samples``;
        ``max``
            largest activation (0 for a latent that never fires);
        ``mean``
            mean over all rows, zeros included;
        ``std``
            standard deviation over all rows (``ddof=0``), zeros included;
        ``mean_active``
            mean over the rows where the latent is non-zero; NaN when it never is.

    Raises
    ------
    ValueError
        If ``codes`` is not 2-D, has no rows, or holds negative or non-finite values.
    TypeError
        If ``codes`` is not numeric.
    """
    codes = _check_codes(codes)
    n_rows, n_latents = codes.shape
    n_active = np.diff(codes.indptr).astype(np.int64)
    sums = _reduce_columns(np.add, codes, codes.data)
    mean = sums / n_rows
    # Two passes (deviations from the mean, then the zeros' share) keep the
    # variance accurate where the one-pass E[x^2] - E[x]^2 would cancel.
    deviations = codes.data - np.repeat(mean, n_active)
    squared_deviations = _reduce_columns(np.add, codes, np.square(deviations))
    variance = (squared_deviations + (n_rows - n_active) * np.square(mean)) / n_rows
    with np.errstate(invalid="ignore", divide="ignore"):
        mean_active = np.where(n_active > 0, sums / n_active, np.nan)
    return pd.DataFrame(
        {
            "n_active": n_active,
            "density": n_active / n_rows,
            "max": _reduce_columns(np.maximum, codes, codes.data),
            "mean": mean,
            "std": np.sqrt(variance),
            "mean_active": mean_active,
        },
        index=pd.RangeIndex(n_latents, name="latent"),
    )


def latent_scale(codes) -> np.ndarray:
    """Each latent's largest activation: the default ``scale`` of the thresholds.

    :func:`~sklearn_sae.interpret.label_associations` calls a latent active
    when ``activation / scale > threshold``; with this scale the thresholds are
    fractions of the latent's maximum.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)
        Non-negative activations. Never densified.

    Returns
    -------
    ndarray of shape (n_latents,)
        The maximum of each column, in double precision. A latent that never
        fires gets 1.0, so that nothing is divided by zero and a positive
        threshold keeps its meaning as an absolute activation; on these codes
        such a latent is never active at any threshold anyway.
    """
    return _scale_of_checked(_check_codes(codes))


def split_signs(X):
    """Split signed features into their positive and negative parts.

    Association statistics need non-negative activations. A raw embedding
    dimension takes both signs, so each one becomes two features:
    ``[max(X, 0), max(-X, 0)]``. The result can be passed to
    :func:`~sklearn_sae.interpret.label_associations` as ``codes`` to compare
    the embedding's own dimensions with the autoencoder's latents.

    Parameters
    ----------
    X : array-like or sparse matrix of shape (n_samples, n_features)

    Returns
    -------
    ndarray or sparse CSR matrix of shape (n_samples, 2 * n_features)
        Column ``j`` is the positive part of feature ``j`` and column
        ``n_features + j`` its negative part (as a positive number). Sparse in,
        sparse out. Name the columns with :func:`split_signs_names`.
    """
    if sp.issparse(X):
        if X.ndim != 2:
            raise ValueError(f"X must be 2-D; got a sparse matrix of shape {X.shape}.")
        X = sp.csr_matrix(X)
        return sp.hstack([X.maximum(0), (-X).maximum(0)], format="csr")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D; got an array of shape {X.shape}.")
    if not (np.issubdtype(X.dtype, np.number) and not np.iscomplexobj(X)):
        raise TypeError(f"X must hold real numbers; got dtype {X.dtype}.")
    return np.hstack([np.maximum(X, 0), np.maximum(-X, 0)])


def split_signs_names(features) -> list[str]:
    """Names of the columns returned by :func:`split_signs`.

    Parameters
    ----------
    features : int or sequence of str
        The number of features (named ``x0, x1, ...`` as in scikit-learn) or
        their names.

    Returns
    -------
    list of str
        ``name + "+"`` for every feature, then ``name + "-"`` for every feature.
    """
    if isinstance(features, (int, np.integer)):
        if features < 0:
            raise ValueError(f"features must be a non-negative count or a sequence of names; got {features}.")
        names = [f"x{j}" for j in range(features)]
    elif isinstance(features, str):
        raise TypeError("features must be a count or a sequence of names, not a single str.")
    else:
        names = [str(name) for name in features]
    return [f"{name}+" for name in names] + [f"{name}-" for name in names]


# --------------------------------------------------------------------------- shared checks


def _check_codes(codes) -> sp.csc_matrix:
    """Validate ``codes`` and return them as canonical CSC without explicit zeros.

    The caller's matrix is never modified: a copy is made whenever cleaning
    is needed. Floating point data keep their precision (float32 stays
    float32, to halve the memory); booleans and integers become float64.
    """
    if sp.issparse(codes):
        if codes.ndim != 2:
            raise ValueError(f"codes must be 2-D (n_samples, n_latents); got a sparse array of shape {codes.shape}.")
        dtype = _codes_dtype(codes.dtype)
        csc = sp.csc_matrix(codes)
        if csc.dtype != dtype:
            csc = csc.astype(dtype)
        if not csc.has_canonical_format or (csc.data.size and not csc.data.all()):
            # Cleaning works in place and csc may share its arrays with the caller's matrix.
            csc = csc.copy()
            csc.sum_duplicates()
            csc.eliminate_zeros()
    else:
        array = codes.to_numpy() if isinstance(codes, pd.DataFrame) else np.asarray(codes)
        if array.ndim != 2:
            raise ValueError(f"codes must be 2-D (n_samples, n_latents); got an array of shape {array.shape}.")
        dtype = _codes_dtype(array.dtype)
        csc = _dense_to_csc(array, dtype)
    if csc.shape[0] == 0:
        raise ValueError("codes has no rows; there is nothing to summarise.")
    _check_code_values(csc.data, csc.shape[0])
    return csc


def _codes_dtype(dtype) -> np.dtype:
    dtype = np.dtype(dtype)
    if dtype == np.bool_ or np.issubdtype(dtype, np.integer):
        return np.dtype(np.float64)
    if np.issubdtype(dtype, np.floating):
        return np.dtype(np.float32) if dtype.itemsize <= 4 else np.dtype(np.float64)
    raise TypeError(f"codes must hold real numbers (activations); got dtype {dtype}.")


def _dense_to_csc(array, dtype) -> sp.csc_matrix:
    n_rows, n_cols = array.shape
    # Converted to CSC a block of columns at a time, so that the temporary masks stay small.
    block = max(1, BLOCK_ELEMENTS // max(n_rows, 1))
    blocks = [
        sp.csc_matrix(array[:, start : start + block].astype(dtype, copy=False)) for start in range(0, n_cols, block)
    ]
    if not blocks:
        return sp.csc_matrix((n_rows, n_cols), dtype=dtype)
    csc = blocks[0] if len(blocks) == 1 else sp.hstack(blocks, format="csc")
    # NaN is "non-zero" to SciPy, so it survives the conversion and is caught below.
    csc.sort_indices()
    return csc


def _check_code_values(data, n_rows) -> None:
    if data.size == 0:
        return
    if np.isnan(data).any():
        raise ValueError("codes contains NaN; activations must be finite numbers. Drop or repair those rows first.")
    if not np.isfinite(data).all():
        raise ValueError("codes contains infinite values; activations must be finite.")
    smallest = data.min()
    if smallest < 0:
        raise ValueError(
            f"codes must be non-negative activations, but it contains {smallest.item()!r}. "
            "Raw embedding dimensions take both signs: split each into its positive and negative "
            "part with sklearn_sae.interpret.split_signs(X) first."
        )
    # The statistics sum squared activations over all rows in float64; past this they overflow to inf.
    limit = math.sqrt(np.finfo(np.float64).max / n_rows) / 2
    largest = float(data.max())
    if largest > limit:
        raise ValueError(
            f"codes contains {largest:.3g}, too large for statistics over {n_rows} rows (at most "
            f"{limit:.3g}); rescale the codes."
        )


def _check_scale(scale, n_latents) -> np.ndarray:
    """Validate a user-given scale: one finite, positive number per latent."""
    scale = np.asarray(scale, dtype=np.float64)
    if scale.shape != (n_latents,):
        raise ValueError(
            f"scale must hold one number per latent, shape ({n_latents},); got shape {scale.shape}. "
            "Pass latent_scale(codes) of the split that fixes the thresholds."
        )
    bad = ~(np.isfinite(scale) & (scale > 0))
    if bad.any():
        first = int(np.flatnonzero(bad)[0])
        raise ValueError(
            f"scale must be finite and positive for every latent; scale[{first}] = {scale[first].item()!r} "
            f"({int(bad.sum())} bad value(s)). latent_scale() gives 1.0 to latents that never fire."
        )
    return scale


def _scale_of_checked(codes) -> np.ndarray:
    """:func:`latent_scale` of codes already checked by :func:`_check_codes`."""
    scale = _reduce_columns(np.maximum, codes, codes.data)
    scale[scale == 0] = 1.0
    return scale


def _reduce_columns(ufunc, csc, values) -> np.ndarray:
    """``ufunc`` reduced over each column's non-zeros (``values`` aligned with ``csc.data``); 0 for empty columns."""
    out = np.zeros(csc.shape[1], dtype=np.float64)
    starts = csc.indptr[:-1]
    nonempty = np.diff(csc.indptr) > 0
    if nonempty.any():
        # reduceat over the starts of non-empty columns only: each segment then
        # runs exactly to the next non-empty column's start.
        out[nonempty] = ufunc.reduceat(values, starts[nonempty], dtype=np.float64)
    return out


def _check_count(value, name, *, minimum=1) -> int:
    """An int option (a count, a seed) checked to be at least ``minimum``; bools are refused."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int; got {type(value).__name__}.")
    if value < minimum:
        raise ValueError(f"{name} must be at least {minimum}; got {value}.")
    return int(value)
