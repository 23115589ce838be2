"""``warmup_steps="auto"``: 5% of the fit's batches, and with ``max_epochs="auto"`` at most 15 epochs of them."""

import math

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._incremental import incremental_run

ROWS, BATCH = 600, 64
BUDGET_STEPS, MAX_WARMUP_EPOCHS = 3_000, 15  # max_epochs="auto"'s budget, and the automatic warmup's cap
TRAIN_BATCHES = math.ceil(ROWS * 0.9 / BATCH)  # the default validation_fraction holds out 10%


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 12))
    codes = rng.exponential(size=(ROWS, 24)) * (rng.random((ROWS, 24)) < 0.15)
    return (codes @ atoms + 0.05 * rng.normal(size=(ROWS, 12))).astype(np.float32)


def _fit(X, **params):
    params = dict(dict(n_latents=32, k=4, batch_size=BATCH, random_state=0, device="cpu"), **params)
    return SparseAutoencoderTransformer(**params).fit(X)


def _warmup(sae) -> tuple[int, int, int]:
    """The fitted net's LR warmup and unscored epochs, and the batches Top-K narrowed over."""
    callbacks = dict(sae.net_.callbacks_)
    stopping = callbacks.get("early_stopping")
    return (callbacks["lr_schedule"].lr_lambda.warmup_steps, getattr(stopping, "start_epoch", None),
            sae.net_.module_.activation.anneal_steps)


def test_auto_is_the_default():
    assert SparseAutoencoderTransformer().get_params()["warmup_steps"] == "auto"


def test_resolve_auto_caps_the_budget_fraction_in_epochs_only_for_an_automatic_length():
    from sklearn_sae._defaults import resolve_warmup_steps

    # 1,008 rows in batches of 256: 4 batches an epoch and a budget of 750 epochs, whose 5% is 37 epochs.
    assert resolve_warmup_steps("auto", BUDGET_STEPS, steps_per_epoch=4) == MAX_WARMUP_EPOCHS * 4
    assert resolve_warmup_steps("auto", BUDGET_STEPS) == 150
    # A large set's budget is 10 epochs: 5% of them is under the cap.
    assert resolve_warmup_steps("auto", 10 * 600, steps_per_epoch=600) == 300
    assert resolve_warmup_steps(0.05, BUDGET_STEPS) == 150
    assert resolve_warmup_steps(7, BUDGET_STEPS) == 7


def test_a_default_fit_on_a_small_set_warms_up_and_narrows_over_fifteen_epochs(X):
    warmup_steps, unscored_epochs, narrowing = _warmup(_fit(X))
    assert warmup_steps == MAX_WARMUP_EPOCHS * TRAIN_BATCHES  # not 5% of the 3,000-step budget (150)
    assert narrowing == warmup_steps  # k_start narrows to k over the same batches
    assert unscored_epochs == MAX_WARMUP_EPOCHS


def test_auto_is_five_percent_of_a_chosen_length(X):
    warmup_steps, _, narrowing = _warmup(_fit(X, max_epochs=40))
    assert warmup_steps == narrowing == round(0.05 * 40 * TRAIN_BATCHES)


def test_a_chosen_fraction_is_a_fraction_of_the_whole_budget(X):
    warmup_steps, unscored_epochs, narrowing = _warmup(_fit(X, warmup_steps=0.05, max_epochs="auto"))
    budget = math.ceil(BUDGET_STEPS / TRAIN_BATCHES) * TRAIN_BATCHES
    assert warmup_steps == narrowing == round(0.05 * budget)
    assert unscored_epochs == math.ceil(warmup_steps / TRAIN_BATCHES)


def test_partial_fit_warms_up_over_five_percent_of_the_first_calls_batches(X):
    sae = SparseAutoencoderTransformer(n_latents=32, k=4, batch_size=8, lr=1e-2, random_state=0, device="cpu")
    sae.partial_fit(X[:400])
    assert incremental_run(sae.net_).warmup_steps == round(0.05 * 400 / 8)
