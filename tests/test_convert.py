"""convert_embeddings, write_codes / load_codes and the ``sklearn-sae convert`` command line."""

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.decomposition import PCA
from sklearn.exceptions import NotFittedError

from sklearn_sae import SparseAutoencoderTransformer, datasets
from sklearn_sae._atomic import TEMPORARY_PREFIX
from sklearn_sae._cli import main
from sklearn_sae.datasets import convert_embeddings, load_codes, load_embeddings, save_embeddings, write_codes

REPO = Path(__file__).resolve().parents[1]


def _embeddings(n=40, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return np.array([f"P{i:05d}" for i in range(n)], dtype=object), rng.normal(size=(n, d)).astype(np.float32)


def _uniprot_file(tmp_path, n=40, d=12, name="per-protein.h5"):
    ids, X = _embeddings(n, d)
    return save_embeddings(tmp_path / name, ids, X), ids, X


def _leftovers(folder):
    return [p.name for p in Path(folder).iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


@pytest.fixture
def small_blocks(monkeypatch):
    """Blocks of 8 rows of 12 float32 values (with chunks of 4 or 8 rows), so that small files span several blocks."""
    monkeypatch.setattr("sklearn_sae._blocks.BLOCK_ELEMENTS", 8 * 12)


# --------------------------------------------------------------------------
# convert_embeddings
# --------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_convert_round_trip_matches_source(tmp_path, small_blocks, dtype):
    src, ids, X = _uniprot_file(tmp_path)
    dst = convert_embeddings(src, tmp_path / "matrix.h5", dtype=dtype, chunk_rows=4)
    assert dst == tmp_path / "matrix.h5"
    loaded_ids, loaded = load_embeddings(dst)
    np.testing.assert_array_equal(loaded_ids, ids)
    # The source holds float16 already, so the values are exactly the source's.
    np.testing.assert_array_equal(loaded, load_embeddings(src)[1])
    np.testing.assert_allclose(loaded, X, rtol=1e-3, atol=1e-3)
    with h5py.File(dst) as f:
        assert f["embeddings"].dtype == dtype
        assert f["embeddings"].chunks == (4, 12)
        assert f["embeddings"].compression is None
    assert _leftovers(tmp_path) == []


@pytest.mark.parametrize(("n_features", "dtype", "expected_rows"), [(1024, np.float16, 64), (1024, np.float32, 32), (3, np.float16, 100)])
def test_default_chunks_fit_the_chunk_cache(tmp_path, n_features, dtype, expected_rows):
    ids, X = _embeddings(100, n_features)
    src = save_embeddings(tmp_path / "m.h5", ids, X, layout="matrix")
    with h5py.File(convert_embeddings(src, tmp_path / "c.h5", dtype=dtype)) as f:
        rows, width = f["embeddings"].chunks
        # min(rows that fill 128 KiB, n): never more than HDF5's default 1 MiB chunk cache.
        assert (rows, width) == (expected_rows, n_features)
        assert rows * width * np.dtype(dtype).itemsize <= 2**20


def test_convert_float32_source_rounds_to_float16(tmp_path):
    ids, X = _embeddings()
    src = save_embeddings(tmp_path / "m.h5", ids, X, layout="matrix", dtype=np.float32)
    _, loaded = load_embeddings(convert_embeddings(src, tmp_path / "c.h5"))
    np.testing.assert_array_equal(loaded, X.astype(np.float16).astype(np.float32))


@pytest.mark.parametrize("compression", ["gzip", "lzf"])
def test_convert_with_compression(tmp_path, compression):
    src, ids, _ = _uniprot_file(tmp_path)
    dst = convert_embeddings(src, tmp_path / "c.h5", compression=compression)
    with h5py.File(dst) as f:
        assert f["embeddings"].compression == compression
        assert f["embeddings"].shuffle
    np.testing.assert_array_equal(load_embeddings(dst)[1], load_embeddings(src)[1])


def test_convert_matrix_file_in_place(tmp_path, small_blocks):
    ids, X = _embeddings()
    path = save_embeddings(tmp_path / "m.h5", ids, X, layout="matrix", dtype=np.float32)
    convert_embeddings(path, path, chunk_rows=8)
    loaded_ids, loaded = load_embeddings(path)
    np.testing.assert_array_equal(loaded_ids, ids)
    np.testing.assert_array_equal(loaded, X.astype(np.float16).astype(np.float32))
    with h5py.File(path) as f:
        assert (f["embeddings"].dtype, f["embeddings"].chunks) == (np.float16, (8, 12))
    assert _leftovers(tmp_path) == []


def _break(path, key, value):
    with h5py.File(path, "a") as f:
        del f[key]
        f[key] = value


# Rows 0 and 8 start a block (8 rows each with small_blocks), row 13 is inside one.
@pytest.mark.parametrize("row", [0, 8, 13])
@pytest.mark.parametrize(
    ("value", "message"),
    [
        (np.zeros(5, dtype=np.float16), "has length 5"),
        (np.array(["a"] * 12, dtype=h5py.string_dtype()), "non-numeric"),
        (np.full(12, np.nan, dtype=np.float16), "NaN or infinite"),
        (np.full(12, 1e6, dtype=np.float32), "overflows float16"),
    ],
)
def test_convert_names_the_bad_protein(tmp_path, small_blocks, row, value, message):
    src, ids, _ = _uniprot_file(tmp_path)
    if row == 0 and "length" in message:
        message = "length"  # the first vector sets the width: the second then disagrees
    _break(src, ids[row], value)
    dst = save_embeddings(tmp_path / "c.h5", ["previous"], np.ones((1, 3)))  # a file convert may replace
    previous = dst.read_bytes()
    with pytest.raises(ValueError, match=message) as error:
        convert_embeddings(src, dst, chunk_rows=4)
    assert repr(ids[row]) in str(error.value) or (row == 0 and repr(ids[1]) in str(error.value))
    assert dst.read_bytes() == previous
    assert _leftovers(tmp_path) == []


def test_convert_names_the_bad_row_of_a_matrix_file(tmp_path, small_blocks):
    ids, X = _embeddings()
    X[21, 3] = np.inf
    path = tmp_path / "m.h5"
    with h5py.File(path, "w") as f:
        f["embeddings"] = X
        f.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    with pytest.raises(ValueError, match=r"row 21 \(id 'P00021'\) contains NaN"):
        convert_embeddings(path, tmp_path / "c.h5", chunk_rows=4)


def test_float32_keeps_values_that_overflow_float16(tmp_path):
    ids, X = _embeddings()
    X[5] = 1e6
    src = save_embeddings(tmp_path / "m.h5", ids, X, layout="matrix", dtype=np.float32)
    _, loaded = load_embeddings(convert_embeddings(src, tmp_path / "c.h5", dtype=np.float32))
    np.testing.assert_array_equal(loaded, X)


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"dtype": np.int16}, "floating point"),
        ({"compression": "zstd"}, "compression must be one of"),
        ({"chunk_rows": 0}, "chunk_rows must be a positive integer"),
        ({"chunk_rows": 2.5}, "chunk_rows must be a positive integer"),
    ],
)
def test_convert_rejects_bad_options(tmp_path, options, message):
    src, _, _ = _uniprot_file(tmp_path)
    with pytest.raises(ValueError, match=message):
        convert_embeddings(src, tmp_path / "c.h5", **options)
    assert not (tmp_path / "c.h5").exists()


def test_convert_rejects_bad_paths(tmp_path):
    src, _, _ = _uniprot_file(tmp_path)
    with pytest.raises(FileNotFoundError):
        convert_embeddings(tmp_path / "missing.h5", tmp_path / "c.h5")
    with pytest.raises(FileNotFoundError, match="does not exist"):
        convert_embeddings(src, tmp_path / "no" / "such" / "dir.h5")
    with pytest.raises(ValueError, match="is a directory"):
        convert_embeddings(src, tmp_path)
    with h5py.File(tmp_path / "e.h5", "w") as f:
        f["embeddings"] = np.zeros((2, 2))
    with pytest.raises(ValueError, match="has a 'embeddings' dataset but no 'ids'"):
        convert_embeddings(tmp_path / "e.h5", tmp_path / "c.h5")


def test_convert_memory_does_not_grow_with_the_data(tmp_path, monkeypatch):
    n, d = 4000, 1024
    ids = [f"P{i}" for i in range(n)]
    src = tmp_path / "m.h5"
    with h5py.File(src, "w") as f:
        f["embeddings"] = np.ones((n, d), dtype=np.float16)
        f.create_dataset("ids", data=ids, dtype=h5py.string_dtype())
    monkeypatch.setattr("sklearn_sae._blocks.BLOCK_ELEMENTS", 16 * 1024)
    tracemalloc.start()
    try:
        convert_embeddings(src, tmp_path / "c.h5")
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    # The whole matrix takes 16 MB as float32; the 64 KiB blocks and the ids (~100 bytes each) take
    # about 2 MB, most of it the ids.
    assert peak < 4 * 2**20


def test_progress_bar_only_when_asked(tmp_path, capsys):
    src, _, _ = _uniprot_file(tmp_path)
    convert_embeddings(src, tmp_path / "c.h5")
    assert capsys.readouterr().err == ""
    convert_embeddings(src, tmp_path / "c.h5", progress=True)
    assert "100%" in capsys.readouterr().err


# --------------------------------------------------------------------------
# write_codes / load_codes
# --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def sae():
    X = _embeddings(200, 12)[1]
    return SparseAutoencoderTransformer(n_latents=32, k=3, max_epochs=1, batch_size=64, device="cpu", random_state=0).fit(X)


def _as_h5py(tmp_path, X):
    f = h5py.File(tmp_path / "x.h5", "w")
    f.create_dataset("embeddings", data=X, chunks=(8, X.shape[1]))
    return f, f["embeddings"]


def _as_memmap(tmp_path, X):
    memmap = np.lib.format.open_memmap(tmp_path / "x.npy", mode="w+", dtype=X.dtype, shape=X.shape)
    memmap[:] = X
    return None, memmap


@pytest.mark.parametrize("container", ["array", "h5py", "memmap"])
@pytest.mark.parametrize("sparse_output", [False, True])
def test_write_codes_matches_transform(tmp_path, sae, container, sparse_output):
    ids, X = _embeddings(45, 12)
    handle, source = {"array": lambda t, x: (None, x), "h5py": _as_h5py, "memmap": _as_memmap}[container](tmp_path, X)
    estimator = sae.set_params(sparse_output=sparse_output)
    try:
        path = write_codes(tmp_path / "codes.h5", estimator, source, ids=ids, block_rows=8)
    finally:
        if handle is not None:
            handle.close()
    loaded_ids, codes = load_codes(path)
    np.testing.assert_array_equal(loaded_ids, ids)
    assert sp.issparse(codes) and codes.format == "csr" and codes.dtype == np.float32
    expected = sae.set_params(sparse_output=False).transform(X)
    np.testing.assert_allclose(codes.toarray(), expected, rtol=1e-6, atol=1e-7)
    assert codes.nnz == np.count_nonzero(expected)
    assert codes.has_sorted_indices
    with h5py.File(path) as f:
        assert f.attrs["format"] == "csr"
        np.testing.assert_array_equal(f.attrs["shape"], [45, 32])
        assert f["indices"].dtype == np.int32 and f["indptr"].dtype == np.int64
    assert _leftovers(tmp_path) == []


class _RecordingPCA(PCA):
    """A PCA that records the number of rows of every block it transforms."""

    def transform(self, X):
        self.block_sizes_.append(len(X))
        return super().transform(X)


def test_write_codes_encodes_block_by_block(tmp_path):
    X = _embeddings(50, 6)[1]
    pca = _RecordingPCA(n_components=4).fit(X)
    pca.block_sizes_ = []
    ids, codes = load_codes(write_codes(tmp_path / "codes.h5", pca, X, block_rows=16))
    assert pca.block_sizes_ == [16, 16, 16, 2]
    assert ids is None
    np.testing.assert_allclose(codes.toarray(), PCA(n_components=4).fit(X).transform(X), rtol=1e-4, atol=1e-5)


def test_write_codes_failure_leaves_nothing(tmp_path, sae):
    _, X = _embeddings(30, 12)
    X[20] = np.nan
    path = tmp_path / "codes.h5"
    with pytest.raises(ValueError, match="NaN"):
        write_codes(path, sae, X, block_rows=8)
    assert not path.exists()
    assert _leftovers(tmp_path) == []


def test_write_codes_rejects_bad_input(tmp_path, sae):
    _, X = _embeddings(10, 12)
    path = tmp_path / "codes.h5"
    with pytest.raises(NotFittedError):
        write_codes(path, SparseAutoencoderTransformer(), X)
    with pytest.raises(ValueError, match="X has 5 features, but SparseAutoencoderTransformer is expecting 12"):
        write_codes(path, sae, X[:, :5])
    with pytest.raises(ValueError, match="2-D"):
        write_codes(path, sae, X[0])
    with pytest.raises(ValueError, match="10 rows but 2 ids"):
        write_codes(path, sae, X, ids=["a", "b"])
    with pytest.raises(ValueError, match="block_rows must be a positive integer"):
        write_codes(path, sae, X, block_rows=0)
    assert not path.exists()


def test_load_codes_rejects_other_files(tmp_path):
    ids, X = _embeddings()
    embeddings = save_embeddings(tmp_path / "m.h5", ids, X, layout="matrix")
    with pytest.raises(ValueError, match="format='csr'"):
        load_codes(embeddings)
    path = write_codes(tmp_path / "codes.h5", PCA(n_components=2).fit(X), X)
    with h5py.File(path, "a") as f:
        f["indptr"][-1] = 3
    with pytest.raises(ValueError, match="'indptr' must rise from 0"):
        load_codes(path)


# --------------------------------------------------------------------------
# Command line
# --------------------------------------------------------------------------


def test_cli_converts(tmp_path, capsys):
    src, ids, _ = _uniprot_file(tmp_path)
    assert main(["convert", str(src), str(tmp_path / "c.h5"), "--dtype", "float32", "--chunk-rows", "5"]) == 0
    with h5py.File(tmp_path / "c.h5") as f:
        assert (f["embeddings"].dtype, f["embeddings"].chunks) == (np.float32, (5, 12))
    np.testing.assert_array_equal(load_embeddings(tmp_path / "c.h5")[0], ids)
    assert capsys.readouterr().err == ""  # not a terminal: no progress bar


def test_cli_reports_errors_in_one_line(tmp_path, capsys):
    src, ids, _ = _uniprot_file(tmp_path)
    _break(src, ids[3], np.full(12, np.inf, dtype=np.float16))
    assert main(["convert", str(src), str(tmp_path / "c.h5")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("sklearn-sae convert: error: ") and "'P00003'" in err
    assert err.count("\n") == 1


def _run(*args):
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    return subprocess.run([sys.executable, "-m", "sklearn_sae", *args], capture_output=True, text=True, env=env, timeout=120)


def test_cli_subprocess(tmp_path):
    help_run = _run("convert", "--help")
    assert help_run.returncode == 0 and "--chunk-rows" in help_run.stdout
    bad_run = _run("convert", "--chunk-rows", "zero", "a.h5", "b.h5")
    assert bad_run.returncode == 2 and "must be a positive integer" in bad_run.stderr
    missing = _run("convert", str(tmp_path / "missing.h5"), str(tmp_path / "c.h5"))
    assert missing.returncode == 1
    assert missing.stderr == f"sklearn-sae convert: error: Embeddings file does not exist: {tmp_path / 'missing.h5'}\n"
