"""Checks and helpers shared by the readers and writers of this package: ids, dtypes, paths, progress."""

from __future__ import annotations

import errno
import numbers
import os
from pathlib import Path

import h5py
import numpy as np


# Dtype kinds read as embedding values. Booleans count: HDF5 converts h5py's
# bool enum to 0.0 / 1.0, and rejecting them would need a per-dataset type
# check that costs ~15% of the load time of the "uniprot" layout.
_NUMERIC_KINDS = "biuf"
# Ids listed in error messages; more would drown the message.
_MAX_LISTED = 5


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


def attribute_text(value) -> str:
    """An HDF5 attribute or string value as text: ``bytes`` decoded as UTF-8, anything else through ``str``.

    The one decoding of ids and ``original_id`` attributes, which h5py returns as ``str`` or ``bytes`` depending on
    how the file was written.
    """
    return value.decode() if isinstance(value, bytes) else str(value)


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


def _missing_message(path, missing):
    listed = ", ".join(repr(acc) for acc in missing[:_MAX_LISTED])
    more = len(missing) - _MAX_LISTED
    if more > 0:
        listed += f" and {more} more"
    return f"{len(missing)} requested ids are not in {path!r}: {listed}."


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


def _is_int(value):
    # bool is an Integral, but True as a size is surely a mistake.
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _check_writable_path(path):
    """Return ``path`` as a Path after checking that its directory exists."""
    path = Path(path)
    if not path.parent.is_dir():
        raise FileNotFoundError(errno.ENOENT, "Directory to write into does not exist", str(path.parent))
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a directory; give the path of the file to write.")
    return path


def _progress_bar(total, *, enabled):
    from tqdm.auto import tqdm

    return tqdm(total=total, unit="protein", unit_scale=True, disable=not enabled)
