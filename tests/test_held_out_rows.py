"""Validation rows are held out of everything a fit estimates: the pre-bias start and ``lr="auto"``'s spread."""

import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import _rows, _training


def _spy(monkeypatch, cls):
    """Record what ``cls.split`` held out and which rows the estimates were given."""
    seen = {"held_out": [], "pre_bias": [], "lr": []}
    split = cls.split

    def recording_split(self, validation_fraction, seed):
        train, valid = split(self, validation_fraction, seed)
        seen["held_out"].append(valid)
        return train, valid

    monkeypatch.setattr(cls, "split", recording_split)
    resolve_lr = _training.resolve_lr

    def recording_resolve_lr(lr, sample, **kwargs):
        seen["lr"].append(np.asarray(sample))
        return resolve_lr(lr, sample, **kwargs)

    monkeypatch.setattr(_training, "resolve_lr", recording_resolve_lr)
    init_pre_bias = _training.PreBiasFromSample.__init__

    def recording_init(self, method="geometric_median", sample=None):
        seen["pre_bias"].append(sample.numpy())
        init_pre_bias(self, method, sample)

    monkeypatch.setattr(_training.PreBiasFromSample, "__init__", recording_init)
    return seen


def _fit(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        SparseAutoencoderTransformer(n_latents=16, k=4, max_epochs=1, validation_fraction=0.25, lr="auto",
                                     device="cpu", random_state=0).fit(X)


def _rows_of(array):
    return {row.tobytes() for row in np.asarray(array, dtype=np.float32)}


@pytest.fixture
def X():
    return np.random.default_rng(0).normal(size=(400, 8)).astype(np.float32)


def test_rows_in_memory_estimate_from_training_rows_only(X, monkeypatch):
    seen = _spy(monkeypatch, _rows.InMemoryRows)
    _fit(X)
    held_out = _rows_of(X[seen["held_out"][0].indices])
    assert len(held_out) == 100
    for estimate in ("pre_bias", "lr"):
        (sample,) = seen[estimate]
        assert len(sample) == 300 and not _rows_of(sample) & held_out, estimate


def test_rows_on_disk_estimate_from_training_blocks_only(X, monkeypatch, tmp_path):
    np.save(tmp_path / "X.npy", X)
    on_disk = np.load(tmp_path / "X.npy", mmap_mode="r")
    seen = _spy(monkeypatch, _rows.OnDiskRows)
    _fit(on_disk)
    valid = seen["held_out"][0]
    held_out = _rows_of(np.concatenate([X[slice(*valid.block_bounds(block))] for block in valid.blocks]))
    assert 0 < len(held_out) < len(X)
    for estimate in ("pre_bias", "lr"):
        (sample,) = seen[estimate]
        assert len(sample) == len(X) - len(held_out) and not _rows_of(sample) & held_out, estimate
