"""partial_fit: one pass per call, a run that continues across calls, pickling and dask-ml's Incremental."""

import pickle

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._defaults import default_lr, encoder_input_spread

N_FEATURES = 12


def make_rows(n_rows, seed=0, shift=0.0):
    return (np.random.default_rng(seed).normal(size=(n_rows, N_FEATURES)) + shift).astype(np.float32)


def make_sae(**params):
    defaults = dict(n_latents=24, k=3, batch_size=32, random_state=0, device="cpu")
    return SparseAutoencoderTransformer(**{**defaults, **params})


def run_calls(sae, blocks):
    for block in blocks:
        sae.partial_fit(block)
    return sae


def module_state(sae):
    return sae.net_.module_.state_dict()


def assert_same_state(first, second):
    assert first.keys() == second.keys()
    for name in first:
        assert torch.equal(first[name], second[name]), name


def batch_lrs(sae):
    return [lr for epoch in sae.history_[:, "batches"] for lr in (batch["event_lr"] for batch in epoch)]


def test_first_call_initialises_and_later_calls_continue():
    first, second = make_rows(96, seed=1), make_rows(64, seed=2, shift=3.0)
    sae = make_sae(pre_bias_init="mean", lr=1e-9)  # a learning rate this small leaves the pre-bias where it started
    sae.partial_fit(first)
    assert (sae.n_features_in_, sae.n_latents_, sae.n_iter_) == (N_FEATURES, 24, 1)
    assert (sae.n_steps_, sae.n_samples_seen_) == (3, 96)
    pre_bias = sae.net_.module_.pre_bias.detach().clone()
    normalised_mean = torch.nn.functional.layer_norm(torch.from_numpy(first), (N_FEATURES,)).mean(dim=0)
    torch.testing.assert_close(pre_bias, normalised_mean, atol=1e-5, rtol=0)

    sae.partial_fit(second)
    # The pre-bias is estimated once, from the first block: not again from the second.
    torch.testing.assert_close(sae.net_.module_.pre_bias.detach(), pre_bias, atol=1e-5, rtol=0)
    assert (sae.n_steps_, sae.n_samples_seen_, sae.n_iter_) == (5, 160, 2)
    adam_steps = {int(state["step"]) for state in sae.net_.optimizer_.state.values()}
    assert adam_steps == {5}  # Adam's moments carried over instead of restarting


def test_gumbel_temperature_and_dead_latent_counters_carry_over():
    sae = make_sae(activation="gumbel_topk", anneal_steps=100, aux_k=2, n_latents=64, k=1)
    run_calls(sae, [make_rows(64, seed=1), make_rows(64, seed=2)])
    module = sae.net_.module_
    assert int(module.activation.n_steps) == sae.n_steps_ == 4
    assert 0 < module.activation.tau < module.activation.tau_start  # still annealing, from where the first call stopped
    # A latent that never fired has counted the rows of both calls.
    assert int(module.rows_since_fired.max()) > 64


def test_fractional_anneal_is_a_fraction_of_the_first_calls_batches():
    sae = run_calls(make_sae(activation="gumbel_topk", anneal_steps=0.5), [make_rows(256, seed=1), make_rows(64)])
    assert sae.net_.module_.activation.anneal_steps == 4  # half of the first call's 8 batches


def test_feature_count_is_checked():
    sae = make_sae().partial_fit(make_rows(64))
    with pytest.raises(ValueError, match="features"):
        sae.partial_fit(make_rows(64)[:, :-1])


def test_y_is_ignored():
    rows = make_rows(64)
    with_placeholder = make_sae().partial_fit(rows, ("", 3))  # what dask-ml passes for y=None
    assert_same_state(module_state(with_placeholder), module_state(make_sae().partial_fit(rows)))


def test_learning_rate_warms_up_over_batches_then_stays_constant():
    sae = run_calls(make_sae(lr=0.01, warmup_steps=3), [make_rows(64, seed=1), make_rows(96, seed=2)])
    np.testing.assert_allclose(batch_lrs(sae), [0.01 / 3, 0.02 / 3, 0.01, 0.01, 0.01])


def test_learning_rate_set_between_calls_takes_effect():
    sae = make_sae(lr=0.01, warmup_steps=0).partial_fit(make_rows(64))
    sae.set_params(lr=0.001).partial_fit(make_rows(64))
    np.testing.assert_allclose(batch_lrs(sae), [0.01, 0.01, 0.001, 0.001])
    assert {group["lr"] for group in sae.net_.optimizer_.param_groups} == {0.001}


def test_lr_auto_is_resolved_once_on_the_first_calls_rows():
    first, second = make_rows(64, seed=1), make_rows(64, seed=2, shift=5.0)
    sae = run_calls(make_sae(warmup_steps=0), [first, second])
    auto = default_lr(N_FEATURES, encoder_input_spread(first, normalize=True), batch_size=32, n_latents=24)
    np.testing.assert_allclose(batch_lrs(sae), [auto] * 4)
    assert sae.lr_ == pytest.approx(auto)
    assert sae.set_params(lr=1e-3).partial_fit(second).lr_ == 1e-3


def test_lr_auto_comes_back_after_a_numeric_lr_between_calls():
    sae = make_sae(warmup_steps=0).partial_fit(make_rows(64, seed=1))
    sae.set_params(lr=1e-3).partial_fit(make_rows(64, seed=2))
    sae.set_params(lr="auto").partial_fit(make_rows(64, seed=3))
    auto = default_lr(N_FEATURES, encoder_input_spread(make_rows(64, seed=1), normalize=True), batch_size=32,
                      n_latents=24)
    np.testing.assert_allclose(batch_lrs(sae), [auto, auto, 1e-3, 1e-3, auto, auto])


def test_lr_auto_on_a_first_call_of_one_row_assumes_spread_one_and_warns():
    sae = make_sae(warmup_steps=0)
    with pytest.warns(UserWarning, match="a single row has none") as record:
        sae.partial_fit(make_rows(1))
    assert record[0].filename == __file__  # it points at partial_fit's caller
    sae.partial_fit(make_rows(64, seed=1))
    # a spread of 0 would have given lr=0 for the whole run
    np.testing.assert_allclose(batch_lrs(sae), [default_lr(N_FEATURES, 1.0, batch_size=32, n_latents=24)] * 3)


def test_fractional_warmup_is_a_fraction_of_the_first_calls_batches():
    # 0.5 of the first call's 4 batches: 2 batches of warmup, whatever the later calls bring.
    sae = run_calls(make_sae(lr=0.01, warmup_steps=0.5), [make_rows(128, seed=1), make_rows(64, seed=2)])
    np.testing.assert_allclose(batch_lrs(sae), [0.005, 0.01, 0.01, 0.01, 0.01, 0.01])


def test_trains_on_every_row_without_a_validation_split():
    sae = make_sae(validation_fraction=0.5, n_iter_no_change=1).partial_fit(make_rows(64))
    assert sum(batch["train_batch_size"] for batch in sae.history_[-1, "batches"]) == 64
    assert "valid_loss" not in sae.history_[-1]


def test_learns():
    rows = make_rows(512)
    sae = make_sae()
    scores = [run_calls(sae, np.array_split(rows, 4)).score(rows) for _ in range(3)]
    assert scores[0] < scores[-1]


@pytest.mark.parametrize("activation", ["topk", "gumbel_topk"])
def test_identical_calls_give_identical_models_and_leave_the_global_rng_alone(activation):
    blocks = [make_rows(64, seed=1), make_rows(80, seed=2), make_rows(64, seed=3)]
    global_state = torch.get_rng_state()
    first = run_calls(make_sae(activation=activation, anneal_steps=4), blocks)
    assert torch.equal(torch.get_rng_state(), global_state)
    second = run_calls(make_sae(activation=activation, anneal_steps=4), blocks)
    assert_same_state(module_state(first), module_state(second))


def test_pickled_model_continues_training_identically():
    blocks = [make_rows(64, seed=seed) for seed in range(4)]
    uninterrupted = run_calls(make_sae(activation="gumbel_topk", anneal_steps=5), blocks)
    interrupted = run_calls(make_sae(activation="gumbel_topk", anneal_steps=5), blocks[:2])
    restored = run_calls(pickle.loads(pickle.dumps(interrupted)), blocks[2:])
    assert_same_state(module_state(restored), module_state(uninterrupted))
    assert restored.n_steps_ == uninterrupted.n_steps_


def test_partial_fit_after_fit_continues_from_the_fitted_weights():
    rows = make_rows(128)
    sae = make_sae(max_epochs=2, validation_fraction=0).fit(rows)
    fitted_score, fitted_weights = sae.score(rows), sae.net_.module_.W_enc.detach().clone()
    sae.set_params(lr=1e-9).partial_fit(rows)
    torch.testing.assert_close(sae.net_.module_.W_enc.detach(), fitted_weights, atol=1e-6, rtol=0)
    assert sae.score(rows) == pytest.approx(fitted_score, abs=1e-5)
    assert (sae.n_iter_, sae.n_steps_, sae.n_samples_seen_) == (3, 4, 128)
    with pytest.raises(ValueError, match="features"):
        sae.partial_fit(rows[:, :-1])


def test_fit_after_partial_fit_starts_over():
    sae = make_sae().partial_fit(make_rows(64))
    sae.fit(make_rows(64))
    assert not hasattr(sae, "n_steps_") and not hasattr(sae, "n_samples_seen_")
    assert sae.net_.optimizer_ is None  # a fitted model keeps no training state


def test_dask_ml_incremental_over_hdf5(tmp_path):
    h5py = pytest.importorskip("h5py")
    da = pytest.importorskip("dask.array", reason="dask-ml's Incremental needs dask (the 'scale' extra)")
    wrappers = pytest.importorskip("dask_ml.wrappers", reason="needs dask-ml (the 'scale' extra)")
    rows = make_rows(400)
    path = tmp_path / "embeddings.h5"
    with h5py.File(path, "w") as file:
        file.create_dataset("embeddings", data=rows.astype(np.float16), chunks=(100, N_FEATURES))
    with h5py.File(path, "r") as file:
        X = da.from_array(file["embeddings"], chunks=(100, N_FEATURES))  # blocks arrive as float16
        incremental = wrappers.Incremental(make_sae(), random_state=0).fit(X)
        sae = incremental.estimator_
        assert (sae.n_iter_, sae.n_samples_seen_) == (4, 400)
        score = incremental.score(X, None)
        codes = incremental.transform(X).compute()
    assert score == pytest.approx(sae.score(rows.astype(np.float16)))
    assert codes.shape == (400, sae.n_latents_)
    np.testing.assert_array_equal(codes, sae.transform(rows.astype(np.float16)))
