"""Writing embeddings: `save_embeddings` in either layout, and `convert_embeddings` to the matrix layout."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np

from .._atomic import atomic_file, check_replaceable
from .._blocks import block_rows_for, first_nonfinite_row
from ._checks import _NUMERIC_KINDS, _check_float_dtype, _check_ids, _check_readable_hdf5, _check_writable_path, _is_int, _progress_bar
from ._formats import detect_format
from ._layouts import (
    _fill_uniprot_rows,
    _layout_of,
    _matrix_datasets,
    _original_ids,
    _uniprot_reference_length,
    load_embeddings,
)
from ._written import foreign_hdf5_content, mark_written


_LAYOUTS = ("uniprot", "matrix")


def save_embeddings(path, ids, X, *, layout="uniprot", dtype=np.float16):
    """Save protein embeddings to an HDF5 file readable by `load_embeddings`.

    Everything is validated before the file is opened, so invalid input
    never truncates an existing file.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write. An existing file is replaced only if this
        package wrote it (embeddings, codes), and only once the new one is
        complete: an interrupted save leaves it as it was. Any other file
        there raises ``ValueError`` and is left as it was.
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
        ``dtype``, if ``layout`` or ``dtype`` is unknown, or if ``path`` is
        a file this package did not write.

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
    with atomic_file(path, foreign=foreign_hdf5_content, writer="save_embeddings()", suffix=".h5") as temporary:
        # track_order: load_embeddings then lists the proteins in the order
        # given here rather than sorted by name.
        with h5py.File(temporary, "w", track_order=True) as f:
            mark_written(f, "embeddings")
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
    bad_row = first_nonfinite_row(X) if X.dtype.kind == "f" else None
    if bad_row is not None:
        raise ValueError(
            f"X row {bad_row} (id {ids[bad_row]!r}) contains NaN or infinite "
            "values."
        )
    # Check again after the cast: float16 overflows to inf above 65504.
    with np.errstate(over="ignore"):
        X_cast = np.ascontiguousarray(X, dtype=dtype)
    bad_row = first_nonfinite_row(X_cast)
    if bad_row is not None:
        raise ValueError(
            f"X row {bad_row} (id {ids[bad_row]!r}) overflows {dtype}; save "
            "with a wider dtype such as np.float32."
        )
    return X_cast


# Target size of one chunk of a converted ``embeddings`` dataset. A chunk is
# the smallest unit HDF5 reads, so it must fit the default 1 MiB chunk cache
# of an open dataset, and every read of fewer rows than a chunk holds pays
# for the whole chunk. On 50k x 1024 float16 (benchmarks/bench_convert.py),
# random reads of 256-row blocks ran as fast from 32- to 256-row chunks,
# while reads of 64-row blocks and of single rows ran 1.5 to 2.5 times
# faster from 64-row chunks than from 256-row ones: 128 KiB it is.
_CHUNK_BYTES = 128 * 1024
_COMPRESSIONS = (None, "gzip", "lzf")
_CONVERT = "convert_embeddings()"


def convert_embeddings(src, dst, *, dtype=np.float16, compression=None, chunk_rows=None, progress=False,
                       layer=None):
    """Convert an embeddings file to the chunked ``"matrix"`` layout.

    ``src`` may also be in any other format `load_embeddings` reads (ESM
    ``.pt`` files, with ``layer``; ``.npy``, ``.npz``, CSV, Parquet): those
    are loaded whole first, so only the HDF5 layouts convert in bounded
    memory. Per-residue files convert with `convert_residue_embeddings`.

    UniProt's ``per-protein.h5`` stores one dataset per protein, and opening
    an HDF5 object costs far more than reading its 1024 numbers, so random
    reads of a few hundred proteins crawl. The ``"matrix"`` layout stores
    one 2-D ``embeddings`` dataset, chunked along rows, beside an ``ids``
    dataset: any block of rows is then one or two chunk reads, which is what
    training from disk needs. Convert once, then read the result with
    `load_embeddings` or slice its ``embeddings`` dataset with h5py.

    Rows are read, checked and written in blocks of about 64 MB (float32), so memory
    does not grow with the size of the embeddings; only the list of ids (a
    few dozen bytes per protein) is held whole. The file is written under a
    temporary name beside ``dst`` and renamed into place when complete, so
    ``dst`` is never left half-written. ``dst`` may be ``src`` itself when
    this package wrote ``src`` (to rechunk or recompress it); a file of
    another origin, UniProt's download among them, is never replaced.

    Parameters
    ----------
    src : str or os.PathLike
        The file to convert, in either layout (see `load_embeddings`). A
        ``"matrix"`` file is rewritten with the chunks, dtype and
        compression asked for.
    dst : str or os.PathLike
        The file to write, in the ``"matrix"`` layout; its directory must
        exist. An existing file is replaced only if this package wrote it;
        any other file there raises ``ValueError`` before ``src`` is read.
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
        ``dtype``, if an option is invalid, or if ``dst`` is a file this
        package did not write. ``dst`` is then left as it was.

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
    in_hdf5 = detect_format(src) == "hdf5"
    if in_hdf5:
        src = _check_readable_hdf5(src)
    dtype = _check_float_dtype(dtype)
    if compression not in _COMPRESSIONS:
        raise ValueError(f"compression must be one of {_COMPRESSIONS}, got {compression!r}.")
    if chunk_rows is not None and (not _is_int(chunk_rows) or chunk_rows < 1):
        raise ValueError(f"chunk_rows must be a positive integer or None, got {chunk_rows!r}.")
    dst = check_replaceable(_check_writable_path(dst), foreign_hdf5_content, writer=_CONVERT, directory=False)
    if not in_hdf5:
        ids, X = load_embeddings(src, dtype=np.float32, layer=layer)
        return _write_matrix(dst, ids, X.shape[1], *_array_source(ids, X, src), dtype=dtype,
                             compression=compression, chunk_rows=chunk_rows, progress=progress)
    if layer is not None:
        raise ValueError("layer= applies to ESM .pt files only.")
    with h5py.File(src, "r") as source:
        ids, n_features, fill_rows, describe_row = _row_source(source, src)
        return _write_matrix(dst, ids, n_features, fill_rows, describe_row, dtype=dtype, compression=compression,
                             chunk_rows=chunk_rows, progress=progress)


def _array_source(ids, X, path):
    """``(fill_rows, describe_row)`` over rows already in memory."""
    def fill_rows(start, stop, out):
        out[: stop - start] = X[start:stop]

    def describe_row(row):
        return f"Embeddings file {str(path)!r}: the vector of {ids[row]!r}"

    return fill_rows, describe_row


def _write_matrix(dst, ids, n_features, fill_rows, describe_row, *, dtype, compression, chunk_rows, progress):
    """Write rows from ``fill_rows`` to the chunked matrix layout at ``dst``; return the path."""
    if chunk_rows is None:
        chunk_rows = max(1, _CHUNK_BYTES // (n_features * dtype.itemsize))
    chunk_rows = min(chunk_rows, len(ids))
    written = atomic_file(dst, foreign=foreign_hdf5_content, writer=_CONVERT, suffix=".h5")
    with written as temporary, h5py.File(temporary, "w") as target:
        mark_written(target, "embeddings")
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

    # The ids load_embeddings gives: the FASTA ids of a ProtTrans file whose datasets are named by hashes.
    original = _original_ids(f, names)
    return np.asarray(names if original is None else original, dtype=object), n_features, fill_rows, describe_row


def _copy_rows(fill_rows, describe_row, target, *, progress):
    """Copy every row into the 2-D dataset ``target``, one block at a time."""
    n_rows, n_features = target.shape
    chunk_rows = target.chunks[0]
    # Whole chunks per block: a compressed chunk written in two pieces
    # would be compressed, read back and compressed again.
    # The float32 buffer holds about _blocks.BLOCK_ELEMENTS values (one chunk at least), whatever the number of rows.
    block_rows = max(1, block_rows_for(n_features) // chunk_rows) * chunk_rows
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
    bad_row = first_nonfinite_row(cast)
    if bad_row is None:
        return cast
    where = describe_row(start + bad_row)
    if np.isfinite(block[bad_row]).all():
        raise ValueError(f"{where} overflows {dtype}; convert with a wider dtype such as np.float32.")
    raise ValueError(f"{where} contains NaN or infinite values.")


