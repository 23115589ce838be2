"""How well each latent marks each protein label: precision, recall, F1, AUROC, enrichment p-values.

Everything is computed from sparse products, so the cost grows with the
number of non-zero codes and the number of (latent, label) pairs, never with
``n_samples * n_latents``:

- the true positives of every (latent, label) pair at one threshold are one
  product ``active.T @ indicator`` of two sparse matrices;
- the AUROC of every pair comes from the Mann-Whitney rank sum. All zeros of
  a latent share one midrank, so only the non-zeros need ranking, and the
  rank sums over each label's positives are one more sparse product.
"""

from __future__ import annotations


import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.special import gammaln

from ._labels import _encode_labels_for_rows
from ._stats import _check_codes, _check_count, _check_scale, _scale_of_checked

__all__ = ["label_associations"]

DEFAULT_THRESHOLDS = (0.0, 0.15, 0.5, 0.6, 0.8)

COLUMNS = (
    "latent",
    "label",
    "threshold",
    "n_pos",
    "n_active",
    "tp",
    "precision",
    "recall",
    "f1",
    "fold_enrichment",
    "auroc",
    "pvalue",
    "qvalue",
)

# The columns that ``sort_by`` accepts, and whether larger is better.
_SORT_KEYS = {
    "f1": True,
    "precision": True,
    "recall": True,
    "fold_enrichment": True,
    "auroc": True,
    "tp": True,
    "pvalue": False,
    "qvalue": False,
}


def label_associations(
    codes,
    labels,
    *,
    scale=None,
    thresholds=DEFAULT_THRESHOLDS,
    min_support=1,
    top_n=None,
    sort_by="f1",
    sort=True,
) -> pd.DataFrame:
    """Score every latent as a detector of every label, at several activation thresholds.

    A latent is *active* on a protein when ``activation / scale[latent] >
    threshold`` (strictly, in double precision), so threshold 0 means any
    non-zero activation and, with the default scale, 0.5 means "above half
    of the latent's largest activation". Its active proteins are then
    compared with each label's positives.

    Parameters
    ----------
    codes : array-like or sparse matrix of shape (n_samples, n_latents)
        Non-negative activations; any SciPy sparse format, never densified.
        Dense codes are converted to CSC (memory grows with the non-zeros).
        For raw embedding dimensions, which take both signs, pass
        :func:`~sklearn_sae.interpret.split_signs` of them.
    labels : array-like, sparse matrix or DataFrame
        One class per protein (1-D) or a multi-label indicator (2-D), read by
        :func:`~sklearn_sae.interpret.encode_labels`; one row per row of ``codes``.
    scale : array-like of shape (n_latents,), default=None
        A finite, positive number per latent that activations are divided by
        before thresholding. None means :func:`~sklearn_sae.interpret.latent_scale`
        of these codes (each latent's maximum). For held-out evaluation pass the
        scale of the split the thresholds were chosen on.
    thresholds : float or sequence of float, default=(0.0, 0.15, 0.5, 0.6, 0.8)
        Strictly increasing values in [0, 1).
    min_support : int, default=1
        Labels with fewer positive proteins are left out, and are not part of
        the multiple-testing family. Latents are never left out: one that is
        never active is still tested (its p-value is 1).
    top_n : int, default=None
        Keep only the ``top_n`` best latents of each (label, threshold), by
        ``sort_by``; ties go to the lower latent. None keeps every pair, which
        is ``n_latents * n_labels * len(thresholds)`` rows: for large problems
        set ``top_n``, so that the table is never built in full. Filtering
        happens after the q-values are computed and does not change them.
    sort_by : {"f1", "precision", "recall", "fold_enrichment", "auroc", "tp", "pvalue", "qvalue"}, default="f1"
        What ``top_n`` and ``sort`` rank by: the larger the better, except
        for p- and q-values.
    sort : bool, default=True
        Order the rows best first by ``sort_by`` (ties by label, threshold,
        latent). False leaves them by threshold, then latent, then label,
        which is cheaper.

    Returns
    -------
    pandas.DataFrame
        One row per (latent, label, threshold) kept, with columns

        ``latent``, ``label``, ``threshold``
            the pair and the threshold;
        ``n_pos``
            proteins carrying the label;
        ``n_active``
            proteins on which the latent is active;
        ``tp``
            proteins that are both;
        ``precision``
            ``tp / n_active``, and 0 when the latent is never active (a
            detector that never fires finds nothing);
        ``recall``
            ``tp / n_pos``;
        ``f1``
            ``2 tp / (n_active + n_pos)``;
        ``fold_enrichment``
            ``precision / (n_pos / n_samples)``: how much more often the label
            is found among the active proteins than among all of them;
        ``auroc``
            area under the ROC curve of the raw activation as a score for the
            label, ties counted as half (the value of
            ``sklearn.metrics.roc_auc_score``); it does not depend on the
            threshold, nor on ``scale``;
        ``pvalue``
            one-sided hypergeometric test of enrichment of the label among the
            active proteins, ``scipy.stats.hypergeom.sf(tp - 1, n_samples,
            n_pos, n_active)``, which is the p-value of Fisher's exact test
            with ``alternative="greater"``;
        ``qvalue``
            Benjamini-Hochberg adjusted p-value. **The family is one threshold**:
            all ``n_latents * n_labels`` pairs tested at that threshold (labels
            under ``min_support`` excluded), so q-values are comparable within a
            threshold. Choosing the best of several thresholds afterwards is a
            further selection that these q-values do not correct for.

    Raises
    ------
    ValueError
        If the codes are not 2-D, hold negative or non-finite values, or have
        another number of rows than the labels; if a label has a single class
        or an indicator is not 0/1; if ``scale`` or ``thresholds`` are invalid.
    TypeError
        If the codes are not numeric, or an option has the wrong type.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.interpret import label_associations
    >>> codes = np.array([[0.0, 2.0], [1.0, 0.0], [0.0, 1.5], [0.2, 0.0]])
    >>> table = label_associations(codes, ["a", "b", "a", "b"], thresholds=0.0)
    >>> table[["latent", "label", "f1", "auroc"]].head(2)
       latent label   f1  auroc
    0       1     a  1.0    1.0
    1       0     b  1.0    1.0
    """
    codes = _check_codes(codes)
    indicator, names = _encode_labels_for_rows(labels, codes.shape[0])
    options = _check_options(
        codes, scale=scale, thresholds=thresholds, min_support=min_support, top_n=top_n, sort_by=sort_by
    )
    return _associations(codes, indicator, names, **options, sort=bool(sort))


# --------------------------------------------------------------------------- option checks


def _check_options(codes, *, scale, thresholds, min_support, top_n, sort_by):
    if sort_by not in _SORT_KEYS:
        raise ValueError(f"sort_by must be one of {sorted(_SORT_KEYS)}; got {sort_by!r}.")
    return {
        "scale": _scale_of_checked(codes) if scale is None else _check_scale(scale, codes.shape[1]),
        "thresholds": _check_thresholds(thresholds),
        "min_support": _check_count(min_support, "min_support"),
        "top_n": None if top_n is None else _check_count(top_n, "top_n"),
        "sort_by": sort_by,
    }


def _check_thresholds(thresholds) -> np.ndarray:
    try:
        values = np.atleast_1d(np.asarray(thresholds, dtype=np.float64))
    except (TypeError, ValueError):
        raise TypeError(f"thresholds must be a number or a sequence of numbers; got {thresholds!r}.") from None
    if values.ndim != 1 or values.size == 0:
        raise ValueError(f"thresholds must be a non-empty sequence of numbers; got {thresholds!r}.")
    if not (np.isfinite(values).all() and (values >= 0).all() and (values < 1).all()):
        raise ValueError(
            f"thresholds must lie in [0, 1): they are fractions of each latent's scale; got {values.tolist()}."
        )
    if (np.diff(values) <= 0).any():
        raise ValueError(f"thresholds must be strictly increasing, without repeats; got {values.tolist()}.")
    return values


# --------------------------------------------------------------------------- the computation


def _associations(codes, indicator, names, *, scale, thresholds, min_support, top_n, sort_by, sort):
    """:func:`label_associations` on checked inputs (CSC codes, CSC indicator)."""
    n_rows = codes.shape[0]
    n_pos = np.diff(indicator.indptr)
    supported = n_pos >= min_support
    if not supported.any():
        return _empty_table()
    indicator, names, n_pos = indicator[:, supported], names[supported], n_pos[supported]
    # Proteins as rows: the sparse products below walk each active protein's labels.
    labels_by_protein = indicator.tocsr().astype(np.int32)

    ratio = _activation_ratio(codes, scale)
    nonzero = _active_by_latent(codes, ratio, 0.0)
    nonzero_tp = _true_positives(nonzero, labels_by_protein)  # the AUROC needs them at any thresholds
    auroc = _auroc_matrix(codes, labels_by_protein, n_pos, nonzero_tp)

    parts = []
    for threshold in thresholds:
        if threshold == 0:
            active, tp = nonzero, nonzero_tp
        else:
            active = _active_by_latent(codes, ratio, threshold)
            tp = _true_positives(active, labels_by_protein)
        n_active = np.diff(active.indptr)
        pvalue = _enrichment_pvalues(tp, n_rows, n_pos[None, :], n_active[:, None])
        qvalue = _benjamini_hochberg(pvalue)  # the family: every pair at this threshold, before any top_n
        ranking = _ranking_score(sort_by, tp, n_active[:, None], n_pos[None, :], n_rows, auroc, pvalue, qvalue)
        latent, label = _selected_pairs(ranking, top_n)
        parts.append(_table_part(latent, label, threshold, n_rows, tp, n_active, n_pos, auroc, pvalue, qvalue, ranking))
    return _assemble(parts, names, sort)


def _activation_ratio(codes, scale) -> np.ndarray:
    """``activation / scale`` of every non-zero of the CSC codes, in double precision."""
    return codes.data / np.repeat(scale, np.diff(codes.indptr))


def _is_active(values, ratio, threshold) -> np.ndarray:
    # Threshold 0 is "any non-zero activation" by definition, exactly, whatever
    # the division by the scale does to the tiniest values.
    return values > 0 if threshold == 0 else ratio > threshold


def _active_by_latent(codes, ratio, threshold) -> sp.csr_matrix:
    """The proteins each latent is active on: a 0/1 CSR matrix of shape (n_latents, n_samples)."""
    keep = _is_active(codes.data, ratio, threshold)
    # The CSC codes are, read as CSR, their transpose: each latent's proteins
    # are one row. Filtering keeps that layout.
    kept_before = np.concatenate([[0], np.cumsum(keep, dtype=np.int64)])
    indptr = kept_before[codes.indptr]
    indices = codes.indices[keep]
    data = np.ones(indices.size, dtype=np.int32)
    return sp.csr_matrix((data, indices, indptr), shape=(codes.shape[1], codes.shape[0]))


def _true_positives(active, labels_by_protein) -> np.ndarray:
    """Proteins both active for the latent and carrying the label: (n_latents, n_labels) counts."""
    return (active @ labels_by_protein).toarray()


def _auroc_matrix(codes, labels_by_protein, n_pos, nonzero_tp) -> np.ndarray:
    """AUROC of every latent's activation for every label, from the non-zeros' midranks."""
    n_rows, n_latents = codes.shape
    ranks = _midranks_within_columns(codes)
    ranks_by_latent = sp.csr_matrix((ranks, codes.indices, codes.indptr), shape=(n_latents, n_rows))
    rank_sums = (ranks_by_latent @ labels_by_protein.astype(np.float64)).toarray()
    n_zero = (n_rows - np.diff(codes.indptr))[:, None]
    return _auroc_from_rank_sums(rank_sums, nonzero_tp, n_zero, n_pos[None, :], n_rows)


def _auroc_from_rank_sums(rank_sums, nonzero_tp, n_zero, n_pos, n_rows):
    """Mann-Whitney AUROC from the positives' ranks among the non-zeros.

    ``rank_sums`` sums the positives' midranks *among the latent's non-zeros*.
    In the full ranking the non-zeros sit above all ``n_zero`` zeros, which
    share the midrank ``(n_zero + 1) / 2``. Every term is a multiple of 1/2
    well below 2**52, so the sum is exact in double precision.
    """
    positive_rank_sum = rank_sums + n_zero * nonzero_tp + (n_pos - nonzero_tp) * (n_zero + 1) / 2
    u_statistic = positive_rank_sum - n_pos * (n_pos + 1) / 2
    return u_statistic / (n_pos * (n_rows - n_pos))


def _midranks_within_columns(codes) -> np.ndarray:
    """Rank of each non-zero among its latent's non-zeros (1 = smallest), ties as midranks.

    Returned aligned with ``codes.data``. One small sort per latent: together
    they cost less than one global sort, and the temporaries stay the size of
    one latent's non-zeros. Tied values get the same midrank whatever their
    order, so the sort need not be stable (the fastest is not).
    """
    data, indptr = codes.data, codes.indptr
    ranks = np.empty(data.size, dtype=np.float64)
    for column in np.flatnonzero(np.diff(indptr) > 0):
        start, stop = indptr[column], indptr[column + 1]
        values = data[start:stop]
        order = np.argsort(values)
        ordered = values[order]
        tie_starts = np.flatnonzero(np.concatenate([[True], ordered[1:] != ordered[:-1]]))
        tie_stops = np.append(tie_starts[1:], ordered.size)
        # Sorted positions first+1 .. stop (1-based) share their mean, (first + 1 + stop) / 2.
        ranks[start + order] = np.repeat((tie_starts + tie_stops + 1) / 2, tie_stops - tie_starts)
    return ranks


def _enrichment_pvalues(tp, n_rows, n_pos, n_active) -> np.ndarray:
    """One-sided hypergeometric p-values, ``P(X >= tp)``; arguments broadcast together.

    ``X`` counts the labelled proteins among ``n_active`` drawn without
    replacement from ``n_rows`` of which ``n_pos`` carry the label. The value
    is ``scipy.stats.hypergeom.sf(tp - 1, n_rows, n_pos, n_active)``, computed
    here because SciPy's method costs a time proportional to ``n_rows`` per
    pair below ~10**5 rows (80 us a pair at 20,000 rows), which millions of
    pairs cannot afford. Against exact rational arithmetic it is within
    ~1e-13 relative at 10**6 rows (SciPy: ~1e-10).
    """
    tp, n_pos, n_active = (np.asarray(a, dtype=np.float64) for a in np.broadcast_arrays(tp, n_pos, n_active))
    pvalues = np.ones(tp.shape, dtype=np.float64)
    # P(X >= t) is 1 wherever t is at or below the smallest possible count
    # (0, or n_active + n_pos - n_rows): most pairs of a sparse code matrix.
    tested = tp > np.maximum(0.0, n_active + n_pos - n_rows)
    pvalues[tested] = _hypergeom_at_least(tp[tested], float(n_rows), n_pos[tested], n_active[tested])
    return np.clip(pvalues, 0.0, 1.0)


def _hypergeom_at_least(t, total, good, draws) -> np.ndarray:
    """``P(X >= t)`` for 1-D float arrays, with ``t`` inside the support.

    Every sum runs over the tail on the far side of the mode, where the
    probabilities fall monotonically, so it converges in a few standard
    deviations and adds no cancellation: above the mode the upper tail is
    summed directly; at or below it, ``1 - P(X <= t - 1)``.
    """
    mode = np.floor((draws + 1) * (good + 1) / (total + 2))
    upper = t > mode
    result = np.empty_like(t)
    result[upper] = _tail_probability(t[upper], total, good[upper], draws[upper], step=1)
    lower = ~upper
    result[lower] = 1.0 - _tail_probability(t[lower] - 1, total, good[lower], draws[lower], step=-1)
    return result


def _hypergeom_logpmf(x, total, good, draws) -> np.ndarray:
    """Log of the hypergeometric probability of ``x``, accurate to a few ulps even for huge counts.

    Loader's saddle-point form (as in R's ``dhyper``): the ratio of three
    binomial probabilities, each written with Stirling-series remainders and
    the deviance ``bd0``, so that nothing cancels. Log-gamma or log-beta
    differences lose ``log10(total)`` digits instead (1e-9 relative at 10**6).
    """
    p = draws / total
    q = (total - draws) / total
    return (
        _log_binomial_pmf(x, good, p, q)
        + _log_binomial_pmf(draws - x, total - good, p, q)
        - _log_binomial_pmf(draws, total, p, q)
    )


def _log_binomial_pmf(x, n, p, q) -> np.ndarray:
    """Log binomial probability of ``x`` successes in ``n`` trials, for 0 < p < 1 (q = 1 - p)."""
    x, n = np.broadcast_arrays(x, n)
    p, q = np.broadcast_to(p, x.shape), np.broadcast_to(q, x.shape)
    result = np.empty(x.shape)
    none = x == 0
    # log(q)**n and log(p)**n lose digits when q (or p) is near 1: use the deviance there.
    result[none] = np.where(
        p[none] < 0.1, -_bd0(n[none], n[none] * q[none]) - n[none] * p[none], n[none] * np.log(q[none])
    )
    every = (x == n) & ~none
    result[every] = np.where(
        q[every] < 0.1, -_bd0(n[every], n[every] * p[every]) - n[every] * q[every], n[every] * np.log(p[every])
    )
    inner = ~(none | every)
    xi, ni, pi, qi = x[inner], n[inner], p[inner], q[inner]
    result[inner] = (
        _stirling_remainder(ni)
        - _stirling_remainder(xi)
        - _stirling_remainder(ni - xi)
        - _bd0(xi, ni * pi)
        - _bd0(ni - xi, ni * qi)
        - 0.5 * (np.log(2 * np.pi) + np.log(xi) + np.log1p(-xi / ni))
    )
    return result


_STIRLING_SMALL = np.array(
    [0.0] + [float(gammaln(k + 1) - (k + 0.5) * np.log(k) + k - 0.5 * np.log(2 * np.pi)) for k in range(1, 16)]
)


def _stirling_remainder(n) -> np.ndarray:
    """``log(n!) - log(sqrt(2 pi n) (n / e)**n)`` for non-negative whole numbers ``n``."""
    n = np.asarray(n, dtype=np.float64)
    small = n <= 15
    result = np.empty(n.shape)
    result[small] = _STIRLING_SMALL[n[small].astype(np.int64)]
    large = n[~small]
    inverse_square = 1.0 / (large * large)
    # The asymptotic series 1/12n - 1/360n^3 + 1/1260n^5 - 1/1680n^7 + 1/1188n^9, to double precision for n > 15.
    series = 1 / 1188
    for coefficient in (1 / 1680, 1 / 1260, 1 / 360):
        series = coefficient - series * inverse_square
    result[~small] = (1 / 12 - series * inverse_square) / large
    return result


def _bd0(x, mean) -> np.ndarray:
    """The deviance ``x log(x / mean) + mean - x``, without its cancellation when x is near mean."""
    x, mean = np.broadcast_arrays(np.asarray(x, dtype=np.float64), np.asarray(mean, dtype=np.float64))
    result = np.empty(x.shape)
    near = np.abs(x - mean) < 0.1 * (x + mean)
    far = ~near
    with np.errstate(divide="ignore", invalid="ignore"):
        result[far] = np.where(x[far] > 0, x[far] * np.log(x[far] / mean[far]), 0.0) + mean[far] - x[far]
    xn, mn = x[near], mean[near]
    v = (xn - mn) / (xn + mn)  # |v| < 0.1: each term of the series is 100 times smaller
    total = (xn - mn) * v
    power = 2 * xn * v
    for j in range(1, 10):  # v**18 / 19 < 1e-19
        power = power * v * v
        total = total + power / (2 * j + 1)
    result[near] = total
    return result


def _tail_probability(start, total, good, draws, *, step) -> np.ndarray:
    """``P(X >= start)`` (``step=1``) or ``P(X <= start)`` (``step=-1``), for ``start`` beyond the mode."""
    log_first = _hypergeom_logpmf(start, total, good, draws)
    # Successive terms follow from the pmf's ratio, written as
    # (a - x)(b - x) / ((x + 1)(c + x)) upwards and x(c' + x) / ((a' - x)(b' - x)) downwards.
    if step > 0:
        a, b, c = good, draws, total - good - draws + 1
    else:
        a, b, c = good + 1, draws + 1, total - good - draws
    sums = np.ones_like(start)  # in units of the first term
    running = np.arange(start.size)
    x, term, partial = start.copy(), np.ones_like(start), np.ones_like(start)
    numerator, denominator = np.empty_like(start), np.empty_like(start)
    iteration = 0
    while running.size:
        if step > 0:
            np.multiply(a - x, b - x, out=numerator)
            np.multiply(x + 1, c + x, out=denominator)
        else:
            np.multiply(x, c + x, out=numerator)
            np.multiply(a - x, b - x, out=denominator)
        term *= numerator
        term /= denominator
        partial += term
        x += step
        iteration += 1
        # Past the support's end the ratio is 0 and terms stay 0, so a pair may
        # run a few extra rounds: the set is compacted only every 4 rounds.
        if iteration % 4:
            continue
        going = term > partial * 2.0**-60
        sums[running[~going]] = partial[~going]
        running, x, term, partial, a, b, c = (array[going] for array in (running, x, term, partial, a, b, c))
        numerator, denominator = numerator[: running.size], denominator[: running.size]
    return np.exp(log_first) * sums


def _benjamini_hochberg(pvalues) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values over all entries of ``pvalues`` (one family)."""
    flat = np.asarray(pvalues, dtype=np.float64).ravel()
    order = np.argsort(flat, kind="stable")
    adjusted = flat[order] * (flat.size / np.arange(1, flat.size + 1))
    adjusted = np.minimum.accumulate(adjusted[::-1])[::-1]
    qvalues = np.empty_like(flat)
    qvalues[order] = np.minimum(adjusted, 1.0)
    return qvalues.reshape(np.shape(pvalues))


def _count_metrics(tp, n_active, n_pos, n_rows) -> dict:
    """Precision, recall, F1 and fold enrichment from counts (arrays broadcast together)."""
    tp = np.asarray(tp, dtype=np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        precision = np.where(n_active > 0, tp / n_active, 0.0)
    return {
        "precision": precision,
        "recall": tp / n_pos,
        "f1": 2 * tp / (n_active + n_pos),
        "fold_enrichment": precision * (n_rows / n_pos),
    }


def _ranking_score(sort_by, tp, n_active, n_pos, n_rows, auroc, pvalue, qvalue) -> np.ndarray:
    """The ``sort_by`` column over all pairs, signed so that larger is better."""
    if sort_by in ("pvalue", "qvalue"):
        return -(pvalue if sort_by == "pvalue" else qvalue)
    if sort_by == "auroc":
        return auroc
    if sort_by == "tp":
        return np.asarray(tp, dtype=np.float64)
    if sort_by == "f1":  # the default: skip the three matrices it does not need
        return 2 * np.asarray(tp, dtype=np.float64) / (n_active + n_pos)
    return _count_metrics(tp, n_active, n_pos, n_rows)[sort_by]


def _selected_pairs(score, top_n):
    """(latent, label) indices of the ``top_n`` best latents of each label; ties go to the lower latent."""
    n_latents, n_labels = score.shape
    if top_n is None or top_n >= n_latents:
        return np.repeat(np.arange(n_latents), n_labels), np.tile(np.arange(n_labels), n_latents)
    kth = n_latents - top_n
    cutoff = np.partition(score, kth, axis=0)[kth]  # the top_n-th best score of each label
    better = score > cutoff
    tied = score == cutoff
    # Of the latents tied at the cutoff, the lowest ones fill the places left.
    room = top_n - better.sum(axis=0)
    take = better | (tied & (np.cumsum(tied, axis=0) <= room))
    return np.nonzero(take)


def _table_part(latent, label, threshold, n_rows, tp, n_active, n_pos, auroc, pvalue, qvalue, ranking) -> dict:
    tp_kept = tp[latent, label].astype(np.int64)
    n_active_kept = n_active[latent].astype(np.int64)
    n_pos_kept = n_pos[label].astype(np.int64)
    return {
        "latent": latent.astype(np.int64),
        "label_index": label,
        "threshold": np.full(latent.size, threshold),
        "n_pos": n_pos_kept,
        "n_active": n_active_kept,
        "tp": tp_kept,
        **_count_metrics(tp_kept, n_active_kept, n_pos_kept, n_rows),
        "auroc": auroc[latent, label],
        "pvalue": pvalue[latent, label],
        "qvalue": qvalue[latent, label],
        "ranking": ranking[latent, label],
    }


def _assemble(parts, names, sort) -> pd.DataFrame:
    columns = {key: np.concatenate([part[key] for part in parts]) for key in parts[0]}
    if sort:
        order = np.lexsort((columns["latent"], columns["threshold"], columns["label_index"], -columns["ranking"]))
        columns = {key: values[order] for key, values in columns.items()}
    columns["label"] = np.asarray(names)[columns.pop("label_index")]
    del columns["ranking"]
    return pd.DataFrame({name: columns[name] for name in COLUMNS})


def _empty_table() -> pd.DataFrame:
    dtypes = {"latent": np.int64, "label": object, "n_pos": np.int64, "n_active": np.int64, "tp": np.int64}
    return pd.DataFrame({name: np.array([], dtype=dtypes.get(name, np.float64)) for name in COLUMNS})


# --------------------------------------------------------------------------- one chosen pair per label


def _score_chosen_pairs(codes, indicator, latents, thresholds, scale) -> pd.DataFrame:
    """Score label ``j`` of ``indicator`` against latent ``latents[j]`` at ``thresholds[j]`` only.

    The held-out half of :class:`~sklearn_sae.interpret.LatentLabelMatcher`:
    the same statistics as :func:`label_associations`, without the cost of
    every other pair. ``qvalue`` is adjusted over these pairs, one per label.
    """
    n_rows = codes.shape[0]
    latents = np.asarray(latents, dtype=np.int64)
    thresholds = np.asarray(thresholds, dtype=np.float64)
    used, position = np.unique(latents, return_inverse=True)
    columns = codes[:, used]  # only the chosen latents are ranked
    ranks = _midranks_within_columns(columns)
    ratio = _activation_ratio(columns, scale[used])
    n_pos = np.diff(indicator.indptr).astype(np.int64)
    n_labels = len(latents)
    tp, n_active, nonzero_tp = (np.zeros(n_labels, dtype=np.int64) for _ in range(3))
    rank_sums = np.zeros(n_labels)
    is_positive = np.zeros(n_rows, dtype=bool)
    for j in range(n_labels):
        positives = indicator.indices[indicator.indptr[j] : indicator.indptr[j + 1]]
        is_positive[positives] = True
        start, stop = columns.indptr[position[j]], columns.indptr[position[j] + 1]
        rows, values = columns.indices[start:stop], columns.data[start:stop]
        active = _is_active(values, ratio[start:stop], thresholds[j])
        hits = is_positive[rows]
        tp[j] = np.count_nonzero(hits & active)
        n_active[j] = np.count_nonzero(active)
        nonzero_tp[j] = np.count_nonzero(hits)
        rank_sums[j] = ranks[start:stop][hits].sum()
        is_positive[positives] = False
    n_zero = n_rows - np.diff(columns.indptr)[position]
    pvalue = _enrichment_pvalues(tp, n_rows, n_pos, n_active)
    return pd.DataFrame(
        {
            "latent": latents,
            "threshold": thresholds,
            "n_pos": n_pos,
            "n_active": n_active,
            "tp": tp,
            **_count_metrics(tp, n_active, n_pos, n_rows),
            "auroc": _auroc_from_rank_sums(rank_sums, nonzero_tp, n_zero, n_pos, n_rows),
            "pvalue": pvalue,
            "qvalue": _benjamini_hochberg(pvalue),
        }
    )
