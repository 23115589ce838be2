"""The automatic training length: a cosine over the budget, cut short by a decay when the validation loss levels off."""

import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from skorch.callbacks import LRScheduler
from skorch.history import History

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._plateau import DecayOnPlateau, WarmupPlateauDecay
from sklearn_sae._training import WarmupCosine


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    atoms = rng.normal(size=(24, 12))
    codes = rng.exponential(size=(300, 24)) * (rng.random((300, 24)) < 0.15)
    return (codes @ atoms + 0.05 * rng.normal(size=(300, 12))).astype(np.float32)


def test_without_a_plateau_the_schedule_is_the_warmup_and_cosine_over_the_budget():
    schedule = WarmupPlateauDecay(warmup_steps=4, total_steps=100, decay_fraction=0.2)
    cosine = WarmupCosine(4, 100)
    assert [schedule(step) for step in range(101)] == [cosine(step) for step in range(101)]
    assert schedule(52) == pytest.approx(0.5) and not schedule.decaying
    assert schedule(100) == 0.0 and schedule.ended


def test_a_plateau_starts_a_linear_decay_over_a_fifth_of_the_steps_run_and_ends_the_schedule_there():
    schedule = WarmupPlateauDecay(warmup_steps=4, total_steps=1_000, decay_fraction=0.2)
    at_plateau = schedule(40)
    schedule.decay_from(40)
    assert (schedule.decay_start, schedule.end_step) == (40, 48) and schedule.decaying
    assert schedule(44) == pytest.approx(0.5 * at_plateau) and not schedule.ended
    assert schedule(48) == 0.0 and schedule.ended
    schedule.decay_from(45)  # a decay under way is not restarted
    assert (schedule.decay_start, schedule.end_step) == (40, 48)


class _Net:
    """What DecayOnPlateau reads of a skorch net: the history, the LR scheduler's multiplier, the module."""

    def __init__(self, schedule):
        self.history, self.verbose, self.module_ = History(), 0, torch.nn.Linear(1, 1)
        callback = LRScheduler()
        callback.lr_scheduler_ = SimpleNamespace(lr_lambdas=[schedule])
        self.callbacks_ = [("lr_schedule", callback)]


def _run(losses, *, steps_per_epoch=10, total_steps=1_000, warmup_epochs=3, patience=3, tol=0.01):
    """Feed DecayOnPlateau one validation loss an epoch; the epochs it ran and the callback."""
    schedule = WarmupPlateauDecay(steps_per_epoch * warmup_epochs, total_steps, decay_fraction=0.2)
    net = _Net(schedule)
    stopping = DecayOnPlateau(start_epoch=warmup_epochs, patience=patience, threshold=tol, load_best=True, sink=print)
    stopping.on_train_begin(net)
    for epoch, loss in enumerate(losses, start=1):
        net.history.new_epoch()
        net.history.record("epoch", epoch)
        net.history.record("valid_loss", loss)
        schedule(epoch * steps_per_epoch)
        try:
            stopping.on_epoch_end(net)
        except KeyboardInterrupt:
            return epoch, stopping, schedule
    return len(losses), stopping, schedule


def test_the_warmup_epochs_are_not_scored_so_a_rising_start_is_not_kept_as_the_best():
    # JumpReLU with target_l0: the loss rises while the thresholds catch up, then falls below the first epoch's.
    losses = [1.0, 2.0, 3.0, 2.5, 2.0, 1.5, 1.2, 1.1] + [1.1] * 40
    epochs, stopping, schedule = _run(losses)
    assert stopping.best_epoch_ == 8  # the lowest loss after the warmup: epoch 1's 1.0 never counts
    assert schedule.ended and epochs < len(losses)


def test_running_out_of_patience_decays_the_rate_instead_of_stopping():
    losses = [3.0, 2.0, 1.5] + [1.0 - 0.02 * i for i in range(10)] + [0.8] * 40
    epochs, stopping, schedule = _run(losses)
    # Epoch 14 is the last fall of 1% or more; three epochs without one start the decay at epoch 17's step 170,
    # which runs a fifth of 170 steps (34: epochs 18 to 21) and ends the fit with the patience marked spent.
    assert (schedule.decay_start, schedule.end_step) == (170, 204)
    assert epochs == 21 and stopping.misses_ == stopping.patience
    assert stopping.best_epoch_ == 14


def test_the_weights_kept_are_the_lowest_losss_even_when_it_fell_by_less_than_tol():
    # Falls of 0.1% an epoch: misses for patience (tol 1%), but each epoch is better than the last.
    losses = [3.0, 2.0, 1.5] + [1.0 * 0.999**i for i in range(60)]
    epochs, stopping, schedule = _run(losses)
    assert schedule.ended and stopping.best_epoch_ == epochs


def test_tol_counts_only_a_relative_fall_of_at_least_tol():
    # A loss falling 0.5% an epoch: progress under tol=1e-2, improvement with tol=1e-3.
    losses = [3.0, 2.0, 1.5] + [1.0 * 0.995**i for i in range(60)]
    coarse, _, coarse_schedule = _run(losses, tol=1e-2, patience=2)
    fine, _, fine_schedule = _run(losses, tol=1e-3, patience=2)
    assert coarse_schedule.decay_start < fine_schedule.decay_start
    assert coarse < fine


def _sae(**params):
    return SparseAutoencoderTransformer(**{**dict(n_latents=32, k=4, device="cpu", random_state=0), **params})


def test_default_fit_stops_before_its_budget_with_the_rate_decayed_to_zero(X):
    sae = _sae().fit(X)
    # 270 training rows in batches of 256: 2 steps an epoch, a budget of 1,500 epochs (3,000 steps).
    assert sae.n_iter_ < 1_500
    schedule = dict(sae.net_.callbacks_)["lr_schedule"].lr_lambda
    assert isinstance(schedule, WarmupPlateauDecay)
    # The decay began at a plateau, not at the budget's last fifth, and ran out: the last step's rate was ~0.
    assert schedule.decay_start < 0.8 * 3_000 and schedule.ended
    assert sae.n_iter_ * 2 >= schedule.end_step


def test_tol_applies_to_early_stopping_of_a_chosen_length(X):
    # Relative improvements of the validation loss of under 50% do not count: 3 epochs after the first.
    coarse = _sae(max_epochs=200, n_iter_no_change=3, tol=0.5).fit(X)
    fine = _sae(max_epochs=200, n_iter_no_change=3, tol=0.0).fit(X)
    assert coarse.n_iter_ == 4
    assert fine.n_iter_ > coarse.n_iter_


def test_tol_must_be_a_non_negative_number(X):
    with pytest.raises(ValueError, match="tol"):
        _sae(tol=-1e-3).fit(X)


def test_model_saved_before_tol_existed_loads_with_any_improvement_counting(X, tmp_path):
    sae = _sae(max_epochs=2).fit(X)
    sae.save(tmp_path / "model")
    config_path = tmp_path / "model" / "sklearn_sae.json"
    config = json.loads(config_path.read_text())
    del config["params"]["tol"]  # as a file written before the parameter existed
    config_path.write_text(json.dumps(config))
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    assert loaded.tol == 0.0
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))


def test_a_fit_interrupted_in_its_decay_resumes_bit_identical(X, tmp_path, monkeypatch):
    from test_checkpoint import Interrupted, _assert_same_fit, _count_training_batches, _epochs_in_checkpoint

    reference = _sae().fit(X)
    schedule = dict(reference.net_.callbacks_)["lr_schedule"].lr_lambda
    # 2 training batches an epoch: interrupted in the middle of the last epoch but one, inside the decay.
    interrupted_at = 2 * (reference.n_iter_ - 2) + 1
    assert interrupted_at > schedule.decay_start
    _count_training_batches(monkeypatch, fail_after=interrupted_at)
    with pytest.raises(Interrupted):
        _sae(checkpoint_dir=tmp_path).fit(X)
    monkeypatch.undo()
    resumed = _sae(checkpoint_dir=tmp_path).fit(X)
    _assert_same_fit(resumed, reference, X)
    assert _epochs_in_checkpoint(tmp_path) == reference.n_iter_
