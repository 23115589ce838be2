"""Which column of a table holds the protein ids: the one rule every reader of tables and archives follows.

A row number or an id read as an embedding dimension is a silent wrong
result that no later check catches (it is a finite number like the rest),
so the readers never guess in its favour:

- A column without a header (the index ``DataFrame.to_csv`` writes by
  default; pandas reads it back as ``"Unnamed: 0"``), a pandas index that
  Parquet stored, and a column named ``index`` (what ``reset_index`` adds)
  are the table's *index*: never values. The index holds the ids when no
  other column does.
- The *id column* is the one named ``id_column`` when given; otherwise the
  one column that is named like an identifier (`ID_NAMES`), holds text, or
  holds unique integers before the first float column. With ``id_column``
  given, the other such columns are left out with the index: never values.
- Two candidates (or two index columns and no id column) are ambiguous: a
  ``ValueError`` names them and says to pass ``id_column=``. A table with
  neither gets its row numbers ``"0"``, ``"1"``, ... as ids, every column
  being a dimension.

Arrays without column names (``.npy``, ``.npz``, the HDF5 matrix) cannot say
which column is what; a first column holding exactly the row numbers gets a
warning (`warn_if_row_numbers`).
"""

from __future__ import annotations

import re

import numpy as np

from .._warnings import warn_user

ID_NAMES = frozenset({
    "id", "ids", "accession", "accessions", "protein", "proteins", "protein_id", "protein_ids", "uniprot",
    "uniprot_id", "uniprot_accession", "entry", "name", "names", "identifier", "sequence_id", "seq_id",
})
"""Column (or ``.npz`` array) names read as protein ids, compared case-insensitively, ``-`` and spaces as ``_``."""

_UNNAMED = re.compile(r"Unnamed: \d+(_level_\d+)?")  # how pandas names a column whose header cell is empty
# Fewer rows than this cannot tell a row-number column from data (a binary column 0, 1 is ordinary).
_MIN_ROWS_FOR_ROW_NUMBERS = 3


def is_id_name(name) -> bool:
    """Whether ``name`` (a column or array name) reads as a protein identifier."""
    return isinstance(name, str) and re.sub(r"[\s-]+", "_", name.strip().lower()) in ID_NAMES


def is_index_column(name) -> bool:
    """Whether ``name`` is what pandas calls the index it wrote: an empty header, or ``index``."""
    return name is None or (isinstance(name, str) and (name == "index" or _UNNAMED.fullmatch(name) is not None))


def split_id_column(table, *, id_column=None, where: str):
    """``(ids, values)``: the table's ids as ``str`` and its value columns, by the rule of this module.

    Parameters
    ----------
    table : pandas.DataFrame
        As read, with a Parquet file's stored index already turned into
        columns (see `stored_index_as_columns`).
    id_column : hashable, default=None
        The column holding the ids; ``None`` finds it.
    where : str
        Names the file in error messages.

    Returns
    -------
    ids : list of str
    values : pandas.DataFrame
        Every column but the id column, the index columns and (with
        ``id_column``) the other columns that could hold ids.
    """
    columns = list(table.columns)
    index_columns = [name for name in columns if is_index_column(name) and name != id_column]
    candidates = _id_candidates(table, index_columns)
    if id_column is not None:
        if id_column not in table.columns:
            raise ValueError(f"{where} has no column {id_column!r} for id_column=; its columns are "
                             f"{_listed(columns)}.")
        chosen = id_column
    elif len(candidates) > 1:
        raise ValueError(f"{where}: columns {_listed(candidates)} could each hold the protein ids; pass id_column= "
                         f"the one that does (e.g. id_column={candidates[0]!r}); the others are then left out.")
    elif candidates:
        chosen = candidates[0]
    elif len(index_columns) > 1:
        raise ValueError(f"{where} has {len(index_columns)} index columns {_listed(index_columns)} and no id "
                         "column; pass id_column= the one that holds the protein ids.")
    else:
        chosen = index_columns[0] if index_columns else None
    if chosen is None:
        ids = [str(label) for label in table.index]
    else:
        missing = np.flatnonzero(table[chosen].isna().to_numpy())
        if missing.size:
            raise ValueError(f"{where}: row {missing[0]} has no id in column {chosen!r}.")
        ids = table[chosen].astype(str).tolist()
    # Whatever could hold ids is never a value: the other candidates go with the index when id_column chose.
    dropped = [name for name in index_columns + candidates if name != chosen] + ([] if chosen is None else [chosen])
    return ids, table.drop(columns=dropped)


def _id_candidates(table, index_columns):
    """The columns that read as ids: named like one, holding text, or unique integers before the floats."""
    from pandas.api.types import is_float_dtype, is_integer_dtype, is_numeric_dtype

    rest = [name for name in table.columns if name not in index_columns]
    named = [name for name in rest if is_id_name(name)]
    text = [name for name in rest if not is_numeric_dtype(table[name]) and not is_vector_column(table[name])]
    # Unique integers before the first float dimension are a key (a database id, a row number), not a coordinate.
    leading = []
    for name in rest:
        if is_float_dtype(table[name]):
            break
        if is_integer_dtype(table[name]) and table[name].is_unique:
            leading.append(name)
    else:
        leading = []  # no float column: an all-integer table is values
    return list(dict.fromkeys(named + text + leading))


def is_vector_column(column) -> bool:
    """Whether a table column holds one whole vector per row (a Parquet list column)."""
    first = column.iloc[0] if len(column) else None
    return isinstance(first, (list, tuple, np.ndarray))


def stored_index_as_columns(table):
    """``table`` with the index pandas stored in a Parquet file as leading columns (unnamed levels unnamed)."""
    import pandas as pd

    if isinstance(table.index, pd.RangeIndex):  # the default index: pandas stores it as metadata only
        return table
    names = [name if name is not None else f"Unnamed: {level}" for level, name in enumerate(table.index.names)]
    return table.rename_axis(names).reset_index()


def warn_if_row_numbers(X, *, where: str) -> None:
    """Warn when the first column of ``X`` holds exactly the row numbers (0 to n-1, or 1 to n)."""
    n = len(X)
    if n < _MIN_ROWS_FOR_ROW_NUMBERS or X.shape[1] < 2:
        return
    first = np.asarray(X[:, 0], dtype=np.float64)
    for start in (0, 1):
        if first[0] == start and first[-1] == start + n - 1 and np.array_equal(first, np.arange(start, start + n)):
            warn_user(f"{where}: the first embedding dimension holds the row numbers {start} to {start + n - 1}, "
                      "which looks like an index saved with the vectors; drop that column (X[:, 1:]) if so.")
            return


def _listed(names) -> str:
    return ", ".join(repr(name) for name in names)
