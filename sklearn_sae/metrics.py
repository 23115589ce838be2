"""Quality measures of a sparse autoencoder fit.

Every function takes NumPy arrays (dense, or SciPy sparse for codes) and
returns a Python float or a NumPy array. This is the one implementation of
each measure: the estimator's ``score``, the training history and
:mod:`sklearn_sae.evaluate` compute the FVU with :class:`FVUTotals` (or its
:func:`merge_centred` and :func:`fvu_of` on the training device), and count
codes with :func:`nonzero_counts`.

=====================  ==========================================================
``nmse``               mean over rows of ``||x_hat - x||^2 / ||x||^2``
``fvu``                ``sum ||x_hat - x||^2 / sum ||x - mean(X)||^2``
``l0``                 mean number of non-zero codes per row
``l1``                 mean over rows of ``||h||_1 / ||x_norm||_2``, the training loss's L1 term
``latent_density``     fraction of rows in which each latent is non-zero
``nonzero_counts``     non-zero codes per latent or per row (sparse codes left untouched)
``dead_fraction``      fraction of latents that are zero on every row
``recovery_scores``    learned atoms and codes against known ones: Hungarian MCC, SynthSAEBench's F1
=====================  ==========================================================
"""

from __future__ import annotations

from numbers import Real
from typing import NamedTuple

import numpy as np
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from ._blocks import block_rows_for
from ._warnings import warn_user

__all__ = ["nmse", "fvu", "l0", "l1", "latent_density", "nonzero_counts", "dead_fraction", "recovery_scores",
           "RecoveryScores", "dictionary_recovery", "FVUTotals"]


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


class RecoveryScores(NamedTuple):
    """What :func:`recovery_scores` measured: the Hungarian pairs, each latent's best match, and the summary.

    Attributes
    ----------
    atom, latent : ndarray of int, shape (n_pairs,)
        The Hungarian pairs, ``n_pairs = min(n_atoms, n_latents)``, in
        increasing order of ``atom``.
    cosine : ndarray of shape (n_pairs,)
        Each pair's cosine: signed, or absolute with ``signed=False``.
    best_atom : ndarray of int, shape (n_latents,)
        For each latent, the true atom of largest absolute cosine.
    latent_precision, latent_recall, latent_f1 : ndarray of shape (n_latents,) or None
        Each latent as a detector of its ``best_atom`` (None without codes).
    summary : dict
        The means, under names that say which definition they follow (see
        :func:`recovery_scores`).
    """

    atom: np.ndarray
    latent: np.ndarray
    cosine: np.ndarray
    best_atom: np.ndarray
    latent_precision: np.ndarray | None
    latent_recall: np.ndarray | None
    latent_f1: np.ndarray | None
    summary: dict


def _mcc_name(signed: bool) -> str:
    """The summary name of the Hungarian MCC: ``"mcc_hungarian_signed"`` or ``"mcc_hungarian_abs"``."""
    return "mcc_hungarian_signed" if signed else "mcc_hungarian_abs"


def _atoms_pair(true_atoms, learned_atoms):
    true_atoms = np.asarray(true_atoms, dtype=np.float64)
    learned_atoms = np.asarray(learned_atoms, dtype=np.float64)
    if true_atoms.ndim != 2 or learned_atoms.ndim != 2 or true_atoms.shape[1] != learned_atoms.shape[1]:
        raise ValueError(
            "true_atoms and learned_atoms must be 2-D with the same number of columns (the same width); "
            f"got {true_atoms.shape} and {learned_atoms.shape}."
        )
    return true_atoms, learned_atoms


def unit_rows(atoms) -> np.ndarray:
    """A float64 copy of ``atoms`` with every row scaled to unit norm; a zero row stays zero (cosine 0 with all).

    The one normalisation behind every cosine between atoms (recovery, atom similarity, feature cards).
    """
    atoms = np.array(atoms, dtype=np.float64)  # a copy, normalised in place: one float64 copy, not two
    norms = np.linalg.norm(atoms, axis=1, keepdims=True)
    atoms /= np.where(norms > 0, norms, 1.0)
    return atoms


def _cosines(true_atoms, learned_atoms) -> np.ndarray:
    """Cosines of every (true atom, learned atom) pair; a zero atom has cosine 0 with everything."""
    return unit_rows(true_atoms) @ unit_rows(learned_atoms).T


def _firing(block, strict_positive):
    """Where a block of codes fires (``!= 0``) or true activations are active (``> 0``): bool, sparse kept sparse."""
    block = sp.csr_matrix(block) if sp.issparse(block) else np.asarray(block)
    return block > 0 if strict_positive else block != 0


def _column_sums(matrix) -> np.ndarray:
    return np.asarray(matrix.sum(axis=0), dtype=np.float64).ravel()


def _detection_counts(codes, true_codes, best_atom):
    """Per latent: rows where it fires and its best atom is active, rows where it fires, rows where the atom is."""
    n_rows, n_latents = codes.shape
    both = np.zeros(n_latents)
    active = np.zeros(n_latents)
    step = block_rows_for(n_latents)  # the package's one block size: at most BLOCK_ELEMENTS (row, latent) pairs
    for start in range(0, n_rows, step):
        fires = _firing(codes[start : start + step], strict_positive=False)
        truth = _firing(true_codes[start : start + step][:, best_atom], strict_positive=True)
        if sp.issparse(fires) or sp.issparse(truth):
            fires, truth = sp.csr_matrix(fires), sp.csr_matrix(truth)
            both += _column_sums(fires.multiply(truth))
        else:
            both += _column_sums(fires & truth)
        active += _column_sums(truth)
    return both, nonzero_counts(codes, axis=0).astype(np.float64), active


def _ratio(numerator, denominator):
    """``numerator / denominator``, 0 where the denominator is 0 (SynthSAEBench's convention)."""
    return np.divide(numerator, denominator, out=np.zeros_like(numerator, dtype=np.float64), where=denominator > 0)


def _check_codes(codes, true_codes, n_latents, n_atoms):
    if (codes is None) != (true_codes is None):
        raise ValueError("codes and true_codes go together: give both (codes of some rows and the true "
                         "activations of the same rows) or neither.")
    if not sp.issparse(codes):
        codes = np.asarray(codes)
    if not sp.issparse(true_codes):
        true_codes = np.asarray(true_codes)
    if codes.ndim != 2 or codes.shape[1] != n_latents:
        raise ValueError(f"codes must be 2-D with one column per learned atom ({n_latents}); got {codes.shape}.")
    if true_codes.ndim != 2 or true_codes.shape[1] != n_atoms:
        raise ValueError(f"true_codes must be 2-D with one column per true atom ({n_atoms}); got {true_codes.shape}.")
    if codes.shape[0] != true_codes.shape[0]:
        raise ValueError(f"codes and true_codes must have the same rows; got {codes.shape[0]} and "
                         f"{true_codes.shape[0]}.")
    return codes, true_codes


def recovery_scores(true_atoms, learned_atoms, *, codes=None, true_codes=None, signed=True,
                    threshold=0.9) -> RecoveryScores:
    """Score a learned dictionary, and optionally its codes, against the known true ones.

    The definitions are the field's (SynthSAEBench, Chanin and Garriga-Alonso
    2026, as computed by ``sae_lens.synthetic.evals``):

    - **Hungarian MCC**: a one-to-one matching of true and learned atoms
      (``scipy.optimize.linear_sum_assignment``) that maximises the total
      cosine, signed (``signed=True``: an SAE's codes are non-negative, so an
      atom pointing the other way is another feature) or absolute
      (``signed=False``: SynthSAEBench's MCC). Its value is the mean cosine
      over the ``min(n_atoms, n_latents)`` matched pairs. Summary name
      ``"mcc_hungarian_signed"`` or ``"mcc_hungarian_abs"``.
    - ``"fraction_recovered_hungarian"``: the fraction of true atoms whose
      matched cosine (as above) is at least ``threshold``; an unmatched atom
      is not recovered.
    - ``"uniqueness"``: the number of distinct true atoms among the latents'
      best matches (largest absolute cosine), divided by the number of
      latents.
    - With ``codes`` and ``true_codes``, each latent is a detector of its best
      match: it fires where its code is non-zero, the true feature where its
      activation is positive. Per latent, precision = both / latent fires,
      recall = both / feature active, F1 their harmonic mean, each 0 where
      undefined; ``"latent_precision"``, ``"latent_recall"`` and
      ``"latent_f1"`` are their means over all latents (dead ones count 0).

    Parameters
    ----------
    true_atoms : array-like of shape (n_atoms, n_features)
        The known atoms, one per row.
    learned_atoms : array-like of shape (n_latents, n_features)
        The learned atoms, e.g. ``SparseAutoencoderTransformer.components_``,
        in the space of ``true_atoms``.
    codes : array-like or sparse matrix of shape (n_samples, n_latents), default=None
        The learned codes of some rows.
    true_codes : array-like or sparse matrix of shape (n_samples, n_atoms), default=None
        The true activations of the same rows. Sparse matrices are read a
        block of rows at a time and never densified.
    signed : bool, default=True
        Match on the signed cosine (True) or on its absolute value (False).
        The best matches behind uniqueness and the per-latent scores always
        use the absolute cosine, as SynthSAEBench does.
    threshold : float, default=0.9
        The matched cosine at which a true atom counts as recovered, in
        [-1, 1].

    Returns
    -------
    scores : RecoveryScores
        The pairs, the best matches, the per-latent detection scores and the
        ``summary`` dict of the means named above (NaN where there is no pair).
    """
    true_atoms, learned_atoms = _atoms_pair(true_atoms, learned_atoms)
    if not (isinstance(threshold, Real) and not isinstance(threshold, bool) and -1 <= threshold <= 1):
        raise ValueError(f"threshold must be a cosine in [-1, 1], got {threshold!r}.")
    cosines = _cosines(true_atoms, learned_atoms)
    absolute = np.abs(cosines)
    atom, latent = linear_sum_assignment(cosines if signed else absolute, maximize=True)
    cosine = (cosines if signed else absolute)[atom, latent]
    best_atom = absolute.argmax(axis=0) if learned_atoms.shape[0] and true_atoms.shape[0] else np.zeros(0, int)
    n_latents, n_atoms = learned_atoms.shape[0], true_atoms.shape[0]
    summary = {
        _mcc_name(signed): float(cosine.mean()) if len(cosine) else float("nan"),
        "fraction_recovered_hungarian": float((cosine >= threshold).sum() / n_atoms) if n_atoms else float("nan"),
        "uniqueness": len(np.unique(best_atom)) / n_latents if n_latents else float("nan"),
    }
    precision = recall = f1 = None
    if codes is not None or true_codes is not None:
        codes, true_codes = _check_codes(codes, true_codes, n_latents, n_atoms)
        both, fired, active = _detection_counts(codes, true_codes, best_atom)
        precision, recall = _ratio(both, fired), _ratio(both, active)
        f1 = _ratio(2 * precision * recall, precision + recall)
        for name, values in (("latent_precision", precision), ("latent_recall", recall), ("latent_f1", f1)):
            summary[name] = float(values.mean()) if n_latents else float("nan")
    return RecoveryScores(atom, latent, cosine, best_atom, precision, recall, f1, summary)


def dictionary_recovery(true_atoms, learned_atoms, *, threshold=0.9):
    """Greedy best cosine of each true atom (MMCS). Deprecated: use :func:`recovery_scores`.

    .. deprecated:: 0.2
        Its greedy match lets one learned atom count for several true ones,
        unlike the field's one-to-one (Hungarian) MCC; it is removed in 0.4.
        :func:`recovery_scores` and
        :func:`sklearn_sae.evaluate.ground_truth_recovery` give the field's
        definitions.

    Parameters
    ----------
    true_atoms : array-like of shape (n_atoms, n_features)
        The known atoms, one per row.
    learned_atoms : array-like of shape (n_latents, n_features)
        The learned atoms.
    threshold : float, default=0.9
        Cosine similarity above which a true atom counts as recovered.

    Returns
    -------
    mmcs : float
        Mean over true atoms of the best signed cosine with any learned atom.
    recovered : float
        Fraction of true atoms whose best cosine exceeds ``threshold``.
    """
    warn_user("metrics.dictionary_recovery (greedy best cosine, MMCS) is deprecated in 0.2 and will be removed in "
              "0.4: use metrics.recovery_scores or evaluate.ground_truth_recovery, whose Hungarian MCC matches each "
              "true atom to its own latent.", FutureWarning)
    best = _cosines(*_atoms_pair(true_atoms, learned_atoms)).max(axis=1)
    return float(best.mean()), float(np.mean(best > threshold))
