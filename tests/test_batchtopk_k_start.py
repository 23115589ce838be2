"""BatchTopK that starts wider: ``k_t * batch`` activations a training batch, ``k_t`` narrowing from k_start to k."""

import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import BatchTopK, dense_codes, schedule_length, schedule_start, starts_soft
from sklearn_sae._model import SparseAutoencoder
from sklearn_sae.datasets import make_sparse_signals


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=400, n_features=16, n_atoms=32, n_active=3, random_state=0)[0]


def _fit(X, **params):
    defaults = dict(activation="batchtopk", n_latents=32, k=4, max_epochs=3, batch_size=40, device="cpu",
                    random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


def test_a_training_batch_keeps_k_t_times_its_rows_narrowing_to_k():
    torch.manual_seed(0)
    activation = BatchTopK(2, k_start=8, anneal_steps=4)
    model = SparseAutoencoder(8, 32, activation).train()
    # Rows offset so that every pre-activation is positive on most latents: the budget, not the ReLU, decides.
    kept = [int((dense_codes(model(torch.randn(6, 8) + 3).codes, 32) != 0).sum()) for _ in range(6)]
    assert kept == [8 * 6, 6 * 6, 4 * 6, 2 * 6, 2 * 6, 2 * 6]
    assert int(activation.n_steps) == 6
    assert (schedule_length(activation), schedule_start(activation), starts_soft(activation)) == (4, 8, True)


def test_the_threshold_averages_only_the_batches_kept_at_k():
    torch.manual_seed(0)
    activation = BatchTopK(2, k_start=8, anneal_steps=4)
    model = SparseAutoencoder(8, 32, activation).train()
    for _ in range(3):  # batches at 8, 6 and 4 a row
        model(torch.randn(6, 8) + 3)
    assert int(activation.n_updates) == 0 and float(activation.threshold) == 0.0
    model(torch.randn(6, 8) + 3)  # the last annealing batch keeps exactly k
    assert int(activation.n_updates) == 1 and float(activation.threshold) > 0


def test_fit_with_k_start_narrows_over_the_warmup_and_infers_at_k(X):
    sae = _fit(X, k_start=16, warmup_steps=5)
    activation = sae.net_.module_.activation
    assert (activation.k_start, activation.anneal_steps, activation.current_k) == (16, 5, 4)
    # 360 training rows in batches of 40: 9 an epoch, 27 in all; the first 4 narrowed, 23 averaged into theta.
    assert int(activation.n_steps) == 27 and int(activation.n_updates) == 23
    assert 2 <= (sae.transform(X) != 0).sum(axis=1).mean() <= 8


def test_k_start_auto_leaves_batchtopk_at_k(X):
    activation = _fit(X).net_.module_.activation
    assert activation.k_start == activation.k and not activation.has_schedule
    assert "n_steps" not in activation.state_dict()  # the tensors of a BatchTopK saved before k_start applied to it


def test_saved_batchtopk_keeps_its_schedule(X, tmp_path):
    sae = _fit(X, k_start=16, warmup_steps=5)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    activation = loaded.net_.module_.activation
    assert (activation.k_start, activation.anneal_steps, int(activation.n_steps)) == (16, 5, 27)
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
