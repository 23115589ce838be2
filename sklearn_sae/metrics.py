"""Quality measures of a sparse autoencoder fit.

Every function takes NumPy arrays (dense, or SciPy sparse for codes) and
returns a Python float or a NumPy array. This is the one implementation of
each measure: the estimator's ``score``, the training history and
:mod:`sklearn_sae.evaluate` compute the FVU with :class:`FVUTotals` (or its
:func:`merge_centred` and :func:`fvu_of` on the training device), and count
codes with :func:`nonzero_counts`.

=================  ==========================================================
``nmse``           mean over rows of ``||x_hat - x||^2 / ||x||^2``
``fvu``            ``sum ||x_hat - x||^2 / sum ||x - mean(X)||^2``
``l0``             mean number of non-zero codes per row
``l1``             mean over rows of ``||h||_1 / ||x_norm||_2``, the training loss's L1 term
``latent_density`` fraction of rows in which each latent is non-zero
``nonzero_counts`` non-zero codes per latent or per row (sparse codes left untouched)
``dead_fraction``  fraction of latents that are zero on every row
``dictionary_recovery``  how well learned atoms match known true ones (MMCS)
=================  ==========================================================
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ._warnings import warn_user

__all__ = ["nmse", "fvu", "l0", "l1", "latent_density", "nonzero_counts", "dead_fraction", "dictionary_recovery",
           "FVUTotals"]


def _as_2d_pair(X, X_hat):
    X = np.asarray(X, dtype=np.float64)
    X_hat = np.asarray(X_hat, dtype=np.float64)
    if X.ndim != 2 or X.shape != X_hat.shape:
        raise ValueError(f"X and X_hat must be 2-D arrays of the same shape; got {X.shape} and {X_hat.shape}.")
    return X, X_hat


_LAYER_NORM_EPS = 1e-5
"""What the model's row standardisation adds to each row's variance (``sklearn_sae._model.LAYER_NORM_EPS``, which
this torch-free module cannot import; a test holds the two equal)."""


def _mean_row_ratio(numerators, denominators, *, measure: str, zero_rows: str) -> float:
    """Mean of ``numerators / denominators`` over the rows whose denominator is positive, as the training loss takes it.

    A row with a zero denominator has no ratio and is left out, with a
    warning that counts them (``zero_rows`` says which rows those are). When
    no row is left the mean is undefined: it is then 0.0 if every numerator
    is 0 (nothing to explain, nothing wrong), else ``inf``, the convention
    of :func:`fvu` for rows without variance.
    """
    valid = denominators > 0
    n_left_out = int(np.count_nonzero(~valid))
    if n_left_out:
        warn_user(
            f"{n_left_out} of the {len(valid)} rows of X {zero_rows}: {measure} divides by each row's norm, so it "
            "leaves them out, as the training loss does."
        )
    if not valid.any():
        return 0.0 if not np.any(numerators) else float("inf")
    return float(np.mean(numerators[valid] / denominators[valid]))


def nmse(X, X_hat) -> float:
    """Normalised mean squared error: the reconstruction term of the autoencoder's training loss.

    .. math:: \\mathrm{NMSE} = \\frac{1}{n} \\sum_i \\frac{\\|\\hat x_i - x_i\\|^2}{\\|x_i\\|^2}

    A row of ``X`` that is entirely zero has no ratio: it is left out of
    the mean, as the training loss leaves it out, with a warning. If every
    row is zero, the NMSE is 0.0 when ``X_hat`` is exactly zero too and
    ``inf`` otherwise (as :func:`fvu` for rows without variance), never NaN.

    Parameters
    ----------
    X, X_hat : array-like of shape (n_samples, n_features)
        Inputs and reconstructions.

    Returns
    -------
    float
    """
    X, X_hat = _as_2d_pair(X, X_hat)
    return _mean_row_ratio(np.square(X_hat - X).sum(axis=1), np.square(X).sum(axis=1), measure="NMSE",
                           zero_rows="are all zero (fvu counts them)")


def fvu(X, X_hat) -> float:
    """Fraction of variance unexplained; ``1 - fvu`` is the explained variance.

    .. math:: \\mathrm{FVU} = \\frac{\\sum_i \\|\\hat x_i - x_i\\|^2}{\\sum_i \\|x_i - \\bar x\\|^2}

    where :math:`\\bar x` is the mean row of ``X``. Unlike :func:`nmse` it is
    centred, so a model that only learns the mean scores 1, not near 0. The
    sums run in float64 a block of rows at a time (:class:`FVUTotals`), as
    ``score``, the training history and :mod:`~sklearn_sae.evaluate` compute
    it.

    Parameters
    ----------
    X, X_hat : array-like of shape (n_samples, n_features)
        Inputs and reconstructions.

    Returns
    -------
    float
        When ``X`` has no variance (one row, or identical rows), scikit-learn's
        convention for the explained variance: 0.0 for an exact
        reconstruction, 1.0 otherwise.
    """
    X, X_hat = _as_2d_pair(X, X_hat)
    totals = FVUTotals()
    for start in range(0, X.shape[0], _FVU_BLOCK_ROWS):
        totals.add(X[start : start + _FVU_BLOCK_ROWS], X_hat[start : start + _FVU_BLOCK_ROWS])
    return totals.fvu()


_FVU_BLOCK_ROWS = 4096
"""Rows per block of :func:`fvu`'s float64 sums: the temporaries stay a few MB on a large ``X``."""


def fvu_of(residual: float, centred: float) -> float:
    """The FVU of a summed squared error and the rows' summed squared distance to their mean.

    The one place of the convention for rows without variance (``centred`` 0): 0.0 when the residual is 0 too,
    else 1.0, as scikit-learn's ``explained_variance_score(force_finite=True)`` has it.
    """
    if centred > 0:
        return float(residual) / float(centred)
    return 0.0 if residual == 0 else 1.0


def merge_centred(n_a, mean_a, centred_a, n_b, mean_b, centred_b):
    """``(n, mean, centred)`` of two groups of rows from each group's count, mean row and centred sum of squares.

    Chan et al.'s pairwise update: exact, and accurate when the rows share a large offset, where the sum of
    squares minus the squared sum loses every digit. Arithmetic only, so it serves NumPy arrays and the torch
    tensors training accumulates on its device alike. ``n_a`` may be 0 (``mean_a`` and ``centred_a`` are then
    ignored).
    """
    if n_a == 0:
        return n_b, mean_b, centred_b
    n = n_a + n_b
    delta = mean_b - mean_a
    centred = centred_a + centred_b + (delta * delta).sum() * (n_a * n_b / n)
    return n, mean_a + delta * (n_b / n), centred


class FVUTotals:
    """Running sums behind the FVU of rows given a block at a time, in float64.

    The one implementation of the FVU: :func:`fvu`, the estimator's ``score``
    and :mod:`~sklearn_sae.evaluate` add blocks here, and training merges its
    batches with the same :func:`merge_centred` and :func:`fvu_of`.

    Attributes
    ----------
    n_rows : int
    residual : float
        Sum over the rows of ``||x_hat - x||^2``.
    centred : float
        Sum over the rows of ``||x - mean(X)||^2``.
    """

    def __init__(self):
        self.n_rows, self.mean, self.centred, self.residual = 0, None, 0.0, 0.0

    def add(self, X, X_hat) -> None:
        """Add a block of rows and their reconstructions."""
        X = np.asarray(X, dtype=np.float64)
        self.residual += float(np.square(np.asarray(X_hat, dtype=np.float64) - X).sum())
        if X.shape[0] == 0:
            return
        block_mean = X.mean(axis=0)
        block_centred = float(np.square(X - block_mean).sum())
        self.n_rows, self.mean, self.centred = merge_centred(
            self.n_rows, self.mean, self.centred, X.shape[0], block_mean, block_centred
        )
        self.centred = float(self.centred)

    def fvu(self) -> float:
        """The FVU of the rows added so far (:func:`fvu_of`'s convention when they do not vary)."""
        return fvu_of(self.residual, self.centred)


def l1(X, codes, *, normalize) -> float:
    """The L1 term of the training loss: mean over rows of ``||h||_1 / ||x_norm||_2``.

    ``x_norm`` is the row as the encoder takes it: standardised to zero mean
    and unit variance (``normalize=True``), or ``x`` itself
    (``normalize=False``). Dividing by its norm makes the penalty blind to
    the data's scale. ``normalize`` has no default: the term depends on it,
    so pass the model's (``estimator.normalize``). As in :func:`nmse`, rows whose ``x_norm`` is
    zero are left out with a warning (0.0 if none is left and the codes are
    all zero, else ``inf``).

    Parameters
    ----------
    X : array-like of shape (n_samples, n_features)
        Inputs.
    codes : array-like or sparse matrix of shape (n_samples, n_latents)
        Their codes.
    normalize : bool
        Whether the model standardises its rows (its ``normalize``).

    Returns
    -------
    float
    """
    X = np.asarray(X, dtype=np.float64)
    code_norms = np.asarray(abs(codes).sum(axis=1), dtype=np.float64).ravel()
    if X.ndim != 2 or code_norms.shape[0] != X.shape[0]:
        raise ValueError(f"X and codes must have the same number of rows; got {X.shape} and {codes.shape}.")
    if normalize:
        centred = X - X.mean(axis=1, keepdims=True)
        X = centred / np.sqrt(np.square(centred).mean(axis=1, keepdims=True) + _LAYER_NORM_EPS)
    zero_rows = "are constant (zero once standardised)" if normalize else "are all zero"
    return _mean_row_ratio(code_norms, np.linalg.norm(X, axis=1), measure="L1", zero_rows=zero_rows)


def latent_density(codes) -> np.ndarray:
    """Fraction of rows in which each latent is non-zero.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)

    Returns
    -------
    ndarray of shape (n_latents,)
    """
    return nonzero_counts(codes, axis=0) / max(codes.shape[0], 1)


def nonzero_counts(codes, axis: int) -> np.ndarray:
    """Non-zero codes per latent (``axis=0``) or per row (``axis=1``); explicit zeros of a sparse matrix do not
    count, and the caller's matrix is left as it is.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)
    axis : {0, 1}

    Returns
    -------
    ndarray of int
    """
    if not sp.issparse(codes):
        return np.count_nonzero(np.asarray(codes), axis=axis)
    codes = codes.tocsr()  # no copy for a CSR matrix: read it, never change it
    nonzero = codes.data != 0
    if axis == 0:
        return np.bincount(codes.indices[nonzero], minlength=codes.shape[1])
    rows = np.repeat(np.arange(codes.shape[0]), np.diff(codes.indptr))
    return np.bincount(rows[nonzero], minlength=codes.shape[0])


def l0(codes) -> float:
    """Mean number of non-zero latents per row.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)

    Returns
    -------
    float
    """
    return float(latent_density(codes).sum())


def dead_fraction(codes) -> float:
    """Fraction of latents that are zero on every row of ``codes``.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)

    Returns
    -------
    float
    """
    return float(np.mean(latent_density(codes) == 0))


def dictionary_recovery(true_atoms, learned_atoms, *, threshold=0.9):
    """Score a learned dictionary against the true one.

    For each true atom, the best cosine similarity with any learned atom.
    Their mean is the mean max cosine similarity (MMCS); the fraction above
    ``threshold`` counts the atoms recovered.

    Parameters
    ----------
    true_atoms : array-like of shape (n_atoms, n_features)
        The known atoms, one per row.
    learned_atoms : array-like of shape (n_latents, n_features)
        The learned atoms, e.g. ``SparseAutoencoderTransformer.components_``.
    threshold : float, default=0.9
        Cosine similarity above which a true atom counts as recovered.

    Returns
    -------
    mmcs : float
        Mean over true atoms of the best cosine similarity, in [-1, 1].
    recovered : float
        Fraction of true atoms whose best cosine similarity exceeds ``threshold``.
    """
    true_atoms = np.asarray(true_atoms, dtype=np.float64)
    learned_atoms = np.asarray(learned_atoms, dtype=np.float64)
    if true_atoms.ndim != 2 or learned_atoms.ndim != 2 or true_atoms.shape[1] != learned_atoms.shape[1]:
        raise ValueError(
            "true_atoms and learned_atoms must be 2-D with the same number of columns; "
            f"got {true_atoms.shape} and {learned_atoms.shape}."
        )

    def unit_rows(atoms):
        return atoms / np.maximum(np.linalg.norm(atoms, axis=1, keepdims=True), np.finfo(float).tiny)

    best = (unit_rows(true_atoms) @ unit_rows(learned_atoms).T).max(axis=1)
    return float(best.mean()), float(np.mean(best > threshold))

