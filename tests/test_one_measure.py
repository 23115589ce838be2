"""One implementation of each measure: the FVU of metrics, score, evaluate and the training history agree, with
one convention for rows that do not vary; counting codes never changes the caller's matrix."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_sae import SparseAutoencoderTransformer, metrics
from sklearn_sae.evaluate import core_metrics

RNG = np.random.default_rng(0)
# A large common offset: the sum-of-squares formula of the variance loses its digits on such rows.
X = (RNG.normal(size=(3000, 12)) + 1e4).astype(np.float32)


def test_fvu_in_blocks_equals_fvu_at_once_even_with_a_large_offset():
    X_hat = X + RNG.normal(scale=0.1, size=X.shape).astype(np.float32)
    X64, hat64 = X.astype(np.float64), X_hat.astype(np.float64)
    exact = np.square(hat64 - X64).sum() / np.square(X64 - X64.mean(axis=0)).sum()
    totals = metrics.FVUTotals()
    for start in range(0, len(X), 700):
        totals.add(X[start : start + 700], X_hat[start : start + 700])
    assert totals.fvu() == pytest.approx(exact, rel=1e-10)
    assert metrics.fvu(X, X_hat) == pytest.approx(exact, rel=1e-10)


@pytest.mark.parametrize("rows", [X[:1], np.repeat(X[:1], 10, axis=0)])
def test_rows_that_do_not_vary_follow_scikit_learns_convention(rows):
    assert metrics.fvu(rows, rows) == 0.0
    assert metrics.fvu(rows, rows + 1.0) == 1.0  # not inf: a score of 1 - inf broke grid searches
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=1, random_state=0, device="cpu").fit(X)
    assert sae.score(rows) in (0.0, 1.0)
    assert np.isfinite(core_metrics(sae, rows).loc[0, "explained_variance"])


def test_score_evaluate_and_the_history_give_the_same_fvu():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=2, random_state=0, device="cpu")
        sae.fit(X[:2000], eval_sets={"test": X[2000:]})
    held_out = X[2000:]
    expected = metrics.fvu(held_out, sae.reconstruct(held_out))
    assert 1.0 - sae.score(held_out) == pytest.approx(expected, rel=1e-9)
    assert 1.0 - core_metrics(sae, held_out).loc[0, "explained_variance"] == pytest.approx(expected, rel=1e-9)
    assert sae.history_[-1, "test_fvu"] == pytest.approx(expected, rel=1e-4)  # the batch's float32 reconstructions


@pytest.mark.parametrize("measure", [metrics.l0, metrics.dead_fraction, metrics.latent_density])
def test_counting_codes_leaves_the_callers_sparse_matrix_as_it_was(measure):
    codes = sp.csr_matrix(np.array([[1.0, 2.0, 0.0], [0.0, 3.0, 4.0]]))
    codes.data[1] = 0.0  # an explicit zero, as arithmetic on CSR matrices leaves them
    before = [array.copy() for array in (codes.data, codes.indices, codes.indptr)]
    for array in (codes.data, codes.indices, codes.indptr):
        array.setflags(write=False)
    measure(codes)
    for array, original in zip((codes.data, codes.indices, codes.indptr), before):
        np.testing.assert_array_equal(array, original)
    assert metrics.l0(codes) == 1.5 and metrics.dead_fraction(codes) == 0.0


@pytest.mark.parametrize("axis", [0, 1])
def test_nonzero_counts_of_sparse_and_dense_codes_agree(axis):
    dense = RNG.random((50, 20)) * (RNG.random((50, 20)) < 0.2)
    sparse = sp.csr_matrix(dense)
    sparse.data[::3] = 0.0  # explicit zeros must not count
    np.testing.assert_array_equal(metrics.nonzero_counts(sparse, axis=axis),
                                  np.count_nonzero(sparse.toarray(), axis=axis))
