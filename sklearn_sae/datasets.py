"""Read, write and split protein embedding datasets.

Two HDF5 layouts are understood:

``"uniprot"``
    The layout of UniProt's ``per-protein.h5`` files: one root-level dataset
    per protein, named by its accession, each a 1-D vector of shape ``(d,)``.
``"matrix"``
    A root-level ``embeddings`` dataset of shape ``(n, d)`` beside an ``ids``
    dataset of ``n`` strings; row ``i`` of ``embeddings`` belongs to
    ``ids[i]``. `convert_embeddings` turns the first into the second.

Codes too large for memory are written block by block to HDF5 as the
arrays of a CSR matrix by `write_codes` and read back by `load_codes`.
"""

import errno
import numbers
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
import scipy.sparse as sp
from h5py import h5, h5d, h5s, h5t
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted

from ._atomic import atomic_file

__all__ = [
    "load_embeddings",
    "load_protein_labels",
    "save_embeddings",
    "convert_embeddings",
    "write_codes",
    "load_codes",
    "train_val_test_split",
    "make_sparse_signals",
]

_LAYOUTS = ("uniprot", "matrix")
_MATRIX_KEYS = ("embeddings", "ids")
# Dtype kinds read as embedding values. Booleans count: HDF5 converts h5py's
# bool enum to 0.0 / 1.0, and rejecting them would need a per-dataset type
# check that costs ~15% of the load time of the "uniprot" layout.
_NUMERIC_KINDS = "biuf"
# Ids listed in error messages; more would drown the message.
_MAX_LISTED = 5


# --------------------------------------------------------------------------
# Loading
# --------------------------------------------------------------------------


def load_embeddings(path, *, ids=None, dtype=np.float32):
    """Load protein embeddings from an HDF5 file.

    The layout is detected from the file: if its root holds both an
    ``embeddings`` and an ``ids`` dataset it is read as the ``"matrix"``
    layout, otherwise as the ``"uniprot"`` layout of UniProt's
    ``per-protein.h5`` files, in which every root-level object must be a
    1-D numeric dataset named by its protein accession.

    Parameters
    ----------
    path : str or os.PathLike
        The HDF5 file to read.
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
    path = _check_readable_hdf5(path)
    dtype = _check_float_dtype(dtype)
    wanted = None if ids is None else _check_ids(ids, what="ids")
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
    return _read_uniprot(f, path, names, wanted, dtype)


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


def _check_readable_hdf5(path):
    """Return ``path`` as a str after checking it names an HDF5 file."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(
            errno.ENOENT, "Embeddings file does not exist", path
        )
    # is_hdf5 reads the signature only, so a wrong file fails fast and with
    # a clearer message than h5py's "file signature not found".
    if os.path.isdir(path) or not h5py.is_hdf5(path):
        raise ValueError(f"Embeddings file {path!r} is not an HDF5 file.")
    return path


def _check_float_dtype(dtype):
    dtype = np.dtype(dtype)
    if dtype.kind != "f":
        raise ValueError(f"dtype must be a floating point dtype, got {dtype}.")
    return dtype


def _check_ids(ids, *, what):
    """Return ``ids`` as a 1-D object array of unique, non-empty str."""
    if isinstance(ids, (str, bytes)):
        raise ValueError(f"{what} must be a sequence of str, not a single str.")
    ids_array = np.empty(len(ids), dtype=object)
    for i, acc in enumerate(ids):
        if isinstance(acc, np.str_):
            acc = str(acc)
        if not isinstance(acc, str) or not acc:
            raise ValueError(
                f"{what} must hold non-empty str; element {i} is {acc!r}."
            )
        ids_array[i] = acc
    if len(ids_array) == 0:
        raise ValueError(f"{what} is empty.")
    duplicate = _first_duplicate(ids_array)
    if duplicate is not None:
        raise ValueError(f"{what} must be unique; {duplicate!r} is repeated.")
    return ids_array


def _first_duplicate(values):
    """Return the first value seen twice in ``values``, or None."""
    # Building a set is fast; only walk the values when there is a repeat.
    if len(set(values)) == len(values):
        return None
    seen = set()
    for value in values:
        if value in seen:
            return value
        seen.add(value)
    return None  # pragma: no cover - unreachable: the set was shorter


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


def _missing_message(path, missing):
    listed = ", ".join(repr(acc) for acc in missing[:_MAX_LISTED])
    more = len(missing) - _MAX_LISTED
    if more > 0:
        listed += f" and {more} more"
    return f"{len(missing)} requested ids are not in {path!r}: {listed}."


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
    bad_row = _first_nonfinite_row(X)
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
    else:
        rows = _rows_of(path, file_ids, wanted)
        X = _read_matrix_rows(embeddings, rows, dtype)
    bad_row = _first_nonfinite_row(X)
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


def _first_nonfinite_row(X, *, block_rows=4096):
    """Return the index of the first row of ``X`` with NaN or inf, or None."""
    # Blocks bound the boolean temporary to a few MB on very large X.
    for start in range(0, X.shape[0], block_rows):
        finite = np.isfinite(X[start : start + block_rows]).all(axis=1)
        if not finite.all():
            return start + int(np.argmin(finite))
    return None


# --------------------------------------------------------------------------
# Saving
# --------------------------------------------------------------------------


def save_embeddings(path, ids, X, *, layout="uniprot", dtype=np.float16):
    """Save protein embeddings to an HDF5 file readable by `load_embeddings`.

    Everything is validated before the file is opened, so invalid input
    never truncates an existing file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. An existing file is replaced only once the new
        one is complete: an interrupted save leaves it as it was.
    ids : sequence of str of length n_proteins
        Unique, non-empty protein accessions. With ``layout="uniprot"`` they
        become dataset names, so they may not contain ``"/"`` or be ``"."``.
    X : array-like of shape (n_proteins, n_features)
        Finite embeddings; row ``i`` belongs to ``ids[i]``.
    layout : {"uniprot", "matrix"}, default="uniprot"
        ``"uniprot"`` writes one root-level dataset per protein, like
        UniProt's ``per-protein.h5``. ``"matrix"`` writes one ``embeddings``
        dataset of shape ``(n_proteins, n_features)`` and one ``ids``
        dataset of UTF-8 strings, which is much faster to read. Either way
        `load_embeddings` returns the proteins in the order of ``ids``.
    dtype : {np.float16, np.float32, np.float64}, default=np.float16
        Floating point dtype stored in the file. float16 halves the size of
        float32 and is what UniProt distributes.

    Returns
    -------
    path : pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``ids`` are not unique non-empty str, if ``X`` is not a 2-D
        finite numeric array with one row per id, if a value overflows
        ``dtype``, or if ``layout`` or ``dtype`` is unknown.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn_sae.datasets import save_embeddings
    >>> path = os.path.join(tempfile.mkdtemp(), "emb.h5")
    >>> save_embeddings(path, ["P1", "P2"], np.eye(2), layout="matrix").name
    'emb.h5'
    """
    if layout not in _LAYOUTS:
        raise ValueError(f"layout must be one of {_LAYOUTS}, got {layout!r}.")
    dtype = _check_float_dtype(dtype)
    ids = _check_ids(ids, what="ids")
    if layout == "uniprot":
        _check_dataset_names(ids)
    X = _check_embeddings_to_save(X, ids, dtype)
    path = Path(path)
    # Written beside path and renamed over it once complete: an interrupted
    # save never leaves a truncated file, nor damages the one already there.
    with atomic_file(path, suffix=".h5") as temporary:
        # track_order: load_embeddings then lists the proteins in the order
        # given here rather than sorted by name.
        with h5py.File(temporary, "w", track_order=True) as f:
            if layout == "uniprot":
                for acc, row in zip(ids, X):
                    f.create_dataset(acc, data=row)
            else:
                f.create_dataset("embeddings", data=X)
                f.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    return path


def _check_dataset_names(ids):
    """Reject ids that HDF5 would not store as one root-level dataset."""
    for acc in ids:
        # "/" would create nested groups and "." names the root itself.
        if "/" in acc or acc == ".":
            raise ValueError(
                f"id {acc!r} cannot name an HDF5 dataset; use "
                "layout='matrix' for ids containing '/'."
            )


def _check_embeddings_to_save(X, ids, dtype):
    """Return ``X`` cast to ``dtype`` after checking shape and values."""
    X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    if X.dtype.kind not in _NUMERIC_KINDS:
        raise ValueError(f"X must be numeric, got dtype {X.dtype}.")
    if X.shape[0] != len(ids):
        raise ValueError(
            f"X has {X.shape[0]} rows but {len(ids)} ids were given."
        )
    if X.shape[1] == 0:
        raise ValueError("X has no features (shape[1] == 0).")
    bad_row = _first_nonfinite_row(X) if X.dtype.kind == "f" else None
    if bad_row is not None:
        raise ValueError(
            f"X row {bad_row} (id {ids[bad_row]!r}) contains NaN or infinite "
            "values."
        )
    # Check again after the cast: float16 overflows to inf above 65504.
    with np.errstate(over="ignore"):
        X_cast = np.ascontiguousarray(X, dtype=dtype)
    bad_row = _first_nonfinite_row(X_cast)
    if bad_row is not None:
        raise ValueError(
            f"X row {bad_row} (id {ids[bad_row]!r}) overflows {dtype}; save "
            "with a wider dtype such as np.float32."
        )
    return X_cast


# --------------------------------------------------------------------------
# Converting to the matrix layout
# --------------------------------------------------------------------------

# Target size of one chunk of a converted ``embeddings`` dataset. A chunk is
# the smallest unit HDF5 reads, so it must fit the default 1 MiB chunk cache
# of an open dataset, and every read of fewer rows than a chunk holds pays
# for the whole chunk. On 50k x 1024 float16 (benchmarks/bench_convert.py),
# random reads of 256-row blocks ran as fast from 32- to 256-row chunks,
# while reads of 64-row blocks and of single rows ran 1.5 to 2.5 times
# faster from 64-row chunks than from 256-row ones: 128 KiB it is.
_CHUNK_BYTES = 128 * 1024
# Rows read, checked and written at a time are sized so that the float32
# buffer takes about this much memory, whatever the number of proteins.
_BLOCK_BYTES = 32 * 1024 * 1024
_COMPRESSIONS = (None, "gzip", "lzf")


def convert_embeddings(src, dst, *, dtype=np.float16, compression=None, chunk_rows=None, progress=False):
    """Convert an embeddings file to the chunked ``"matrix"`` layout.

    UniProt's ``per-protein.h5`` stores one dataset per protein, and opening
    an HDF5 object costs far more than reading its 1024 numbers, so random
    reads of a few hundred proteins crawl. The ``"matrix"`` layout stores
    one 2-D ``embeddings`` dataset, chunked along rows, beside an ``ids``
    dataset: any block of rows is then one or two chunk reads, which is what
    training from disk needs. Convert once, then read the result with
    `load_embeddings` or slice its ``embeddings`` dataset with h5py.

    Rows are read, checked and written in blocks of about 32 MB, so memory
    does not grow with the size of the embeddings; only the list of ids (a
    few dozen bytes per protein) is held whole. The file is written under a
    temporary name beside ``dst`` and renamed into place when complete, so
    ``dst`` is never left half-written, and ``dst`` may be ``src`` itself.

    Parameters
    ----------
    src : str or os.PathLike
        The file to convert, in either layout (see `load_embeddings`). A
        ``"matrix"`` file is rewritten with the chunks, dtype and
        compression asked for.
    dst : str or os.PathLike
        The file to write, in the ``"matrix"`` layout; its directory must
        exist. An existing file is replaced.
    dtype : {np.float16, np.float32, np.float64}, default=np.float16
        Floating point dtype of the written ``embeddings``. float16 is what
        UniProt distributes, so it loses nothing on UniProt's files.
    compression : {None, "gzip", "lzf"}, default=None
        HDF5 compression filter, applied with byte shuffling. Embeddings
        compress poorly (the shipped float16 file by 15% with gzip, 2%
        with lzf) and every read then pays for decompression, so the
        default is none.
    chunk_rows : int, default=None
        Rows per chunk of ``embeddings``, the smallest unit HDF5 reads.
        ``None`` picks the number of rows that fills 128 KiB, 64 rows of
        1024 float16 values: far under HDF5's default 1 MiB chunk cache,
        and small enough for reads of a few rows. Read blocks that start
        at a multiple of it (``f["embeddings"].chunks[0]``) and span whole
        chunks.
    progress : bool, default=False
        Show a tqdm progress bar, counted in proteins.

    Returns
    -------
    dst : pathlib.Path
        The path written.

    Raises
    ------
    FileNotFoundError
        If ``src`` or the directory of ``dst`` does not exist.
    ValueError
        If ``src`` is not a valid embeddings file (as in `load_embeddings`,
        and the message names the offending protein: a vector of the wrong
        length, non-numeric or non-finite values), if a value overflows
        ``dtype``, or if an option is invalid. ``dst`` is then left as it
        was.

    See Also
    --------
    load_embeddings : Read either layout into memory.
    write_codes : Encode embeddings that do not fit in memory into a file.

    Examples
    --------
    >>> import os, tempfile
    >>> import h5py
    >>> import numpy as np
    >>> from sklearn_sae.datasets import convert_embeddings, load_embeddings, save_embeddings
    >>> folder = tempfile.mkdtemp()
    >>> src = save_embeddings(os.path.join(folder, "per-protein.h5"), ["P1", "P2", "P3"], np.eye(3))
    >>> dst = convert_embeddings(src, os.path.join(folder, "per-protein.matrix.h5"))
    >>> with h5py.File(dst) as f:
    ...     f["embeddings"].shape, str(f["embeddings"].dtype), f["embeddings"].chunks
    ((3, 3), 'float16', (3, 3))
    >>> load_embeddings(dst)[0]
    array(['P1', 'P2', 'P3'], dtype=object)
    """
    src = _check_readable_hdf5(src)
    dtype = _check_float_dtype(dtype)
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}.")
    if chunk_rows is not None and (not _is_int(chunk_rows) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}.")
    dst = _check_writable_path(dst)
    with h5py.File(src, "r") as source:
        ids, n_features, fill_rows, describe_row = _row_source(source, src)
        if chunk_rows is None:
            chunk_rows = max(1, _CHUNK_BYTES // (n_features * dtype.itemsize))
        chunk_rows = min(chunk_rows, len(ids))
        with atomic_file(dst, suffix=".h5") as temporary, h5py.File(temporary, "w") as target:
            embeddings = target.create_dataset(
                "embeddings",
                shape=(len(ids), n_features),
                dtype=dtype,
                chunks=(chunk_rows, n_features),
                compression=compression,
                shuffle=compression is not None,
            )
            _copy_rows(fill_rows, describe_row, embeddings, progress=progress)
            target.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    return dst


def _check_writable_path(path):
    """Return ``path`` as a Path after checking that its directory exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "Directory to write into does not exist", str(path.parent))
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give the path of the file to write.")
    return path


def _row_source(f, path):
    """Describe the embeddings of the open file ``f`` for reading by rows.

    Returns ``(ids, n_features, fill_rows, describe_row)``: ``fill_rows(start,
    stop, out)`` reads rows ``start:stop`` into ``out[:stop - start]`` with
    the same checks as `load_embeddings`, and ``describe_row(i)`` names row
    ``i`` in error messages.
    """
    layout, names = _layout_of(f, path)
    if layout == "matrix":
        embeddings, ids = _matrix_datasets(f, path)

        def fill_rows(start, stop, out):
            embeddings.read_direct(out, np.s_[start:stop], np.s_[: stop - start])

        def describe_row(row):
            return f"Embeddings file {path!r}: 'embeddings' row {row} (id {ids[row]!r})"

        return ids, embeddings.shape[1], fill_rows, describe_row

    n_features = _uniprot_reference_length(f, path, names[0])

    def fill_rows(start, stop, out):
        _fill_uniprot_rows(f, path, names[start:stop], out[: stop - start], reference=names[0])

    def describe_row(row):
        return f"Embeddings file {path!r}: dataset {names[row]!r}"

    return np.asarray(names, dtype=object), n_features, fill_rows, describe_row


def _copy_rows(fill_rows, describe_row, target, *, progress):
    """Copy every row into the 2-D dataset ``target``, one block at a time."""
    n_rows, n_features = target.shape
    chunk_rows = target.chunks[0]
    # Whole chunks per block: a compressed chunk written in two pieces
    # would be compressed, read back and compressed again.
    block_rows = max(1, _BLOCK_BYTES // (4 * n_features * chunk_rows)) * chunk_rows
    # Read in float32 (or wider) so that values that overflow the target
    # dtype are caught after the cast, not stored as inf.
    buffer = np.empty((min(block_rows, n_rows), n_features), dtype=np.promote_types(target.dtype, np.float32))
    with _progress_bar(n_rows, enabled=progress) as bar:
        for start in range(0, n_rows, block_rows):
            stop = min(start + block_rows, n_rows)
            block = buffer[: stop - start]
            fill_rows(start, stop, block)
            target[start:stop] = _cast_finite(block, target.dtype, start, describe_row)
            bar.update(stop - start)


def _cast_finite(block, dtype, start, describe_row):
    """Return ``block`` cast to ``dtype``, after checking every value is finite there."""
    with np.errstate(over="ignore"):
        cast = block.astype(dtype, copy=False)
    bad_row = _first_nonfinite_row(cast)
    if bad_row is None:
        return cast
    where = describe_row(start + bad_row)
    if np.isfinite(block[bad_row]).all():
        raise ValueError(f"{where} overflows {dtype}; convert with a wider dtype such as np.float32.")
    raise ValueError(f"{where} contains NaN or infinite values.")


def _progress_bar(total, *, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="protein", unit_scale=True, disable=not enabled)


# --------------------------------------------------------------------------
# Codes on disk
# --------------------------------------------------------------------------

_CODES_KEYS = ("data", "indices", "indptr")
_CODES_FORMAT = "csr"
# Elements per chunk of the 1-D ``data`` and ``indices`` datasets: 1 MiB of
# float32, so reading a few rows' codes touches one or two chunks.
_CODES_CHUNK = 2**18
# Default rows per block: about 2**24 float32 values (64 MB) for the larger
# of the input block and a dense output block.
_CODES_BLOCK_ELEMENTS = 2**24


def write_codes(path, estimator, X, *, ids=None, block_rows=None, progress=False):
    """Encode ``X`` block by block and write the codes to an HDF5 file.

    For embeddings too large for memory, or codes too large to keep: rows
    of ``X`` are sliced a block at a time (an h5py dataset or a
    `numpy.memmap` is never read whole), passed to ``estimator.transform``,
    and appended to the file in compressed sparse row (CSR) form. Memory is
    bounded by the block size. The file is written under a temporary name
    beside ``path`` and renamed into place when complete.

    The file holds, at its root, the three arrays of a
    `scipy.sparse.csr_array`: ``data`` (float32, the non-zero codes),
    ``indices`` (int32 or int64, their latent index) and ``indptr`` (int64,
    of length ``n_samples + 1``: row ``i``'s codes are
    ``data[indptr[i]:indptr[i + 1]]``), plus, when given, ``ids`` (UTF-8
    strings, one per row). The root attributes ``shape`` (``[n_samples,
    n_latents]``) and ``format`` (``"csr"``) describe the matrix. Within a
    row, latents are in increasing order; zeros are not stored. Read it
    back with `load_codes`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist. An existing file is
        replaced.
    estimator : fitted transformer
        Typically a fitted `~sklearn_sae.SparseAutoencoderTransformer`;
        any fitted transformer with ``transform`` and ``n_features_in_``
        works. Dense output is made sparse block by block; with
        ``sparse_output=True`` no dense block is built at all.
    X : array-like, h5py.Dataset or numpy.memmap of shape (n_samples, n_features)
        Rows to encode, e.g. ``h5py.File(...)["embeddings"]`` of a file
        made by `convert_embeddings`.
    ids : sequence of str of length n_samples, default=None
        Unique, non-empty ids of the rows, stored beside the codes.
    block_rows : int, default=None
        Rows encoded at a time. ``None`` picks about 2**24 values (64 MB
        of float32) for the larger of an input block and a dense output
        block; for a chunked h5py dataset, a multiple of its chunk rows
        reads fastest.
    progress : bool, default=False
        Show a tqdm progress bar, counted in rows.

    Returns
    -------
    path : pathlib.Path
        The path written.

    Raises
    ------
    ValueError
        If ``X`` is not 2-D, has a number of columns other than
        ``estimator.n_features_in_``, if ``ids`` are invalid or their
        number differs from the rows of ``X``, or if ``block_rows`` is not
        a positive integer. Errors raised by ``estimator.transform`` (e.g.
        on non-finite rows) propagate; ``path`` is then left as it was.
    sklearn.exceptions.NotFittedError
        If ``estimator`` is not fitted.

    See Also
    --------
    load_codes : Read the file back as a CSR matrix.

    Examples
    --------
    >>> import os, tempfile
    >>> import numpy as np
    >>> from sklearn.decomposition import PCA
    >>> from sklearn_sae.datasets import load_codes, write_codes
    >>> X = np.random.RandomState(0).normal(size=(50, 8))
    >>> pca = PCA(n_components=3).fit(X)
    >>> path = write_codes(os.path.join(tempfile.mkdtemp(), "codes.h5"), pca, X, block_rows=16)
    >>> ids, codes = load_codes(path)
    >>> codes.shape, ids is None
    ((50, 3), True)
    >>> bool(np.allclose(codes.toarray(), pca.transform(X), atol=1e-5))
    True
    """
    check_is_fitted(estimator)
    X = _check_rows_to_encode(X, estimator)
    n_rows = X.shape[0]
    if ids is not None:
        ids = _check_ids(ids, what="ids")
        if len(ids) != n_rows:
            raise ValueError(f"X has {n_rows} rows but {len(ids)} ids were given.")
    if block_rows is None:
        widest = max(X.shape[1], getattr(estimator, "n_latents_", 0))
        block_rows = max(1, _CODES_BLOCK_ELEMENTS // widest)
    elif not _is_int(block_rows) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer or None, got {block_rows!r}.")
    path = _check_writable_path(path)
    with atomic_file(path, suffix=".h5") as temporary, h5py.File(temporary, "w") as f:
        n_latents = _write_csr_blocks(f, estimator, X, int(block_rows), progress=progress)
        f.attrs["format"] = _CODES_FORMAT
        f.attrs["shape"] = np.array([n_rows, n_latents], dtype=np.int64)
        if ids is not None:
            f.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    return path


def _check_rows_to_encode(X, estimator):
    """Return ``X`` as something sliceable by rows: an h5py dataset, a memmap or an ndarray."""
    if not isinstance(X, (h5py.Dataset, np.ndarray)):
        X = np.asarray(X)
    if X.ndim != 2:
        raise ValueError(f"X must be 2-D, got shape {X.shape}.")
    if X.shape[0] == 0:
        raise ValueError("X has no rows.")
    if X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {type(estimator).__name__} is expecting "
            f"{estimator.n_features_in_} features as input."
        )
    return X


def _write_csr_blocks(f, estimator, X, block_rows, *, progress):
    """Encode ``X`` in blocks of rows into CSR datasets of ``f``; return the number of latents."""
    n_rows = X.shape[0]
    indptr = f.create_dataset("indptr", shape=(n_rows + 1,), dtype=np.int64)
    indptr[0] = 0
    data = indices = None
    n_stored = 0
    with _progress_bar(n_rows, enabled=progress) as bar:
        for start in range(0, n_rows, block_rows):
            stop = min(start + block_rows, n_rows)
            codes = _csr_block(estimator.transform(X[start:stop]), stop - start)
            if data is None:
                n_latents = codes.shape[1]
                data, indices = _create_csr_datasets(f, n_latents)
            elif codes.shape[1] != n_latents:
                raise ValueError(
                    f"{type(estimator).__name__}.transform returned {codes.shape[1]} columns for rows "
                    f"{start}:{stop} but {n_latents} before."
                )
            _append(data, codes.data, n_stored)
            _append(indices, codes.indices, n_stored)
            indptr[start + 1 : stop + 1] = n_stored + codes.indptr[1:]
            n_stored += codes.nnz
            bar.update(stop - start)
    return n_latents


def _csr_block(codes, n_rows):
    """``codes`` as a canonical float32 CSR matrix without stored zeros."""
    codes = codes.tocsr() if sp.issparse(codes) else sp.csr_matrix(np.asarray(codes))
    if codes.shape[0] != n_rows:
        raise ValueError(f"transform returned {codes.shape[0]} rows for a block of {n_rows}.")
    codes = codes.astype(np.float32, copy=False)
    codes.eliminate_zeros()
    codes.sort_indices()
    return codes


def _create_csr_datasets(f, n_latents):
    index_dtype = np.int32 if n_latents <= np.iinfo(np.int32).max else np.int64
    growable = {"shape": (0,), "maxshape": (None,), "chunks": (_CODES_CHUNK,)}
    return (
        f.create_dataset("data", dtype=np.float32, **growable),
        f.create_dataset("indices", dtype=index_dtype, **growable),
    )


def _append(dataset, values, n_stored):
    dataset.resize((n_stored + len(values),))
    dataset[n_stored:] = values


def load_codes(path):
    """Read codes written by `write_codes` as a CSR matrix.

    Parameters
    ----------
    path : str or os.PathLike
        A file written by `write_codes`.

    Returns
    -------
    ids : ndarray of shape (n_samples,), dtype=object, or None
        The row ids as Python ``str``, or None if the file stores none.
    codes : scipy.sparse.csr_matrix of shape (n_samples, n_latents)
        The codes, float32.

    Raises
    ------
    FileNotFoundError
        If ``path`` does not exist.
    ValueError
        If the file is not HDF5 or not a consistent CSR matrix in the
        layout `write_codes` documents; the message says which part.

    Examples
    --------
    See `write_codes`.
    """
    path = _check_readable_hdf5(path)
    with h5py.File(path, "r") as f:
        shape = _codes_shape(f, path)
        arrays = {}
        for key in _CODES_KEYS:
            if not isinstance(f.get(key), h5py.Dataset) or f[key].ndim != 1:
                raise ValueError(f"Codes file {path!r} has no 1-D {key!r} dataset; write it with write_codes.")
            arrays[key] = f[key][()]
        ids = _matrix_ids(f, path) if "ids" in f else None
    _check_csr_arrays(path, shape, ids, **arrays)
    codes = sp.csr_matrix((arrays["data"], arrays["indices"], arrays["indptr"]), shape=shape)
    return ids, codes


def _codes_shape(f, path):
    if f.attrs.get("format") != _CODES_FORMAT or "shape" not in f.attrs:
        raise ValueError(
            f"Codes file {path!r} lacks the attributes format='csr' and shape; write it with write_codes."
        )
    shape = tuple(int(size) for size in np.ravel(f.attrs["shape"]))
    if len(shape) != 2 or min(shape) < 0:
        raise ValueError(f"Codes file {path!r}: attribute shape must be two sizes, got {shape}.")
    return shape


def _check_csr_arrays(path, shape, ids, *, data, indices, indptr):
    """Check that the arrays read from ``path`` form a valid CSR matrix of ``shape``."""
    where = f"Codes file {path!r}"
    if len(indptr) != shape[0] + 1:
        raise ValueError(f"{where}: 'indptr' has {len(indptr)} entries, expected n_samples + 1 = {shape[0] + 1}.")
    if indptr[0] != 0 or np.any(np.diff(indptr) < 0) or indptr[-1] != len(data):
        raise ValueError(f"{where}: 'indptr' must rise from 0 to the length of 'data' ({len(data)}).")
    if len(indices) != len(data):
        raise ValueError(f"{where}: 'indices' and 'data' differ in length ({len(indices)} and {len(data)}).")
    if len(indices) and (indices.min() < 0 or indices.max() >= shape[1]):
        raise ValueError(f"{where}: 'indices' must lie in [0, {shape[1]}).")
    if ids is not None and len(ids) != shape[0]:
        raise ValueError(f"{where}: 'ids' has {len(ids)} entries but the codes have {shape[0]} rows.")


# --------------------------------------------------------------------------
# Splitting
# --------------------------------------------------------------------------


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


def _is_int(value):
    # bool is an Integral, but True as a size is surely a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


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


# --------------------------------------------------------------------------
# Synthetic data with known features
# --------------------------------------------------------------------------


def make_sparse_signals(
    n_samples=2000,
    n_features=64,
    n_atoms=128,
    n_active=4,
    *,
    frequency_exponent=1.0,
    magnitude_range=(0.5, 2.0),
    noise=0.0,
    offset=0.0,
    n_outlier_features=0,
    outlier_scale=10.0,
    random_state=None,
):
    """Generate signals made of sparse non-negative combinations of known atoms.

    The generative model, row by row:

    1. ``dictionary``: ``n_atoms`` unit-norm atoms in ``n_features``
       dimensions, drawn uniformly on the sphere.
    2. Exactly ``n_active`` atoms are active in each row, drawn without
       replacement with probabilities proportional to
       ``(rank + 1) ** -frequency_exponent``: a power law, so a few atoms are
       common and many are rare, as features of real embeddings are.
    3. Each active atom gets a magnitude drawn log-uniformly from
       ``magnitude_range``; ``codes`` holds them, ``(n_samples, n_atoms)``.
    4. ``X = codes @ dictionary`` plus, optionally, Gaussian noise of standard
       deviation ``noise`` per entry, a shared offset vector of norm
       ``offset`` (a random direction), and ``n_outlier_features`` features
       whose values are all shifted by ``outlier_scale`` times the typical
       signal norm (protein language model embeddings have a few such
       dimensions).

    Parameters
    ----------
    n_samples : int, default=2000
        Number of rows.
    n_features : int, default=64
        Dimension of each row.
    n_atoms : int, default=128
        Number of true atoms (features).
    n_active : int, default=4
        Active atoms per row; must not exceed ``n_atoms``.
    frequency_exponent : float, default=1.0
        Exponent of the power law of atom frequencies; 0 makes all atoms
        equally frequent.
    magnitude_range : tuple of float, default=(0.5, 2.0)
        Positive ``(low, high)`` bounds of the magnitudes.
    noise : float, default=0.0
        Standard deviation of additive Gaussian noise.
    offset : float, default=0.0
        Norm of a vector added to every row.
    n_outlier_features : int, default=0
        Number of features shifted by a large constant.
    outlier_scale : float, default=10.0
        Size of that shift, in units of the mean norm of ``codes @ dictionary``.
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The signals.
    dictionary : ndarray of shape (n_atoms, n_features)
        The true atoms, one per row, unit norm.
    codes : ndarray of shape (n_samples, n_atoms)
        The true non-negative codes, ``n_active`` non-zeros per row.

    Examples
    --------
    >>> from sklearn_sae.datasets import make_sparse_signals
    >>> X, dictionary, codes = make_sparse_signals(100, 16, 32, 3, random_state=0)
    >>> X.shape, dictionary.shape, codes.shape
    ((100, 16), (32, 16), (100, 32))
    >>> int((codes > 0).sum(axis=1).max())
    3
    """
    for name, value in [("n_samples", n_samples), ("n_features", n_features), ("n_atoms", n_atoms), ("n_active", n_active)]:
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if n_active > n_atoms:
        raise ValueError(f"n_active={n_active} cannot exceed n_atoms={n_atoms}.")
    low, high = magnitude_range
    if not 0 < low <= high:
        raise ValueError(f"magnitude_range must be (low, high) with 0 < low <= high, got {magnitude_range!r}.")
    if not 0 <= n_outlier_features <= n_features:
        raise ValueError(f"n_outlier_features must be in [0, n_features], got {n_outlier_features!r}.")
    if noise < 0 or offset < 0:
        raise ValueError("noise and offset must be non-negative.")
    rng = check_random_state(random_state)

    dictionary = rng.normal(size=(n_atoms, n_features))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)

    # Sampling without replacement, proportional to the power law, all rows at
    # once: the top n_active of log-weights plus Gumbel noise (Gumbel-top-k trick).
    log_weights = -frequency_exponent * np.log(np.arange(1, n_atoms + 1))
    scores = log_weights + rng.gumbel(size=(n_samples, n_atoms))
    active = np.argpartition(-scores, n_active - 1, axis=1)[:, :n_active]
    magnitudes = np.exp(rng.uniform(np.log(low), np.log(high), size=(n_samples, n_active)))
    codes = np.zeros((n_samples, n_atoms))
    np.put_along_axis(codes, active, magnitudes, axis=1)

    X = codes @ dictionary
    signal_norm = np.linalg.norm(X, axis=1).mean()
    if noise:
        X += rng.normal(scale=noise, size=X.shape)
    if offset:
        direction = rng.normal(size=n_features)
        X += offset * direction / np.linalg.norm(direction)
    if n_outlier_features:
        outliers = rng.choice(n_features, size=n_outlier_features, replace=False)
        X[:, outliers] += outlier_scale * signal_norm * rng.choice([-1.0, 1.0], size=n_outlier_features)
    return X.astype(np.float32), dictionary, codes



# --------------------------------------------------------------------------
# Per-protein labels
# --------------------------------------------------------------------------

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
    are kept as they are.

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
    frame = frame.drop(columns=_ID_COLUMN)
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
