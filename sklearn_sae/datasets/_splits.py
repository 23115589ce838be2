"""`train_val_test_split`: one split of several arrays into train, validation and test parts."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from ._checks import _is_int


def train_val_test_split(
    *arrays, sizes=(0.8, 0.1, 0.1), random_state=None, shuffle=True
):
    """Split arrays into random train, validation and test subsets.

    A three-way `sklearn.model_selection.train_test_split`: it splits off
    the training set, then splits the rest into validation and test sets,
    so it accepts the same indexables (lists, NumPy arrays, SciPy sparse
    matrices, pandas objects) and keeps them aligned.

    Parameters
    ----------
    *arrays : sequence of indexables with the same length / shape[0]
        The data to split, e.g. ``ids`` and ``X`` from `load_embeddings`.
    sizes : tuple of 3 floats or 3 ints, default=(0.8, 0.1, 0.1)
        Sizes of the train, validation and test sets: either positive
        fractions summing to 1, or positive counts summing to the number of
        samples. Fractions are turned into counts by the largest remainder
        method, so 100 samples split 80/10/10 and 10 samples 8/1/1.
    random_state : int, RandomState instance or None, default=None
        Controls the shuffling. Pass an int for reproducible output across
        calls.
    shuffle : bool, default=True
        Whether to shuffle before splitting. If False the pieces are
        consecutive: the first samples train, the last ones test.

    Returns
    -------
    splitting : list of length 3 * len(arrays)
        ``[a_train, a_val, a_test, b_train, b_val, b_test, ...]``.

    Raises
    ------
    ValueError
        If no array is given, the arrays differ in length, ``sizes`` is
        invalid, or the data is too small for every piece to be non-empty.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.datasets import train_val_test_split
    >>> ids = np.array([f"P{i}" for i in range(10)])
    >>> X = np.arange(20).reshape(10, 2)
    >>> ids_train, ids_val, ids_test, X_train, X_val, X_test = (
    ...     train_val_test_split(ids, X, random_state=0))
    >>> len(ids_train), len(ids_val), len(ids_test)
    (8, 1, 1)
    >>> train_val_test_split([1, 2, 3, 4, 5], sizes=(3, 1, 1), shuffle=False)
    [[1, 2, 3], [4], [5]]
    """
    if not arrays:
        raise ValueError("At least one array required as input.")
    n_samples = _num_samples(arrays[0])
    n_train, n_val, n_test = _split_counts(sizes, n_samples)
    # One generator for both splits: an int seed gives the same pieces on
    # every call, and the two shuffles still differ from each other.
    rng = check_random_state(random_state) if shuffle else None
    first = train_test_split(
        *arrays,
        train_size=n_train,
        test_size=n_val + n_test,
        random_state=rng,
        shuffle=shuffle,
    )
    second = train_test_split(
        *first[1::2],
        train_size=n_val,
        test_size=n_test,
        random_state=rng,
        shuffle=shuffle,
    )
    splitting = []
    for train, val, test in zip(first[0::2], second[0::2], second[1::2]):
        splitting += [train, val, test]
    return splitting


def _num_samples(array):
    shape = getattr(array, "shape", None)
    if shape is not None and len(shape) > 0:
        return int(shape[0])
    return len(array)


def _split_counts(sizes, n_samples):
    """Return the train, validation and test counts for ``sizes``."""
    sizes = tuple(sizes)
    if len(sizes) != 3:
        raise ValueError(
            f"sizes must hold 3 values (train, val, test), got {sizes!r}."
        )
    if all(_is_int(size) for size in sizes):
        counts = [int(size) for size in sizes]
        if min(counts) < 1:
            raise ValueError(f"Integer sizes must be positive, got {sizes!r}.")
        if sum(counts) != n_samples:
            raise ValueError(
                f"Integer sizes must sum to n_samples={n_samples}, got "
                f"{sizes!r} summing to {sum(counts)}."
            )
        return counts
    if not all(isinstance(size, numbers.Real) and not _is_int(size)
               for size in sizes):
        raise ValueError(
            f"sizes must be 3 fractions or 3 integer counts, got {sizes!r}."
        )
    fractions = np.asarray(sizes, dtype=float)
    if not np.all((fractions > 0) & (fractions < 1)):
        raise ValueError(
            f"Fractional sizes must lie strictly between 0 and 1, got {sizes!r}."
        )
    if abs(fractions.sum() - 1) > 1e-6:
        raise ValueError(
            f"Fractional sizes must sum to 1, got {sizes!r} summing to "
            f"{fractions.sum():g}."
        )
    counts = _largest_remainder(fractions, n_samples)
    if min(counts) < 1:
        names = ("train", "validation", "test")
        empty = names[counts.index(min(counts))]
        raise ValueError(
            f"n_samples={n_samples} is too small for sizes={sizes!r}: the "
            f"{empty} set would be empty."
        )
    return counts


def _largest_remainder(fractions, n_samples):
    """Round ``fractions * n_samples`` to integer counts summing to it."""
    # Normalize away the tolerated 1e-6 so the floors never sum above n.
    exact = fractions / fractions.sum() * n_samples
    counts = np.floor(exact).astype(int)
    # Hand the samples the floors left over to the largest remainders, the
    # earlier piece first on ties (a stable sort keeps train before test).
    leftover = n_samples - counts.sum()
    by_remainder = np.argsort(-(exact - counts), kind="stable")
    counts[by_remainder[:leftover]] += 1
    return counts.tolist()


