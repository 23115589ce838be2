"""Top-K that starts wider: ``k_start`` latents a row at the first training batch, narrowing to ``k``."""

import json

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import TopK, schedule_length
from sklearn_sae._model import SparseAutoencoder


def _sae(**params):
    params = dict(dict(k=2, n_latents=16, batch_size=20, max_epochs=10, device="cpu", random_state=0), **params)
    return SparseAutoencoderTransformer(**params)


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(200, 8)).astype(np.float32) + 2.0


def test_topk_narrows_linearly_from_k_start_to_k_at_the_last_annealing_call():
    torch.manual_seed(0)
    topk = TopK(3, k_start=12, anneal_steps=10)
    model = SparseAutoencoder(8, 20, topk).train()  # training runs the sparse path, which advances the schedule
    kept = [model(torch.randn(5, 8)).codes.values.shape[1] for _ in range(14)]
    assert kept == [12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 3, 3, 3, 3]
    assert int(topk.n_steps) == 14
    assert [topk.k_at(step) for step in (0, 9, 100)] == [12, 3, 3]


def test_topk_module_forward_never_advances_the_schedule():
    # Only the model's training forward counts batches: a dense call, as evaluation makes, leaves the schedule alone.
    topk = TopK(3, k_start=12, anneal_steps=10).train()
    z_pre = torch.rand(5, 20, generator=torch.Generator().manual_seed(0)) + 0.1
    for _ in range(3):
        assert int((topk(z_pre) != 0).sum(dim=1).max()) == 12
    assert int(topk.n_steps) == 0


def test_topk_keeps_k_in_eval_mode_and_without_a_schedule():
    z_pre = torch.rand(5, 20, generator=torch.Generator().manual_seed(0)) + 0.1
    topk = TopK(3, k_start=12, anneal_steps=10).eval()
    assert int((topk(z_pre) != 0).sum(dim=1).max()) == 3 and int(topk.n_steps) == 0
    plain = TopK(3).train()
    assert plain.current_k == 3 and not plain.has_schedule
    assert "n_steps" not in plain.state_dict()  # the tensors of a Top-K saved before k_start existed
    assert schedule_length(plain) is None and schedule_length(topk) == 10


def test_sparse_training_forward_keeps_current_k_and_advances_the_schedule():
    torch.manual_seed(0)
    model = SparseAutoencoder(8, 32, TopK(2, k_start=8, anneal_steps=4)).train()
    assert model.uses_sparse_path()
    widths = [model(torch.randn(6, 8)).codes.values.shape[1] for _ in range(5)]
    assert widths == [8, 6, 4, 2, 2]
    assert model.eval()(torch.randn(6, 8)).codes.values.shape[1] == 2


def test_default_topk_fit_narrows_over_the_learning_rate_warmup(X):
    sae = _sae().fit(X)
    activation = sae.net_.module_.activation
    # 180 training rows in batches of 20: 9 batches an epoch, 90 in all, 5% of them (4.5 -> 4) warm up.
    assert (activation.k_start, activation.anneal_steps) == (8, 4)
    assert int(activation.n_steps) == 90
    assert (sae.transform(X) != 0).sum(axis=1).max() <= 2


def test_k_start_auto_is_capped_at_n_latents_and_none_turns_it_off(X):
    assert _sae(k=6, n_latents=16).fit(X).net_.module_.activation.k_start == 16
    assert not _sae(k_start=None).fit(X).net_.module_.activation.has_schedule
    assert not _sae(warmup_steps=0).fit(X).net_.module_.activation.has_schedule


def test_k_start_auto_starts_wider_only_with_the_automatic_rate(X):
    assert not _sae(lr=1e-3).fit(X).net_.module_.activation.has_schedule
    explicit = _sae(lr=1e-3, k_start=8).fit(X)  # an integer starts wider at any rate, and leaves that rate alone
    assert explicit.net_.module_.activation.has_schedule and explicit.lr_ == 1e-3


def test_k_start_auto_leaves_the_other_activations_alone(X):
    gumbel = _sae(activation="gumbel_topk").fit(X).net_.module_.activation
    assert gumbel.k_start == gumbel.k and not gumbel.has_schedule  # its own schedule is the temperature's
    assert not isinstance(_sae(activation="batchtopk").fit(X).net_.module_.activation, TopK)


@pytest.mark.parametrize(
    "params, message",
    [
        (dict(k_start=1), "between k=2 and n_latents=16"),
        (dict(k_start=17), "between k=2 and n_latents=16"),
        (dict(k_start=8, activation="gumbel_topk"), "activation='topk' and 'batchtopk' only"),
        (dict(k_start=8, activation="relu"), "activation='topk' and 'batchtopk' only"),
    ],
)
def test_bad_k_start_is_refused_before_training(X, params, message):
    with pytest.raises(ValueError, match=message):
        _sae(**params).fit(X)


def test_k_start_must_be_a_positive_int_auto_or_none(X):
    with pytest.raises(ValueError, match="k_start"):
        _sae(k_start=2.5).fit(X)


def test_saved_model_keeps_its_schedule_and_partial_fit_continues_it(X, tmp_path):
    sae = _sae().fit(X)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    activation = loaded.net_.module_.activation
    assert (activation.k_start, activation.anneal_steps, int(activation.n_steps)) == (8, 4, 90)
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    loaded.partial_fit(X)
    assert int(loaded.net_.module_.activation.n_steps) == 90 + 10  # partial_fit trains on all 200 rows


def test_model_saved_before_k_start_existed_loads_as_plain_topk(X, tmp_path):
    sae = _sae(k_start=None).fit(X)
    sae.save(tmp_path / "model")
    config_path = tmp_path / "model" / "sklearn_sae.json"
    config = json.loads(config_path.read_text())
    assert config["anneal_steps"] is None
    del config["params"]["k_start"]  # as a file written before the parameter existed
    config_path.write_text(json.dumps(config))
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    assert loaded.k_start is None and not loaded.net_.module_.activation.has_schedule
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))


def test_partial_fit_run_narrows_over_its_warmup(X):
    sae = _sae()
    sae.partial_fit(X)
    activation = sae.net_.module_.activation
    # The first call's 10 batches (partial_fit splits off no validation rows), 5% of them: round(0.5) = 0 batches.
    assert not activation.has_schedule
    wide = _sae(warmup_steps=5)
    wide.partial_fit(X)
    activation = wide.net_.module_.activation
    assert (activation.k_start, activation.anneal_steps, int(activation.n_steps)) == (8, 5, 10)
