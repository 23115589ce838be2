import re

import h5py
import numpy as np
import pytest

from sklearn_sae.datasets import (
    load_embeddings,
    save_embeddings,
    train_val_test_split,
)

IDS = ["Q9Y6K9", "A0A024RBG1", "P12345"]


def _embeddings(n_samples=3, n_features=4, seed=0):
    return np.random.default_rng(seed).standard_normal((n_samples, n_features))


def _write_h5(path, contents, **file_kwargs):
    """Write ``contents`` (name -> array, SoftLink or dict for a group)."""
    with h5py.File(path, "w", **file_kwargs) as f:
        for name, value in contents.items():
            if isinstance(value, dict):
                f.create_group(name)
            elif isinstance(value, h5py.SoftLink):
                f[name] = value
            else:
                f.create_dataset(name, data=value)
    return path


def _message(path, *fragments):
    """Regex matching the file name, then each fragment, in that order."""
    return ".*".join(re.escape(part) for part in (path.name, *fragments))


# --------------------------------------------------------------------------
# save_embeddings / load_embeddings round trip
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["uniprot", "matrix"])
@pytest.mark.parametrize("dtype, atol", [(np.float16, 1e-2), (np.float32, 1e-7)])
def test_round_trip(tmp_path, layout, dtype, atol):
    X = _embeddings()
    path = save_embeddings(tmp_path / "emb.h5", IDS, X, layout=layout, dtype=dtype)
    assert path == tmp_path / "emb.h5"

    ids, X_loaded = load_embeddings(path)

    # The uniprot layout comes back in the file's key order (alphabetical),
    # so compare through each id's row.
    assert sorted(ids) == sorted(IDS)
    assert all(isinstance(acc, str) for acc in ids)
    assert X_loaded.dtype == np.float32
    assert X_loaded.shape == X.shape
    assert X_loaded.flags.c_contiguous
    row_of = {acc: row for row, acc in enumerate(IDS)}
    expected = X[[row_of[acc] for acc in ids]]
    np.testing.assert_allclose(X_loaded, expected, atol=atol, rtol=atol)


@pytest.mark.parametrize("layout", ["uniprot", "matrix"])
def test_load_preserves_file_order(tmp_path, layout):
    # save_embeddings tracks creation order, so even the UniProt layout comes back in the saved order, not sorted.
    path = save_embeddings(tmp_path / "emb.h5", IDS, _embeddings(), layout=layout)
    ids, _ = load_embeddings(path)
    assert ids.tolist() == IDS


def test_load_uniprot_follows_tracked_creation_order(tmp_path):
    contents = {acc: np.full(2, i, dtype=np.float16) for i, acc in enumerate(IDS)}
    path = _write_h5(tmp_path / "emb.h5", contents, track_order=True)
    ids, X = load_embeddings(path)
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(X[:, 0], [0, 1, 2])


def test_load_dtype_float64(tmp_path):
    path = save_embeddings(tmp_path / "emb.h5", IDS, _embeddings(), dtype=np.float32)
    _, X = load_embeddings(path, dtype=np.float64)
    assert X.dtype == np.float64


def test_load_converts_integer_vectors(tmp_path):
    path = _write_h5(tmp_path / "int.h5", {"P1": np.array([1, 2, 3], dtype="u1")})
    _, X = load_embeddings(path)
    np.testing.assert_array_equal(X, [[1.0, 2.0, 3.0]])


# --------------------------------------------------------------------------
# ids= subsets
# --------------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["uniprot", "matrix"])
def test_load_ids_subset_in_requested_order(tmp_path, layout):
    X = _embeddings()
    path = save_embeddings(
        tmp_path / "emb.h5", IDS, X, layout=layout, dtype=np.float32
    )
    wanted = ["P12345", "Q9Y6K9"]
    ids, X_loaded = load_embeddings(path, ids=wanted)
    assert ids.tolist() == wanted
    np.testing.assert_allclose(X_loaded, X[[2, 0]], rtol=1e-6)


@pytest.mark.parametrize("layout", ["uniprot", "matrix"])
def test_load_ids_missing(tmp_path, layout):
    path = save_embeddings(tmp_path / "emb.h5", IDS, _embeddings(), layout=layout)
    missing = [f"X{i}" for i in range(7)]
    with pytest.raises(ValueError, match=r"7 requested ids are not in") as info:
        load_embeddings(path, ids=["P12345", *missing])
    message = str(info.value)
    assert path.name in message
    assert "'X0'" in message and "'X4'" in message
    # Only the first five are listed; the rest are counted.
    assert "'X5'" not in message and "and 2 more" in message


@pytest.mark.parametrize(
    "ids, match",
    [
        (["P12345", "P12345"], "'P12345' is repeated"),
        ([], "ids is empty"),
        ("P12345", "not a single str"),
        (["P12345", 7], "element 1 is 7"),
    ],
)
def test_load_ids_invalid(tmp_path, ids, match):
    path = save_embeddings(tmp_path / "emb.h5", IDS, _embeddings())
    with pytest.raises(ValueError, match=match):
        load_embeddings(path, ids=ids)


# --------------------------------------------------------------------------
# Bad files
# --------------------------------------------------------------------------


def test_load_missing_file(tmp_path):
    path = tmp_path / "absent.h5"
    with pytest.raises(FileNotFoundError, match=re.escape(path.name)):
        load_embeddings(path)


def test_load_not_hdf5(tmp_path):
    path = tmp_path / "emb.h5"  # named as HDF5, holding a table: a .csv name would be read as one
    path.write_text("id,x\nP1,0.5\n")
    with pytest.raises(ValueError, match=_message(path, "is not an HDF5 file")):
        load_embeddings(path)
    with pytest.raises(ValueError, match=_message(path, "is not an HDF5 file")):
        load_embeddings(path, format="hdf5")


def test_load_empty_file(tmp_path):
    path = _write_h5(tmp_path / "empty.h5", {})
    with pytest.raises(ValueError, match=_message(path, "contains no datasets")):
        load_embeddings(path)


VECTOR = np.zeros(4, dtype=np.float16)
STR = h5py.string_dtype()


@pytest.mark.parametrize(
    "contents, fragments",
    [
        (
            {"A": VECTOR, "B": np.zeros(3, dtype=np.float16)},
            ["'B' has length 3, but 'A' has length 4"],
        ),
        ({"A": VECTOR, "B": np.array(list("abcd"), dtype="S1")}, ["'B'", "non-numeric"]),
        ({"A": np.array(b"text"), "B": VECTOR}, ["'A'", "non-numeric"]),
        ({"A": VECTOR, "B": np.array("text", dtype=STR)}, ["'B'", "non-numeric"]),
        ({"A": VECTOR, "B": np.zeros((5, 4))}, ["'B' is a 2-D", "per-residue"]),
        ({"A": np.zeros((5, 4)), "B": VECTOR}, ["'A' is a 2-D", "per-residue"]),
        ({"A": VECTOR, "B": np.float32(1.0)}, ["'B' is a 0-D"]),
        ({"A": VECTOR, "grp": {}}, ["'grp' is a group, not a dataset"]),
        ({"A": VECTOR, "B": h5py.SoftLink("/nowhere")}, ["'B' is a broken link"]),
        ({"A": np.zeros(0)}, ["'A' is an empty vector"]),
        ({"embeddings": np.zeros((2, 4))}, ["'embeddings'", "no 'ids'"]),
        ({"ids": np.array([b"P1", b"P2"])}, ["'ids'", "no 'embeddings'"]),
    ],
)
def test_load_uniprot_layout_errors(tmp_path, contents, fragments):
    path = _write_h5(tmp_path / "bad.h5", contents)
    with pytest.raises(ValueError, match=_message(path, *fragments)):
        load_embeddings(path)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf, -np.inf])
def test_load_uniprot_nonfinite_names_first_key(tmp_path, bad_value):
    bad = np.array([0, bad_value, 0, 0], dtype=np.float16)
    path = _write_h5(tmp_path / "bad.h5", {"A": VECTOR, "B": bad, "C": bad})
    with pytest.raises(ValueError, match=_message(path, "'B'", "NaN or infinite")):
        load_embeddings(path)


@pytest.mark.parametrize("wanted", [None, ["P3", "P2"]])
def test_load_matrix_nonfinite_names_row_and_id(tmp_path, wanted):
    embeddings = np.zeros((3, 2), dtype=np.float16)
    embeddings[1, 1] = np.nan
    contents = {"embeddings": embeddings, "ids": np.array([b"P1", b"P2", b"P3"])}
    path = _write_h5(tmp_path / "bad.h5", contents)
    with pytest.raises(ValueError, match=_message(path, "row 1 (id 'P2')")):
        load_embeddings(path, ids=wanted)


STR_IDS = np.array(["P1", "P2"], dtype=h5py.string_dtype())


@pytest.mark.parametrize(
    "contents, fragments",
    [
        (
            {"embeddings": np.zeros((2, 3)), "ids": np.array([b"P1", b"P1"])},
            ["'ids' holds 'P1' more than once"],
        ),
        (
            {"embeddings": np.zeros((3, 3)), "ids": STR_IDS},
            ["'ids' has 2 entries but 'embeddings' has 3 rows"],
        ),
        (
            {"embeddings": np.array([[b"a"], [b"b"]]), "ids": STR_IDS},
            ["'embeddings'", "non-numeric"],
        ),
        ({"embeddings": np.zeros(2), "ids": STR_IDS}, ["'embeddings' must be 2-D"]),
        ({"embeddings": np.zeros((0, 3)), "ids": STR_IDS[:0]}, ["'embeddings' is empty"]),
        ({"embeddings": np.zeros((2, 3)), "ids": np.arange(2)}, ["'ids' must hold strings"]),
    ],
)
def test_load_matrix_layout_errors(tmp_path, contents, fragments):
    path = _write_h5(tmp_path / "bad.h5", contents)
    with pytest.raises(ValueError, match=_message(path, *fragments)):
        load_embeddings(path)


# --------------------------------------------------------------------------
# save_embeddings validation
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "ids, X, kwargs, match",
    [
        (["P1", "P1"], np.zeros((2, 3)), {}, "'P1' is repeated"),
        (["P1", "P2"], np.zeros(2), {}, "X must be 2-D"),
        (["P1", "P2"], np.zeros((3, 2)), {}, "3 rows but 2 ids"),
        (["P1", "P2"], [[0.0, np.nan], [0.0, 0.0]], {}, r"row 0 \(id 'P1'\)"),
        (["P1", "P2"], [[0.0, 0.0], [1e6, 0.0]], {}, r"row 1 \(id 'P2'\) overflows"),
        (["P1", "P2"], [["a"], ["b"]], {}, "X must be numeric"),
        (["sp/P1", "P2"], np.zeros((2, 3)), {}, "'sp/P1' cannot name"),
        (["P1", "P2"], np.zeros((2, 3)), {"layout": "csv"}, "layout must be one"),
        (["P1", "P2"], np.zeros((2, 3)), {"dtype": np.int8}, "floating point"),
    ],
)
def test_save_invalid_input(tmp_path, ids, X, kwargs, match):
    path = tmp_path / "emb.h5"
    path.write_bytes(b"keep me")
    with pytest.raises(ValueError, match=match):
        save_embeddings(path, ids, X, **kwargs)
    # Validation runs before the file is opened for writing.
    assert path.read_bytes() == b"keep me"


def test_save_matrix_layout_allows_slash_in_ids(tmp_path):
    ids = ["sp|P1|A", "tr/P2"]
    path = save_embeddings(tmp_path / "emb.h5", ids, np.eye(2), layout="matrix")
    loaded_ids, X = load_embeddings(path)
    assert loaded_ids.tolist() == ids
    np.testing.assert_array_equal(X, np.eye(2))


# --------------------------------------------------------------------------
# train_val_test_split
# --------------------------------------------------------------------------


@pytest.mark.parametrize(
    "n_samples, sizes, expected",
    [
        (100, (0.8, 0.1, 0.1), (80, 10, 10)),
        (10, (0.8, 0.1, 0.1), (8, 1, 1)),
        (37, (0.8, 0.1, 0.1), (29, 4, 4)),
        (3, (1 / 3, 1 / 3, 1 / 3), (1, 1, 1)),
        (10, (5, 3, 2), (5, 3, 2)),
        (10, (np.int64(5), 3, 2), (5, 3, 2)),
    ],
)
def test_split_sizes(n_samples, sizes, expected):
    pieces = train_val_test_split(np.arange(n_samples), sizes=sizes, random_state=0)
    lengths = tuple(len(piece) for piece in pieces)
    assert lengths == expected
    assert sum(lengths) == n_samples
    np.testing.assert_array_equal(np.sort(np.concatenate(pieces)), np.arange(n_samples))


def test_split_keeps_arrays_aligned():
    ids = np.array([f"P{i}" for i in range(37)])
    X = np.arange(37 * 2).reshape(37, 2)
    pieces = train_val_test_split(ids, X, random_state=0)
    assert len(pieces) == 6
    for ids_piece, X_piece in zip(pieces[:3], pieces[3:]):
        rows = [int(acc[1:]) for acc in ids_piece]
        np.testing.assert_array_equal(X_piece, X[rows])


def test_split_accepts_lists():
    pieces = train_val_test_split(list("abcdefghij"), random_state=0)
    assert [type(piece) for piece in pieces] == [list] * 3
    assert sorted(sum(pieces, [])) == list("abcdefghij")


def test_split_is_reproducible():
    X = np.arange(100)
    first = train_val_test_split(X, random_state=42)
    again = train_val_test_split(X, random_state=42)
    other = train_val_test_split(X, random_state=43)
    for piece, same in zip(first, again):
        np.testing.assert_array_equal(piece, same)
    assert not all(np.array_equal(a, b) for a, b in zip(first, other))


def test_split_without_shuffle_is_consecutive():
    train, val, test = train_val_test_split(np.arange(10), shuffle=False)
    np.testing.assert_array_equal(train, np.arange(8))
    np.testing.assert_array_equal(val, [8])
    np.testing.assert_array_equal(test, [9])


@pytest.mark.parametrize(
    "sizes, match",
    [
        ((0.8, 0.2), "3 values"),
        ((0.8, 0.1, 0.2), "sum to 1"),
        ((0.9, 0.1, 0.0), "strictly between 0 and 1"),
        ((-0.1, 0.6, 0.5), "strictly between 0 and 1"),
        ((8, 1, 2), "sum to n_samples=10"),
        ((9, 1, 0), "must be positive"),
        ((8, 0.1, 0.1), "3 fractions or 3 integer counts"),
        ((True, 8, 1), "3 fractions or 3 integer counts"),
        (("0.8", 0.1, 0.1), "3 fractions or 3 integer counts"),
    ],
)
def test_split_bad_sizes(sizes, match):
    with pytest.raises(ValueError, match=match):
        train_val_test_split(np.arange(10), sizes=sizes)


@pytest.mark.parametrize("n_samples, empty", [(5, "test"), (2, "validation")])
def test_split_too_small(n_samples, empty):
    match = f"n_samples={n_samples} is too small.*{empty} set would be empty"
    with pytest.raises(ValueError, match=match):
        train_val_test_split(np.arange(n_samples))


def test_split_needs_consistent_arrays():
    with pytest.raises(ValueError, match="At least one array"):
        train_val_test_split()
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        train_val_test_split(np.arange(10), np.arange(9))
