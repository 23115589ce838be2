"""Property-based tests: whatever the input, a correct result or a ValueError/TypeError that says why.

Hypothesis draws inputs for the estimator (shapes, dtypes, NaN and inf, sparse formats, pandas, lists),
its constructor parameters, and the HDF5 loader (random layouts, damaged files). Any other exception,
a result of the wrong shape or dtype, or a non-finite result is a bug. The writers are interrupted
midway to check that no half-written file is ever left at the destination.

``derandomize=True`` makes every run draw the same examples, so CI is reproducible.
"""

import os
import warnings

import h5py
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from sklearn.utils._param_validation import InvalidParameterError

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import datasets
from sklearn_sae._atomic import TEMPORARY_PREFIX
from sklearn_sae.interpret import write_atlas

N_FEATURES = 3
N_LATENTS = 4

FAST = settings(max_examples=40, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
FITS = settings(max_examples=15, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])


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


def call(method, *args):
    """``method(*args)``, or None after checking that its failure is explained."""
    try:
        return method(*args)
    except Exception as error:  # noqa: BLE001 - every exception is examined
        assert_explained_failure(error)
        return None


def n_rows_of(X):
    return len(X) if isinstance(X, list) else X.shape[0]


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
    model = call(tiny().fit, X)
    if model is not None:
        assert model.n_features_in_ == N_FEATURES
        assert_rows(model.transform(X), n_rows_of(X), N_LATENTS)


# ---------------------------------------------------------------- parameters

# Each parameter: values that are valid, and values of wrong types or out of range.
PARAMETERS = {
    "n_latents": [None, 2, 8, 0, -1, 2.5, "4"],
    "activation": ["topk", "gumbel_topk", "relu", "TopK", None, 1],
    "k": [1, 2, 4, 5, 0, 1.5, None],
    "l1_coef": [None, 0.0, 1e-3, -1.0, "0", np.nan],
    "normalize": [True, False, 1, "yes"],
    "tied": [True, False, None],
    "pre_bias_init": ["geometric_median", "mean", "zeros", "median", None],
    "unit_norm_decoder": [True, False, 0.5],
    "aux_k": [None, 1, 3, 0, 2.0],
    "aux_coef": [0.0, 1 / 32, -1.0, np.inf],
    "dead_window": [1, 10_000, 0, 1.5],
    "tau_start": [1.0, 1e-3, 0.0, -1.0, np.nan],
    "tau_end": [1e-8, 1.0, 0.0],
    "anneal_steps": [0.5, 1, 3, 1.0, 0.0, 1.5, 0, -1],
    "gumbel_candidates": ["positive", "all", "none"],
    "lr": [1e-2, 1.0, 0.0, -1e-3, np.inf, np.nan],
    "batch_size": [1, 4, 1000, 0, 2.0],
    "max_epochs": [1, 2, 0, 1.0],
    "warmup_steps": [0, 1, 0.5, 0.0, 1.0, -1, 2.5],
    "grad_clip": [None, 1.0, 1e-6, 0.0, -1.0],
    "validation_fraction": [0.0, 0.25, 0.9, 1.0, -0.1, None],
    "n_iter_no_change": [None, 1, 0, 1.5],
    "amp": [False, True, "no"],
    "device": ["cpu", "CPU", "tpu", "cuda:x", 0],
    "sparse_output": [False, True, None],
    "random_state": [0, None, np.random.RandomState(0), -1, "seed"],
    "verbose": [0, False, -1, "loud"],
}


@FITS
@given(params=st.fixed_dictionaries({}, optional={name: st.sampled_from(values) for name, values in PARAMETERS.items()}))
def test_any_parameters(params):
    X = np.random.default_rng(0).normal(size=(8, N_FEATURES)).astype(np.float32)
    model = tiny(**params)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # few rows for the latents, an unfinished Gumbel anneal
        fitted = call(model.fit, X)
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


def test_codes_too_large_are_refused(fitted):
    with pytest.raises(ValueError, match="Rescale codes"):
        fitted[False].inverse_transform(np.full((2, N_LATENTS), 1e30, dtype=np.float32))


def test_large_but_safe_values_give_finite_reconstructions(fitted):
    X = np.random.default_rng(1).normal(size=(8, N_FEATURES)).astype(np.float32) * np.float32(1e17)
    assert np.isfinite(fitted[False].reconstruct(X)).all()
