"""Read, write and split protein embedding datasets.

Two HDF5 layouts are understood:

``"uniprot"``
    The layout of UniProt's ``per-protein.h5`` files: one root-level dataset
    per protein, named by its accession, each a 1-D vector of shape ``(d,)``.
``"matrix"``
    A root-level ``embeddings`` dataset of shape ``(n, d)`` beside an ``ids``
    dataset of ``n`` strings; row ``i`` of ``embeddings`` belongs to
    ``ids[i]``.
"""

import errno
import numbers
import os
from pathlib import Path

import h5py
import numpy as np
import pandas as pd
from h5py import h5, h5d, h5s, h5t
from sklearn.model_selection import train_test_split
from sklearn.utils import check_random_state

from ._atomic import atomic_file

__all__ = ["load_embeddings", "load_protein_labels", "save_embeddings", "train_val_test_split", "make_sparse_signals"]

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
    names = _root_names(f)
    if not names:
        raise ValueError(f"Embeddings file {path!r} contains no datasets.")
    present = [key for key in _MATRIX_KEYS if key in names]
    if len(present) == len(_MATRIX_KEYS):
        return _read_matrix(f, path, wanted, dtype)
    if present:
        missing = next(key for key in _MATRIX_KEYS if key not in names)
        raise ValueError(
            f"Embeddings file {path!r} has a {present[0]!r} dataset but no "
            f"{missing!r} dataset; the matrix layout needs both."
        )
    return _read_uniprot(f, path, names, wanted, dtype)


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


def _fill_uniprot_rows(f, path, names, X):
    """Read dataset ``names[i]`` into ``X[i]`` for every ``i``.

    Swiss-Prot's file holds ~570k tiny datasets, so the per-dataset cost is
    all that matters. The low-level API opens, checks and reads each one
    about three times faster than ``f[key][()]``: it skips the high-level
    object wrappers and reuses one memory type and dataspace, and HDF5
    converts float16 to ``X.dtype`` straight into the row. Anything
    unexpected goes to ``_uniprot_dataset_error`` for a precise message.
    """
    root = f["/"].id
    expected_shape = (X.shape[1],)
    mem_type = h5t.py_create(X.dtype)
    mem_space = h5s.create_simple(expected_shape)
    for i, name in enumerate(names):
        try:
            dataset = h5d.open(root, name.encode("utf-8"))
        except KeyError as exc:  # a group, a named datatype or a broken link
            _raise_if_invalid(f, path, name, names[0], cause=exc)
            raise
        file_space = dataset.get_space()
        if file_space.shape != expected_shape:
            # Never None here: the checks cover every shape but this one.
            raise _uniprot_dataset_error(f, path, name, reference=names[0])
        try:
            dataset.read(mem_space, file_space, X[i], mem_type)
        except (TypeError, OSError) as exc:
            # HDF5 refuses to convert strings and other non-numeric types to
            # float; an OSError that is not about the type is a real read
            # failure and propagates unchanged.
            _raise_if_invalid(f, path, name, names[0], cause=exc)
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
    # The temporary file is private; a dataset is meant to be shared, or
    # keeps the mode it had.
    mode = path.stat().st_mode & 0o777 if path.exists() else 0o644
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
        os.chmod(temporary, mode)
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
