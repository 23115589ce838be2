"""`load_protein_labels`: per-protein label tables keyed by accession."""

from __future__ import annotations

import errno
import os

import numpy as np
import pandas as pd

from ._checks import _check_ids, _first_duplicate, _missing_message
from ._id_columns import is_index_column


_ID_COLUMN = "accession"
_CATEGORICAL_COLUMNS = ("location", "split")
_CLASS_SUFFIX = "_class"
# Classes of the shipped files in their meaningful order (data/README.md), so
# that tables and plots read "short, medium, long" rather than alphabetically.
# Values not listed here are appended in sorted order.
_CLASS_ORDERS = {
    "split": ("train", "eval", "test"),
    "length_class": ("short", "medium", "long"),
    "charge_class": ("acidic", "neutral", "basic"),
    "gravy_class": ("hydrophilic", "intermediate", "hydrophobic"),
    "stability_class": ("stable", "unstable"),
    "tm_class": ("0", "1", "2+"),
}


def load_protein_labels(path, *, ids=None):
    """Load a per-protein label table, such as ``data/per-protein.labels.csv``.

    Reads a CSV file with one row per protein and an ``accession`` column:
    the labels file (``location``, ``split``, ``length``) or the properties
    file (numeric properties, ``*_class`` columns and 0/1 flags). Only the
    empty field counts as missing: strings such as ``"NA"`` or ``"None"``
    are kept as they are. A column without a header (the index
    ``DataFrame.to_csv`` writes by default) or named ``index`` is a row
    number, not a label, and is left out.

    Parameters
    ----------
    path : str or os.PathLike
        The CSV file to read.
    ids : sequence of str, default=None
        Accessions to return, in this order, e.g. the ``ids`` returned by
        `load_embeddings`, so that row ``i`` describes embedding ``i``.
        ``None`` returns every row in the file's order.

    Returns
    -------
    labels : pandas.DataFrame
        Indexed by ``accession`` (string dtype). ``location``, ``split`` and
        every column whose name ends in ``_class`` are categoricals whose
        categories are strings (``tm_class`` holds ``"0"``, ``"1"`` and
        ``"2+"``). The columns of the shipped files list their documented
        classes first, in their order (e.g. ``short, medium, long``), even
        those absent from the file, so that files and subsets of them share
        categories; other values follow, sorted. Other columns keep the
        types pandas infers (the 0/1 flags are integers).

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file has no ``accession`` column, an empty or repeated
        accession, or if some of the requested ``ids`` are not in the file
        (the message names up to five of them).

    Examples
    --------
    >>> import os, tempfile
    >>> from sklearn_sae.datasets import load_protein_labels
    >>> path = os.path.join(tempfile.mkdtemp(), "labels.csv")
    >>> with open(path, "w") as f:
    ...     _ = f.write("accession,location,split\\nP1,Nucleus,train\\nP2,Membrane,test\\n")
    >>> labels = load_protein_labels(path, ids=["P2", "P1"])
    >>> labels["location"].tolist()
    ['Membrane', 'Nucleus']
    >>> labels["split"].cat.categories.tolist()  # the documented classes, even when absent
    ['train', 'eval', 'test']
    """
    path = _check_readable_file(path)
    wanted = None if ids is None else _check_ids(ids, what="ids")
    columns = pd.read_csv(path, nrows=0).columns
    if _ID_COLUMN not in columns:
        raise ValueError(
            f"Label file {path!r} has no {_ID_COLUMN!r} column; its columns are {list(columns)}."
        )
    categorical = [name for name in columns if name in _CATEGORICAL_COLUMNS or name.endswith(_CLASS_SUFFIX)]
    # Class columns are read as text, so that "0", "1", "2+" never become numbers.
    frame = pd.read_csv(
        path,
        dtype={name: str for name in [_ID_COLUMN, *categorical]},
        keep_default_na=False,
        na_values=[""],
    )
    frame = frame.set_index(_check_accessions(frame[_ID_COLUMN], path))
    frame = frame.drop(columns=[_ID_COLUMN, *(name for name in frame.columns if is_index_column(name))])
    for name in categorical:
        frame[name] = _as_categorical(frame[name])
    if wanted is None:
        return frame
    missing = [acc for acc in wanted if acc not in frame.index]
    if missing:
        raise ValueError(_missing_message(path, missing))
    return frame.loc[list(wanted)]


def _check_readable_file(path):
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise FileNotFoundError(errno.ENOENT, "Label file does not exist", path)
    return path


def _check_accessions(accessions, path):
    """Return the accession column as a string index, after checking it is unique and complete."""
    empty = np.flatnonzero(accessions.isna().to_numpy())
    if empty.size:
        # + 2: one for the header line, one because file lines count from 1.
        raise ValueError(f"Label file {path!r} has an empty {_ID_COLUMN!r} on line {empty[0] + 2}.")
    duplicate = _first_duplicate(accessions.to_numpy())
    if duplicate is not None:
        raise ValueError(f"Label file {path!r} lists accession {duplicate!r} more than once.")
    return pd.Index(accessions, dtype=str, name=_ID_COLUMN)


def _as_categorical(values):
    """``values`` as a categorical, in the documented class order where there is one."""
    present = sorted(values.dropna().unique())
    known = _CLASS_ORDERS.get(values.name, ())
    categories = list(known) + [value for value in present if value not in known]
    return pd.Categorical(values, categories=categories)
