"""SparseAutoencoderTransformer: training, outputs, errors, persistence, sklearn composition."""

import io
import pickle
import warnings

import joblib
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import GridSearchCV
from sklearn.pipeline import Pipeline

from sklearn_sae import SparseAutoencoderTransformer

requires_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")


def _sae(**params):
    defaults = dict(n_latents=64, k=4, max_epochs=3, batch_size=64, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


@pytest.fixture(scope="module")
def structured_data():
    """Rows that are sparse non-negative mixes of 32 directions in 24 dimensions, plus an offset."""
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(32, 24))
    atoms /= np.linalg.norm(atoms, axis=1, keepdims=True)
    codes = np.zeros((600, 32))
    for row in codes:
        row[rng.choice(32, size=3, replace=False)] = rng.uniform(1, 3, size=3)
    return (codes @ atoms + 0.5).astype(np.float32)


@pytest.mark.parametrize("activation", ["relu", "topk", "gumbel_topk"])
def test_training_reduces_nmse(structured_data, activation):
    sae = _sae(activation=activation, max_epochs=15, anneal_steps=50, lr=3e-3, validation_fraction=0.2)
    sae.fit(structured_data)
    train_nmse = sae.history_[:, "train_nmse"]
    valid_nmse = sae.history_[:, "valid_nmse"]
    assert len(train_nmse) == sae.n_iter_ == 15
    assert train_nmse[-1] < 0.6 * train_nmse[0]
    assert valid_nmse[-1] < valid_nmse[0]
    assert sae.score(structured_data) > 0.5


@pytest.mark.parametrize("activation", ["topk", "gumbel_topk"])
def test_transform_is_k_sparse_and_sparse_output_matches_dense(structured_data, activation):
    sae = _sae(activation=activation).fit(structured_data)
    dense = sae.transform(structured_data)
    assert dense.dtype == np.float32 and dense.shape == (600, 64)
    assert (np.count_nonzero(dense, axis=1) <= 4).all() and (dense >= 0).all()
    sparse = sae.set_params(sparse_output=True).transform(structured_data)
    assert isinstance(sparse, sp.csr_matrix) and sparse.has_sorted_indices
    assert (np.diff(sparse.indptr) <= 4).all()
    np.testing.assert_array_equal(sparse.toarray(), dense)


def test_relu_sparse_output_matches_dense(structured_data):
    sae = _sae(activation="relu").fit(structured_data)
    dense = sae.transform(structured_data)
    sparse = sae.set_params(sparse_output=True).transform(structured_data)
    np.testing.assert_array_equal(sparse.toarray(), dense)


@pytest.mark.parametrize("normalize", [True, False])
def test_inverse_transform_accepts_dense_and_sparse_codes(structured_data, normalize):
    sae = _sae(normalize=normalize).fit(structured_data)
    codes = sae.transform(structured_data)
    decoded = sae.inverse_transform(codes)
    np.testing.assert_allclose(sae.inverse_transform(sp.csr_matrix(codes)), decoded, rtol=1e-6)
    np.testing.assert_allclose(sae.inverse_transform(sp.csc_matrix(codes)), decoded, rtol=1e-6)
    if normalize:
        # standardised units: each row is close to zero mean and unit variance, not the input's scale
        x_norm = (structured_data - structured_data.mean(1, keepdims=True)) / structured_data.std(1, keepdims=True)
        assert np.mean((decoded - x_norm) ** 2) < np.mean(x_norm**2)
    else:
        np.testing.assert_allclose(decoded, sae.reconstruct(structured_data), rtol=1e-5, atol=1e-5)


def test_inverse_transform_rejects_wrong_code_width(structured_data):
    sae = _sae().fit(structured_data)
    with pytest.raises(ValueError, match="codes have 3 columns but this model has n_latents_=64"):
        sae.inverse_transform(np.zeros((2, 3)))


def test_fitted_attributes(structured_data):
    sae = _sae(tied=False).fit(structured_data)
    assert sae.n_features_in_ == 24 and sae.n_latents_ == 64
    assert sae.components_.shape == (64, 24) and sae.components_.dtype == np.float32
    np.testing.assert_array_equal(sae.components_, sae.net_.module_.W_dec.detach().numpy())
    assert list(sae.get_feature_names_out()[:2]) == ["sparseautoencodertransformer0", "sparseautoencodertransformer1"]


@pytest.mark.parametrize(
    "rows, columns, k, expected",
    [
        (600, 24, 32, 4 * 24),  # 540 training rows x k=32 / 128 = 135 >= 96: rows are plentiful, 4 x n_features
        (600, 24, 4, 540 * 4 // 128),  # 16 < 96: few rows cap the dictionary so each latent fires ~128 times an epoch
        (600, 3, 32, 32),  # 4 x 3 = 12 latents would be fewer than k
        (20, 24, 8, 8),  # the cap (18 x 8 // 128 = 1) is below k too: still k
    ],
)
def test_n_latents_defaults_to_four_per_feature_capped_by_rows_and_at_least_k(
    structured_data, rows, columns, k, expected
):
    X = structured_data[:rows, :columns]
    assert _sae(n_latents=None, k=k, max_epochs=1, validation_fraction=0.1).fit(X).n_latents_ == expected


def test_jumprelu_n_latents_default_is_capped_by_rows_with_k_as_its_expected_l0(structured_data):
    # A JumpReLU dictionary starves on few rows as a top-k one does: 540 x 4 // 128 = 16, not 4 x 24
    sae = _sae(activation="jumprelu", n_latents=None, k=4, max_epochs=1).fit(structured_data)
    assert sae.n_latents_ == 540 * 4 // 128 == 16


def test_relu_n_latents_default_is_four_per_feature_whatever_the_rows(structured_data):
    # 540 x 4 // 128 = 16 would cap a top-k dictionary; relu codes are not k-sparse and keep 4 x n_features
    sae = _sae(activation="relu", n_latents=None, max_epochs=1).fit(structured_data)
    assert sae.n_latents_ == 4 * 24


def test_a_zero_row_does_not_swamp_training(structured_data):
    X = structured_data.copy()
    X[0] = 0.0
    sae = _sae(max_epochs=2).fit(X)
    assert sae.history_[-1, "train_nmse"] < 1.0 and sae.history_[-1, "train_loss"] < 1.0


def test_fitted_model_does_not_carry_the_eval_sets(structured_data):
    small = pickle.dumps(_sae(max_epochs=1).fit(structured_data))
    big_eval = np.repeat(structured_data, 20, axis=0)  # 12,000 x 24 float32: 1.1 MB
    with_eval = pickle.dumps(_sae(max_epochs=1).fit(structured_data, eval_sets={"test": big_eval}))
    assert len(with_eval) < len(small) + 100_000


def test_same_random_state_is_bit_identical_and_leaves_global_rng_alone(structured_data):
    torch.manual_seed(123)
    expected_next = torch.rand(1)
    torch.manual_seed(123)
    first = _sae(activation="gumbel_topk", anneal_steps=20).fit(structured_data)
    assert torch.equal(torch.rand(1), expected_next)
    second = _sae(activation="gumbel_topk", anneal_steps=20).fit(structured_data)
    for a, b in zip(first.net_.module_.parameters(), second.net_.module_.parameters()):
        assert torch.equal(a, b)
    np.testing.assert_array_equal(first.transform(structured_data), second.transform(structured_data))
    third = _sae(activation="gumbel_topk", anneal_steps=20, random_state=1).fit(structured_data)
    assert not np.array_equal(first.components_, third.components_)


@pytest.mark.parametrize("dump", ["pickle", "joblib"])
def test_persistence_round_trip_gives_identical_transforms(structured_data, dump):
    sae = _sae(activation="gumbel_topk").fit(structured_data)
    buffer = io.BytesIO()
    if dump == "pickle":
        pickle.dump(sae, buffer)
        buffer.seek(0)
        loaded = pickle.load(buffer)
    else:
        joblib.dump(sae, buffer)
        buffer.seek(0)
        loaded = joblib.load(buffer)
    np.testing.assert_array_equal(loaded.transform(structured_data), sae.transform(structured_data))
    assert int(loaded.net_.module_.activation.n_steps) == int(sae.net_.module_.activation.n_steps)


def test_model_saved_with_cuda_device_loads_on_cpu(structured_data, monkeypatch):
    """A net whose device is 'cuda' must unpickle onto the CPU where no GPU exists."""
    sae = _sae().fit(structured_data)
    sae.net_.device = "cuda"
    payload = pickle.dumps(sae)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.warns(UserWarning, match="no CUDA devices are available"):
        loaded = pickle.loads(payload)
    assert str(loaded.net_.device) == "cpu"
    np.testing.assert_array_equal(loaded.transform(structured_data), sae.transform(structured_data))


def test_amp_trains_in_bfloat16_and_returns_float32(structured_data):
    fp32 = _sae(max_epochs=10, lr=3e-3).fit(structured_data)
    bf16 = _sae(max_epochs=10, lr=3e-3, amp=True).fit(structured_data)
    codes = bf16.transform(structured_data)
    assert codes.dtype == np.float32
    assert bf16.net_.module_.W_enc.dtype == torch.float32
    assert bf16.history_[-1, "train_nmse"] == pytest.approx(fp32.history_[-1, "train_nmse"], rel=0.1)
    assert bf16.history_[-1, "train_nmse"] != fp32.history_[-1, "train_nmse"]  # autocast really ran


def test_lr_warms_up_then_decays_per_batch(structured_data):
    sae = _sae(max_epochs=4, lr=1e-2, warmup_steps=3, validation_fraction=0.0, batch_size=100).fit(structured_data)
    # 600 rows / 100 per batch = 6 batches an epoch, 24 in all
    lrs = [batch["event_lr"] for epoch in sae.history_ for batch in epoch["batches"]]
    assert len(lrs) == 24
    np.testing.assert_allclose(lrs[:4], [1e-2 / 3, 2e-2 / 3, 1e-2, 1e-2], rtol=1e-6)
    assert all(later < earlier for earlier, later in zip(lrs[3:], lrs[4:]))
    assert lrs[-1] < 1e-4


def _record_validation_rows(monkeypatch):
    """A list that gets the validation rows of every split a fit makes (``InMemoryRows`` with ``indices``)."""
    from sklearn_sae._rows import InMemoryRows

    held_out, split = [], InMemoryRows.split

    def record_split(self, *args, **kwargs):
        training, validation = split(self, *args, **kwargs)
        held_out.append(validation)
        return training, validation

    monkeypatch.setattr(InMemoryRows, "split", record_split)
    return held_out


def _validation_rows(X, held_out):
    assert held_out and all(np.array_equal(rows.indices, held_out[0].indices) for rows in held_out)  # one split
    return X[held_out[0].indices]


def test_early_stopping_stops_and_keeps_best_weights(structured_data, monkeypatch):
    from sklearn_sae import metrics
    from sklearn_sae._training import EpochMetrics

    # Record the weights every epoch's validation loss was measured on, and the rows held out for it.
    snapshots, record_metrics = [], EpochMetrics.on_epoch_end

    def record_weights(self, net, **kwargs):
        record_metrics(self, net, **kwargs)
        snapshots.append({name: value.detach().clone() for name, value in net.module_.state_dict().items()})

    monkeypatch.setattr(EpochMetrics, "on_epoch_end", record_weights)
    held_out = _record_validation_rows(monkeypatch)
    sae = _sae(max_epochs=200, n_iter_no_change=2, lr=1e-2).fit(structured_data)
    valid_loss = sae.history_[:, "valid_loss"]
    best = int(np.argmin(valid_loss))
    assert len(snapshots) == sae.n_iter_ < 200
    assert best == sae.n_iter_ - 1 - 2  # it stopped after two epochs without improvement
    restored = sae.net_.module_.state_dict()
    assert not all(torch.equal(value, snapshots[-1][name]) for name, value in restored.items())  # not the last
    for name, value in restored.items():
        assert torch.equal(value, snapshots[best][name]), name
    X_valid = _validation_rows(structured_data, held_out)
    # Top-K without L1: the loss is the NMSE, so the restored model scores the best epoch's loss on those rows.
    assert metrics.nmse(X_valid, sae.reconstruct(X_valid)) == pytest.approx(valid_loss[best], rel=1e-5)
    assert metrics.nmse(X_valid, sae.reconstruct(X_valid)) < valid_loss[-1]


def test_validation_fraction_zero_trains_on_everything(structured_data):
    sae = _sae(validation_fraction=0.0).fit(structured_data)
    assert "valid_loss" not in sae.history_[-1]
    assert sum(sae.history_[-1, "batches", :, "train_batch_size"]) == 600


def test_verbose_prints_the_epoch_log(structured_data, capsys):
    _sae(max_epochs=2, verbose=1).fit(structured_data)
    captured = capsys.readouterr()
    assert "train_nmse" in captured.out and "valid_nmse" in captured.out
    # Not a terminal: one plain line per epoch, no progress bar, no colour codes.
    assert len(captured.out.splitlines()) == 2 + 2
    assert "\x1b[" not in captured.out and "\r" not in captured.out + captured.err


def test_verbose_two_adds_the_batch_progress_bar(structured_data, capsys):
    _sae(max_epochs=1, verbose=2).fit(structured_data)
    assert "\r" in capsys.readouterr().err  # tqdm redraws its bar on stderr


def test_silent_when_verbose_is_zero(structured_data, capsys):
    _sae(max_epochs=2, n_iter_no_change=1).fit(structured_data)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.filterwarnings("ignore:.*never fired:UserWarning")
def test_pipeline_grid_search_over_k_and_l1_coef():
    # A planted label that a 1-sparse code drops: every row holds two strong coordinates among 1..15, and the
    # label is a weak coordinate 0, kept by k=8 codes but never the largest entry of a row.
    rng = np.random.default_rng(0)
    X = np.zeros((240, 16), dtype=np.float32)
    for row in X:
        row[rng.choice(np.arange(1, 16), size=2, replace=False)] = rng.uniform(2, 3, size=2)
    y = rng.integers(0, 2, size=240)
    X[:, 0] = y
    pipe = Pipeline([("sae", _sae(n_latents=32, max_epochs=6, lr=2e-2)), ("clf", LogisticRegression())])
    search = GridSearchCV(pipe, {"sae__k": [1, 8], "sae__l1_coef": [0.0, 1e-3]}, cv=2).fit(X, y)
    scores, ks = search.cv_results_["mean_test_score"], np.asarray(search.cv_results_["param_sae__k"], dtype=int)
    assert scores[ks == 1].max() < 0.65 < scores[ks == 8].min()  # chance without coordinate 0, which k=8 keeps
    assert search.best_params_["sae__k"] == 8 and search.best_score_ == scores.max()
    sae = search.best_estimator_.named_steps["sae"]
    assert (sae.k, sae.l1_coef) == (search.best_params_["sae__k"], search.best_params_["sae__l1_coef"])
    assert (sae.transform(X) != 0).sum(axis=1).max() == 8
    assert search.predict(X).shape == (240,)


def test_grid_search_with_the_sae_alone_uses_its_score():
    from sklearn.base import clone
    from sklearn.model_selection import KFold

    X = np.random.default_rng(1).normal(size=(120, 8)).astype(np.float32)
    sae = _sae(n_latents=16, max_epochs=2)
    search = GridSearchCV(sae, {"k": [1, 4]}, cv=2).fit(X)
    for candidate, params in enumerate(search.cv_results_["params"]):
        for fold, (train, test) in enumerate(KFold(n_splits=2).split(X)):
            by_hand = clone(sae).set_params(**params).fit(X[train]).score(X[test])  # explained variance
            assert search.cv_results_[f"split{fold}_test_score"][candidate] == pytest.approx(by_hand, rel=1e-6)
    assert search.best_params_ == {"k": 4}  # explained variance grows with k
    assert search.cv_results_["mean_test_score"][1] > search.cv_results_["mean_test_score"][0] + 0.05


def test_set_output_pandas_names_columns(structured_data):
    pd = pytest.importorskip("pandas")
    out = _sae().set_output(transform="pandas").fit_transform(structured_data)
    assert isinstance(out, pd.DataFrame) and out.shape == (600, 64)
    assert out.columns[0] == "sparseautoencodertransformer0"


# ------------------------------------------------------------------ bad input

X_GOOD = np.random.default_rng(0).normal(size=(20, 6)).astype(np.float32)


@pytest.mark.parametrize(
    "X, error, match",
    [
        (np.where(np.eye(20, 6, dtype=bool), np.nan, X_GOOD), ValueError, "Input X contains NaN"),
        (np.where(np.eye(20, 6, dtype=bool), np.inf, X_GOOD), ValueError, "Input X contains infinity"),
        (np.array([["a", "b"], ["c", "d"]], dtype=object), ValueError, "could not convert string to float"),
        (X_GOOD.astype(np.complex64), ValueError, "Complex data not supported"),
        (X_GOOD[:, 0], ValueError, "Expected 2D array, got 1D array"),
        (X_GOOD[None], ValueError, "Found array with dim 3"),
        (X_GOOD[:1], ValueError, "minimum of 2 is required"),
    ],
    ids=["nan", "inf", "strings", "complex", "1d", "3d", "one-sample"],
)
def test_bad_training_data_gets_a_clear_error(X, error, match):
    with pytest.raises(error, match=match):
        _sae(n_latents=8).fit(X)


def test_wrong_feature_count_at_transform():
    sae = _sae(n_latents=8).fit(X_GOOD)
    with pytest.raises(ValueError, match="X has 5 features, but SparseAutoencoderTransformer is expecting 6 features"):
        sae.transform(X_GOOD[:, :5])


@pytest.mark.parametrize(
    "params, match",
    [
        (dict(k=9, n_latents=8), "k=9 is larger than n_latents=8"),
        (dict(k=0), "The 'k' parameter .* must be an int in the range \\[1, inf\\)"),
        (dict(l1_coef=-1.0), "The 'l1_coef' parameter .* must be a float in the range \\[0.0, inf\\) or None"),
        (dict(activation="sigmoid"), "The 'activation' parameter .* must be a str among"),
        (dict(device="tpu"), "device='tpu' is not understood"),
        (dict(validation_fraction=0.99), "leaves no training rows"),
        (dict(anneal_steps=0.0), "The 'anneal_steps' parameter .* must be an int in the range \\[1, inf\\), a float in the range "
                                 "\\(0.0, 1.0\\] or a str among \\{'auto'\\}"),
        (dict(anneal_steps=1.5), "The 'anneal_steps' parameter"),
    ],
)
def test_bad_parameters_get_a_clear_error(params, match):
    with pytest.raises(ValueError, match=match):
        _sae(**{"n_latents": 8, **params}).fit(X_GOOD)


def test_k_larger_than_n_latents_is_allowed_for_relu():
    assert _sae(activation="relu", k=100, n_latents=8).fit(X_GOOD).n_latents_ == 8


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the error raised where there is no GPU")
@pytest.mark.parametrize("device", ["cuda", "cuda:0"])
def test_cuda_without_gpu_is_a_clear_error(device):
    with pytest.raises(ValueError, match="PyTorch sees no CUDA GPU"):
        _sae(device=device).fit(X_GOOD)


def test_auto_device_uses_cpu_without_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert _sae(n_latents=8, device="auto").fit(X_GOOD).net_.device == "cpu"


def test_unfitted_transform_raises_not_fitted():
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        _sae().transform(X_GOOD)


# ------------------------------------------------------------------ GPU

@pytest.mark.cuda
@requires_cuda
@pytest.mark.parametrize("amp", [False, True])
def test_cuda_fit_matches_cpu_quality_and_loads_on_cpu(structured_data, amp):
    gpu = _sae(device="cuda", amp=amp, max_epochs=10, lr=3e-3).fit(structured_data)
    cpu = _sae(device="cpu", max_epochs=10, lr=3e-3).fit(structured_data)
    assert gpu.net_.module_.W_enc.is_cuda
    assert gpu.score(structured_data) == pytest.approx(cpu.score(structured_data), abs=0.05)
    codes = gpu.set_params(sparse_output=True).transform(structured_data)
    assert (np.diff(codes.indptr) <= 4).all()
    payload = pickle.dumps(gpu)
    loaded = pickle.loads(payload)
    np.testing.assert_allclose(loaded.reconstruct(structured_data), gpu.reconstruct(structured_data), rtol=1e-5, atol=1e-5)


# ------------------------------------------------------------------ per-epoch metrics


@pytest.mark.parametrize("activation", ["relu", "gumbel_topk"])
def test_eval_sets_are_scored_each_epoch_like_the_metrics_module(structured_data, activation):
    from sklearn_sae import metrics

    held_out = structured_data[:100]
    sae = _sae(activation=activation, max_epochs=2, anneal_steps=5).fit(structured_data[100:], eval_sets={"test": held_out})
    last = sae.history_[-1]
    X_hat, codes = sae.reconstruct(held_out), sae.transform(held_out)
    assert last["test_nmse"] == pytest.approx(metrics.nmse(held_out, X_hat), rel=1e-4)
    assert last["test_fvu"] == pytest.approx(metrics.fvu(held_out, X_hat), rel=1e-4)
    assert last["test_l0"] == pytest.approx(metrics.l0(codes))
    assert last["test_dead_fraction"] == pytest.approx(metrics.dead_fraction(codes))
    from sklearn_sae._params import DEFAULT_L1_COEF

    l1_coef = DEFAULT_L1_COEF[activation]  # the test leaves l1_coef at None, its per-activation default
    expected_loss = metrics.nmse(held_out, X_hat) + l1_coef * metrics.l1(held_out, codes, normalize=sae.normalize)
    assert last["test_loss"] == pytest.approx(expected_loss, rel=1e-4)
    assert len(sae.history_[:, "test_nmse"]) == 2


def test_train_and_valid_metrics_are_recorded_every_epoch(structured_data, monkeypatch):
    from sklearn_sae import metrics

    held_out = _record_validation_rows(monkeypatch)
    sae = _sae(max_epochs=2, n_iter_no_change=None).fit(structured_data)
    for prefix in ("train", "valid"):
        for metric in ("loss", "nmse", "fvu", "l0", "dead_fraction"):
            values = sae.history_[:, f"{prefix}_{metric}"]
            assert len(values) == 2 and np.all(np.isfinite(values))
        assert all(0 < l0 <= 4 for l0 in sae.history_[:, f"{prefix}_l0"])
    # The last epoch's validation metrics are those of the fitted model (its weights) on the held-out rows.
    X_valid = _validation_rows(structured_data, held_out)
    codes, X_hat, last = sae.transform(X_valid), sae.reconstruct(X_valid), sae.history_[-1]
    assert last["valid_nmse"] == pytest.approx(metrics.nmse(X_valid, X_hat), rel=1e-5)
    assert last["valid_fvu"] == pytest.approx(metrics.fvu(X_valid, X_hat), rel=1e-5)
    assert last["valid_l0"] == pytest.approx(metrics.l0(codes))
    assert last["valid_dead_fraction"] == pytest.approx(metrics.dead_fraction(codes))
    assert 0 < last["valid_dead_fraction"] < 1  # 60 rows of k=4 leave some of the 64 latents unused
    # for Top-K without L1 the loss is the NMSE
    assert sae.history_[-1, "valid_loss"] == pytest.approx(sae.history_[-1, "valid_nmse"], rel=1e-5)


@pytest.mark.parametrize(
    "eval_sets, error, match",
    [
        ([X_GOOD], TypeError, "eval_sets must be a dict"),
        ({"valid": X_GOOD}, ValueError, "eval_sets name 'valid' is not allowed"),
        ({"my set": X_GOOD}, ValueError, "eval_sets name 'my set' is not allowed"),
        ({"test": X_GOOD[:, :4]}, ValueError, "X has 4 features, but SparseAutoencoderTransformer is expecting 6"),
    ],
)
def test_bad_eval_sets_get_a_clear_error(eval_sets, error, match):
    with pytest.raises(error, match=match):
        _sae(n_latents=8).fit(X_GOOD, eval_sets=eval_sets)


def test_sparse_output_never_builds_the_dense_code_matrix():
    """20,000 rows x 8,192 latents would be 655 MB dense; the CSR of k=8 codes is ~1.3 MB."""
    import tracemalloc

    rng = np.random.default_rng(0)
    sae = _sae(n_latents=8192, k=8, max_epochs=1, validation_fraction=0.0).fit(rng.normal(size=(256, 16)))
    X = rng.normal(size=(20_000, 16)).astype(np.float32)
    sae.set_params(sparse_output=True)
    tracemalloc.start()
    try:
        codes = sae.transform(X)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert codes.shape == (20_000, 8192) and codes.nnz <= 8 * 20_000
    assert peak < 32 * 2**20, f"transform traced a peak of {peak / 2**20:.0f} MiB"


def _gumbel_schedule(sae):
    activation = sae.net_.module_.activation
    return activation.anneal_steps, int(activation.n_steps), activation.annealed


@pytest.mark.parametrize("fraction, expected", [(0.5, 14), (1.0, 27), (0.01, 1)])
def test_anneal_steps_as_a_fraction_of_the_fit(structured_data, fraction, expected):
    # 600 rows, 10% held out: 540 training rows, 9 batches of 64 per epoch, 27 over 3 epochs.
    sae = _sae(activation="gumbel_topk", anneal_steps=fraction, validation_fraction=0.1).fit(structured_data)
    assert _gumbel_schedule(sae) == (expected, 27, True)
    assert sae.get_params()["anneal_steps"] == fraction  # the parameter itself is left as given


def test_a_fit_that_ends_before_annealing_warns(structured_data):
    sae = _sae(activation="gumbel_topk", tau_start=1.0, anneal_steps=100, validation_fraction=0.1)
    with pytest.warns(UserWarning, match=r"ran 27 training batches but anneals over 100: its temperature reached 0\.737"):
        sae.fit(structured_data)
    assert _gumbel_schedule(sae) == (100, 27, False)


def test_a_fit_one_batch_short_of_its_last_annealing_batch_warns(structured_data):
    sae = _sae(activation="gumbel_topk", anneal_steps=28, validation_fraction=0.1)
    with pytest.warns(UserWarning, match=r"ran 27 training batches but anneals over 28"):
        sae.fit(structured_data)


@pytest.mark.parametrize("params", [dict(activation="gumbel_topk", anneal_steps=27), dict(activation="topk")])
def test_a_fit_that_anneals_fully_does_not_warn(structured_data, params):
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)
        _sae(validation_fraction=0.1, **params).fit(structured_data)


def test_pandas_input_raises_no_warning_from_our_calls():
    pd = pytest.importorskip("pandas")
    X = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    df = pd.DataFrame(X, columns=[f"f{i}" for i in range(8)])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sae = _sae(n_latents=16, k=2, max_epochs=1).fit(df)
        codes = sae.transform(df.iloc[:5])
        sae.reconstruct(df.iloc[:5])
    with pytest.warns(UserWarning, match="does not have valid feature names"):  # sklearn's, as it should
        np.testing.assert_array_equal(codes, sae.transform(X[:5]))


def test_fewer_training_rows_than_latents_warns():
    X = np.random.default_rng(0).normal(size=(3, 8)).astype(np.float32)
    with pytest.warns(UserWarning, match="2 training rows for 32 latents.*lower n_latents"):
        # n_latents=None would size the dictionary to the rows (here k): ask for 32 latents explicitly
        SparseAutoencoderTransformer(n_latents=32, k=2, max_epochs=1, device="cpu").fit(X)


@pytest.mark.parametrize("n_iter_no_change", [None, 1])  # early stopping keeps a copy of the best weights
def test_fitted_model_is_lean_and_components_are_a_read_only_copy(structured_data, n_iter_no_change):
    sae = _sae(n_latents=256, max_epochs=2, n_iter_no_change=n_iter_no_change).fit(structured_data)
    parameter_bytes = sum(p.numel() * p.element_size() for p in sae.net_.module_.parameters())
    # No optimizer state, no second copy of the weights: the pickle is about the size of the weights.
    assert len(pickle.dumps(sae)) < 1.5 * parameter_bytes
    atoms = sae.components_
    assert atoms.shape == (256, 24) and not atoms.flags.writeable
    np.testing.assert_array_equal(atoms, sae.net_.module_.decoder_weight.detach().numpy())
    assert not hasattr(_sae(), "components_")
