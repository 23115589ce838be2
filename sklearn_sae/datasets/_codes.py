"""Codes on disk: `write_codes` encodes rows block by block into the arrays of a CSR matrix; `load_codes` reads them."""

from __future__ import annotations

import h5py
import numpy as np
import scipy.sparse as sp
from sklearn.utils.validation import check_is_fitted

from .._atomic import atomic_file
from .._blocks import block_rows_for, iter_row_blocks
from ._checks import _check_ids, _check_readable_hdf5, _check_writable_path, _is_int, _progress_bar
from ._layouts import _matrix_ids
from ._written import foreign_hdf5_content, mark_written


_CODES_KEYS = ("data", "indices", "indptr")
_CODES_FORMAT = "csr"
# Elements per chunk of the 1-D ``data`` and ``indices`` datasets: 1 MiB of
# float32, so reading a few rows' codes touches one or two chunks.
_CODES_CHUNK = 2**18


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
    n_latents]``) and ``format`` (``"csr"``) describe the matrix, and
    ``sklearn_sae`` (``"codes"``) marks the file as this package's. Within a
    row, latents are in increasing order; zeros are not stored. Read it
    back with `load_codes`.

    Parameters
    ----------
    path : str or os.PathLike
        The file to write; its directory must exist. An existing file is
        replaced only if this package wrote it (codes, embeddings); any
        other file there raises ``ValueError`` and is left as it was.
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
        Rows encoded at a time. ``None`` picks the package's inference block:
        about 2**24 values (64 MB of float32) for the larger of an input
        block and a dense output block; for a chunked h5py dataset, a
        multiple of its chunk rows reads fastest.
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
        number differs from the rows of ``X``, if ``block_rows`` is not
        a positive integer, or if ``path`` is a file this package did not
        write. Errors raised by ``estimator.transform`` (e.g.
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
        block_rows = block_rows_for(X.shape[1], getattr(estimator, "n_latents_", 0))
    elif not _is_int(block_rows) or block_rows < 1:
        raise ValueError(f"block_rows must be a positive integer or None, got {block_rows!r}.")
    path = _check_writable_path(path)
    written = atomic_file(path, foreign=foreign_hdf5_content, writer="write_codes()", suffix=".h5")
    with written as temporary, h5py.File(temporary, "w") as f:
        n_latents = _write_csr_blocks(f, estimator, X, int(block_rows), progress=progress)
        mark_written(f, "codes")
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
        # The package's one block loop: an on-disk X is read into a reused float32 buffer and checked.
        for start, block in iter_row_blocks(X, block_rows):
            stop = start + block.shape[0]
            codes = _csr_block(estimator.transform(block), stop - start)
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


