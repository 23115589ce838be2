"""Evidence for choosing a sparse autoencoder: core statistics, sparse probing, ground truth, scorers.

Everything here is torch-free (NumPy, SciPy, pandas, scikit-learn) and works
on codes, labels and a fitted estimator's public face only: ``transform``,
``reconstruct`` or ``inverse_transform``, and ``components_``. It therefore
measures any scikit-learn transformer that has those (PCA included) the same
way as a :class:`~sklearn_sae.SparseAutoencoderTransformer`. Results are tidy
:class:`pandas.DataFrame` objects; scorers return floats.

The measures are the label-aware, LLM-free part of what the field has
converged on: the core and sparse-probing evaluations of SAEBench (Karvonen
et al., 2025); the comparison of probes on SAE latents with probes on the
raw activations by Kantamneni et al. (2025, "Are sparse autoencoders
useful? A case study in sparse probing"), who find that the SAE probes do
not reliably beat the raw ones, so both are reported here; and the finding
of Chanin and Garriga-Alonso (2025, "Sparse but wrong: incorrect L0 leads
to incorrect features in sparse autoencoders") that most SAEs are trained
at too low an L0 and that the peak of sparse-probing performance marks the
right one, which is what makes sparse probing a model-selection criterion.

The exact protocols follow.

**Core statistics** (:func:`core_metrics`), on rows ``X`` and their codes:
explained variance ``1 - FVU`` with ``FVU = sum ||x_hat - x||^2 / sum ||x -
mean(X)||^2``; mean L0 (non-zeros per row); the fraction of latents alive
(non-zero on at least one row) and of dense latents (non-zero on more than 1%
and more than 10% of the rows); the mean over atoms (rows of
``components_``) of each atom's largest absolute cosine with another atom;
and the relative reconstruction bias of SAEBench (Rajamanoharan et al.,
2024, eq. 10), ``gamma = sum ||x_hat||^2 / sum <x_hat, x>``, the ``gamma``
that minimises ``sum ||x_hat / gamma - x||^2``: 1 is unbiased, below 1
means the reconstructions are shrunk toward zero.

**Sparse probing** (:func:`sparse_probing`), SAEBench's protocol: each class
``c`` is a one-vs-rest task (``y == c``). On the training rows only, every
latent gets ``|mean over the rows of c - mean over the other rows|``; the
latents are ranked by it (ties to the lower index) and the top ``k`` kept.
An L2 logistic regression (``C=1``, ``max_iter=1000``) is fitted on those
columns of the training rows and scored on the test rows: accuracy and the
F1 of class ``c``. The same protocol on the raw dimensions and a probe on
every raw dimension are the references. One departure from SAEBench, on by default: the chosen columns are
standardised on the training rows before the probe, because an L2-penalised
probe is not scale-free (``standardize=False`` is SAEBench's probe).

**Feature splitting** (:func:`feature_splitting`), SAEBench's rule: a
concept is split when the ``k``-latent probe's F1 rises by at least 0.03
over the ``k - 1``-latent probe.

**Ground truth** (:func:`ground_truth_recovery`), for synthetic data with
known atoms, SynthSAEBench's definitions (Chanin and Garriga-Alonso 2026):
a one-to-one Hungarian matching of true and learned atoms that maximises
the total cosine, signed or absolute; the mean matched cosine (the "mean
correlation coefficient", MCC, of SAE papers on synthetic data) and the
fraction of true atoms matched at cosine 0.9 or more; the uniqueness of
the latents' best matches; and, given the codes and the true activations
of some rows, each latent's precision, recall and F1 as a detector of its
best-matching true feature.

**Scorers** for ``GridSearchCV`` (:func:`make_sparse_probing_scorer`,
:func:`make_l0_budget_scorer`). The estimator's own ``score`` (explained
variance) only grows with ``k``, so a search over ``k`` scored by it always
returns the densest model; sparse-probing F1 can peak at an interior one. It is
run as an inner cross-validation on the rows the search scores, so that no
row is scored by a ranking or probe it shaped. Without labels, the L0-budget
scorer compares models at one sparsity.
"""

from __future__ import annotations

import warnings
from numbers import Integral, Real

import numpy as np
import pandas as pd
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold
from sklearn.pipeline import Pipeline

from . import metrics

from .metrics import recovery_scores

__all__ = [
    "core_metrics",
    "sparse_probing",
    "feature_splitting",
    "ground_truth_recovery",
    "make_sparse_probing_scorer",
    "make_l0_budget_scorer",
]

SPLIT_F1_GAIN = 0.03
"""SAEBench's feature-splitting threshold: the F1 gain from one more latent that marks a split concept."""

_COSINE_BLOCK_ROWS = 256
"""Atoms compared at a time: with 32k latents a block of cosines is 256 x 32k (64 MiB), never 32k x 32k."""

_STAT_BLOCK_ROWS = 4096
"""Rows of ``X`` and its reconstruction turned into float64 at a time in the core statistics."""

_PROBING_COLUMNS = ["representation", "class", "k", "accuracy", "f1", "n_train_positive", "n_test_positive",
                    "features"]

_SCORER_SKIP = r"The least populated class in y has only"
"""scikit-learn's warning when the "other classes" stratum of the scorer's inner split is smaller than n_splits."""


# ----------------------------------------------------------------------------- input checks


def _check_ks(ks) -> tuple[int, ...]:
    try:
        ks = tuple(ks)
    except TypeError:
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}.") from None
    if not ks or not all(isinstance(k, Integral) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}.")
    if sorted(set(ks)) != list(ks):
        raise ValueError(f"ks must be increasing and without repeats, got {ks!r}.")
    return tuple(int(k) for k in ks)


def _check_positive_int(value, name, minimum=1):
    if not (isinstance(value, Integral) and not isinstance(value, bool) and value >= minimum):
        raise ValueError(f"{name} must be an int of at least {minimum}, got {value!r}.")
    return int(value)


def _check_probe_params(C, max_iter):
    if not (isinstance(C, Real) and not isinstance(C, bool) and np.isfinite(C) and C > 0):
        raise ValueError(f"C must be a positive finite number, got {C!r}.")
    _check_positive_int(max_iter, "max_iter")


def _check_labels(y, name) -> np.ndarray:
    y = np.asarray(y)
    if y.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {y.shape}.")
    return y


def _labelled(y, name, *arrays):
    """``(y, *arrays)`` without the rows whose label is missing (None, NaN), with a warning that counts them.

    A missing label is no class: counted as a negative of every class it would bias the probes, and sorting
    labels with a NaN among strings fails.
    """
    missing = np.asarray(pd.isna(y), dtype=bool)
    if not missing.any():
        return (y, *arrays)
    warnings.warn(
        f"{int(missing.sum())} of the {len(y)} rows of {name} have no label (None or NaN); they are left out of "
        "the probes.", UserWarning, stacklevel=3,
    )
    keep = np.flatnonzero(~missing)
    return (y[keep], *(None if array is None else array[keep] for array in arrays))


def _check_n_rows(array, n_rows, name, other):
    if array.ndim != 2 or array.shape[0] != n_rows:
        raise ValueError(f"{name} has shape {array.shape}; expected 2-D with {n_rows} rows, one per row of {other}.")


def _as_features(array, name):
    """Codes or raw rows as float64: CSR stays CSR (never densified), anything else a 2-D array."""
    if sp.issparse(array):
        return sp.csr_matrix(array, dtype=np.float64)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {array.shape}.")
    return array


def _as_rows(X, name="X"):
    """``X`` as the estimator will see it: array-likes become arrays (dtype kept), 2-D required."""
    if sp.issparse(X):
        raise ValueError(f"{name} must be dense rows (the inputs of the estimator), got a sparse matrix.")
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {X.shape}.")
    return X


def _scalar(label):
    return label.item() if isinstance(label, np.generic) else label


# ----------------------------------------------------------------------------- core statistics


def core_metrics(estimator, X, *, codes=None) -> pd.DataFrame:
    """The core statistics of a fitted estimator on rows ``X``, as a one-row DataFrame.

    A one-row DataFrame rather than a Series, so that several models'
    statistics concatenate into a table (``pd.concat([...],
    keys=names)``).

    Parameters
    ----------
    estimator : fitted transformer
        A fitted :class:`~sklearn_sae.SparseAutoencoderTransformer`, or any
        transformer with ``transform``, ``components_`` (one atom per row)
        and ``reconstruct`` or ``inverse_transform``. ``reconstruct(X)`` is
        used when the estimator has it, since it is in the input's units
        (an SAE's ``inverse_transform`` is not when it normalises rows);
        otherwise ``inverse_transform(codes)`` (e.g. PCA).
    X : array-like of shape (n_samples, n_features)
        The rows to measure on, e.g. a test split.
    codes : array-like or sparse matrix of shape (n_samples, n_latents), default=None
        ``estimator.transform(X)``, when already computed: the code
        statistics then do not encode ``X`` again. Sparse codes are never
        densified: their statistics come from the CSR index arrays.

    Returns
    -------
    metrics : pandas.DataFrame
        One row, with columns:

        - ``explained_variance``: ``1 - FVU``, ``FVU = sum ||x_hat - x||^2 /
          sum ||x - mean(X)||^2`` (the column means of ``X``);
        - ``l0``: mean number of non-zero codes per row;
        - ``alive``: fraction of latents non-zero on at least one row;
        - ``dense_1pct``, ``dense_10pct``: fractions of latents non-zero on
          more than 1% and more than 10% of the rows;
        - ``mean_max_cosine``: over atoms, the mean of each atom's largest
          absolute cosine with another atom (NaN with a single atom);
        - ``relative_reconstruction_bias``: ``sum ||x_hat||^2 / sum <x_hat,
          x>``, 1 when unbiased, below 1 when the reconstructions shrink.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_sae.evaluate import core_metrics
    >>> X = np.random.default_rng(0).normal(size=(100, 6))
    >>> table = core_metrics(PCA(n_components=3).fit(X), X)
    >>> float(table.loc[0, "l0"]), float(table.loc[0, "alive"])
    (3.0, 1.0)
    >>> float(table.loc[0, "mean_max_cosine"]) < 1e-6  # principal axes are orthogonal
    True
    """
    X = _as_rows(X)
    codes = estimator.transform(X) if codes is None else codes
    if not sp.issparse(codes):
        codes = np.asarray(codes)
    _check_n_rows(codes, X.shape[0], "codes", "X")
    explained_variance, bias = _reconstruction_statistics(*_reconstruction(estimator, X, codes))
    firing = metrics.nonzero_counts(codes, axis=0) / max(codes.shape[0], 1)
    return pd.DataFrame([{
        "explained_variance": explained_variance,
        "l0": float(metrics.nonzero_counts(codes, axis=1).mean()),
        "alive": float((firing > 0).mean()),
        "dense_1pct": float((firing > 0.01).mean()),
        "dense_10pct": float((firing > 0.10).mean()),
        "mean_max_cosine": _mean_max_cosine(np.asarray(_final_step(estimator).components_)),
        "relative_reconstruction_bias": bias,
    }])


def _final_step(estimator):
    """The estimator that makes the codes: a ``Pipeline``'s last step, else the estimator itself."""
    return estimator[-1] if isinstance(estimator, Pipeline) else estimator


def _reconstruction(estimator, X, codes):
    """``(X_in, X_hat)``: the rows the estimator's last step encodes, and its reconstruction of them.

    For a ``Pipeline`` that is the last step on ``X`` passed through the steps before it: a pipeline has no
    ``reconstruct``, and its ``inverse_transform`` of an SAE's codes is in the SAE's standardised space, which
    compared with the raw rows gave a meaningless explained variance. Without ``reconstruct`` (PCA), the
    reconstruction is ``inverse_transform(codes)``.
    """
    if isinstance(estimator, Pipeline) and len(estimator) > 1:
        X = _as_rows(estimator[:-1].transform(X))
    estimator = _final_step(estimator)
    reconstruct = getattr(estimator, "reconstruct", None)
    X_hat = np.asarray(reconstruct(X) if reconstruct is not None else estimator.inverse_transform(codes))
    if X_hat.shape != X.shape:
        raise ValueError(f"The estimator's reconstruction has shape {X_hat.shape}, X has shape {X.shape}.")
    return X, X_hat


def _reconstruction_statistics(X, X_hat) -> tuple[float, float]:
    """``(1 - FVU, relative reconstruction bias)``, accumulated in float64 a block of rows at a time."""
    totals = metrics.FVUTotals()
    hat_squared = hat_dot_x = 0.0
    for start in range(0, X.shape[0], _STAT_BLOCK_ROWS):
        x, x_hat = X[start : start + _STAT_BLOCK_ROWS], X_hat[start : start + _STAT_BLOCK_ROWS]
        totals.add(x, x_hat)
        x_hat = x_hat.astype(np.float64)
        hat_squared += float(np.square(x_hat).sum())
        hat_dot_x += float((x_hat * x.astype(np.float64)).sum())
    bias = hat_squared / hat_dot_x if hat_dot_x != 0 else float("nan")
    return 1.0 - totals.fvu(), float(bias)


def _mean_max_cosine(atoms: np.ndarray) -> float:
    """Mean over atoms of the largest |cosine| with any other atom, a block of atoms at a time."""
    if atoms.ndim != 2:
        raise ValueError(f"components_ must be 2-D (one atom per row), got shape {atoms.shape}.")
    if atoms.shape[0] < 2:
        return float("nan")  # no other atom to compare with
    unit = metrics.unit_rows(atoms)
    largest = np.empty(len(unit))
    for start in range(0, len(unit), _COSINE_BLOCK_ROWS):
        block = np.abs(unit[start : start + _COSINE_BLOCK_ROWS] @ unit.T)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # not with itself
        largest[start : start + len(block)] = block.max(axis=1)
    return float(largest.mean())


# ----------------------------------------------------------------------------- sparse probing


def _class_mean_differences(features, y, classes) -> np.ndarray:
    """``|mean over rows of c - mean over every other row|``, one row per class of ``classes``, one column per feature.

    Every class at once, by one sparse product ``indicator @ features`` (no loop over latents): CSR
    codes stay sparse and 2,048 latents x 13 classes cost one pass over the stored values.
    """
    n_rows = features.shape[0]
    classes = np.asarray(classes)
    order = np.argsort(classes, kind="stable")
    position = np.clip(np.searchsorted(classes[order], y), 0, len(classes) - 1)
    in_classes = classes[order][position] == y
    indicator = sp.csr_matrix(
        (np.ones(in_classes.sum()), (order[position[in_classes]], np.flatnonzero(in_classes))),
        shape=(len(classes), n_rows),
    )
    class_sums = indicator @ features
    class_sums = class_sums.toarray() if sp.issparse(class_sums) else np.asarray(class_sums, dtype=np.float64)
    counts = np.asarray(indicator.sum(axis=1), dtype=np.float64)
    totals = np.asarray(features.sum(axis=0), dtype=np.float64).reshape(1, -1)
    with np.errstate(invalid="ignore", divide="ignore"):  # callers only probe classes with both kinds of rows
        return np.abs(class_sums / counts - (totals - class_sums) / (n_rows - counts))


def _top_features(differences: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` columns with the largest differences; ties go to the lower column index (a stable sort)."""
    return np.argsort(-differences, kind="stable")[:k]


def _dense_columns(block, columns):
    block = block[:, columns]
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def _fit_predict(train, y_fit, test, *, C, max_iter, standardize):
    """Fit the L2 logistic probe on ``train`` (dense, the chosen columns) and predict ``test``."""
    if standardize:
        # An L2 penalty is not scale-free: scale every column alike, so that embeddings of variance 1e-3 are
        # not penalised into predicting one class while codes of order 1 are not. Training rows only.
        mean, scale = train.mean(axis=0), train.std(axis=0)
        scale[scale == 0] = 1.0
        train, test = (train - mean) / scale, (test - mean) / scale
    return LogisticRegression(C=C, max_iter=max_iter).fit(train, y_fit).predict(test)


def _probe_rows(name, train, y_train, test, y_test, ks, classes, *, multiclass, full, C, max_iter, standardize):
    """The table rows of one representation: rank on ``train`` only, fit on ``train``, score on ``test``."""
    differences = _class_mean_differences(train, y_train, classes)
    n_columns = train.shape[1]
    tops = {k: [_top_features(differences[i], min(k, n_columns)) for i in range(len(classes))] for k in ks}
    rows = []
    if multiclass:
        # One multinomial probe per k on the union of every class's top-k columns (in class order, then rank),
        # fitted and scored on the rows of the probed classes only.
        fit_rows, score_rows = np.isin(y_train, classes), np.isin(y_test, classes)
        probes = [(name, k, np.array(list(dict.fromkeys(np.concatenate(tops[k]).tolist())))) for k in ks]
        if full:
            probes.append(("raw_full", n_columns, np.arange(n_columns)))
        for representation, k, columns in probes:
            predicted = _fit_predict(_dense_columns(train[fit_rows], columns), y_train[fit_rows],
                                     _dense_columns(test[score_rows], columns), C=C, max_iter=max_iter,
                                     standardize=standardize)
            truth = y_test[score_rows]
            rows.append({
                "representation": representation, "class": None, "k": k,
                "accuracy": float(accuracy_score(truth, predicted)),
                "f1": float(f1_score(truth, predicted, labels=list(classes), average="macro", zero_division=0.0)),
                "n_train_positive": int(fit_rows.sum()), "n_test_positive": int(score_rows.sum()),
                "features": tuple(int(c) for c in columns),
            })
        return rows
    for i, label in enumerate(classes):
        train_positive, test_positive = y_train == label, y_test == label
        probes = [(name, k, tops[k][i]) for k in ks]
        if full:
            probes.append(("raw_full", n_columns, np.arange(n_columns)))
        for representation, k, columns in probes:
            predicted = _fit_predict(_dense_columns(train, columns), train_positive, _dense_columns(test, columns),
                                     C=C, max_iter=max_iter, standardize=standardize)
            rows.append({
                "representation": representation, "class": _scalar(label), "k": k,
                "accuracy": float(accuracy_score(test_positive, predicted)),
                "f1": float(f1_score(test_positive, predicted, zero_division=0.0)),
                "n_train_positive": int(train_positive.sum()), "n_test_positive": int(test_positive.sum()),
                "features": tuple(int(c) for c in columns),
            })
    return rows


def _probed_classes(y_train, y_test, classes, min_class_size, *, multiclass):
    """The classes with enough rows, and the skipped ones."""
    candidates = list(np.unique(y_train)) if classes is None else list(classes)
    kept, skipped = [], []
    for label in candidates:
        counts = [int((y == label).sum()) for y in (y_train, y_test)]
        # One-vs-rest needs positives and negatives on both sides; a multinomial probe needs each class's rows.
        sizes = counts if multiclass else counts + [len(y) - n for y, n in zip((y_train, y_test), counts)]
        (kept if min(sizes) >= min_class_size else skipped).append(label)
    return kept, skipped


def sparse_probing(codes_train, y_train, codes_test, y_test, ks=(1, 2, 5), *, X_train=None, X_test=None,
                   multiclass=False, classes=None, C=1.0, max_iter=1000, standardize=True,
                   min_class_size=2) -> pd.DataFrame:
    """k-sparse probes of every class, on SAE latents and, as references, on raw dimensions.

    For each class ``c`` (one-vs-rest: ``y == c``), the latents are ranked by
    ``|mean over the training rows of c - mean over the other training rows|``
    (ties broken by the lower latent index); for each ``k`` in ``ks`` an L2
    logistic regression (``LogisticRegression(C=C, max_iter=max_iter)``) is
    fitted on the top ``k`` latents of the training rows and scored on the
    test rows. The test rows reach neither the ranking nor the probe. A
    ``k`` larger than the number of columns is clipped to it (the row keeps
    the requested ``k``; ``features`` shows the columns used), so that one
    ``ks`` serves dictionaries of every size.

    One departure from SAEBench: the chosen columns are standardised (by
    their training mean and standard deviation) before the probe, by
    default. SAEBench probes language-model activations and SAE codes at
    their natural scales, but an L2-penalised probe is not scale-free:
    protein embeddings of variance 1e-3 would be penalised into predicting a
    single class while codes of order 1 would not, which would make the
    raw-dimension reference lose for its units alone. ``standardize=False``
    is SAEBench's probe.

    With ``multiclass=True`` the protocol is instead: for each ``k``, the
    union of every probed class's top ``k`` latents (ranked one-vs-rest as
    above), one multinomial logistic regression on those columns, fitted on
    the training rows of the probed classes and scored on their test rows
    (accuracy, and F1 macro-averaged over the probed classes).

    Parameters
    ----------
    codes_train, codes_test : array-like or sparse matrix of shape (n_rows, n_latents)
        Codes of the training and test rows. Sparse codes stay sparse: the
        ranking is one sparse product, and only the ``k`` chosen columns are
        made dense for the probe.
    y_train, y_test : array-like of shape (n_rows,)
        Class labels.
    ks : sequence of int, default=(1, 2, 5)
        Latents per probe: positive, increasing.
    X_train, X_test : array-like of shape (n_rows, n_features), default=None
        The raw rows. When given, the table also holds ``"raw_top_k"`` (the
        same protocol on the raw dimensions) and ``"raw_full"`` (a probe on
        all of them; its ``k`` is ``n_features``).
    multiclass : bool, default=False
        One multinomial probe per ``k`` instead of one probe per class (see
        above).
    classes : sequence, default=None
        The classes to probe; ``None`` is every class of ``y_train``.
    C : float, default=1.0
        Inverse L2 strength of the logistic regression.
    max_iter : int, default=1000
        Of the logistic regression.
    standardize : bool, default=True
        Scale the chosen columns to zero mean and unit variance on the
        training rows before the probe (see above).
    min_class_size : int, default=2
        A class needs at least this many positive rows, and (one-vs-rest)
        as many negative rows, in both the training and the test rows; the
        others are skipped with a warning naming them.

    Returns
    -------
    table : pandas.DataFrame
        One row per representation, class and ``k``: ``representation``
        (``"sae"``, ``"raw_top_k"``, ``"raw_full"``), ``class`` (``None``
        with ``multiclass=True``), ``k``, ``accuracy``, ``f1``,
        ``n_train_positive``, ``n_test_positive`` (with ``multiclass=True``,
        the rows of the probed classes) and ``features`` (the columns used,
        a tuple, best first).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.evaluate import sparse_probing
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, size=200)
    >>> codes = np.column_stack([rng.random(200), y * 3.0, rng.random(200)])  # latent 1 is the label
    >>> table = sparse_probing(codes[:150], y[:150], codes[150:], y[150:], ks=(1, 2))
    >>> table[["class", "k", "f1", "features"]]
       class  k   f1 features
    0      0  1  1.0     (1,)
    1      0  2  1.0   (1, 2)
    2      1  1  1.0     (1,)
    3      1  2  1.0   (1, 2)
    """
    ks = _check_ks(ks)
    _check_probe_params(C, max_iter)
    min_class_size = _check_positive_int(min_class_size, "min_class_size")
    y_train, y_test = _check_labels(y_train, "y_train"), _check_labels(y_test, "y_test")
    codes_train, codes_test = _as_features(codes_train, "codes_train"), _as_features(codes_test, "codes_test")
    _check_n_rows(codes_train, len(y_train), "codes_train", "y_train")
    _check_n_rows(codes_test, len(y_test), "codes_test", "y_test")
    if codes_train.shape[1] != codes_test.shape[1]:
        raise ValueError(f"codes_train has {codes_train.shape[1]} columns but codes_test {codes_test.shape[1]}.")
    if (X_train is None) != (X_test is None):
        raise ValueError("Give both X_train and X_test, or neither.")
    if X_train is not None:
        X_train, X_test = _as_features(X_train, "X_train"), _as_features(X_test, "X_test")
        _check_n_rows(X_train, len(y_train), "X_train", "y_train")
        _check_n_rows(X_test, len(y_test), "X_test", "y_test")
        if X_train.shape[1] != X_test.shape[1]:
            raise ValueError(f"X_train has {X_train.shape[1]} columns but X_test {X_test.shape[1]}.")
    y_train, codes_train, X_train = _labelled(y_train, "y_train", codes_train, X_train)
    y_test, codes_test, X_test = _labelled(y_test, "y_test", codes_test, X_test)
    representations = [("sae", codes_train, codes_test, False)]
    if X_train is not None:
        representations.append(("raw_top_k", X_train, X_test, True))
    probed, skipped = _probed_classes(y_train, y_test, classes, min_class_size, multiclass=multiclass)
    if skipped:
        what = "rows" if multiclass else "positive or negative rows"
        warnings.warn(
            f"sparse_probing skips {len(skipped)} class(es) with fewer than {min_class_size} {what} in the "
            f"training or test rows: {[_scalar(c) for c in skipped[:10]]}{' ...' if len(skipped) > 10 else ''}.",
            UserWarning, stacklevel=2,
        )
    if multiclass and len(probed) < 2:
        warnings.warn("sparse_probing(multiclass=True) needs two classes with enough rows; the table is empty.",
                      UserWarning, stacklevel=2)
        probed = []
    rows = []
    if probed:
        for name, train, test, full in representations:
            rows += _probe_rows(name, train, y_train, test, y_test, ks, probed, multiclass=multiclass, full=full,
                                C=C, max_iter=max_iter, standardize=standardize)
    return pd.DataFrame(rows, columns=_PROBING_COLUMNS)


def feature_splitting(probing_table, *, threshold=SPLIT_F1_GAIN) -> pd.DataFrame:
    """Which concepts the SAE splits over several latents, from a :func:`sparse_probing` table.

    SAEBench's rule: a concept is split when the probe on ``k`` latents has
    an F1 at least ``threshold`` (0.03) above the probe on ``k - 1``
    latents. The rule is defined for consecutive ``k``; the table holds only
    the ``ks`` it was made with, so the gain here is from each ``k`` to the
    next one present: with gaps (``ks=(1, 2, 5)``: 2 to 5) it is the gain of
    the whole step, which is larger than any single step in it, and
    ``split_k`` names the larger ``k`` of the first step that passes. Use
    consecutive ``ks`` (``range(1, 6)``) for the rule exactly.

    Parameters
    ----------
    probing_table : pandas.DataFrame
        The output of :func:`sparse_probing`. Only its ``"sae"`` rows are
        used; it needs the columns ``representation``, ``class``, ``k`` and
        ``f1``.
    threshold : float, default=0.03
        The F1 gain that marks a split.

    Returns
    -------
    splitting : pandas.DataFrame
        One row per class (in the table's order): ``class``, ``split``
        (bool), ``split_k`` (nullable integer, ``<NA>`` when not split),
        ``largest_gain`` (NaN with a single ``k``) and ``gains`` (a dict
        from each ``k`` but the smallest to its F1 gain over the previous
        ``k``).

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_sae.evaluate import feature_splitting
    >>> table = pd.DataFrame({"representation": "sae", "class": ["a", "a", "b", "b"],
    ...                       "k": [1, 2, 1, 2], "f1": [0.50, 0.90, 0.80, 0.81]})
    >>> feature_splitting(table)[["class", "split", "split_k"]]
      class  split  split_k
    0     a   True        2
    1     b  False     <NA>
    """
    missing = {"representation", "class", "k", "f1"} - set(getattr(probing_table, "columns", ()))
    if missing:
        raise ValueError(f"probing_table must be a sparse_probing table; it lacks the columns {sorted(missing)}.")
    if not (isinstance(threshold, Real) and np.isfinite(threshold)):
        raise ValueError(f"threshold must be a finite number, got {threshold!r}.")
    sae = probing_table[probing_table["representation"] == "sae"]
    rows = []
    for label, group in sae.groupby("class", sort=False, dropna=False):  # dropna: multiclass rows have class None
        f1 = group.groupby("k")["f1"].mean().sort_index()
        gains = {int(k): float(gain) for k, gain in f1.diff().iloc[1:].items()}
        split_k = next((k for k, gain in gains.items() if gain >= threshold), None)
        rows.append({"class": label, "split": split_k is not None, "split_k": split_k,
                     "largest_gain": max(gains.values(), default=float("nan")), "gains": gains})
    splitting = pd.DataFrame(rows, columns=["class", "split", "split_k", "largest_gain", "gains"])
    return splitting.astype({"split": bool, "split_k": "Int64", "largest_gain": float})


# ----------------------------------------------------------------------------- ground truth


def ground_truth_recovery(true_atoms, components, *, codes=None, true_codes=None, signed=True,
                          threshold=0.9) -> pd.DataFrame:
    """Match true atoms to learned ones (Hungarian algorithm) and score the match, and the codes when given.

    Each true atom is paired with at most one learned atom and each learned
    atom with at most one true atom, so that the total cosine of the pairs
    is largest. ``signed=True`` matches on the signed cosine (an SAE's codes
    are non-negative, so an atom pointing the other way is a different
    feature); ``signed=False`` on its absolute value, SynthSAEBench's MCC
    (Chanin and Garriga-Alonso 2026). With ``codes`` of some rows and the
    true activations of the same rows, SynthSAEBench's per-latent
    classification scores are added. The measures are computed once, by
    :func:`sklearn_sae.metrics.recovery_scores`, whose definitions are those
    of ``sae_lens.synthetic.evals``.

    Parameters
    ----------
    true_atoms : array-like of shape (n_atoms, n_features)
        The generating atoms, one per row (e.g. the ``dictionary`` of
        :func:`~sklearn_sae.datasets.make_sparse_signals`, or a SynthSAEBench
        model's ``feature_dict.feature_vectors``).
    components : array-like of shape (n_latents, n_features)
        The learned atoms, e.g. ``estimator.components_``, in the space of
        ``true_atoms``.
    codes : array-like or sparse matrix of shape (n_samples, n_latents), default=None
        The learned codes of some rows (``estimator.transform(X)``).
    true_codes : array-like or sparse matrix of shape (n_samples, n_atoms), default=None
        The true activations of the same rows; give both or neither.
    signed : bool, default=True
        Match on the signed cosine (True) or the absolute cosine (False,
        SynthSAEBench's MCC). Uniqueness and the per-latent scores always
        match each latent to its best true atom by absolute cosine.
    threshold : float, default=0.9
        The matched cosine at which a true atom counts as recovered.

    Returns
    -------
    matches : pandas.DataFrame
        One row per true atom: ``atom``, ``latent`` (the matched latent; -1
        when there are fewer latents than atoms and it got none), the
        matched cosine, in the column ``cosine`` (``signed=True``) or
        ``abs_cosine`` (``signed=False``; NaN when unmatched), and
        ``recovered`` (matched cosine ``>= threshold``). The summary is in
        ``matches.attrs``, under names that say the definition:

        - ``"mcc_hungarian_signed"`` or ``"mcc_hungarian_abs"``: the mean
          matched cosine over the ``min(n_atoms, n_latents)`` pairs;
        - ``"fraction_recovered_hungarian"``: recovered true atoms over all
          true atoms;
        - ``"uniqueness"``: distinct best-matching true atoms over latents;
        - with ``codes``: ``"latent_precision"``, ``"latent_recall"``,
          ``"latent_f1"``, means over latents of each latent's scores as a
          detector of its best-matching true atom (fires = code non-zero,
          true fires = activation positive, 0 where undefined).

        (pandas keeps ``attrs`` through copies but not through every
        operation: read them first.)

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.evaluate import ground_truth_recovery
    >>> atoms = np.eye(3)
    >>> matches = ground_truth_recovery(atoms, atoms[[2, 0, 1]])
    >>> matches["latent"].tolist(), matches.attrs["mcc_hungarian_signed"], matches.attrs["uniqueness"]
    ([1, 2, 0], 1.0, 1.0)
    """
    scores = recovery_scores(true_atoms, components, codes=codes, true_codes=true_codes, signed=signed,
                             threshold=threshold)
    n_atoms = np.asarray(true_atoms).shape[0]
    latent = np.full(n_atoms, -1)
    cosine = np.full(n_atoms, np.nan)
    latent[scores.atom] = scores.latent
    cosine[scores.atom] = scores.cosine
    matches = pd.DataFrame({"atom": np.arange(n_atoms), "latent": latent,
                            "cosine" if signed else "abs_cosine": cosine,
                            "recovered": np.nan_to_num(cosine, nan=-np.inf) >= threshold})
    matches.attrs.update(scores.summary)
    return matches


# ----------------------------------------------------------------------------- scorers


def make_sparse_probing_scorer(ks=(1, 2, 5), *, k_aggregate="mean", metric="f1", n_splits=3, random_state=0,
                               classes=None, min_class_size=None, C=1.0, max_iter=1000, standardize=True):
    """A scorer for ``GridSearchCV``: sparse probing on the rows it scores, as an inner cross-validation.

    ``scorer(estimator, X, y)`` follows scikit-learn's scorer convention
    (higher is better). It sees only the rows the search scores on (a
    fold's test rows), encodes them with ``estimator.transform(X)`` (so the
    estimator must be the SAE or a pipeline that ends with it), and splits
    them into ``n_splits`` stratified parts. For each part, the latents are
    ranked and the probes fitted on the other parts and scored on it, with
    :func:`sparse_probing`'s one-vs-rest protocol: no row it is scored on
    reaches the ranking or the probe it is scored with. The score is
    ``metric``, averaged over the parts for each class and ``k``, then
    aggregated over ``ks`` by ``k_aggregate``, then averaged over classes.

    A class is probed when it has at least ``min_class_size`` rows, and as
    many rows of other classes, among the scored rows (its rows are
    otherwise kept as negatives of the others); in a part where it lacks
    positive or negative rows it is left out of that part. When no class
    can be probed the scorer warns and returns NaN. ``GridSearchCV`` keeps
    a NaN score (its ``error_score`` is for fits and scorers that raise),
    warns that some scores are non-finite, and ranks the candidate last.

    For a search that also reports the estimator's explained variance, give
    it as a callable: ``scoring={"probe": make_sparse_probing_scorer(),
    "ev": lambda est, X, y=None: est.score(X)}, refit="probe"`` (scikit-
    learn's string scorers expect predictors).

    Parameters
    ----------
    ks : sequence of int, default=(1, 2, 5)
        Latents per probe: positive, increasing; clipped to the number of
        latents.
    k_aggregate : {"mean", "max"}, default="mean"
        Over ``ks``, per class: the mean, or the best ``k``.
    metric : {"f1", "accuracy"}, default="f1"
        F1 of the class, or accuracy. With rare classes accuracy is mostly
        the negatives': F1 is the informative one.
    n_splits : int, default=3
        Parts of the inner cross-validation, at least 2.
    random_state : int, default=0
        Shuffles the rows before they are split.
    classes : sequence, default=None
        The classes to probe; ``None`` is every class of ``y``.
    min_class_size : int, default=None
        Rows a class needs among the scored rows; ``None`` is ``n_splits``
        (one per part), the least allowed.
    C, max_iter, standardize
        As for :func:`sparse_probing`.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y) -> float``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_sae.evaluate import make_sparse_probing_scorer
    >>> rng = np.random.default_rng(0)
    >>> y = np.repeat([0, 1, 2], 40)
    >>> X = rng.normal(size=(120, 6)) + 3 * np.eye(6)[y]  # classes 0, 1, 2 shift dimensions 0, 1, 2
    >>> scorer = make_sparse_probing_scorer(ks=(1, 2))
    >>> search = GridSearchCV(PCA(), {"n_components": [1, 3]}, scoring=scorer, cv=2).fit(X, y)
    >>> search.best_params_
    {'n_components': 3}
    """
    ks = _check_ks(ks)
    if k_aggregate not in ("mean", "max"):
        raise ValueError(f"k_aggregate must be 'mean' or 'max', got {k_aggregate!r}.")
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"metric must be 'f1' or 'accuracy', got {metric!r}.")
    n_splits = _check_positive_int(n_splits, "n_splits", minimum=2)
    min_class_size = n_splits if min_class_size is None else _check_positive_int(
        min_class_size, "min_class_size", minimum=n_splits)
    _check_probe_params(C, max_iter)
    wanted = None if classes is None else list(classes)

    def sparse_probing_score(estimator, X, y=None):
        if y is None:
            raise ValueError("The sparse-probing scorer needs labels: call fit(X, y) on the search.")
        y = _check_labels(y, "y")
        codes = estimator.transform(X)
        codes = _as_features(codes, "codes")
        _check_n_rows(codes, len(y), "The codes", "y")
        y, codes = _labelled(y, "y", codes)
        candidates = list(np.unique(y)) if wanted is None else wanted
        counts = {label: int((y == label).sum()) for label in candidates}
        probed = [label for label, n in counts.items() if n >= min_class_size and len(y) - n >= min_class_size]
        if not probed:
            warnings.warn(
                f"The sparse-probing scorer found no class with {min_class_size} rows or more (and as many of "
                "other classes) among the rows it scores; the score is NaN.", UserWarning, stacklevel=2,
            )
            return float("nan")
        # Stratify on the probed classes, the other rows as one more stratum: every part holds every class.
        strata = np.full(len(y), -1)
        for i, label in enumerate(probed):
            strata[y == label] = i
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        results = []
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=_SCORER_SKIP, category=UserWarning)
            splits = list(folds.split(np.zeros((len(y), 1)), strata))
        for split, (train, test) in enumerate(splits):
            y_train, y_test = y[train], y[test]
            here, _ = _probed_classes(y_train, y_test, probed, 1, multiclass=False)
            if not here:
                continue
            rows = _probe_rows("sae", codes[train], y_train, codes[test], y_test, ks, here, multiclass=False,
                               full=False, C=C, max_iter=max_iter, standardize=standardize)
            results += [{"split": split, "class": row["class"], "k": row["k"], "value": row[metric]} for row in rows]
        if not results:
            warnings.warn("The sparse-probing scorer could probe no class in any inner split; the score is NaN.",
                          UserWarning, stacklevel=2)
            return float("nan")
        table = pd.DataFrame(results)
        per_k = table.groupby(["class", "k"])["value"].mean()  # over the inner splits
        per_class = per_k.groupby(level="class").agg(k_aggregate)  # over ks
        return float(per_class.mean())  # over classes

    return sparse_probing_score


def make_l0_budget_scorer(max_l0):
    """A scorer that compares models at one sparsity: explained variance within an L0 budget.

    ``scorer(estimator, X, y=None)`` encodes ``X`` (the rows the search
    scores on) and measures the mean number of non-zero codes per row, L0.
    Within the budget (``L0 <= max_l0``) the score is the explained
    variance on ``X``, ``1 - FVU``, computed as in :func:`core_metrics`
    (from ``reconstruct(X)`` or ``inverse_transform(codes)``, so also for
    PCA, whose own ``score`` is a log-likelihood), floored at -1. Over the
    budget it is ``-1 - (L0 - max_l0) / max_l0``: strictly below every
    admissible score, and lower the further over. A grid over ``l1_coef``,
    or over activations and their ``k``, then picks the best reconstruction
    among the models sparse enough, and ranks the others by how far over
    they are. It needs no labels.

    What it measures: reconstruction at a sparsity, on the scored rows. What
    it does not: anything about what the latents mean, whether they are
    alive or redundant, or whether the budget is the right L0 (too low an L0
    mixes features; see the module's notes). Over ``k`` alone it picks the
    largest ``k`` within the budget. Use :func:`make_sparse_probing_scorer`
    when labels are available, and :func:`core_metrics` for the rest.

    Parameters
    ----------
    max_l0 : float
        The budget: mean non-zeros per row, positive.

    Returns
    -------
    scorer : callable
        ``scorer(estimator, X, y=None) -> float``, in ``[-1, 1]`` within the
        budget, below -1 over it.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_sae.evaluate import make_l0_budget_scorer
    >>> X = np.random.default_rng(0).normal(size=(50, 4))
    >>> pca = PCA(n_components=4).fit(X)  # 4 non-zero codes a row, a perfect reconstruction
    >>> round(make_l0_budget_scorer(4)(pca, X), 6), make_l0_budget_scorer(2)(pca, X)
    (1.0, -2.0)
    """
    if not (isinstance(max_l0, Real) and not isinstance(max_l0, bool) and np.isfinite(max_l0) and max_l0 > 0):
        raise ValueError(f"max_l0 must be a positive finite number, got {max_l0!r}.")
    max_l0 = float(max_l0)

    def l0_budget_score(estimator, X, y=None):
        X = _as_rows(X)
        codes = estimator.transform(X)
        if not sp.issparse(codes):
            codes = np.asarray(codes)
        _check_n_rows(codes, X.shape[0], "The codes", "X")
        l0 = float(metrics.nonzero_counts(codes, axis=1).mean())
        if l0 > max_l0:
            return -1.0 - (l0 - max_l0) / max_l0
        explained_variance, _ = _reconstruction_statistics(*_reconstruction(estimator, X, codes))
        return max(-1.0, explained_variance)

    return l0_budget_score
