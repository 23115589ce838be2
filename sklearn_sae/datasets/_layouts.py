"""Reading embeddings: the "uniprot" and "matrix" HDF5 layouts (also used by conversion and codes I/O)."""

from __future__ import annotations

import h5py
import numpy as np
from h5py import h5, h5d, h5s, h5t

from .._blocks import first_nonfinite_row
from ._checks import (_NUMERIC_KINDS, _check_float_dtype, _check_ids, _check_readable_hdf5, _first_duplicate,
                      _missing_message, attribute_text)
from ._formats import detect_format, read_other_format
from ._id_columns import warn_if_row_numbers


_MATRIX_KEYS = ("embeddings", "ids")


def load_embeddings(path, *, ids=None, dtype=np.float32, format=None, layer=None,
                    representation="mean_representations", id_column=None):
    """Load protein embeddings from an HDF5 file, or from the files other tools write.

    Besides the two HDF5 layouts below, ``format`` (by default recognised
    from the path) reads ESM's ``extract.py`` output (a directory of
    ``.pt`` files: ``format="esm"``, choose the ``layer``), a ``.npy`` array
    with a ``.ids.txt`` file of ids beside it, an ``.npz`` archive with
    ``ids`` and ``embeddings``, and CSV, TSV or Parquet tables of vectors;
    see :mod:`sklearn_sae.datasets` and the guide "Bringing your own
    embeddings".

    HDF5 files of ProtTrans and bio_embeddings, whose datasets are named by a
    hash of the sequence and carry the FASTA id in an ``original_id``
    attribute, come back under those ids.

    An id or index column is never read as an embedding dimension. In a
    table, the ids are the column named ``id_column``, or else the one
    column named like an identifier (``id``, ``accession``, ``protein``,
    ``entry``, ``name``, ...), holding text, or of unique integers before
    the float columns. A column without a header (the index
    ``DataFrame.to_csv`` writes by default) or named ``index``, and the
    index a Parquet file stores, are the table's index: dropped, or the ids
    when no column holds them. Two possible id columns raise a
    ``ValueError`` that asks for ``id_column`` (the other columns that could
    hold ids are then left out, never values); a table with none gets the
    row numbers ``"0"``, ``"1"``, ... as ids. A CSV or TSV file without a
    header line (its first line holds fractional numbers) is read from its
    first line on, its columns numbered. A first column of the row
    numbers themselves in an array without column names (``.npy``,
    ``.npz``, the matrix layout) is read as it is, with a warning.

    The layout is detected from the file: if its root holds both an
    ``embeddings`` and an ``ids`` dataset it is read as the ``"matrix"``
    layout, otherwise as the ``"uniprot"`` layout of UniProt's
    ``per-protein.h5`` files, in which every root-level object must be a
    1-D numeric dataset named by its protein accession.

    Parameters
    ----------
    path : str or os.PathLike
        The file (or ESM output directory) to read.
    ids : sequence of str, default=None
        Accessions to read, in the order wanted. ``None`` reads every
        protein, in the file's order: the root group's key order for the
        ``"uniprot"`` layout (the order h5py lists keys in, alphabetical
        unless the file tracks creation order), the row order for the
        ``"matrix"`` layout.
    dtype : {np.float32, np.float64}, default=np.float32
        Floating point dtype of the returned embeddings. Values are
        converted while reading, so float16 files never need a float16 copy
        in memory.
    format : {"hdf5", "esm", "npy", "npz", "csv", "tsv", "parquet"}, default=None
        The file's format; ``None`` recognises it from the path (a
        directory is ESM output; ``.tab`` is TSV, ``.pq`` Parquet).
    layer : int, default=None
        The layer of ESM ``.pt`` files that hold several (required then).
    representation : {"mean_representations", "bos_representations"}, \
            default="mean_representations"
        Which per-protein vector of ESM ``.pt`` files to read.
    id_column : str, default=None
        The column of a CSV, TSV or Parquet table, or the array of an
        ``.npz`` archive, that holds the protein ids. ``None`` finds it as
        described above; name it when the file has several candidates.

    Returns
    -------
    ids : ndarray of shape (n_proteins,), dtype=object
        The protein accessions as Python ``str``.
    X : ndarray of shape (n_proteins, n_features)
        C-contiguous embeddings; row ``i`` belongs to ``ids[i]``.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not HDF5 or is damaged (HDF5 cannot read it), holds
        no embeddings, or holds anything the layout does not allow: a group
        or a 2-D dataset among the vectors of the ``"uniprot"`` layout,
        vectors of different lengths, non-numeric
        or non-finite values, duplicate ids, or an ``ids`` dataset whose
        length differs from the number of ``embeddings`` rows. Also if some
        of the requested ``ids`` are not in the file. Each message names the
        file and the offending key.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn_sae.datasets import load_embeddings, save_embeddings
    >>> path = os.path.join(tempfile.mkdtemp(), "per-protein.h5")
    >>> X = np.array([[0.5, 1.0, 2.0], [3.0, 4.0, 8.0]])
    >>> _ = save_embeddings(path, ["P12345", "Q67890"], X)
    >>> ids, X_loaded = load_embeddings(path)
    >>> ids
    array(['P12345', 'Q67890'], dtype=object)
    >>> X_loaded
    array([[0.5, 1. , 2. ],
           [3. , 4. , 8. ]], dtype=float32)
    >>> load_embeddings(path, ids=["Q67890"])[1]
    array([[3., 4., 8.]], dtype=float32)
    """
    dtype = _check_float_dtype(dtype)
    wanted = None if ids is None else _check_ids(ids, what="ids")
    fmt = detect_format(path) if format is None else format
    if fmt != "hdf5":
        return read_other_format(path, fmt, wanted=wanted, dtype=dtype, layer=layer, representation=representation,
                                 id_column=id_column)
    if id_column is not None:
        raise ValueError("id_column= applies to tables (CSV, TSV, Parquet) and .npz archives, not to HDF5 files, "
                         "whose ids are dataset names or the 'ids' dataset.")
    path = _check_readable_hdf5(path)
    try:
        with h5py.File(path, "r") as f:
            return _read_layout(f, path, wanted, dtype)
    except (FileNotFoundError, PermissionError):
        raise
    except (OSError, KeyError, RuntimeError) as exc:
        # HDF5 reports a truncated or overwritten file from wherever it
        # noticed: an OSError when opening the file or reading data, a
        # KeyError when an object the file lists cannot be opened, a
        # RuntimeError when the list of objects itself is unreadable.
        detail = exc.args[0] if isinstance(exc, KeyError) and exc.args else exc
        raise ValueError(
            f"Embeddings file {path!r} could not be read; it is probably "
            f"damaged or truncated (HDF5 said: {detail})."
        ) from exc


def _read_layout(f, path, wanted, dtype):
    """Detect the layout of the open file ``f`` and read it."""
    layout, names = _layout_of(f, path)
    if layout == "matrix":
        return _read_matrix(f, path, wanted, dtype)
    original = _original_ids(f, names)
    if original is None:
        return _read_uniprot(f, path, names, wanted, dtype)
    # bio_embeddings / ProtTrans: datasets named by the sequence's hash, the FASTA id in an attribute.
    name_of = dict(zip(original, names))
    if wanted is not None:
        missing = [name for name in wanted if name not in name_of]
        if missing:
            raise ValueError(_missing_message(path, missing))
    keys = [name_of[name] for name in (wanted if wanted is not None else original)]
    _, X = _read_uniprot(f, path, keys, None, dtype)
    return np.asarray(list(wanted if wanted is not None else original), dtype=object), X


def _original_ids(f, names):
    """The ``original_id`` attributes of every dataset, when they all have one (else None); unique ones."""
    if not names or "original_id" not in f[names[0]].attrs:
        return None
    original = []
    for name in names:
        value = f[name].attrs.get("original_id")
        if value is None:
            return None
        original.append(attribute_text(value))
    return list(_check_ids(original, what="the original_id attributes"))


def _layout_of(f, path):
    """Return the layout of the open file ``f`` and its root names."""
    names = _root_names(f)
    if not names:
        raise ValueError(f"Embeddings file {path!r} contains no datasets.")
    present = [key for key in _MATRIX_KEYS if key in names]
    if len(present) == len(_MATRIX_KEYS):
        return "matrix", names
    if present:
        missing = next(key for key in _MATRIX_KEYS if key not in names)
        raise ValueError(
            f"Embeddings file {path!r} has a {present[0]!r} dataset but no "
            f"{missing!r} dataset; the matrix layout needs both."
        )
    return "uniprot", names


def _root_names(f):
    """Return the root link names of ``f`` as str, in h5py's key order."""
    root = f["/"].id
    # links.iterate is a single H5Literate pass; iterating the group the
    # high-level way looks each name up by index and is slower on large files.
    # Files that track creation order list keys in that order in h5py, so
    # follow them to keep the order documented in load_embeddings.
    tracked = root.get_create_plist().get_link_creation_order()
    index = h5.INDEX_CRT_ORDER if tracked else h5.INDEX_NAME
    names = []
    root.links.iterate(names.append, idx_type=index)
    return [name.decode("utf-8") for name in names]


# --- "uniprot" layout ------------------------------------------------------


def _read_uniprot(f, path, names, wanted, dtype):
    """Read one 1-D dataset per protein into a preallocated block."""
    if wanted is not None:
        present = set(names)
        missing = [acc for acc in wanted if acc not in present]
        if missing:
            raise ValueError(_missing_message(path, missing))
        names = list(wanted)
    n_features = _uniprot_reference_length(f, path, names[0])
    X = np.empty((len(names), n_features), dtype=dtype)
    _fill_uniprot_rows(f, path, names, X)
    bad_row = first_nonfinite_row(X)
    if bad_row is not None:
        raise ValueError(
            f"Embeddings file {path!r}: dataset {names[bad_row]!r} contains "
            "NaN or infinite values."
        )
    return np.asarray(names, dtype=object), X


def _uniprot_reference_length(f, path, key):
    """Validate the first protein's dataset and return its length."""
    error = _uniprot_dataset_error(f, path, key, reference=None)
    if error is not None:
        raise error
    return f[key].shape[0]


def _fill_uniprot_rows(f, path, names, X, *, reference=None):
    """Read dataset ``names[i]`` into ``X[i]`` for every ``i``.

    ``reference`` names a dataset already known to have the length
    ``X.shape[1]``, for error messages; ``None`` means ``names[0]``.

    Swiss-Prot's file holds ~570k tiny datasets, so the per-dataset cost is
    all that matters. The low-level API opens, checks and reads each one
    about three times faster than ``f[key][()]``: it skips the high-level
    object wrappers and reuses one memory type and dataspace, and HDF5
    converts float16 to ``X.dtype`` straight into the row. Anything
    unexpected goes to ``_uniprot_dataset_error`` for a precise message.
    """
    reference = names[0] if reference is None else reference
    root = f["/"].id
    expected_shape = (X.shape[1],)
    mem_type = h5t.py_create(X.dtype)
    mem_space = h5s.create_simple(expected_shape)
    for i, name in enumerate(names):
        try:
            dataset = h5d.open(root, name.encode("utf-8"))
        except KeyError as exc:  # a group, a named datatype or a broken link
            _raise_if_invalid(f, path, name, reference, cause=exc)
            raise
        file_space = dataset.get_space()
        if file_space.shape != expected_shape:
            # Never None here: the checks cover every shape but this one.
            raise _uniprot_dataset_error(f, path, name, reference=reference)
        try:
            dataset.read(mem_space, file_space, X[i], mem_type)
        except (TypeError, OSError) as exc:
            # HDF5 refuses to convert strings and other non-numeric types to
            # float; an OSError that is not about the type is a real read
            # failure and propagates unchanged.
            _raise_if_invalid(f, path, name, reference, cause=exc)
            raise


def _raise_if_invalid(f, path, key, reference, *, cause):
    """Raise the precise error for ``key`` if it is not a valid vector."""
    error = _uniprot_dataset_error(f, path, key, reference=reference)
    if error is not None:
        raise error from cause


def _uniprot_dataset_error(f, path, key, *, reference):
    """Return a ValueError saying why ``key`` is not a valid protein vector.

    ``reference`` names the dataset whose length every vector must share;
    ``None`` checks ``key`` on its own. Returns None if ``key`` is valid.
    """
    where = f"Embeddings file {path!r}: {key!r}"
    obj = f.get(key)
    if obj is None:
        return ValueError(f"{where} is a broken link.")
    if not isinstance(obj, h5py.Dataset):
        kind = "group" if isinstance(obj, h5py.Group) else type(obj).__name__
        return ValueError(
            f"{where} is a {kind}, not a dataset. The UniProt layout holds "
            "only one 1-D dataset per protein at the root."
        )
    if obj.dtype.kind not in _NUMERIC_KINDS:
        return ValueError(
            f"{where} holds non-numeric values of dtype {obj.dtype}."
        )
    if obj.shape is None or obj.ndim != 1:
        hint = (
            " It looks like per-residue embeddings; pool them into one "
            "vector per protein first."
            if obj.ndim == 2
            else ""
        )
        return ValueError(
            f"{where} is a {obj.ndim}-D dataset of shape {obj.shape}; "
            f"the UniProt layout needs one 1-D vector per protein.{hint}"
        )
    if obj.shape[0] == 0:
        return ValueError(f"{where} is an empty vector.")
    if reference is not None:
        expected = f[reference].shape[0]
        if obj.shape[0] != expected:
            return ValueError(
                f"{where} has length {obj.shape[0]}, but {reference!r} has "
                f"length {expected}; all vectors must have the same length."
            )
    return None


# --- "matrix" layout -------------------------------------------------------


def _read_matrix(f, path, wanted, dtype):
    """Read the ``embeddings`` and ``ids`` datasets of the matrix layout."""
    embeddings, file_ids = _matrix_datasets(f, path)
    if wanted is None:
        rows = np.arange(len(file_ids))
        X = np.empty(embeddings.shape, dtype=dtype)
        # read_direct converts into the target dtype inside HDF5: about 3x
        # faster than reading float16 then calling astype.
        embeddings.read_direct(X)
        warn_if_row_numbers(X, where=f"Embeddings file {path!r}")
    else:
        rows = _rows_of(path, file_ids, wanted)
        X = _read_matrix_rows(embeddings, rows, dtype)
    bad_row = first_nonfinite_row(X)
    if bad_row is not None:
        row = rows[bad_row]
        raise ValueError(
            f"Embeddings file {path!r}: 'embeddings' row {row} (id "
            f"{file_ids[row]!r}) contains NaN or infinite values."
        )
    return file_ids[rows], X


def _matrix_datasets(f, path):
    """Return the validated ``embeddings`` dataset and the ids of its rows."""
    embeddings = _matrix_embeddings_dataset(f, path)
    file_ids = _matrix_ids(f, path)
    if len(file_ids) != embeddings.shape[0]:
        raise ValueError(
            f"Embeddings file {path!r}: 'ids' has {len(file_ids)} entries but "
            f"'embeddings' has {embeddings.shape[0]} rows."
        )
    duplicate = _first_duplicate(file_ids)
    if duplicate is not None:
        raise ValueError(
            f"Embeddings file {path!r}: 'ids' holds {duplicate!r} more than once."
        )
    return embeddings, file_ids


def _matrix_embeddings_dataset(f, path):
    embeddings = f["embeddings"]
    where = f"Embeddings file {path!r}: 'embeddings'"
    if not isinstance(embeddings, h5py.Dataset):
        raise ValueError(f"{where} is not a dataset.")
    if embeddings.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(
            f"{where} holds non-numeric values of dtype {embeddings.dtype}."
        )
    if embeddings.ndim != 2:
        raise ValueError(
            f"{where} must be 2-D, got shape {embeddings.shape}."
        )
    if 0 in embeddings.shape:
        raise ValueError(f"{where} is empty, of shape {embeddings.shape}.")
    return embeddings


def _matrix_ids(f, path):
    """Return the ``ids`` dataset as a 1-D object array of str."""
    ids = f["ids"]
    where = f"Embeddings file {path!r}: 'ids'"
    if not isinstance(ids, h5py.Dataset):
        raise ValueError(f"{where} is not a dataset.")
    if h5py.check_string_dtype(ids.dtype) is None:
        raise ValueError(f"{where} must hold strings, got dtype {ids.dtype}.")
    if ids.ndim != 1:
        raise ValueError(f"{where} must be 1-D, got shape {ids.shape}.")
    # asstr decodes both fixed-length and variable-length strings, whatever
    # encoding the file declares, to an object array of str.
    return np.asarray(ids.asstr()[()], dtype=object)


def _rows_of(path, file_ids, wanted):
    """Return the row of each wanted id in ``file_ids``."""
    row_of = {acc: row for row, acc in enumerate(file_ids)}
    missing = [acc for acc in wanted if acc not in row_of]
    if missing:
        raise ValueError(_missing_message(path, missing))
    return np.fromiter((row_of[acc] for acc in wanted), dtype=np.intp,
                       count=len(wanted))


def _read_matrix_rows(embeddings, rows, dtype):
    """Read ``embeddings[rows]`` for unique ``rows`` in any order."""
    # h5py only reads increasing indices; read sorted, then put each row back.
    order = np.argsort(rows)
    X = np.empty((len(rows), embeddings.shape[1]), dtype=dtype)
    X[order] = embeddings[rows[order]]
    return X


