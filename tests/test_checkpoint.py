"""Resumable fits: a fit interrupted at any point and resumed from its checkpoint_dir ends where an
uninterrupted fit ends, bit for bit on the CPU."""

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import sklearn_sae._training
from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._atomic import TEMPORARY_PREFIX
from sklearn_sae._checkpoint import CHECKPOINT_NAME

REPOSITORY = Path(__file__).resolve().parents[1]

N_ROWS, N_FEATURES = 120, 8
BATCHES_PER_EPOCH = 6  # 90 training rows (validation_fraction=0.25) in batches of 16
PARAMS = dict(
    n_latents=16, k=4, batch_size=16, max_epochs=4, validation_fraction=0.25, anneal_steps=0.5, lr=3e-2,
    device="cpu", random_state=0,
)  # fmt: skip
"""Tiny fits; anneal_steps=0.5 keeps the Gumbel noise on across the interruption."""


def _data(seed=0, n_rows=N_ROWS):
    return np.random.default_rng(seed).normal(size=(n_rows, N_FEATURES)).astype(np.float32)


def _sae(**params):
    return SparseAutoencoderTransformer(**{**PARAMS, **params})


class Interrupted(Exception):
    """Raised in place of a training batch, as a crash in the middle of an epoch."""


def _count_training_batches(monkeypatch, *, fail_after=None):
    """Count the training batches that fits draw from now on; raise :class:`Interrupted` after ``fail_after``."""
    counter = {"batches": 0}

    class CountingBatches(sklearn_sae._training.EpochIterator):
        def __iter__(self):
            for batch in super().__iter__():
                if self.training:  # the training iterator, not the validation one
                    if counter["batches"] == fail_after:
                        raise Interrupted
                    counter["batches"] += 1
                yield batch

    monkeypatch.setattr(sklearn_sae._training, "EpochIterator", CountingBatches)
    return counter


def _history_without_durations(history):
    return [{key: value for key, value in epoch.items() if key != "dur"} for epoch in history]


def _assert_same_fit(resumed, reference, X):
    reference_state = reference.net_.module_.state_dict()
    resumed_state = resumed.net_.module_.state_dict()
    assert reference_state.keys() == resumed_state.keys()
    for name, tensor in reference_state.items():
        assert torch.equal(resumed_state[name], tensor), name
    assert _history_without_durations(resumed.history_) == _history_without_durations(reference.history_)
    assert resumed.n_iter_ == reference.n_iter_
    assert np.array_equal(resumed.transform(X), reference.transform(X))


def _epochs_in_checkpoint(checkpoint_dir):
    return json.loads((Path(checkpoint_dir) / CHECKPOINT_NAME / "checkpoint.json").read_text())["epochs_done"]


@pytest.mark.parametrize(
    "params",
    [{"activation": "relu"}, {"activation": "topk", "aux_k": 4, "dead_window": 32}, {"activation": "gumbel_topk"}],
    ids=["relu", "topk-auxk", "gumbel_topk"],
)
def test_fit_interrupted_mid_epoch_resumes_bit_identical(tmp_path, monkeypatch, params):
    """AuxK's dead-latent counters and the Gumbel annealing position must survive too."""
    X = _data()
    reference = _sae(**params).fit(X)
    counter = _count_training_batches(monkeypatch, fail_after=2 * BATCHES_PER_EPOCH + 3)
    with pytest.raises(Interrupted):
        _sae(**params, checkpoint_dir=tmp_path).fit(X)
    assert _epochs_in_checkpoint(tmp_path) == 2

    counter["batches"] = 0
    resumed = _sae(**params, checkpoint_dir=tmp_path).fit(X)
    assert counter["batches"] == 2 * BATCHES_PER_EPOCH  # only the two remaining epochs ran
    _assert_same_fit(resumed, reference, X)
    assert _epochs_in_checkpoint(tmp_path) == 4


def test_resume_keeps_early_stopping_state_and_eval_sets(tmp_path, monkeypatch):
    X, X_test = _data(), _data(seed=1, n_rows=40)
    # A step size this large makes the validation loss climb after a few epochs: the fit stops early and goes
    # back to the weights of its best epoch. The interruption falls after the best epoch and before the stop,
    # so the resumed part must have kept both the best weights and the count of epochs without improvement.
    params = dict(activation="relu", lr=1.0, warmup_steps=0, max_epochs=20, n_iter_no_change=3)
    reference = _sae(**params).fit(X, eval_sets={"test": X_test})
    n_epochs, best = reference.n_iter_, reference.history_[:, "valid_loss_best"]
    assert n_epochs < 20 and best[-3:] == [False] * 3  # it stopped early, after three epochs without improvement
    interrupted_in = n_epochs - 1  # one of the epochs without improvement
    _count_training_batches(monkeypatch, fail_after=(interrupted_in - 1) * BATCHES_PER_EPOCH + 1)
    with pytest.raises(Interrupted):
        _sae(**params, checkpoint_dir=tmp_path).fit(X, eval_sets={"test": X_test})
    monkeypatch.undo()
    resumed = _sae(**params, checkpoint_dir=tmp_path).fit(X, eval_sets={"test": X_test})
    _assert_same_fit(resumed, reference, X)
    # The stopping epoch is in the checkpoint too, which records that the fit is finished.
    assert _epochs_in_checkpoint(tmp_path) == n_epochs


def test_finished_checkpoint_gives_the_model_back_without_training(tmp_path, monkeypatch):
    X = _data()
    finished = _sae(activation="gumbel_topk", checkpoint_dir=tmp_path).fit(X)
    counter = _count_training_batches(monkeypatch)
    again = _sae(activation="gumbel_topk", checkpoint_dir=tmp_path, verbose=1).fit(X)
    assert counter["batches"] == 0
    _assert_same_fit(again, finished, X)
    assert again.history_[:, "dur"] == finished.history_[:, "dur"]  # the history comes from the checkpoint


def test_resume_without_int_random_state_keeps_the_interrupted_fits_seed(tmp_path, monkeypatch):
    """Two resumptions of one checkpoint agree: each uses the seed saved there, not one drawn afresh,
    so the validation split is that of the interrupted fit."""
    X = _data()
    _count_training_batches(monkeypatch, fail_after=BATCHES_PER_EPOCH + 2)
    with pytest.raises(Interrupted):
        _sae(random_state=None, checkpoint_dir=tmp_path / "first").fit(X)
    monkeypatch.undo()
    shutil.copytree(tmp_path / "first", tmp_path / "second")
    first = _sae(random_state=None, checkpoint_dir=tmp_path / "first").fit(X)
    second = _sae(random_state=None, checkpoint_dir=tmp_path / "second").fit(X)
    _assert_same_fit(second, first, X)


@pytest.mark.parametrize(
    ("changed", "named"),
    [({"lr": 1e-3}, "lr: 0.03 in the checkpoint, 0.001 in this fit"), ({"activation": "relu"}, "activation")],
)
def test_checkpoint_of_other_settings_is_refused(tmp_path, changed, named):
    X = _data()
    _sae(activation="topk", max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    with pytest.raises(ValueError, match="other settings or data") as error:
        _sae(**{"activation": "topk", "max_epochs": 1, **changed}, checkpoint_dir=tmp_path).fit(X)
    assert named in str(error.value) and "another checkpoint_dir" in str(error.value)


def test_settings_that_do_not_change_training_may_differ(tmp_path, capsys):
    X = _data()
    _sae(max_epochs=1, checkpoint_dir=str(tmp_path)).fit(X)
    _sae(max_epochs=1, checkpoint_dir=tmp_path, verbose=1, sparse_output=True).fit(X)
    assert "Resuming after epoch 1" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("other_data", "named"),
    [(_data(n_rows=N_ROWS + 8), "shape (128, 8)"), (_data(seed=5), "rows hashed to")],
    ids=["shape", "content"],
)
def test_checkpoint_of_other_data_is_refused(tmp_path, other_data, named):
    _sae(max_epochs=1, checkpoint_dir=tmp_path).fit(_data())
    with pytest.raises(ValueError, match="X: shape") as error:
        _sae(max_epochs=1, checkpoint_dir=tmp_path).fit(other_data)
    assert named in str(error.value)


def test_checkpoint_dir_that_is_a_file_is_refused(tmp_path):
    path = tmp_path / "file"
    path.write_text("")
    with pytest.raises(ValueError, match="is a file"):
        _sae(checkpoint_dir=path).fit(_data())


def test_checkpoint_of_an_older_format_is_refused_with_what_to_do(tmp_path):
    X = _data()
    _sae(max_epochs=1, checkpoint_dir=tmp_path).fit(X)
    metadata_path = tmp_path / CHECKPOINT_NAME / "checkpoint.json"
    metadata = json.loads(metadata_path.read_text())
    metadata_path.write_text(json.dumps({**metadata, "format_version": 1}))  # as sklearn-sae wrote it before 2
    with pytest.raises(ValueError, match="version 1; this version of sklearn_sae reads .* version 2.*delete it"):
        _sae(max_epochs=1, checkpoint_dir=tmp_path).fit(X)


def test_half_written_checkpoint_is_ignored_and_removed(tmp_path, monkeypatch):
    X = _data()
    reference = _sae().fit(X)
    _count_training_batches(monkeypatch, fail_after=BATCHES_PER_EPOCH + 1)
    with pytest.raises(Interrupted):
        _sae(checkpoint_dir=tmp_path).fit(X)
    monkeypatch.undo()
    # What a process killed while writing its next checkpoint leaves: a damaged copy under a temporary name.
    leftover = tmp_path / f"{TEMPORARY_PREFIX}{CHECKPOINT_NAME}-killed"
    shutil.copytree(tmp_path / CHECKPOINT_NAME, leftover)
    (leftover / "checkpoint.json").write_text('{"epochs_done": 3, "trunc')
    resumed = _sae(checkpoint_dir=tmp_path).fit(X)
    _assert_same_fit(resumed, reference, X)
    assert sorted(path.name for path in tmp_path.iterdir()) == [CHECKPOINT_NAME]


KILLED_FIT = """
import os, signal, sys
import numpy as np
import sklearn_sae._training
from sklearn_sae import SparseAutoencoderTransformer

training_batches = 0

class KilledMidEpoch(sklearn_sae._training.EpochIterator):
    def __iter__(self):
        global training_batches
        for batch in super().__iter__():
            training_batches += self.training
            if training_batches == 2 * {batches_per_epoch} + 3:
                os.kill(os.getpid(), signal.SIGKILL)
            yield batch

sklearn_sae._training.EpochIterator = KilledMidEpoch
X = np.random.default_rng(0).normal(size=({n_rows}, {n_features})).astype(np.float32)
SparseAutoencoderTransformer(**{params!r}, checkpoint_dir=sys.argv[1]).fit(X)
"""


@pytest.mark.skipif(os.name != "posix", reason="SIGKILL is POSIX")
def test_fit_killed_by_sigkill_resumes_bit_identical(tmp_path):
    """The first fit runs in a child process that SIGKILLs itself in the middle of its third epoch; the
    resumed fit in this process matches one that was never interrupted."""
    params = {**PARAMS, "activation": "gumbel_topk"}
    script = KILLED_FIT.format(batches_per_epoch=BATCHES_PER_EPOCH, n_rows=N_ROWS, n_features=N_FEATURES, params=params)
    environment = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPOSITORY), os.environ.get("PYTHONPATH", "")])}
    child = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(script), str(tmp_path)],
        env=environment, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert child.returncode == -9, child.stderr
    assert _epochs_in_checkpoint(tmp_path) == 2

    X = _data()
    resumed = SparseAutoencoderTransformer(**params, checkpoint_dir=tmp_path).fit(X)
    _assert_same_fit(resumed, SparseAutoencoderTransformer(**params).fit(X), X)
