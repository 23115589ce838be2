"""What a checkpoint records: a fit that early stopping ended is finished, and a rerun gives it back untrained."""

import json
from pathlib import Path

import numpy as np

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._checkpoint import CHECKPOINT_NAME
from sklearn_sae._training import SAENet

PARAMS = dict(activation="relu", n_latents=16, batch_size=16, lr=1.0, warmup_steps=0, max_epochs=20,
              n_iter_no_change=2, validation_fraction=0.25, device="cpu", random_state=0)
"""A step size this large makes the validation loss climb after a few epochs: early stopping ends the fit."""


def _metadata(checkpoint_dir):
    return json.loads((Path(checkpoint_dir) / CHECKPOINT_NAME / "checkpoint.json").read_text())


def _count_training_steps(monkeypatch):
    counter = {"steps": 0}
    train_step = SAENet.train_step

    def counting_train_step(net, batch, **fit_params):
        counter["steps"] += 1
        return train_step(net, batch, **fit_params)

    monkeypatch.setattr(SAENet, "train_step", counting_train_step)
    return counter


def test_an_early_stopped_fit_is_given_back_without_training(tmp_path, monkeypatch):
    X = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    first = SparseAutoencoderTransformer(**PARAMS, checkpoint_dir=tmp_path).fit(X)
    assert first.n_iter_ < PARAMS["max_epochs"]  # early stopping ended it
    metadata = _metadata(tmp_path)

    counter = _count_training_steps(monkeypatch)
    again = SparseAutoencoderTransformer(**PARAMS, checkpoint_dir=tmp_path).fit(X)
    assert counter["steps"] == 0
    assert again.n_iter_ == first.n_iter_
    np.testing.assert_array_equal(again.transform(X), first.transform(X))
    assert metadata["finished"] is True and metadata["epochs_done"] == first.n_iter_
    assert _metadata(tmp_path) == metadata  # nothing was rewritten


def test_a_fit_that_ran_every_epoch_is_recorded_finished(tmp_path):
    X = np.random.default_rng(0).normal(size=(120, 8)).astype(np.float32)
    SparseAutoencoderTransformer(**{**PARAMS, "lr": 1e-3, "max_epochs": 2, "n_iter_no_change": None},
                                 checkpoint_dir=tmp_path).fit(X)
    assert _metadata(tmp_path)["finished"] is True and _metadata(tmp_path)["epochs_done"] == 2
