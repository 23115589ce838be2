"""Turning protein labels into a sparse indicator matrix, one column per label.

Every interpretation function accepts labels in the same forms and calls
:func:`encode_labels`; the indicator it returns is what the statistics are
computed from.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import scipy.sparse as sp

__all__ = ["encode_labels"]

# How many offending label names an error message lists before "...".
_NAMES_SHOWN = 5


def encode_labels(labels):
    """Encode protein labels as a sparse boolean indicator, one column per label.

    Two forms are accepted; rows are matched to the codes by position (a
    pandas index is ignored).

    - **1-D categorical** (list, ndarray, ``pandas.Series`` or ``Categorical``):
      one class per protein, encoded one-vs-rest, one column per class that
      occurs. Classes are sorted (in category order for a categorical; in
      order of first appearance when they cannot be compared). A missing
      value (``None``, ``NaN``, ``pd.NA``, ``NaT``) is not a class: that
      protein is a negative for every class. Drop such rows first if
      "unannotated" must not count as "not this class". A boolean vector is
      categorical too (two classes, ``False`` and ``True``); pass it as one
      column of a 2-D indicator to get a single label.
    - **2-D multi-label indicator** of shape (n_samples, n_labels): a dense
      0/1 or boolean array, any SciPy sparse matrix or array, or a
      ``pandas.DataFrame`` of 0/1 or boolean columns whose column names name
      the labels. Labels of arrays and sparse matrices are named 0, 1, ...

    Parameters
    ----------
    labels : array-like, sparse matrix or DataFrame
        See above.

    Returns
    -------
    indicator : scipy.sparse.csc_matrix of dtype bool, shape (n_samples, n_labels)
        ``indicator[i, j]`` is True when protein ``i`` carries label ``j``.
    names : pandas.Index of length n_labels
        The label of each column.

    Raises
    ------
    ValueError
        If a 2-D indicator holds NaN or values other than 0 and 1, if a label
        has a single class (no positive or no negative protein), if there is
        no label at all, or if the labels are neither 1-D nor 2-D.
    """
    if isinstance(labels, pd.DataFrame):
        indicator, names = _encode_frame(labels)
    elif sp.issparse(labels):
        indicator, names = _encode_sparse_indicator(labels)
    else:
        values = _as_label_array(labels)
        if values.ndim == 1:
            indicator, names = _encode_categorical(labels if _is_categorical(labels) else values)
        elif values.ndim == 2:
            indicator, names = _encode_dense_indicator(values)
        else:
            raise ValueError(
                f"labels must be 1-D (one class per protein) or 2-D (an indicator, one column per label); "
                f"got shape {values.shape}."
            )
    _check_has_labels(names)
    _check_two_classes(indicator, names)
    return indicator, names


# --------------------------------------------------------------------------- helpers for the other modules


def _encode_labels_for_rows(labels, n_rows):
    """:func:`encode_labels`, then check that there is one row per row of the codes."""
    indicator, names = encode_labels(labels)
    if indicator.shape[0] != n_rows:
        raise ValueError(
            f"labels describe {indicator.shape[0]} proteins but codes has {n_rows} rows; "
            "they must describe the same proteins, in the same order."
        )
    return indicator, names


def _encode_labels_like(labels, names, n_rows):
    """Encode ``labels`` and keep exactly the columns ``names``, in that order.

    Labels beyond ``names`` are ignored (for a DataFrame they are not even
    read). A name that the labels lack is an error: its statistics would be
    undefined.
    """
    if isinstance(labels, pd.DataFrame):
        missing = [name for name in names if name not in labels.columns]
        _raise_if_missing(missing)
        labels = labels.loc[:, list(names)]
    indicator, found = _encode_labels_for_rows(labels, n_rows)
    position = pd.Index(found).get_indexer(pd.Index(names))
    _raise_if_missing([name for name, at in zip(names, position) if at < 0])
    return indicator[:, position], pd.Index(names)


def _raise_if_missing(missing):
    if missing:
        raise ValueError(
            f"labels lack {len(missing)} label(s) seen at fit: {_shown(missing)}. "
            "Give the same labels (classes or columns) at fit and evaluate; for a categorical label, "
            "every class needs at least one protein in each split (stratify the split)."
        )


def _shown(names) -> str:
    names = list(names)
    head = ", ".join(repr(name) for name in names[:_NAMES_SHOWN])
    return f"[{head}{', ...' if len(names) > _NAMES_SHOWN else ''}]"


# --------------------------------------------------------------------------- the encoders


def _is_categorical(labels) -> bool:
    return isinstance(labels, pd.Categorical) or (
        isinstance(labels, pd.Series) and isinstance(labels.dtype, pd.CategoricalDtype)
    )


def _as_label_array(labels) -> np.ndarray:
    if isinstance(labels, (pd.Series, pd.Index, pd.Categorical)):
        return labels.to_numpy() if not isinstance(labels, pd.Categorical) else np.asarray(labels)
    try:
        # A plain list keeps its items' types (np.asarray would turn [2, "x"] into strings).
        return np.asarray(labels, dtype=object if isinstance(labels, (list, tuple)) else None)
    except ValueError as exc:  # ragged nested lists
        raise ValueError(
            "labels must be 1-D (one class per protein) or a rectangular 2-D indicator; "
            "for a list of label sets per protein, encode it first, e.g. with "
            "sklearn.preprocessing.MultiLabelBinarizer(sparse_output=True), and pass a DataFrame or "
            "sparse matrix with the label names."
        ) from exc


def _encode_categorical(values):
    # factorize gives missing values the code -1, whatever their kind of missing.
    try:
        codes, classes = pd.factorize(values, sort=True)
    except TypeError:  # classes of types that do not compare, e.g. str and int
        codes, classes = pd.factorize(values, sort=False)
    codes = np.asarray(codes)
    n_rows = codes.shape[0]
    rows = np.flatnonzero(codes >= 0)
    indicator = sp.csc_matrix(
        (np.ones(rows.size, dtype=bool), (rows, codes[rows])), shape=(n_rows, len(classes)), dtype=bool
    )
    names = pd.Index(np.asarray(classes))
    if len(names) == 0 and n_rows > 0:
        raise ValueError("labels holds only missing values; there is no class to associate latents with.")
    return indicator, names


def _encode_dense_indicator(values):
    n_rows, n_labels = values.shape
    names = pd.RangeIndex(n_labels)
    columns = (_positive_rows(values[:, j], name) for j, name in enumerate(names))
    return _indicator_from_columns(columns, n_rows), names


def _encode_frame(frame):
    names = pd.Index(frame.columns)
    if names.has_duplicates:
        duplicated = names[names.duplicated()].unique()
        raise ValueError(
            f"labels DataFrame has duplicated column names {_shown(duplicated)}; each label needs its own name."
        )
    # One column at a time: a wide 0/1 frame is never copied into one dense array.
    columns = (_positive_rows(frame.iloc[:, j].to_numpy(), name) for j, name in enumerate(names))
    return _indicator_from_columns(columns, len(frame)), names


def _encode_sparse_indicator(matrix):
    if matrix.ndim != 2:
        raise ValueError(f"A sparse labels indicator must be 2-D; got shape {matrix.shape}.")
    indicator = sp.csc_matrix(matrix, copy=True)
    indicator.sum_duplicates()
    data = indicator.data
    if data.dtype != np.bool_:
        if not np.issubdtype(data.dtype, np.number) or np.iscomplexobj(data):
            raise ValueError(f"A labels indicator must be 0/1 or boolean; got dtype {data.dtype}.")
        column_of = np.repeat(np.arange(indicator.shape[1]), np.diff(indicator.indptr))
        if np.isnan(data).any():
            raise ValueError(
                f"labels indicator has NaN in column {int(column_of[np.isnan(data)][0])}; "
                "mark a label as absent with 0, or drop the protein."
            )
        invalid = (data != 0) & (data != 1)
        if invalid.any():
            raise ValueError(
                f"labels indicator must hold only 0 and 1; column {int(column_of[invalid][0])} holds "
                f"{data[invalid][0].item()!r}. For one class per protein, pass a 1-D array instead."
            )
    indicator.eliminate_zeros()
    indicator = indicator.astype(bool)
    indicator.sort_indices()
    return indicator, pd.RangeIndex(indicator.shape[1])


def _positive_rows(column, name) -> np.ndarray:
    """Rows where one indicator column is 1, after checking that it holds only 0/1 or booleans."""
    if column.dtype == np.bool_:
        return np.flatnonzero(column)
    if column.dtype == object:
        missing = pd.isna(column)
        if missing.any():
            raise _missing_value_error(name)
        try:
            column = column.astype(np.float64)
        except (TypeError, ValueError):
            raise ValueError(_not_binary_message(name, column[~np.isin(column, [0, 1, True, False])][0])) from None
    if not np.issubdtype(column.dtype, np.number) or np.iscomplexobj(column):
        raise ValueError(_not_binary_message(name, column[0]))
    if np.issubdtype(column.dtype, np.floating) and np.isnan(column).any():
        raise _missing_value_error(name)
    invalid = (column != 0) & (column != 1)
    if invalid.any():
        raise ValueError(_not_binary_message(name, column[invalid][0]))
    return np.flatnonzero(column)


def _missing_value_error(name) -> ValueError:
    return ValueError(
        f"label {name!r} has missing values (NaN/None/NA); an indicator must say 0 or 1 for every protein. "
        "Fill them (e.g. with 0 for 'not annotated') or drop those proteins."
    )


def _not_binary_message(name, value) -> str:
    value = value.item() if isinstance(value, np.generic) else value  # 2, not np.int64(2)
    return (
        f"label {name!r} must hold only 0/1 or booleans; found {value!r}. "
        "For one class per protein, pass that column as a 1-D Series instead."
    )


def _indicator_from_columns(columns, n_rows) -> sp.csc_matrix:
    indptr = [0]
    indices = []
    for rows in columns:
        indices.append(rows.astype(np.int64, copy=False))
        indptr.append(indptr[-1] + rows.size)
    indices = np.concatenate(indices) if indices else np.zeros(0, dtype=np.int64)
    data = np.ones(indices.size, dtype=bool)
    return sp.csc_matrix((data, indices, np.asarray(indptr, dtype=np.int64)), shape=(n_rows, len(indptr) - 1))


# --------------------------------------------------------------------------- checks on the result


def _check_has_labels(names) -> None:
    if len(names) == 0:
        raise ValueError("labels has no label column; give at least one label.")


def _check_two_classes(indicator, names) -> None:
    n_rows = indicator.shape[0]
    n_pos = np.diff(indicator.indptr)
    single = (n_pos == 0) | (n_pos == n_rows)
    if single.any():
        raise ValueError(
            f"{int(single.sum())} label(s) have a single class over the {n_rows} proteins (no positive or "
            f"no negative): {_shown(names[single])}. Their association with a latent is undefined; drop them."
        )
