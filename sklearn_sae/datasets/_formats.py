"""Embeddings as other tools write them: ESM's ``.pt`` files, NumPy arrays and tables of vectors.

Each reader returns ``(ids, X)``: every protein's id (``str``) and its
vector, in the file's order; :func:`read_other_format` then selects the
wanted ids, casts and checks the values once, as the HDF5 readers do.

Formats, and how they are recognised from the path (or named with ``format=``):

``"esm"``
    A directory of ``.pt`` files, or one ``.pt`` file, as facebookresearch/esm's
    ``scripts/extract.py`` (``esm-extract``) writes them: one file per
    sequence holding a dict with ``label`` (the FASTA id) and
    ``mean_representations``, ``representations`` (per residue) or
    ``bos_representations``, each keyed by layer number. Files are read with
    ``torch.load(weights_only=True)``: a file that holds anything but
    tensors and plain containers is refused, never unpickled.
``"npy"``
    A 2-D ``.npy`` array beside a text file of ids, one per line, named like
    the array with ``.ids.txt`` in place of ``.npy``.
``"npz"``
    An ``.npz`` archive with the ids (strings or integers) in an array named
    like an identifier (``ids``, ``accession``, ...: see
    :mod:`._id_columns`) or ``id_column``, and the vectors in ``embeddings``
    (or in its only 2-D array).
``"csv"``, ``"tsv"``, ``"parquet"``
    A table with one row per protein: one id column and one numeric column
    per dimension; a Parquet file may instead hold the vector in a single
    list column. Which column holds the ids, and that an index written
    with the table is never a dimension, follows :mod:`._id_columns`.
"""

from __future__ import annotations

import errno
from pathlib import Path

import numpy as np

from .._blocks import first_nonfinite_row
from ._checks import _check_float_dtype, _check_ids, _missing_message, attribute_text
from ._id_columns import (ID_NAMES, is_id_name, is_index_column, is_vector_column, split_id_column,
                          stored_index_as_columns, warn_if_row_numbers)

ESM_REPRESENTATIONS = ("mean_representations", "bos_representations")
"""The per-protein entries of an ESM ``.pt`` dict (``representations`` is per residue)."""

_SUFFIXES = {".pt": "esm", ".npy": "npy", ".npz": "npz", ".csv": "csv", ".tsv": "tsv", ".tab": "tsv",
             ".parquet": "parquet", ".pq": "parquet"}
_FORMATS = ("hdf5", "esm", "npy", "npz", "csv", "tsv", "parquet")


def detect_format(path) -> str:
    """The format of ``path``: one of ``_FORMATS``."""
    path = Path(path)
    if path.is_dir():
        return "esm"
    suffix = path.suffix.lower()
    if suffix in (".h5", ".hdf5", ".hdf"):
        return "hdf5"
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "Embeddings file does not exist", str(path))
    if suffix not in _SUFFIXES:
        raise ValueError(
            f"Cannot tell the format of {str(path)!r} from its name; pass format= one of "
            f"'hdf5', {', '.join(repr(name) for name in sorted(set(_SUFFIXES.values())))}."
        )
    return _SUFFIXES[suffix]


def read_other_format(path, fmt, *, wanted, dtype, layer=None, representation="mean_representations",
                      id_column=None):
    """``(ids, X)`` from a file in a non-HDF5 format, the ``wanted`` ids in their order (all when None)."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(errno.ENOENT, "Embeddings file does not exist", str(path))
    if fmt not in _FORMATS:
        raise ValueError(f"format={fmt!r} is not one of {', '.join(map(repr, _FORMATS))}.")
    if id_column is not None and fmt not in ("npz", "csv", "tsv", "parquet"):
        raise ValueError(f"id_column= applies to tables (CSV, TSV, Parquet) and .npz archives, not to format {fmt!r}.")
    if fmt == "esm":
        ids, rows = _read_esm(path, layer=layer, representation=representation)
    elif layer is not None:
        raise ValueError(f"layer= applies to ESM .pt files only, not to format {fmt!r}.")
    elif fmt == "npy":
        ids, rows = _read_npy(path)
    elif fmt == "npz":
        ids, rows = _read_npz(path, id_column)
    else:
        ids, rows = _read_table(path, fmt, id_column)
    ids = _check_ids(ids, what=f"the ids of {str(path)!r}")
    if wanted is None:  # as for HDF5, where a selection reads only its rows
        warn_if_row_numbers(rows, where=repr(str(path)))
    else:
        position = {name: index for index, name in enumerate(ids)}
        missing = [name for name in wanted if name not in position]
        if missing:
            raise ValueError(_missing_message(path, missing))
        order = np.fromiter((position[name] for name in wanted), dtype=np.intp, count=len(wanted))
        ids, rows = ids[order], rows[order]
    with np.errstate(over="ignore"):
        X = np.ascontiguousarray(rows, dtype=dtype)
    bad_row = first_nonfinite_row(X)
    if bad_row is not None:
        raise ValueError(f"Embeddings file {str(path)!r}: the vector of {ids[bad_row]!r} holds NaN or infinite "
                         f"values (or values too large for {np.dtype(dtype).name}).")
    return ids, X


def _read_esm(path: Path, *, layer, representation):
    if representation not in ESM_REPRESENTATIONS:
        raise ValueError(f"representation must be one of {ESM_REPRESENTATIONS} for per-protein vectors, "
                         f"got {representation!r}.")
    files = _esm_files(path)
    ids, rows = [], []
    for file in files:
        entry = _load_esm_file(file)
        layers = entry.get(representation)
        if not isinstance(layers, dict) or not layers:
            present = sorted(key for key in entry if key.endswith("representations"))
            raise ValueError(f"{str(file)!r} has no {representation!r} (it holds {present}); extract with "
                             f"--include {representation.split('_')[0]}, or pass representation= one of {present}.")
        chosen = _esm_layer(file, layers, layer)
        vector = layers[chosen]
        if vector.ndim != 1:
            raise ValueError(f"{str(file)!r}: {representation}[{chosen}] has shape {tuple(vector.shape)}, "
                             "not a vector.")
        ids.append(entry["label"])
        rows.append(vector.float().numpy())
    widths = {len(row) for row in rows}
    if len(widths) > 1:
        raise ValueError(f"The .pt files of {str(path)!r} hold vectors of different widths: {sorted(widths)}.")
    return ids, np.stack(rows)


def _esm_files(path: Path) -> list:
    """The ``.pt`` files of an ESM ``extract.py`` output directory (sorted), or ``[path]`` for one file."""
    files = sorted(path.glob("*.pt")) if path.is_dir() else [path]
    if not files:
        raise ValueError(f"{str(path)!r} holds no .pt files; expected the output directory of ESM's extract.py.")
    return files


def _load_esm_file(file: Path) -> dict:
    import pickle

    import torch

    try:
        entry = torch.load(file, map_location="cpu", weights_only=True)
    except (pickle.UnpicklingError, RuntimeError, EOFError, OSError) as error:
        raise ValueError(f"{str(file)!r} is not an ESM .pt file that can be read safely "
                         f"(torch.load(weights_only=True) refused it: {error})") from None
    if not isinstance(entry, dict) or not isinstance(entry.get("label"), str):
        raise ValueError(f"{str(file)!r} does not hold an ESM dict (one with a 'label' string and "
                         "'mean_representations' or 'representations' keyed by layer).")
    return entry


def _esm_layer(file: Path, layers: dict, layer):
    if layer is None:
        if len(layers) > 1:
            raise ValueError(f"{str(file)!r} holds layers {sorted(layers)}; choose one with layer=.")
        return next(iter(layers))
    if layer not in layers:
        raise ValueError(f"{str(file)!r} has no layer {layer}; it holds layers {sorted(layers)}.")
    return layer


def _read_npy(path: Path):
    ids_path = path.with_suffix(".ids.txt")
    if not ids_path.is_file():
        raise ValueError(f"{str(path)!r} needs its ids beside it, one per line, in {str(ids_path)!r}.")
    X = np.load(path, allow_pickle=False, mmap_mode="r")
    if X.ndim != 2:
        raise ValueError(f"{str(path)!r} holds an array of shape {X.shape}; expected (n_proteins, n_features).")
    ids = ids_path.read_text(encoding="utf-8").splitlines()
    if len(ids) != len(X):
        raise ValueError(f"{str(ids_path)!r} lists {len(ids)} ids for the {len(X)} rows of {str(path)!r}.")
    return ids, X


def _read_npz(path: Path, id_column):
    with np.load(path, allow_pickle=False) as archive:
        names = list(archive.files)
        if id_column is None:
            named = [name for name in names if is_id_name(name)]
            if len(named) != 1:
                raise ValueError(f"{str(path)!r} needs one array of ids named one of {sorted(ID_NAMES)}, or "
                                 f"id_column= naming it; it holds {names}.")
            id_column = named[0]
        elif id_column not in names:
            raise ValueError(f"{str(path)!r} has no array {id_column!r} for id_column=; it holds {names}.")
        ids = _npz_array(archive, id_column, path)
        if "embeddings" in names:
            key, X = "embeddings", _npz_array(archive, "embeddings", path)
        else:
            matrices = {name: _npz_array(archive, name, path) for name in names if name != id_column}
            matrices = {name: array for name, array in matrices.items() if array.ndim == 2}
            if len(matrices) != 1:
                raise ValueError(f"{str(path)!r} has no 'embeddings' array, nor a single other 2-D array; it holds "
                                 f"{names}.")
            (key, X), = matrices.items()
    if X.ndim != 2 or ids.ndim != 1 or len(ids) != len(X):
        raise ValueError(f"{str(path)!r}: {key!r} of shape {X.shape} and {id_column!r} of shape {ids.shape} do not "
                         "describe one vector per id.")
    if ids.dtype.kind not in "USiu":
        raise ValueError(f"{str(path)!r}: {id_column!r} must hold strings or integers, found dtype {ids.dtype}.")
    return [str(name) for name in ids.astype(str)], X


def _npz_array(archive, name, path: Path):
    try:
        return archive[name]
    except ValueError as error:  # numpy refuses object arrays without allow_pickle
        if "allow_pickle" not in str(error):
            raise
        raise ValueError(f"{str(path)!r}: array {name!r} holds Python objects (ids saved from an object array, "
                         "e.g. a pandas column), which are never unpickled; save them as strings: "
                         f"np.savez(..., {name}=np.asarray(values, dtype=str)).") from None


def _read_table(path: Path, fmt: str, id_column):
    from pandas.api.types import is_numeric_dtype

    if fmt == "parquet":
        table = _read_parquet(path)
    else:
        table = _read_text_table(path, "\t" if fmt == "tsv" else ",", id_column)
    ids, values = split_id_column(table, id_column=id_column, where=repr(str(path)))
    if values.shape[1] == 0:
        raise ValueError(f"{str(path)!r} holds ids but no value columns; a table of vectors holds an id column "
                         "and one numeric column per dimension.")
    if values.shape[1] == 1 and is_vector_column(values.iloc[:, 0]):  # one list column per protein (Parquet)
        rows = values.iloc[:, 0].tolist()
        widths = {len(row) for row in rows}
        if len(widths) != 1:
            raise ValueError(f"{str(path)!r}: the vectors of column {values.columns[0]!r} differ in length.")
        return ids, np.asarray(rows, dtype=np.float64)
    non_numeric = [name for name in values.columns if not is_numeric_dtype(values[name])]
    if non_numeric:
        raise ValueError(f"{str(path)!r}: column(s) {non_numeric[:5]} are not numbers; a table of vectors holds "
                         "one id column and one numeric column per dimension (name the id column with id_column=).")
    return ids, values.to_numpy()


def _read_parquet(path: Path):
    import pandas as pd

    return stored_index_as_columns(pd.read_parquet(path))


def _read_text_table(path: Path, sep: str, id_column):
    """A CSV or TSV table; id-like columns as text (keeping leading zeros); a first line of numbers is data."""
    import pandas as pd

    header = pd.read_csv(path, sep=sep, nrows=0).columns
    if any(_is_fraction(name) for name in header):
        # No header line: pandas took the first protein's values for column names, and would drop that protein.
        return pd.read_csv(path, sep=sep, header=None)
    as_text = [name for name in header if is_id_name(name) or is_index_column(name) or name == id_column]
    return pd.read_csv(path, sep=sep, dtype={name: str for name in as_text})


def _is_fraction(name) -> bool:
    """Whether a column name is a number that is not an integer (a value, not a dimension's name)."""
    try:
        value = float(name)
    except (TypeError, ValueError):
        return False
    return np.isfinite(value) and value != int(value)


# ----------------------------------------------------------------------------- per-residue embeddings


def load_residue_embeddings(path, *, format=None, layer=None, dtype=np.float32):
    """Load per-residue embeddings as rows: one row per residue, with each protein's range of rows.

    Reads UniProt's ``per-residue.h5`` and the per-residue HDF5 files of
    ProtTrans and bio_embeddings (one ``(length, d)`` dataset per protein,
    named by its id, or by a hash with the id in an ``original_id``
    attribute), and ESM's ``extract.py`` output made with ``--include
    per_tok`` (``representations``, choose the ``layer``). Rows of
    ``X_residues`` from ``offsets[i]`` to ``offsets[i + 1]`` are the residues
    of ``ids[i]``, in order, so a residue-level SAE trains on ``X_residues``
    and :func:`pool_residues` turns its codes back into one row per protein.

    Parameters
    ----------
    path : str or os.PathLike
        An HDF5 file, or a directory (or one file) of ESM ``.pt`` files.
    format : {"hdf5", "esm"}, default=None
        ``None`` recognises it from the path.
    layer : int, default=None
        The ESM layer (needed when the files hold several).
    dtype : numpy dtype, default=np.float32

    Returns
    -------
    ids : ndarray of object of shape (n_proteins,)
    X_residues : ndarray of shape (n_residues, n_features)
    offsets : ndarray of int64 of shape (n_proteins + 1,)

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py, numpy as np
    >>> from sklearn_sae.datasets import load_residue_embeddings, pool_residues
    >>> path = os.path.join(tempfile.mkdtemp(), "per-residue.h5")
    >>> with h5py.File(path, "w") as f:
    ...     _ = f.create_dataset("P1", data=np.ones((3, 2)))
    ...     _ = f.create_dataset("P2", data=np.zeros((2, 2)))
    >>> ids, X, offsets = load_residue_embeddings(path)
    >>> ids.tolist(), X.shape, offsets.tolist()
    (['P1', 'P2'], (5, 2), [0, 3, 5])
    >>> pool_residues(X, offsets).tolist()
    [[1.0, 1.0], [0.0, 0.0]]
    """
    dtype = _check_float_dtype(dtype)  # an integer dtype would truncate every value without a word
    path = Path(path)
    fmt = detect_format(path) if format is None else format
    if fmt == "hdf5" and layer is not None:
        raise ValueError("layer= applies to ESM .pt files only.")
    proteins, close = _residue_source(path, layer, fmt=fmt, keep=True)
    try:
        ids = _check_ids([name for name, _, _ in proteins], what=f"the ids of {str(path)!r}")
        widths = {width for _, _, (width, _) in proteins}
        if len(widths) > 1:
            raise ValueError(f"{str(path)!r} holds residue vectors of different widths: {sorted(widths)}.")
        offsets = np.concatenate([[0], np.cumsum([length for _, length, _ in proteins])]).astype(np.int64)
        X = np.empty((int(offsets[-1]), widths.pop()), dtype=dtype)
        for (_, length, (_, read)), start in zip(proteins, offsets):
            X[start : start + length] = read()
    finally:
        close()
    bad_row = first_nonfinite_row(X)
    if bad_row is not None:
        protein = int(np.searchsorted(offsets, bad_row, side="right")) - 1
        raise ValueError(f"{str(path)!r}: residue {bad_row - offsets[protein]} of {ids[protein]!r} holds NaN or "
                         "infinite values.")
    return ids, X, offsets


def pool_residues(values, offsets=None, *, method="mean"):
    """One row per protein from per-residue rows (embeddings or codes): their mean or maximum.

    Sums are accumulated in float64, so float16 residues of long proteins
    neither overflow nor lose precision.

    Parameters
    ----------
    values : array-like or sparse matrix of shape (n_residues, n_columns), or list of them
        Per-residue rows, with ``offsets`` saying which protein owns which;
        or a list (or tuple) with one ``(length, n_columns)`` array or
        sparse matrix per protein, as per-residue files and models give
        them, whose lengths are the offsets. CSR codes stay sparse (the
        mean and the maximum of non-negative sparse codes are sparse).
    offsets : array-like of int of shape (n_proteins + 1,), default=None
        As :func:`load_residue_embeddings` returns them: rows
        ``offsets[i]:offsets[i + 1]`` belong to protein ``i``. Required for
        one matrix of rows; for a list of arrays, ``None`` or the offsets
        their lengths make.
    method : {"mean", "max"}, default="mean"

    Returns
    -------
    pooled : ndarray or scipy.sparse.csr_matrix of shape (n_proteins, n_columns)
        float64 for float64 or integer input, float32 otherwise.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.datasets import pool_residues
    >>> proteins = [np.array([[1.0, 0.0], [3.0, 2.0]]), np.array([[5.0, 4.0]])]
    >>> pool_residues(proteins).tolist()
    [[2.0, 1.0], [5.0, 4.0]]
    >>> pool_residues(np.vstack(proteins), [0, 2, 3], method="max").tolist()
    [[3.0, 2.0], [5.0, 4.0]]
    """
    import scipy.sparse as sp

    if method not in ("mean", "max"):
        raise ValueError(f"method must be 'mean' or 'max', got {method!r}.")
    values, offsets = _residue_rows(values, offsets)
    lengths = np.diff(offsets)
    dtype = np.result_type(values.dtype, np.float32)
    if sp.issparse(values):
        values = sp.csr_matrix(values, dtype=np.float64)  # scipy has no float16; sums in float64
        if method == "mean":
            owner = np.repeat(np.arange(len(lengths)), lengths)
            membership = sp.csr_matrix((1.0 / lengths[owner], (owner, np.arange(len(owner)))),
                                       shape=(len(lengths), values.shape[0]))
            return sp.csr_matrix(membership @ values, dtype=dtype)
        if values.nnz and values.data.min() < 0:
            raise ValueError("max pooling of sparse values needs them non-negative (codes are): a missing entry is 0.")
        rows = [values[start:stop].max(axis=0) for start, stop in zip(offsets[:-1], offsets[1:])]
        return sp.csr_matrix(sp.vstack(rows), dtype=dtype)
    if method == "max":
        return np.maximum.reduceat(values, offsets[:-1], axis=0).astype(dtype, copy=False)
    sums = np.add.reduceat(values, offsets[:-1], axis=0, dtype=np.float64)
    return (sums / lengths[:, None]).astype(dtype, copy=False)


def _residue_rows(values, offsets):
    """``(rows, offsets)``: one matrix of residue rows (ndarray or sparse) and checked int64 offsets."""
    import scipy.sparse as sp

    if isinstance(values, (list, tuple)) and values and all(sp.issparse(part) or np.ndim(part) == 2 for part in values):
        widths = {part.shape[1] for part in values}
        if len(widths) != 1:
            raise ValueError(f"The per-protein arrays of values have different widths: {sorted(widths)}.")
        own = np.concatenate([[0], np.cumsum([part.shape[0] for part in values])]).astype(np.int64)
        if offsets is not None and not np.array_equal(np.asarray(offsets), own):
            raise ValueError("offsets do not match the lengths of the per-protein arrays of values; pass "
                             "offsets=None with a list of arrays.")
        offsets = own
        values = sp.vstack(values, format="csr") if any(sp.issparse(part) for part in values) else np.vstack(values)
    elif not sp.issparse(values):
        values = np.asarray(values)
        if values.ndim != 2 or values.dtype.kind not in "biuf":
            raise ValueError(f"values must be a 2-D numeric array of residue rows (or a list of one per protein), "
                             f"got shape {values.shape} and dtype {values.dtype}.")
    if offsets is None:
        raise ValueError("offsets are needed to pool one matrix of residue rows; load_residue_embeddings returns "
                         "them (or pass a list with one array per protein).")
    offsets = np.asarray(offsets, dtype=np.int64)
    if offsets.ndim != 1 or len(offsets) < 2 or offsets[0] != 0 or offsets[-1] != values.shape[0] \
            or (np.diff(offsets) < 1).any():
        raise ValueError(f"offsets must rise from 0 to the {values.shape[0]} rows, by at least one row a protein.")
    return values, offsets


def convert_residue_embeddings(src, dst, *, dtype=np.float16, chunk_rows=None, layer=None, progress=False):
    """Write per-residue embeddings to one chunked HDF5 matrix of residues, in bounded memory.

    The output holds ``embeddings`` (one row per residue, chunked like
    `convert_embeddings`' output), ``ids`` (one per protein) and ``offsets``
    (``n_proteins + 1`` int64: rows ``offsets[i]:offsets[i + 1]`` are the
    residues of ``ids[i]``), so that a residue-level SAE trains on
    ``h5py.File(dst)["embeddings"]`` with the on-disk fit, and
    :func:`load_residue_embeddings` reads it back. One protein's residues
    are held at a time (a block of rows for the write): memory does not
    grow with the file.

    Parameters
    ----------
    src : str or os.PathLike
        Per-residue HDF5 (UniProt, ProtTrans, bio_embeddings) or a directory
        of ESM ``per_tok`` ``.pt`` files.
    dst : str or os.PathLike
        The file to write; its directory must exist. An existing file is
        replaced, once the new one is complete, only if this package wrote
        it; any other file there raises ``ValueError`` before ``src`` is read.
    dtype : {np.float16, np.float32, np.float64}, default=np.float16
        Floating point dtype of the written ``embeddings``.
    chunk_rows : int, default=None
        Residues per chunk, a positive int; ``None`` fills 128 KiB.
    layer : int, default=None
        The ESM layer.
    progress : bool, default=False
        A tqdm progress bar, counted in proteins.

    Returns
    -------
    path : pathlib.Path

    Raises
    ------
    ValueError
        If ``src`` holds no per-residue embeddings or invalid ones, if
        ``dtype`` is not a floating point dtype or a value overflows it, if
        ``chunk_rows`` is not a positive int, or if ``dst`` is a file this
        package did not write. ``dst`` is then left as it was.
    """
    from .._atomic import check_replaceable
    from ._checks import _check_writable_path, _is_int
    from ._written import foreign_hdf5_content

    src = Path(src)
    dtype = _check_float_dtype(dtype)  # an integer dtype would truncate every value without a word
    if chunk_rows is not None and (not _is_int(chunk_rows) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}.")
    dst = check_replaceable(_check_writable_path(dst), foreign_hdf5_content, writer=_CONVERT_RESIDUES, directory=False)
    proteins, close = _residue_source(src, layer)
    try:
        return _write_residues(proteins, src, dst, dtype, chunk_rows, progress)
    finally:
        close()


_CONVERT_RESIDUES = "convert_residue_embeddings()"


def _write_residues(proteins, src, dst, dtype, chunk_rows, progress):
    import h5py

    from .._atomic import atomic_file
    from ._checks import _progress_bar
    from ._written import foreign_hdf5_content, mark_written

    ids = _check_ids([name for name, _, _ in proteins], what=f"the ids of {str(src)!r}")
    lengths = np.array([length for _, length, _ in proteins], dtype=np.int64)
    widths = {width for _, _, (width, _) in proteins}
    if len(widths) != 1:
        raise ValueError(f"{str(src)!r} holds residue vectors of different widths: {sorted(widths)}.")
    width = widths.pop()
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    if chunk_rows is None:
        chunk_rows = max(1, (128 * 1024) // (width * dtype.itemsize))
    chunk_rows = int(min(chunk_rows, max(int(offsets[-1]), 1)))
    written = atomic_file(dst, foreign=foreign_hdf5_content, writer=_CONVERT_RESIDUES, suffix=".h5")
    with written as temporary, h5py.File(temporary, "w") as target:
        mark_written(target, "residue_embeddings")
        embeddings = target.create_dataset("embeddings", shape=(int(offsets[-1]), width), dtype=dtype,
                                           chunks=(chunk_rows, width))
        with _progress_bar(len(proteins), enabled=progress) as bar:
            for (name, _, (_, read)), start in zip(proteins, offsets[:-1]):
                block = np.asarray(read(), dtype=np.float32)
                bad = first_nonfinite_row(block)
                if bad is not None:
                    raise ValueError(f"{str(src)!r}: residue {bad} of {name!r} holds NaN or infinite values.")
                with np.errstate(over="ignore"):
                    cast = block.astype(dtype)
                if not np.isfinite(cast).all():
                    raise ValueError(f"{str(src)!r}: a residue of {name!r} overflows {dtype.name}; use float32.")
                embeddings[start : start + len(block)] = cast
                bar.update(1)
        target.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
        target.create_dataset("offsets", data=offsets)
    return dst


def _residue_source(src: Path, layer, *, fmt=None, keep=False):
    """``([(id, n_residues, (width, read))], close)`` for every protein of ``src``.

    The one reader of per-residue files, for loading and for conversion: ESM ``per_tok`` ``.pt`` files, HDF5
    files of one ``(length, d)`` dataset per protein, and the matrix :func:`convert_residue_embeddings` writes.
    Only shapes are read until ``read()`` is called, unless ``keep`` (an ESM file's block read for its shape
    is then kept, so each file is loaded once). ``close()`` releases an open HDF5 file.
    """
    fmt = detect_format(src) if fmt is None else fmt
    if fmt == "esm":
        return [_esm_residues(file, layer, keep) for file in (_esm_files(src) if src.is_dir() else [src])], (
            lambda: None
        )
    if fmt != "hdf5":
        raise ValueError(f"Per-residue embeddings are read from HDF5 or ESM .pt files, not format {fmt!r}.")
    import h5py

    handle = h5py.File(src, "r")  # open while the readers read; the caller closes it
    try:
        return _hdf5_residues(handle, src), handle.close
    except BaseException:
        handle.close()
        raise


def _esm_residues(file: Path, layer, keep: bool):
    """``(id, n_residues, (width, read))`` of one ESM ``per_tok`` file."""
    def block_of(entry):
        layers = entry.get("representations")
        if not isinstance(layers, dict) or not layers:
            raise ValueError(f"{str(file)!r} has no per-residue 'representations'; extract with --include per_tok.")
        block = layers[_esm_layer(file, layers, layer)]
        if block.ndim != 2:
            raise ValueError(f"{str(file)!r}: its representations have shape {tuple(block.shape)}, not (length, d).")
        return block

    entry = _load_esm_file(file)
    block = block_of(entry)
    kept = block.float().numpy() if keep else None

    def read():
        return kept if kept is not None else block_of(_load_esm_file(file)).float().numpy()

    return entry["label"], int(block.shape[0]), (int(block.shape[1]), read)


def _hdf5_residues(handle, src: Path):
    """``[(id, n_residues, (width, read))]`` of an open per-residue HDF5 file."""
    import h5py

    names = list(handle.keys())
    if not names:
        raise ValueError(f"{str(src)!r} holds no datasets.")
    if {"embeddings", "ids", "offsets"} <= set(names):  # written by convert_residue_embeddings
        embeddings, offsets = handle["embeddings"], handle["offsets"][()]
        ids = [attribute_text(name) for name in handle["ids"][()]]
        if len(offsets) != len(ids) + 1 or offsets[-1] != embeddings.shape[0]:
            raise ValueError(f"{str(src)!r}: 'offsets' does not describe the rows of 'embeddings' for 'ids'.")
        width = int(embeddings.shape[1])
        return [(name, int(stop - start), (width, lambda start=start, stop=stop: embeddings[start:stop]))
                for name, start, stop in zip(ids, offsets[:-1], offsets[1:])]
    proteins = []
    for name in names:
        dataset = handle[name]
        if not isinstance(dataset, h5py.Dataset) or dataset.ndim != 2:
            shape = getattr(dataset, "shape", "a group")
            raise ValueError(f"{str(src)!r}: entry {name!r} is {shape}, not a (length, d) matrix of residues.")
        original = dataset.attrs.get("original_id")
        label = name if original is None else attribute_text(original)
        proteins.append((label, int(dataset.shape[0]), (int(dataset.shape[1]), lambda d=dataset: d[()])))
    return proteins
