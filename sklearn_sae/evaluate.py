"""Evidence for choosing a sparse autoencoder: core statistics, sparse probing, ground truth, scorers.

Torch-free (NumPy, SciPy, pandas, scikit-learn): everything works on codes,
labels and a fitted estimator's public face (``transform``, ``reconstruct``
or ``inverse_transform``, ``components_``), so it applies to any transformer
with those, PCA included. Results are tidy DataFrames.

The measures follow the label-aware, LLM-free part of what the field has
converged on (SAEBench, Karvonen et al. 2025; the sae-probes study,
Kantamneni et al. 2025):

- **Core statistics** (:func:`core_metrics`): explained variance, mean L0,
  the fraction of latents alive and of dense latents (firing on more than 1%
  and 10% of the rows), the mean over atoms of the largest absolute cosine
  with another atom, and the relative reconstruction bias (the scale
  ``gamma`` that minimises ``||gamma * X_hat - X||``; below 1 means
  shrinkage).
- **Sparse probing** (:func:`sparse_probing`), SAEBench's protocol: each
  class is a one-vs-rest task; latents are ranked by the absolute difference
  of their mean over the class's training rows and over the other training
  rows; the top ``k`` are kept; an L2 logistic regression (``C=1``,
  ``max_iter=1000``, features not standardised) is fitted on those columns
  of the training rows and scored on the test rows (accuracy and F1 of the
  class). The same protocol on the raw dimensions and a probe on all of
  them are the references: probes on SAE codes do not reliably beat raw
  activations, so the comparison is measured, not assumed.
- **Feature splitting** (:func:`feature_splitting`): a concept is split when
  the k-latent probe's F1 rises by at least 0.03 over the probe with fewer
  latents.
- **Ground truth** (:func:`ground_truth_recovery`) on synthetic data with
  known atoms: Hungarian matching of true and learned atoms by cosine, the
  mean matched cosine (the "MCC" of SAE papers) and the fraction recovered.
- **Scorers for model selection** (:func:`make_sparse_probing_scorer`,
  :func:`make_l0_budget_scorer`). The estimator's own ``score`` (explained
  variance) only grows with ``k``, so ``GridSearchCV`` over ``k`` with it
  always picks the densest model. Sparse probing does not: a 2025 study of
  L0 found that most SAEs are trained at too low an L0 and that the peak of
  sparse probing marks the right one.
"""

from __future__ import annotations

import warnings
from numbers import Integral

import numpy as np
import pandas as pd
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import StratifiedKFold

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

_COSINE_BLOCK_ROWS = 1024
"""Atoms compared at a time in :func:`core_metrics`, so that 32k latents never make a 32k x 32k matrix."""


# ----------------------------------------------------------------------------- core statistics


def core_metrics(estimator, X, *, codes=None) -> pd.DataFrame:
    """The core statistics of a fitted estimator on rows ``X``, as a one-row DataFrame.

    Parameters
    ----------
    estimator : fitted transformer
        A fitted :class:`~sklearn_sae.SparseAutoencoderTransformer`, or any
        transformer with ``transform``, ``components_`` and ``reconstruct``
        or ``inverse_transform`` (whose output must be in the input's units).
    X : array-like of shape (n_samples, n_features)
        The rows to measure on, e.g. a test split.
    codes : array-like or sparse matrix of shape (n_samples, n_latents), default=None
        ``estimator.transform(X)``, when already computed. CSR codes are
        never densified.

    Returns
    -------
    metrics : pandas.DataFrame
        One row with ``explained_variance`` (``1 - FVU``), ``l0`` (mean
        non-zeros per row), ``alive`` (fraction of latents non-zero on a
        row of ``X``), ``dense_1pct`` and ``dense_10pct`` (fractions of
        latents firing on more than 1% and 10% of the rows),
        ``mean_max_cosine`` (over atoms, the largest absolute cosine with
        another atom) and ``relative_reconstruction_bias``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_sae.evaluate import core_metrics
    >>> X = np.random.default_rng(0).normal(size=(100, 6))
    >>> table = core_metrics(PCA(n_components=3).fit(X), X)
    >>> float(table.loc[0, "mean_max_cosine"]) < 1e-6  # principal axes are orthogonal
    True
    """
    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    codes = estimator.transform(X) if codes is None else codes
    _check_codes_rows(codes, X.shape[0], "codes")
    reconstruct = getattr(estimator, "reconstruct", None)
    X_hat = np.asarray(reconstruct(X) if reconstruct is not None else estimator.inverse_transform(codes), np.float64)
    residual = float(np.square(X_hat - X).sum())
    total = float(np.square(X - X.mean(axis=0)).sum())
    fvu = residual / total if total > 0 else (0.0 if residual == 0 else np.inf)
    density = _firing_fraction(codes)
    gamma = float((X_hat * X).sum() / max(float(np.square(X_hat).sum()), np.finfo(np.float64).tiny))
    return pd.DataFrame([{
        "explained_variance": 1.0 - fvu,
        "l0": float(_nonzeros_per_row(codes).mean()),
        "alive": float((density > 0).mean()),
        "dense_1pct": float((density > 0.01).mean()),
        "dense_10pct": float((density > 0.10).mean()),
        "mean_max_cosine": _mean_max_cosine(np.asarray(estimator.components_, dtype=np.float64)),
        "relative_reconstruction_bias": gamma,
    }])


def _nonzeros_per_row(codes) -> np.ndarray:
    if sp.issparse(codes):
        codes = sp.csr_matrix(codes)
        codes.eliminate_zeros()
        return np.diff(codes.indptr)
    return (np.asarray(codes) != 0).sum(axis=1)


def _firing_fraction(codes) -> np.ndarray:
    """Per latent, the fraction of rows where it is non-zero."""
    if sp.issparse(codes):
        codes = sp.csc_matrix(codes)
        codes.eliminate_zeros()
        return np.diff(codes.indptr) / codes.shape[0]
    return (np.asarray(codes) != 0).mean(axis=0)


def _mean_max_cosine(atoms: np.ndarray) -> float:
    """Mean over atoms of the largest |cosine| with any other atom, a block of atoms at a time."""
    if atoms.shape[0] < 2:
        return 0.0
    norms = np.linalg.norm(atoms, axis=1, keepdims=True)
    unit = atoms / np.where(norms > 0, norms, 1.0)
    largest = np.empty(len(unit))
    for start in range(0, len(unit), _COSINE_BLOCK_ROWS):
        block = np.abs(unit[start : start + _COSINE_BLOCK_ROWS] @ unit.T)
        block[np.arange(len(block)), np.arange(start, start + len(block))] = -np.inf  # not with itself
        largest[start : start + len(block)] = block.max(axis=1)
    return float(largest.mean())


# ----------------------------------------------------------------------------- sparse probing


def _class_mean_differences(features, y, classes) -> np.ndarray:
    """``|mean over rows of class c - mean over the other rows|`` per class (rows) and feature (columns)."""
    n_rows = features.shape[0]
    indicator = sp.csr_matrix((np.ones(n_rows), (np.searchsorted(classes, y), np.arange(n_rows))),
                              shape=(len(classes), n_rows))
    class_sums = indicator @ features  # one sparse product for every class: no per-latent loop
    class_sums = class_sums.toarray() if sp.issparse(class_sums) else np.asarray(class_sums, dtype=np.float64)
    counts = np.asarray(indicator.sum(axis=1), dtype=np.float64)
    totals = class_sums.sum(axis=0, keepdims=True)
    return np.abs(class_sums / counts - (totals - class_sums) / (n_rows - counts))


def _top_features(differences: np.ndarray, k: int) -> np.ndarray:
    """The ``k`` columns with the largest differences; ties go to the lower column index."""
    return np.argsort(-differences, kind="stable")[:k]


def _probe(train, train_positive, test, test_positive, columns, *, C, max_iter, standardize):
    train, test = _dense(train[:, columns]), _dense(test[:, columns])  # k columns: small
    if standardize:
        # An L2 penalty is not scale-free: scale every column alike, so that embeddings of variance 1e-3
        # are not penalised into predicting one class while codes of order 1 are not.
        mean, scale = train.mean(axis=0), train.std(axis=0)
        scale[scale == 0] = 1.0
        train, test = (train - mean) / scale, (test - mean) / scale
    model = LogisticRegression(C=C, max_iter=max_iter).fit(train, train_positive)
    predicted = model.predict(test)
    return accuracy_score(test_positive, predicted), f1_score(test_positive, predicted, zero_division=0.0)


def _dense(block):
    return block.toarray() if sp.issparse(block) else np.asarray(block)


def _check_ks(ks) -> tuple[int, ...]:
    ks = tuple(ks)
    if not ks or not all(isinstance(k, Integral) and not isinstance(k, bool) and k >= 1 for k in ks):
        raise ValueError(f"ks must be a non-empty sequence of positive ints, got {ks!r}.")
    if sorted(set(ks)) != list(ks):
        raise ValueError(f"ks must be increasing and without repeats, got {ks!r}.")
    return tuple(int(k) for k in ks)


def _check_codes_rows(codes, n_rows, name):
    if codes.ndim != 2 or codes.shape[0] != n_rows:
        raise ValueError(f"{name} has shape {codes.shape}; expected {n_rows} rows, one per row of the labels.")


def _as_features(array, name):
    if sp.issparse(array):
        return sp.csr_matrix(array, dtype=np.float64)
    array = np.asarray(array, dtype=np.float64)
    if array.ndim != 2:
        raise ValueError(f"{name} must be 2-D, got shape {array.shape}.")
    return array


def sparse_probing(codes_train, y_train, codes_test, y_test, ks=(1, 2, 5), *, X_train=None, X_test=None,
                   classes=None, C=1.0, max_iter=1000, standardize=True, min_class_size=2) -> pd.DataFrame:
    """k-sparse probes of every class, on SAE latents and, as references, on raw dimensions.

    For each class ``c`` (one-vs-rest: ``y == c``), the latents are ranked by
    ``|mean over the training rows of c - mean over the other training rows|``
    (ties broken by the lower latent index); for each ``k`` in ``ks`` an L2
    logistic regression (``LogisticRegression(C=C, max_iter=max_iter)``,
    features not standardised, as in SAEBench) is fitted on the top ``k``
    latents of the training rows and scored on the test rows. The test rows
    reach neither the ranking nor the probe. ``k`` larger than the number of
    latents is clipped to it.

    One departure from SAEBench: the chosen columns are standardised (by
    their training mean and standard deviation) before the probe, by
    default. SAEBench probes language-model activations and SAE codes at
    their natural scales, but an L2-penalised probe is not scale-free:
    protein embeddings of variance 1e-3 (the shipped NEAR vectors) would be
    penalised into predicting a single class while codes of order 1 would
    not, which would make the raw-dimension reference lose for its units
    alone. ``standardize=False`` gives SAEBench's probe.

    Parameters
    ----------
    codes_train, codes_test : array-like or sparse matrix of shape (n_rows, n_latents)
        Codes of the training and test rows (CSR is kept sparse).
    y_train, y_test : array-like of shape (n_rows,)
        Class labels.
    ks : sequence of int, default=(1, 2, 5)
        Latents per probe, increasing.
    X_train, X_test : array-like of shape (n_rows, n_features), default=None
        The raw rows. When given, the table also holds ``"raw_top_k"`` (the
        same protocol on the raw dimensions) and ``"raw_full"`` (a probe on
        all of them; its ``k`` is ``n_features``).
    classes : sequence, default=None
        The classes to probe; ``None`` is every class of ``y_train``.
    C, max_iter : float, int
        Of the logistic regression.
    standardize : bool, default=True
        Scale the chosen columns to zero mean and unit variance on the
        training rows before the probe (see above).
    min_class_size : int, default=2
        A class needs at least this many positive and negative rows in both
        splits; the others are skipped with a warning naming them.

    Returns
    -------
    table : pandas.DataFrame
        One row per representation, class and ``k``: ``representation``
        (``"sae"``, ``"raw_top_k"``, ``"raw_full"``), ``class``, ``k``,
        ``accuracy``, ``f1``, ``n_train_positive``, ``n_test_positive`` and
        ``features`` (the columns used, best first).

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.evaluate import sparse_probing
    >>> rng = np.random.default_rng(0)
    >>> y = rng.integers(0, 2, size=200)
    >>> codes = np.column_stack([rng.random(200), y * 3.0, rng.random(200)])  # latent 1 is the label
    >>> table = sparse_probing(codes[:150], y[:150], codes[150:], y[150:], ks=(1,))
    >>> best = table[table["class"] == 1].iloc[0]
    >>> best["features"], float(best["f1"])
    ((1,), 1.0)
    """
    ks = _check_ks(ks)
    codes_train, codes_test = _as_features(codes_train, "codes_train"), _as_features(codes_test, "codes_test")
    y_train, y_test = np.asarray(y_train), np.asarray(y_test)
    _check_codes_rows(codes_train, len(y_train), "codes_train")
    _check_codes_rows(codes_test, len(y_test), "codes_test")
    if codes_train.shape[1] != codes_test.shape[1]:
        raise ValueError(f"codes_train has {codes_train.shape[1]} columns but codes_test {codes_test.shape[1]}.")
    representations = {"sae": (codes_train, codes_test)}
    if (X_train is None) != (X_test is None):
        raise ValueError("Give both X_train and X_test, or neither.")
    if X_train is not None:
        X_train, X_test = _as_features(X_train, "X_train"), _as_features(X_test, "X_test")
        _check_codes_rows(X_train, len(y_train), "X_train")
        _check_codes_rows(X_test, len(y_test), "X_test")
        representations["raw_top_k"] = (X_train, X_test)
    probed = _probed_classes(y_train, y_test, classes, min_class_size)
    all_classes = np.unique(y_train)
    rows = []
    for representation, (train, test) in representations.items():
        differences = _class_mean_differences(train, y_train, all_classes)
        for label in probed:
            ranking = differences[np.searchsorted(all_classes, label)]
            train_positive, test_positive = y_train == label, y_test == label
            probes = [(representation, k, _top_features(ranking, min(k, train.shape[1]))) for k in ks]
            if representation == "raw_top_k":  # and the reference on every raw dimension
                probes.append(("raw_full", train.shape[1], np.arange(train.shape[1])))
            for name, k, columns in probes:
                accuracy, f1 = _probe(train, train_positive, test, test_positive, columns, C=C, max_iter=max_iter,
                                      standardize=standardize)
                accuracy, f1 = float(accuracy), float(f1)
                rows.append({
                    "representation": name,
                    "class": label,
                    "k": k,
                    "accuracy": accuracy,
                    "f1": f1,
                    "n_train_positive": int(train_positive.sum()),
                    "n_test_positive": int(test_positive.sum()),
                    "features": tuple(int(column) for column in columns),
                })
    return pd.DataFrame(rows, columns=[
        "representation", "class", "k", "accuracy", "f1", "n_train_positive", "n_test_positive", "features",
    ])


def _probed_classes(y_train, y_test, classes, min_class_size):
    candidates = list(np.unique(y_train)) if classes is None else list(classes)
    kept, skipped = [], []
    for label in candidates:
        counts = [(y == label).sum() for y in (y_train, y_test)]
        others = [len(y) - count for y, count in zip((y_train, y_test), counts)]
        (kept if min(counts + others) >= min_class_size else skipped).append(label)
    if skipped:
        warnings.warn(
            f"sparse_probing skips {len(skipped)} class(es) with fewer than {min_class_size} positive or negative "
            f"rows in the training or test rows: {skipped[:5]}{' ...' if len(skipped) > 5 else ''}.",
            UserWarning,
            stacklevel=3,
        )
    return kept


def feature_splitting(probing_table, *, threshold=SPLIT_F1_GAIN) -> pd.DataFrame:
    """Which concepts the SAE splits over several latents, from a :func:`sparse_probing` table.

    SAEBench's rule: a concept is split when adding latents raises the probe's
    F1 by at least ``threshold`` (0.03). It is defined for consecutive ``k``;
    with gaps in ``ks`` (such as 2 to 5) the gain is that of the whole step,
    and ``split_k`` names the larger ``k`` of the first step that passes.

    Parameters
    ----------
    probing_table : pandas.DataFrame
        The output of :func:`sparse_probing` (its ``"sae"`` rows are used).
    threshold : float, default=0.03

    Returns
    -------
    splitting : pandas.DataFrame
        One row per class: ``class``, ``split`` (bool), ``split_k`` (a
        nullable integer, ``<NA>`` when not split), ``largest_gain`` and ``gains`` (a dict from ``k`` to the
        gain over the previous ``k``).
    """
    sae = probing_table[probing_table["representation"] == "sae"]
    rows = []
    for label, group in sae.groupby("class", sort=False):
        f1 = group.sort_values("k").set_index("k")["f1"]
        gains = {int(k): float(gain) for k, gain in f1.diff().iloc[1:].items()}
        split_k = next((k for k, gain in gains.items() if gain >= threshold), None)
        rows.append({"class": label, "split": split_k is not None, "split_k": split_k,
                     "largest_gain": max(gains.values(), default=float("nan")), "gains": gains})
    splitting = pd.DataFrame(rows, columns=["class", "split", "split_k", "largest_gain", "gains"])
    return splitting.astype({"split_k": "Int64"})


# ----------------------------------------------------------------------------- ground truth


def ground_truth_recovery(true_atoms, components, *, threshold=0.9) -> pd.DataFrame:
    """Match true atoms to learned ones (Hungarian algorithm on cosine) and score the match.

    Each true atom is paired with at most one learned atom and vice versa, so
    that the total cosine is largest (``scipy.optimize.linear_sum_assignment``).
    The cosine is signed: codes are non-negative, so an atom pointing the
    other way is a different feature.

    Parameters
    ----------
    true_atoms : array-like of shape (n_atoms, n_features)
    components : array-like of shape (n_latents, n_features)
        The learned atoms, e.g. ``estimator.components_``.
    threshold : float, default=0.9
        The cosine at which a true atom counts as recovered.

    Returns
    -------
    matches : pandas.DataFrame
        One row per true atom: ``atom``, ``latent`` (the matched latent, -1
        when there are fewer latents than atoms and it got none), ``cosine``
        (0 when unmatched) and ``recovered``. ``matches.attrs`` holds the
        summary: ``"mcc"``, the mean matched cosine over the true atoms, and
        ``"fraction_recovered"``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.evaluate import ground_truth_recovery
    >>> atoms = np.eye(3)
    >>> matches = ground_truth_recovery(atoms, atoms[[2, 0, 1]])
    >>> matches["latent"].tolist(), matches.attrs["mcc"]
    ([1, 2, 0], 1.0)
    """
    true_atoms = np.asarray(true_atoms, dtype=np.float64)
    components = np.asarray(components, dtype=np.float64)
    if true_atoms.ndim != 2 or components.ndim != 2 or true_atoms.shape[1] != components.shape[1]:
        raise ValueError(
            f"true_atoms {true_atoms.shape} and components {components.shape} must be 2-D with the same width."
        )
    cosines = _unit_rows(true_atoms) @ _unit_rows(components).T
    atom_index, latent_index = linear_sum_assignment(cosines, maximize=True)
    latent = np.full(len(true_atoms), -1)
    cosine = np.zeros(len(true_atoms))
    latent[atom_index] = latent_index
    cosine[atom_index] = cosines[atom_index, latent_index]
    matches = pd.DataFrame({"atom": np.arange(len(true_atoms)), "latent": latent, "cosine": cosine,
                            "recovered": cosine >= threshold})
    matches.attrs["mcc"] = float(cosine.mean())
    matches.attrs["fraction_recovered"] = float(matches["recovered"].mean())
    return matches


def _unit_rows(atoms: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(atoms, axis=1, keepdims=True)
    return atoms / np.where(norms > 0, norms, 1.0)


# ----------------------------------------------------------------------------- scorers


def make_sparse_probing_scorer(ks=(1, 2, 5), *, metric="f1", n_splits=3, random_state=0, C=1.0, max_iter=1000,
                               standardize=True):
    """A scorer for ``GridSearchCV``: sparse probing on the rows it scores, as an inner cross-validation.

    ``scorer(estimator, X, y)`` (scikit-learn's convention; higher is
    better) encodes ``X``, the rows the search scores on, with
    ``estimator.transform`` (the SAE, or a pipeline that ends with it), and
    splits them into ``n_splits`` stratified parts. For each part, the
    latents are ranked and the probes fitted on the other parts
    (:func:`sparse_probing`) and scored on it, so that no row it is scored
    on reaches the ranking or the probe it is scored with. The score is the
    mean ``metric`` (``"f1"`` or ``"accuracy"``) over the parts, the classes
    and ``ks``.

    Classes with fewer than ``n_splits`` rows in ``X`` are left out (their
    rows stay, as negatives of the others); when no class is left the
    scorer warns and returns NaN, which ``GridSearchCV``'s ``error_score``
    handles.

    Parameters
    ----------
    ks : sequence of int, default=(1, 2, 5)
    metric : {"f1", "accuracy"}, default="f1"
    n_splits : int, default=3
        Parts of the inner cross-validation.
    random_state : int, default=0
        Shuffles the rows before they are split.
    C, max_iter, standardize
        As for :func:`sparse_probing`.

    Returns
    -------
    scorer : callable

    Examples
    --------
    >>> from sklearn.model_selection import GridSearchCV
    >>> from sklearn_sae import SparseAutoencoderTransformer
    >>> from sklearn_sae.evaluate import make_sparse_probing_scorer
    >>> search = GridSearchCV(  # doctest: +SKIP
    ...     SparseAutoencoderTransformer(), {"k": [8, 32, 128]}, scoring=make_sparse_probing_scorer()
    ... ).fit(X, y)
    """
    ks = _check_ks(ks)
    if metric not in ("f1", "accuracy"):
        raise ValueError(f"metric must be 'f1' or 'accuracy', got {metric!r}.")
    if not (isinstance(n_splits, Integral) and n_splits >= 2):
        raise ValueError(f"n_splits must be an int of at least 2, got {n_splits!r}.")

    def sparse_probing_score(estimator, X, y):
        if y is None:
            raise ValueError("The sparse-probing scorer needs labels: call fit(X, y) on the search.")
        y = np.asarray(y)
        codes = estimator.transform(X)
        labels, counts = np.unique(y, return_counts=True)
        classes = labels[counts >= n_splits]
        if len(classes) == 0 or len(classes) == len(labels) == 1:
            warnings.warn(
                f"The sparse-probing scorer found no class with {n_splits} rows or more (and another class to "
                "tell it from) among the rows it scores; the score is NaN.", UserWarning, stacklevel=2,
            )
            return float("nan")
        # Stratify on the probed classes; the rare ones are spread as one "other" stratum.
        strata = np.where(np.isin(y, classes), y.astype(object), "__other__").astype(str)
        strata_labels, strata_counts = np.unique(strata, return_counts=True)
        strata = np.where(np.isin(strata, strata_labels[strata_counts < n_splits]), "__rare__", strata)
        folds = StratifiedKFold(n_splits=n_splits, shuffle=True, random_state=random_state)
        scores = []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # a class absent from one part is skipped there
            for train, test in folds.split(np.zeros(len(y)), strata if len(np.unique(strata)) > 1 else y):
                table = sparse_probing(_rows(codes, train), y[train], _rows(codes, test), y[test], ks,
                                       classes=classes, C=C, max_iter=max_iter, standardize=standardize,
                                       min_class_size=1)
                if len(table):
                    scores.append(table[metric].mean())
        return float(np.mean(scores)) if scores else float("nan")

    return sparse_probing_score


def _rows(codes, index):
    return codes[index] if sp.issparse(codes) else np.asarray(codes)[index]


def make_l0_budget_scorer(max_l0):
    """A scorer that compares models at the same sparsity: explained variance within an L0 budget.

    ``scorer(estimator, X, y=None)`` is the estimator's explained variance on
    ``X`` (``1 - FVU``) when its codes have at most ``max_l0`` non-zeros per
    row on average, and ``-(1 + (l0 - max_l0) / max_l0)`` otherwise: below
    -1, so below any admissible model that does better than reconstructing
    every row as the mean row displaced by twice the spread. A grid over
    ``l1_coef``, or over activations at several ``k``, then picks the best
    reconstruction among the models sparse enough. It needs no labels.

    It measures reconstruction at a sparsity, nothing about what the latents
    mean: over ``k`` alone it picks the largest ``k`` within the budget. Use
    :func:`make_sparse_probing_scorer` when labels are available.

    Parameters
    ----------
    max_l0 : float
        The budget of mean non-zeros per row.

    Returns
    -------
    scorer : callable
    """
    if not max_l0 > 0:
        raise ValueError(f"max_l0 must be positive, got {max_l0!r}.")

    def l0_budget_score(estimator, X, y=None):
        l0 = float(_nonzeros_per_row(estimator.transform(X)).mean())
        if l0 > max_l0:
            return -(1.0 + (l0 - max_l0) / max_l0)
        return float(estimator.score(X))

    return l0_budget_score
