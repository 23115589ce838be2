"""Fitting and applying the autoencoder on rows that stay on disk (h5py datasets, memmaps)."""

import math

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sklearn_sae import SparseAutoencoderTransformer, _blocks, _rows
from sklearn_sae.datasets import make_sparse_signals

SMALL = dict(n_latents=32, k=4, max_epochs=4, batch_size=64, random_state=0, device="cpu")


@pytest.fixture(scope="module")
def all_signals():
    return make_sparse_signals(n_samples=1600, n_features=16, n_atoms=32, n_active=3, random_state=0)[0]


@pytest.fixture(scope="module")
def signals(all_signals):
    return all_signals[:1200]


def _h5(path, X, **kwargs):
    with h5py.File(path, "w") as f:
        f.create_dataset("X", data=X, **kwargs)
    return h5py.File(path, "r")["X"]


def _memmap(path, X):
    out = np.lib.format.open_memmap(path, mode="w+", dtype=X.dtype, shape=X.shape)
    out[:] = X
    out.flush()
    return np.load(path, mmap_mode="r")


@pytest.fixture(params=["h5py", "memmap"])
def on_disk(request, tmp_path, signals):
    if request.param == "h5py":
        return _h5(tmp_path / "X.h5", signals.astype(np.float16), chunks=(32, 16))
    return _memmap(tmp_path / "X.npy", signals)


def test_is_on_disk(on_disk, signals):
    assert _blocks.is_on_disk(on_disk)
    assert not _blocks.is_on_disk(signals)
    assert not _blocks.is_on_disk(signals.tolist())


def test_fit_on_disk_trains_and_sets_fitted_attributes(on_disk, signals):
    sae = SparseAutoencoderTransformer(**SMALL).fit(on_disk)
    assert sae.n_features_in_ == 16
    assert not hasattr(sae, "feature_names_in_")
    assert sae.n_iter_ == SMALL["max_epochs"]
    assert sae.history_[-1, "valid_nmse"] < sae.history_[0, "valid_nmse"]
    assert sae.score(signals) > 0.5


def test_fit_on_disk_is_deterministic(on_disk):
    first = SparseAutoencoderTransformer(**SMALL).fit(on_disk).components_
    second = SparseAutoencoderTransformer(**SMALL).fit(on_disk).components_
    np.testing.assert_array_equal(first, second)


def test_streaming_and_in_memory_fits_reach_the_same_quality(tmp_path, signals, all_signals):
    """Same rows, several seeds: the mean held-out scores are close."""
    X_disk = _memmap(tmp_path / "X.npy", signals)
    X_test = all_signals[1200:]  # rows of the same dictionary that neither fit sees
    params = {**SMALL, "max_epochs": 6}
    del params["random_state"]
    def scores(X):
        return [SparseAutoencoderTransformer(**params, random_state=seed).fit(X).score(X_test) for seed in range(3)]

    streamed, in_memory = scores(X_disk), scores(signals)
    assert abs(np.mean(streamed) - np.mean(in_memory)) < 0.02, (streamed, in_memory)


@pytest.mark.parametrize("sparse_output", [False, True])
def test_transform_reconstruct_score_on_disk_equal_in_memory(on_disk, sparse_output):
    sae = SparseAutoencoderTransformer(**SMALL, sparse_output=sparse_output).fit(on_disk)
    X = np.asarray(on_disk[:], dtype=np.float32)
    codes = sae.transform(on_disk)
    expected = sae.transform(X)
    assert sp.issparse(codes) == sparse_output
    if sparse_output:
        assert codes.format == "csr"
        codes, expected = codes.toarray(), expected.toarray()
    np.testing.assert_array_equal(codes, expected)
    np.testing.assert_array_equal(sae.reconstruct(on_disk), sae.reconstruct(X))
    assert sae.score(on_disk) == pytest.approx(sae.score(X), rel=1e-6)


def test_inference_reads_blocks_not_the_whole_array(tmp_path, signals, monkeypatch):
    X_disk = _memmap(tmp_path / "X.npy", signals)
    sae = SparseAutoencoderTransformer(**SMALL).fit(X_disk)
    reads = _count_reads(monkeypatch)
    monkeypatch.setattr("sklearn_sae._blocks.BLOCK_ELEMENTS", 100 * sae.n_latents_)
    sae.transform(X_disk)
    assert max(reads) == 100 and sum(reads) == len(signals)


def _count_reads(monkeypatch):
    reads = []
    read_rows = _blocks.read_rows

    def counting(source, start, stop, out):
        reads.append(stop - start)
        read_rows(source, start, stop, out)

    # Training reads blocks through _rows, inference through _blocks' loop: count both.
    monkeypatch.setattr(_rows, "read_rows", counting)
    monkeypatch.setattr(_blocks, "read_rows", counting)
    return reads


def test_fit_holds_one_buffer_and_reads_each_row_once_per_epoch(tmp_path, signals, monkeypatch):
    """The shuffle buffer is smaller than the file; reads are single blocks; an epoch reads every row once."""
    monkeypatch.setattr(_rows, "BUFFER_BYTES", 256 * 16 * 4)  # 256 rows of float32
    X_disk = _memmap(tmp_path / "X.npy", signals)
    rows = _rows.OnDiskRows(X_disk)
    batches = rows.epoch(64, seed=0, epoch=0, shuffle=True)
    batches[0]
    assert batches._buffer.shape[0] < len(signals) / 4
    batches.release()  # waits for the window being read ahead, which must not count below

    reads = _count_reads(monkeypatch)
    estimator = SparseAutoencoderTransformer(**{**SMALL, "max_epochs": 2})
    estimator.fit(X_disk)
    assert max(reads) <= rows.block_rows < len(signals)
    # One pass per epoch over training and validation rows, plus the sample that starts pre_bias, which reads
    # the training blocks only.
    n_train = rows.split(estimator.validation_fraction, estimator._draw_seed())[0].n_rows
    assert sum(reads) == 2 * len(signals) + min(n_train, 4 * 4096)


def test_batches_cover_every_training_row_once_in_a_new_order_each_epoch(tmp_path):
    X = np.arange(1000 * 2, dtype=np.float32).reshape(1000, 2)
    rows = _rows.OnDiskRows(_memmap(tmp_path / "X.npy", X), block_rows=10)
    train_rows, valid_rows = rows.split(0.2, seed=3)
    train, valid = train_rows.blocks, valid_rows.blocks
    assert len(valid) == 20 and not set(train) & set(valid)
    batches = _rows.BlockBatches(rows, train, 32, shuffle=True, seed=3, buffer_bytes=200 * 8)
    orders = []
    for epoch in range(2):
        batches.set_epoch(epoch)
        seen = torch.cat([batches[i] for i in range(len(batches))])[:, 0].numpy() // 2
        assert sorted(seen) == sorted(np.concatenate([np.arange(b * 10, b * 10 + 10) for b in train]))
        orders.append(seen)
    assert not np.array_equal(orders[0], orders[1])
    assert max(len(batches[i]) for i in range(len(batches))) == 32
    windows = batches.units()
    assert len(windows) == math.ceil(len(train) / 20) and windows[-1].stop == len(batches)
    # Windows draw their blocks from the whole file, not from consecutive runs of it.
    first_window_blocks = set(torch.cat([batches[i] for i in windows[0]])[:, 0].numpy() // 2 // 10)
    assert len(first_window_blocks) == 20 and first_window_blocks != set(train[:20])


def _served(batches, ids):
    out = [batches[index] for index in ids]
    batches.release()
    return out


@pytest.mark.parametrize("share", [None, (3, 1)])  # all windows, or one process's share of three
def test_reading_ahead_changes_no_batch(tmp_path, share):
    X = np.arange(1000 * 4, dtype=np.float32).reshape(1000, 4)
    rows = _rows.OnDiskRows(_memmap(tmp_path / "X.npy", X), block_rows=10)

    def epoch(read_ahead):
        batches = _rows.BlockBatches(rows, rows.blocks, 32, shuffle=True, seed=2, buffer_bytes=100 * 16,
                                     read_ahead=read_ahead)
        batches.set_epoch(1)
        ids = range(len(batches)) if share is None else _rows.share_batches(
            batches.units(), num_processes=share[0], process_index=share[1], even=True
        )
        batches.expect(ids)
        return _served(batches, ids)

    ahead, in_turn = epoch(True), epoch(False)
    assert len(ahead) == len(in_turn) > 0
    for got, expected in zip(ahead, in_turn):
        torch.testing.assert_close(got, expected, rtol=0, atol=0)


def test_a_bad_row_read_ahead_is_reported_when_its_window_is_served(tmp_path):
    X = np.zeros((400, 4), dtype=np.float32)
    X[395, 2] = np.nan  # in the last block, so in the last window of a file-order epoch
    rows = _rows.OnDiskRows(_memmap(tmp_path / "X.npy", X), block_rows=10)
    batches = _rows.BlockBatches(rows, rows.blocks, 50, buffer_bytes=100 * 16)
    last_window = batches.units()[-1]
    for index in range(last_window.start):
        batches[index]  # the windows before it, while the last one is read ahead: no error yet
    with pytest.raises(ValueError, match="Row 395 "):
        batches[last_window.start]
    batches.release()
    assert batches._reader is None


def test_a_read_ahead_that_is_never_served_raises_nothing(tmp_path):
    X = np.zeros((400, 4), dtype=np.float32)
    X[395, 2] = np.nan
    rows = _rows.OnDiskRows(_memmap(tmp_path / "X.npy", X), block_rows=10)
    batches = _rows.BlockBatches(rows, rows.blocks, 50, buffer_bytes=100 * 16)
    batches[batches.units()[-2].start]  # the next window, the bad one, is read ahead but never asked for
    batches.release()
    assert batches._reader is None and batches._buffer is None


def test_batches_are_served_by_a_dataloader(tmp_path, signals):
    rows = _rows.OnDiskRows(_memmap(tmp_path / "X.npy", signals))
    batches = _rows.BlockBatches(rows, np.arange(rows.n_blocks), 64, shuffle=True, seed=1)
    loader = torch.utils.data.DataLoader(batches, batch_size=None)
    batches.set_epoch(5)
    direct = [batches[i] for i in range(len(batches))]
    batches.set_epoch(5)
    for served, expected in zip(loader, direct, strict=True):
        torch.testing.assert_close(served, expected, rtol=0, atol=0)


@pytest.mark.parametrize("bad_value", [np.nan, np.inf])
def test_non_finite_value_error_names_the_row(tmp_path, signals, bad_value):
    X = signals.astype(np.float16)
    bad_row = 3 * 32 + 5  # in block 3 of 32-row chunks
    X[bad_row, 7] = bad_value
    X_disk = _h5(tmp_path / "X.h5", X, chunks=(32, 16))
    with pytest.raises(ValueError, match=rf"Row {bad_row} of the input holds a non-finite value"):
        SparseAutoencoderTransformer(**SMALL).fit(X_disk)
    sae = SparseAutoencoderTransformer(**SMALL).fit(signals)
    with pytest.raises(ValueError, match=rf"Row {bad_row} "):
        sae.transform(X_disk)


def test_float64_too_large_for_float32_is_reported(tmp_path, signals):
    X = signals.astype(np.float64)
    X[10, 0] = 1e300
    with pytest.raises(ValueError, match="Row 10 of the input"):
        SparseAutoencoderTransformer(**SMALL).fit(_memmap(tmp_path / "X.npy", X))


def test_integer_rows_are_accepted(tmp_path, signals):
    X = np.round(signals * 100).astype(np.int16)
    sae = SparseAutoencoderTransformer(**{**SMALL, "max_epochs": 1}).fit(_memmap(tmp_path / "X.npy", X))
    assert sae.n_features_in_ == 16


@pytest.mark.parametrize(
    ("make", "error", "match"),
    [
        (lambda p: _h5(p / "X.h5", np.zeros((10, 4), dtype=np.complex64)), TypeError, "only real numbers"),
        (lambda p: _h5(p / "X.h5", np.zeros((10, 4), dtype="S3")), TypeError, "only real numbers"),
        (lambda p: _h5(p / "X.h5", np.zeros(10, dtype=np.float32)), ValueError, "Expected a 2-D"),
        (lambda p: _memmap(p / "X.npy", np.zeros((1, 4), dtype=np.float32)), ValueError, "minimum of 2"),
    ],
)
def test_bad_on_disk_inputs_are_refused_before_reading(tmp_path, make, error, match):
    with pytest.raises(error, match=match):
        SparseAutoencoderTransformer(**SMALL).fit(make(tmp_path))


def test_closed_file_is_reported(tmp_path, signals):
    X_disk = _h5(tmp_path / "X.h5", signals)
    X_disk.file.close()
    with pytest.raises(ValueError, match="file that is closed"):
        SparseAutoencoderTransformer(**SMALL).fit(X_disk)


def test_wrong_width_is_refused_at_inference(tmp_path, signals):
    sae = SparseAutoencoderTransformer(**{**SMALL, "max_epochs": 1}).fit(signals)
    X_disk = _memmap(tmp_path / "X.npy", signals[:, :8])
    for method in (sae.transform, sae.reconstruct, sae.score):
        with pytest.raises(ValueError, match="X has 8 features, but SparseAutoencoderTransformer is expecting 16"):
            method(X_disk)


def test_validation_fraction_too_large_for_the_blocks(tmp_path, signals):
    X_disk = _memmap(tmp_path / "X.npy", signals[:200])  # 50 blocks of 4 rows
    with pytest.raises(ValueError, match="holds out all 50 blocks"), pytest.warns(UserWarning, match="training rows"):
        SparseAutoencoderTransformer(**{**SMALL, "validation_fraction": 0.99}).fit(X_disk)


def test_no_validation_fit_and_pickle(tmp_path, signals):
    import pickle

    X_disk = _h5(tmp_path / "X.h5", signals, chunks=(32, 16))
    sae = SparseAutoencoderTransformer(**{**SMALL, "validation_fraction": 0.0}).fit(X_disk)
    assert "valid_loss" not in sae.history_[-1]
    restored = pickle.loads(pickle.dumps(sae))  # the fitted net keeps no h5py handle or data buffer
    np.testing.assert_array_equal(restored.transform(signals), sae.transform(signals))


class _Interrupted(Exception):
    pass


def test_fit_on_disk_resumes_from_a_checkpoint_bit_identically(on_disk, tmp_path, monkeypatch):
    params = dict(SMALL, max_epochs=3, checkpoint_dir=tmp_path / "ckpt")
    reference = SparseAutoencoderTransformer(**dict(params, checkpoint_dir=None)).fit(on_disk)

    real_iter = _rows.EpochIterator.__iter__
    seen = {"batches": 0}

    def interrupt_in_third_epoch(self):
        for batch in real_iter(self):
            if self.training:
                seen["batches"] += 1
                if len(self.net.history) == 3 and seen["batches"] > 2 * len(self) + 1:
                    raise _Interrupted
            yield batch

    monkeypatch.setattr(_rows.EpochIterator, "__iter__", interrupt_in_third_epoch)
    with pytest.raises(_Interrupted):
        SparseAutoencoderTransformer(**params).fit(on_disk)
    monkeypatch.undo()

    resumed = SparseAutoencoderTransformer(**params).fit(on_disk)
    assert resumed.n_iter_ == 3
    for name, tensor in reference.net_.module_.state_dict().items():
        assert torch.equal(tensor, resumed.net_.module_.state_dict()[name]), name
    np.testing.assert_array_equal(reference.history_[:, "valid_loss"], resumed.history_[:, "valid_loss"])


def test_distributed_on_disk_without_a_launcher_is_the_streaming_fit(on_disk):
    single = SparseAutoencoderTransformer(**SMALL).fit(on_disk)
    one_process = SparseAutoencoderTransformer(**dict(SMALL, distributed=True)).fit(on_disk)
    # One process reads the windows, in the order, of the single-process streaming fit.
    for name, tensor in single.net_.module_.state_dict().items():
        assert torch.equal(tensor, one_process.net_.module_.state_dict()[name]), name
    np.testing.assert_array_equal(single.history_[:, "valid_loss"], one_process.history_[:, "valid_loss"])
