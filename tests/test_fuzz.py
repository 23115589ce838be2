"""Property-based tests: whatever the input, a correct result or a ValueError/TypeError that says why.

Hypothesis draws inputs for the estimator (shapes, dtypes, NaN and inf, sparse formats, pandas, lists),
its constructor parameters, and the HDF5 loader (random layouts, damaged files). Any other exception,
a result of the wrong shape or dtype, or a non-finite result is a bug. The writers are interrupted
midway to check that no half-written file is ever left at the destination.

Every run draws the same examples (``derandomize=True``), so CI is reproducible; to search harder
locally, raise ``max_examples`` and drop ``derandomize``.
"""

import io
import os
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, event, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import datasets
from sklearn_sae._atomic import TEMPORARY_PREFIX
from sklearn_sae.interpret import _atlas, write_atlas

N_FEATURES = 3
N_LATENTS = 4

# The same examples on every run (derandomize) and no saved failures replayed (database=None): reproducible in CI.
REPRODUCIBLE = settings(deadline=None, derandomize=True, database=None, suppress_health_check=[HealthCheck.too_slow])
FAST = settings(REPRODUCIBLE, max_examples=40)
FITS = settings(REPRODUCIBLE, max_examples=20)


def tiny(**params):
    """A model that fits in a few milliseconds."""
    defaults = dict(n_latents=N_LATENTS, k=2, max_epochs=1, batch_size=4, device="cpu", random_state=0,
                    pre_bias_init="zeros", validation_fraction=0.0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


@pytest.fixture(scope="module")
def fitted():
    """One dense-output and one sparse-output model, fitted on the same rows."""
    X = np.random.default_rng(0).normal(size=(16, N_FEATURES)).astype(np.float32)
    return {False: tiny().fit(X), True: tiny(sparse_output=True).fit(X)}


# ---------------------------------------------------------------- inputs

DTYPES = [np.float16, np.float32, np.float64, np.int8, np.int64, np.uint8, np.bool_, np.complex64, object]
SPARSE_FORMATS = ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"]


@st.composite
def numeric_arrays(draw, n_columns=N_FEATURES):
    """Arrays of any rank and numeric dtype, with NaN and inf at random places, usually 2-D of the right width."""
    n_rows = draw(st.integers(0, 6))
    shape = draw(st.sampled_from([
        (n_rows, n_columns), (n_rows, n_columns), (n_rows, n_columns), (n_rows, 0), (n_rows, n_columns + 1),
        (n_columns,), (n_rows, n_columns, 1), (),
    ]))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-1e3, 1e3, allow_nan=False)))
    special = draw(st.sampled_from([None, None, np.nan, np.inf, -np.inf, 1e30, 3e38]))
    if special is not None and values.size:
        where = draw(hnp.arrays(np.bool_, values.shape))
        values = np.where(where, special, values)
    dtype = draw(st.sampled_from(DTYPES))
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # casting NaN to int is exactly the kind of input wanted here
        return values.astype(dtype)


@st.composite
def inputs(draw, n_columns=N_FEATURES):
    """Anything a user might pass as X: arrays, sparse matrices, DataFrames, lists, strings."""
    X = draw(numeric_arrays(n_columns))
    kind = draw(st.sampled_from(["array", "array", "sparse", "frame", "list", "strings"]))
    if kind == "sparse" and X.ndim == 2 and X.dtype not in (object, np.float16):  # scipy has no float16
        return getattr(sp, f"{draw(st.sampled_from(SPARSE_FORMATS))}_matrix")(X)
    if kind == "frame" and X.ndim == 2:
        columns = draw(st.sampled_from([None, "str", "mixed"]))
        names = {None: None, "str": [f"f{i}" for i in range(X.shape[1])],
                 "mixed": [f"f{i}" if i % 2 else i for i in range(X.shape[1])]}[columns]
        frame = pd.DataFrame(X, columns=names)
        if draw(st.booleans()) and X.shape[1]:
            frame[frame.columns[0]] = frame[frame.columns[0]].astype(object)  # a mixed-dtype frame
        if draw(st.booleans()) and X.dtype.kind == "f":
            frame = frame.astype("Float64")  # pandas' nullable floats: NaN becomes pd.NA
        if draw(st.booleans()) and X.shape[1]:
            frame[frame.columns[-1]] = draw(st.sampled_from(["a", "1.5", pd.NA, None]))
        return frame
    if kind == "list":
        return X.tolist()
    if kind == "strings":
        return X.astype(str) if draw(st.booleans()) else np.full(X.shape, "protein", dtype=object)
    return X


def assert_explained_failure(error):
    """A failure is a ValueError or TypeError whose message says something."""
    assert isinstance(error, (ValueError, TypeError)), f"{type(error).__name__}: {error}"
    assert str(error).strip(), f"{type(error).__name__} without a message"


def call(method, *args, **kwargs):
    """``method(*args, **kwargs)``, or None after checking that its failure is explained."""
    try:
        return method(*args, **kwargs)
    except Exception as error:  # noqa: BLE001 - every exception is examined
        assert_explained_failure(error)
        return None


def n_rows_of(X):
    if isinstance(X, list):
        return len(X)
    shape = getattr(X, "shape", ())
    return shape[0] if shape else 1  # a scalar counts as one row, of which there is no valid one


def assert_rows(result, n_rows, n_columns, *, sparse=False):
    """``result`` is a finite float32 matrix of the expected shape (CSR when ``sparse``)."""
    if sparse:
        assert isinstance(result, sp.csr_matrix), type(result)
        values = result.data
    else:
        assert isinstance(result, np.ndarray), type(result)
        values = result
    assert result.shape == (n_rows, n_columns)
    assert result.dtype == np.float32
    assert np.isfinite(values).all()


# ---------------------------------------------------------------- estimator


@FAST
@given(X=inputs(), sparse_output=st.booleans())
def test_transform_and_reconstruct_any_input(fitted, X, sparse_output):
    model = fitted[sparse_output]
    codes = call(model.transform, X)
    event("encoded" if codes is not None else "refused")
    if codes is not None:
        assert_rows(codes, n_rows_of(X), N_LATENTS, sparse=sparse_output)
        assert (codes.data if sparse_output else codes).min(initial=0) >= 0
    X_hat = call(model.reconstruct, X)
    if X_hat is not None:
        assert_rows(X_hat, n_rows_of(X), N_FEATURES)
    # Both accept the same inputs: one refusing what the other takes would be a validation gap.
    assert (codes is None) == (X_hat is None)
    score = call(model.score, X)
    assert (score is None) == (codes is None)
    if score is not None:
        assert isinstance(score, float) and not np.isnan(score)


@FAST
@given(codes=inputs(N_LATENTS))
def test_inverse_transform_any_input(fitted, codes):
    X_hat = call(fitted[False].inverse_transform, codes)
    if X_hat is not None:
        assert_rows(X_hat, n_rows_of(codes), N_FEATURES)


@FITS
@given(X=inputs())
def test_fit_any_input(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # fewer training rows than latents
        model = call(tiny().fit, X)
    event("fitted" if model is not None else "refused")
    if model is not None:
        assert model.n_features_in_ == (len(X[0]) if isinstance(X, list) else X.shape[1])
        assert_rows(model.transform(X), n_rows_of(X), N_LATENTS)


# ---------------------------------------------------------------- parameters

# Each parameter: (values that are valid, values of wrong types or out of range).
PARAMETERS = {
    "n_latents": ([None, 2, 8], [0, -1, 2.5, "4"]),
    "activation": (["topk", "gumbel_topk", "relu"], ["TopK", None, 1]),
    "k": ([1, 2, 4, 5], [0, 1.5, None]),
    "l1_coef": ([None, 0.0, 1e-3], [-1.0, "0", np.nan]),
    "normalize": ([True, False], [1.5, "yes"]),
    "tied": ([True, False], [None]),
    "pre_bias_init": (["geometric_median", "mean", "zeros"], ["median", None]),
    "unit_norm_decoder": ([True, False], [0.5]),
    "aux_k": ([None, 1, 3], [0, 2.0]),
    "aux_coef": ([0.0, 1 / 32], [-1.0]),
    "dead_window": ([1, 10_000], [0, 1.5]),
    "tau_start": ([1.0, 1e-3], [0.0, -1.0, np.nan]),
    "tau_end": ([1e-8, 1.0], [0.0]),
    "anneal_steps": ([0.5, 1, 3, 1.0], [0.0, 1.5, 0, -1]),
    "gumbel_candidates": (["positive", "all"], ["none"]),
    "lr": ([1e-2, 1.0], [0.0, -1e-3, np.nan]),
    "batch_size": ([1, 4, 1000], [0, 2.0]),
    "max_epochs": ([1, 2], [0, 1.0]),
    "warmup_steps": ([0, 1, 0.5, 0.0], [1.0, -1, 2.5]),
    "grad_clip": ([None, 1.0, 1e-6], [0.0, -1.0]),
    "validation_fraction": ([0.0, 0.25, 0.5], [1.0, -0.1, None]),
    "n_iter_no_change": ([None, 1], [0, 1.5]),
    "amp": ([False, True], ["no"]),
    "device": (["cpu"], ["CPU", "tpu", "cuda:x", 0]),
    "sparse_output": ([False, True], [None]),
    "random_state": ([0, None, np.random.RandomState(0)], [-1, "seed"]),
    "verbose": ([0, False], [-1, "loud"]),
}


@st.composite
def parameters(draw):
    """Valid values for a few parameters, and half the time one invalid value."""
    names = draw(st.lists(st.sampled_from(sorted(PARAMETERS)), max_size=6, unique=True))
    params = {name: draw(st.sampled_from(PARAMETERS[name][0])) for name in names}
    if draw(st.booleans()):
        name = draw(st.sampled_from(sorted(PARAMETERS)))
        params[name] = draw(st.sampled_from(PARAMETERS[name][1]))
    return params


@FITS
@given(params=parameters())
def test_any_parameters(params):
    X = np.random.default_rng(0).normal(size=(8, N_FEATURES)).astype(np.float32)
    model = tiny(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few rows for the latents, an unfinished Gumbel anneal
        fitted = call(model.fit, X)
    event("fitted" if fitted is not None else "refused")
    if fitted is None:
        return
    codes = fitted.transform(X)
    assert_rows(codes, 8, fitted.n_latents_, sparse=bool(params.get("sparse_output", False)))
    assert_rows(fitted.reconstruct(X), 8, N_FEATURES)


def test_invalid_parameter_is_a_value_error():
    """sklearn's InvalidParameterError, raised for the tables above, is a ValueError with the parameter's name."""
    with pytest.raises(InvalidParameterError, match="lr"):
        tiny(lr=-1.0).fit(np.ones((4, N_FEATURES)))
    assert issubclass(InvalidParameterError, ValueError)


# ---------------------------------------------------------------- regression tests for bugs found here


@pytest.mark.parametrize("method", ["fit", "transform", "reconstruct", "score"])
def test_values_too_large_for_float32_rows_are_refused(fitted, method):
    """Rows with values near 1e20 overflow float32 when squared: reconstructions were inf and codes meaningless."""
    X = np.random.default_rng(0).normal(size=(8, N_FEATURES)).astype(np.float32) * np.float32(1e20)
    target = tiny() if method == "fit" else fitted[False]
    with pytest.raises(ValueError, match="Rescale X"):
        getattr(target, method)(X)


def test_eval_set_too_large_is_refused():
    X = np.random.default_rng(0).normal(size=(8, N_FEATURES)).astype(np.float32)
    with pytest.raises(ValueError, match=r"Rescale eval_sets\['test'\]"):
        tiny().fit(X, eval_sets={"test": X * np.float32(1e20)})


def test_codes_too_large_are_refused(fitted):
    with pytest.raises(ValueError, match="Rescale codes"):
        fitted[False].inverse_transform(np.full((2, N_LATENTS), 1e30, dtype=np.float32))


def test_large_but_safe_values_give_finite_reconstructions(fitted):
    X = np.random.default_rng(1).normal(size=(8, N_FEATURES)).astype(np.float32) * np.float32(1e17)
    assert np.isfinite(fitted[False].reconstruct(X)).all()


# ---------------------------------------------------------------- HDF5 loader

# Any text HDF5 takes as a link name: no "/" (a path separator) or NUL, and not "." (the group itself).
ACCESSIONS = st.text(st.characters(codec="utf-8", exclude_characters="/\x00"), min_size=1, max_size=6).filter(
    lambda name: name != "."
)


def _values(draw, shape, *, broken):
    dtype = draw(st.sampled_from(["<f2", "<f4", ">f8", "<i4", "u1", "?"] + (["<c8", "S4", "str"] if broken else [])))
    values = draw(hnp.arrays(np.float64, shape, elements=st.floats(-10, 10)))
    if broken and values.size and draw(st.booleans()):  # one NaN or inf, somewhere
        values.flat[draw(st.integers(0, values.size - 1))] = draw(st.sampled_from([np.nan, np.inf, -np.inf]))
    if dtype == "str":
        return values.astype(str).astype(object), h5py.string_dtype()
    with np.errstate(all="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return values.astype(dtype), None


@st.composite
def hdf5_layouts(draw):
    """A random HDF5 layout: half the time a valid one, otherwise one with something wrong."""
    broken = draw(st.booleans())
    layout = draw(st.sampled_from(["uniprot", "matrix"] + (["half-matrix", "empty"] if broken else [])))
    n_features = draw(st.sampled_from([1, 3] + ([0, 1, 3] if broken else [])))
    entries = []
    if layout == "uniprot":
        kinds = ["vector"] + (["vector", "other-width", "matrix", "scalar", "group", "broken-link"] if broken else [])
        for name in draw(st.lists(ACCESSIONS, min_size=1, max_size=4, unique=True)):
            what = draw(st.sampled_from(kinds))
            shape = {
                "vector": (n_features,), "other-width": (n_features + 1,), "matrix": (2, n_features), "scalar": ()
            }.get(what)
            entries.append((name, what, None if shape is None else _values(draw, shape, broken=broken)))
    elif layout in ("matrix", "half-matrix"):
        n_rows = draw(st.sampled_from([1, 3] + ([0, 1, 3] if broken else [])))
        shapes = [(n_rows, n_features)]
        if broken:
            shapes += [(n_rows,), (n_rows, n_features, 1)]
        what = draw(st.sampled_from(["dataset"] + (["dataset", "group"] if broken else [])))
        entries.append(("embeddings", what, _values(draw, draw(st.sampled_from(shapes)), broken=broken)))
        n_ids = n_rows + (draw(st.sampled_from([-1, 0, 1])) if broken else 0)
        ids = draw(st.lists(ACCESSIONS, min_size=max(n_ids, 0), max_size=max(n_ids, 0), unique=not broken))
        id_kind = draw(st.sampled_from(["str", "bytes", "fixed-bytes"] + (["numbers", "2-D"] if broken else [])))
        if layout == "matrix":
            entries.append(("ids", id_kind, ids))
    return layout, entries


def write_layout(path, layout):
    _, entries = layout
    with h5py.File(path, "w") as f:
        for name, what, content in entries:
            if what == "group":
                f.create_group(name)
            elif what == "broken-link":
                f[name] = h5py.SoftLink("/nowhere")
            elif name == "ids":
                if what == "str":
                    f.create_dataset("ids", data=content, dtype=h5py.string_dtype())
                elif what == "bytes":
                    f.create_dataset("ids", data=[s.encode() for s in content], dtype=h5py.string_dtype("ascii"))
                elif what == "fixed-bytes":
                    f.create_dataset("ids", data=np.array([s.encode() for s in content], dtype="S32"))
                elif what == "numbers":
                    f.create_dataset("ids", data=np.arange(len(content)))
                else:
                    f.create_dataset("ids", data=np.array([content, content], dtype=h5py.string_dtype()))
            else:
                values, dtype = content
                f.create_dataset(name, data=values, dtype=dtype)


def assert_loaded(result):
    ids, X = result
    assert isinstance(ids, np.ndarray) and ids.dtype == object and ids.ndim == 1
    assert all(isinstance(acc, str) and acc for acc in ids)
    assert len(set(ids)) == len(ids)
    assert isinstance(X, np.ndarray) and X.dtype == np.float32 and X.ndim == 2 and X.flags.c_contiguous
    assert X.shape[0] == len(ids) >= 1 and X.shape[1] >= 1
    assert np.isfinite(X).all()


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return tmp_path_factory.mktemp("fuzz")


@FAST
@given(layout=hdf5_layouts(), subset=st.booleans())
def test_load_embeddings_any_layout(folder, layout, subset):
    path = folder / "layout.h5"
    write_layout(path, layout)
    result = call(datasets.load_embeddings, path)
    event("loaded" if result is not None else "refused")
    if result is not None:
        assert_loaded(result)
        if subset:  # the rows asked for, in the order asked
            wanted = list(result[0][::-1])
            ids, X = datasets.load_embeddings(path, ids=wanted)
            assert list(ids) == wanted
            np.testing.assert_array_equal(X, result[1][::-1])


@st.composite
def damages(draw):
    """How to damage a file: truncate it, overwrite some bytes, or replace it by random bytes."""
    how = draw(st.sampled_from(["truncate", "overwrite", "overwrite", "random"]))
    position = draw(st.floats(0, 1, exclude_max=True))
    payload = draw(st.binary(min_size=1, max_size=64))
    return how, position, payload


def damage(path, how, position, payload):
    data = bytearray(path.read_bytes())
    at = int(position * len(data))
    if how == "truncate":
        data = data[:at]
    elif how == "overwrite":
        data[at : at + len(payload)] = payload
    else:
        data = bytearray(payload)
    path.write_bytes(bytes(data))


@FAST
@given(layout=st.sampled_from(["uniprot", "matrix"]), damage_=damages())
# Damage that h5py reported as an OSError, a KeyError and a RuntimeError before the loader caught them.
@example(layout="uniprot", damage_=("truncate", 0.5, b"\x00"))
@example(layout="matrix", damage_=("overwrite", 0.140625, b"\x00"))
@example(layout="uniprot", damage_=("overwrite", 0.265625, b"\x00"))
def test_load_embeddings_damaged_file(folder, layout, damage_):
    path = folder / "damaged.h5"
    path.unlink(missing_ok=True)  # the previous example's damaged file, which save_embeddings no longer recognises
    X = np.arange(12, dtype=np.float32).reshape(4, 3)
    datasets.save_embeddings(path, ["P1", "P2", "Q3", "Q4"], X, layout=layout)
    damage(path, *damage_)
    result = call(datasets.load_embeddings, path)
    if result is not None:
        assert_loaded(result)
        assert result[1].shape[1] == 3


def test_truncated_file_is_a_value_error_naming_it(folder):
    path = folder / "truncated.h5"
    datasets.save_embeddings(path, ["P1", "P2"], np.eye(2))
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    with pytest.raises(ValueError, match="truncated.h5.*damaged or truncated"):
        datasets.load_embeddings(path)


@FAST
@given(
    X=numeric_arrays() | hnp.arrays(
        st.sampled_from([np.float32, np.float64, np.int16]),
        st.tuples(st.integers(1, 4), st.integers(1, 3)),
        elements=st.integers(-1000, 1000),
    ),
    extra_ids=st.sampled_from([0, 0, 0, 0, 1, -1]),
    data=st.data(),
    layout=st.sampled_from(["uniprot", "matrix", "uniprot", "matrix", "rows"]),
    dtype=st.sampled_from([np.float16, np.float32, np.float64, "float32", np.int32]),
)
def test_save_embeddings_any_input_round_trips(folder, X, extra_ids, data, layout, dtype):
    """What save_embeddings accepts, load_embeddings gives back; what it refuses, it explains."""
    n_ids = max(0, (X.shape[0] if X.ndim else 1) + extra_ids)
    unique = data.draw(st.integers(0, 3)) > 0
    ids = data.draw(st.lists(ACCESSIONS, min_size=n_ids, max_size=n_ids, unique=unique), label="ids")
    if ids and data.draw(st.integers(0, 2)) == 0:
        bad_id = data.draw(st.sampled_from(["", "a/b", ".", b"P1", 7, None]), label="bad id")
        ids[data.draw(st.integers(0, n_ids - 1))] = bad_id
    path = folder / "round-trip.h5"
    written = call(datasets.save_embeddings, path, ids, X, layout=layout, dtype=dtype)
    event("saved" if written is not None else "refused")
    if written is None:
        return
    loaded_ids, loaded = datasets.load_embeddings(path, dtype=np.float64)
    assert list(loaded_ids) == list(ids)
    np.testing.assert_array_equal(loaded, np.asarray(X, dtype=dtype).astype(np.float64))


LABEL_FIELDS = st.sampled_from(
    ["accession", "location", "split", "length", "tm_class", "P1", "P2", "", "NA", "1.5", '"', "a,b"]
)


@FAST
@given(
    rows=st.lists(st.lists(LABEL_FIELDS, min_size=1, max_size=4), max_size=5),
    garbage=st.sampled_from([b"", b"", b"\xff\xfe\x00", b"\r\n\r\n", b"\x00"]),
)
def test_load_protein_labels_any_table(folder, rows, garbage):
    path = folder / "labels.csv"
    path.write_bytes("\n".join(",".join(row) for row in rows).encode() + garbage)
    labels = call(datasets.load_protein_labels, path)
    event("loaded" if labels is not None else "refused")
    if labels is not None:
        assert isinstance(labels, pd.DataFrame)
        assert labels.index.name == "accession" and labels.index.is_unique
        assert labels.index.notna().all()


@FAST
@given(
    codes=inputs(),
    ids=st.sampled_from([None, "short", "repeated", "numbers"]),
    labels=st.sampled_from([None, "strings", "with-missing", "frame", "short"]),
    components=st.sampled_from([None, "ok", "wrong-shape", "nan"]),
    absolute=st.booleans(),
)
def test_write_atlas_any_input(folder, codes, ids, labels, components, absolute):
    """An atlas of any codes: written in full, or a refusal that explains itself."""
    if absolute and (sp.issparse(codes) or isinstance(codes, np.ndarray) and codes.dtype.kind in "fiu"):
        codes = abs(codes)  # activations are non-negative: give the atlas a chance to be written
    n_rows = n_rows_of(codes)
    n_latents = N_FEATURES
    ids = {None: None, "short": ["P1"], "repeated": ["P1"] * n_rows, "numbers": list(range(n_rows))}[ids]
    kinds = ["x", "y", None, "x", "y", "x"][:n_rows]
    labels = {
        None: None,
        "strings": [str(kind) for kind in kinds],
        "with-missing": kinds,
        "frame": pd.DataFrame({"location": [str(kind) for kind in kinds], "split": ["train"] * n_rows}),
        "short": ["x"],
    }[labels]
    components = {
        None: None,
        "ok": np.eye(n_latents, 5),
        "wrong-shape": np.eye(n_latents + 1, 5),
        "nan": np.full((n_latents, 5), np.nan),
    }[components]
    path = folder / "atlas.html"
    path.unlink(missing_ok=True)
    written = call(write_atlas, path, codes, ids=ids, labels=labels, components=components)
    event("written" if written is not None else "refused")
    if written is None:
        assert not path.exists()
    else:
        assert path.read_text(encoding="utf-8").rstrip().endswith("</html>")


def test_write_atlas_refuses_codes_too_large_for_its_statistics(tmp_path):
    """Regression: codes near the float64 maximum overflowed the latent statistics (a RuntimeWarning, then inf)."""
    codes = np.array([[1e308, 0.0], [0.0, 1.0], [1e308, 1.0]])
    with pytest.raises(ValueError, match="too large"):
        write_atlas(tmp_path / "atlas.html", codes)
    assert not (tmp_path / "atlas.html").exists()


# ---------------------------------------------------------------- interrupted writes


class Interrupted(Exception):
    """Stands for a crash, a full disk or a Ctrl-C in the middle of a write."""


def interrupt_after(monkeypatch, owner, name, n_calls):
    """Make ``owner.name`` raise Interrupted on its call number ``n_calls`` (counting from 0)."""
    original = getattr(owner, name)
    calls = iter(range(10**6))

    def wrapper(*args, **kwargs):
        if next(calls) == n_calls:
            raise Interrupted
        return original(*args, **kwargs)

    monkeypatch.setattr(owner, name, wrapper)


def leftovers(folder):
    return sorted(entry.name for entry in folder.iterdir() if entry.name.startswith(TEMPORARY_PREFIX))


WRITES = settings(REPRODUCIBLE, max_examples=12)  # each write syncs to disk


@WRITES
@given(
    layout=st.sampled_from(["uniprot", "matrix"]),
    n_rows=st.integers(1, 5),
    existing=st.booleans(),
    where=st.sampled_from(["create_dataset", "fsync", "replace"]),
    n_calls=st.integers(0, 5),
)
def test_interrupted_save_embeddings_leaves_no_half_written_file(folder, layout, n_rows, existing, where, n_calls):
    """Wherever the save stops, the destination holds the old file (or nothing) or the complete new one."""
    path = folder / "saved.h5"
    path.unlink(missing_ok=True)
    if existing:
        datasets.save_embeddings(path, ["OLD"], np.ones((1, 2)))
    before = path.read_bytes() if existing else None
    ids = [f"P{i}" for i in range(n_rows)]
    X = np.arange(n_rows * 3, dtype=np.float32).reshape(n_rows, 3)
    with pytest.MonkeyPatch.context() as monkeypatch:
        interrupt_after(monkeypatch, h5py.Group if where == "create_dataset" else os, where, n_calls)
        try:
            datasets.save_embeddings(path, ids, X, layout=layout)
        except Interrupted:
            pass
    assert leftovers(folder) == []
    after = path.read_bytes() if path.exists() else None
    if after != before:  # only ever the complete new file (an interruption after the rename keeps it)
        loaded_ids, loaded = datasets.load_embeddings(path)
        assert list(loaded_ids) == ids
        np.testing.assert_array_equal(loaded, X)


def test_save_embeddings_interrupted_midway_keeps_the_old_file(tmp_path, monkeypatch):
    """Regression: save_embeddings opened the destination itself, truncating it before the new content was written."""
    path = tmp_path / "embeddings.h5"
    datasets.save_embeddings(path, ["OLD"], np.ones((1, 2)))
    before = path.read_bytes()
    interrupt_after(monkeypatch, h5py.Group, "create_dataset", 1)
    with pytest.raises(Interrupted):
        datasets.save_embeddings(path, ["P1", "P2"], np.eye(2))
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


@pytest.mark.parametrize("where", ["write", "fsync", "replace"])
def test_interrupted_write_atlas_leaves_no_half_written_file(tmp_path, monkeypatch, where):
    path = tmp_path / "atlas.html"
    codes = np.array([[0.0, 1.0], [2.0, 0.0], [3.0, 0.5]])
    before = write_atlas(path, codes, title="the previous atlas").read_bytes()
    if where == "write":
        # The built-in open's file objects cannot be patched: the module's open gives one that fails halfway.
        half_writer = lambda *args, **kwargs: _HalfWriter(io.open(*args, **kwargs))  # noqa: E731
        monkeypatch.setattr(_atlas, "open", half_writer, raising=False)
    else:
        interrupt_after(monkeypatch, os, where, 0)
    with pytest.raises(Interrupted):
        write_atlas(path, codes)
    assert path.read_bytes() == before
    assert leftovers(tmp_path) == []


class _HalfWriter:
    """A text file that writes half of what it is given, then fails."""

    def __init__(self, stream):
        self.stream = stream

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stream.close()

    def write(self, text):
        self.stream.write(text[: len(text) // 2])
        self.stream.flush()
        raise Interrupted


def test_written_files_are_readable_by_others(tmp_path):
    """Files are written as private temporary files; that mode must not stick to a file meant to be shared."""
    atlas = write_atlas(tmp_path / "atlas.html", np.array([[0.0, 1.0], [2.0, 0.0]]))
    saved = datasets.save_embeddings(tmp_path / "embeddings.h5", ["P1"], np.ones((1, 2)))
    assert atlas.stat().st_mode & 0o044 == 0o044
    assert saved.stat().st_mode & 0o044 == 0o044

