"""Data-parallel fits (``distributed=True``): two CPU processes through ``accelerate.debug_launcher``.

The launcher forks two processes joined by a gloo process group; what each one
saw and trained is written to a folder and checked here, in the parent, which
never joined the group: the place to check that the result works in a plain process.
"""

import pickle

import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")
from accelerate import debug_launcher  # noqa: E402
from accelerate.state import AcceleratorState  # noqa: E402
from skorch.dataset import Dataset  # noqa: E402
from torch.utils.data import Subset  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer  # noqa: E402
from sklearn_sae import _distributed  # noqa: E402
from sklearn_sae._training import SAENet  # noqa: E402

N_ROWS, N_FEATURES, N_LATENTS, BATCH_SIZE = 640, 12, 24, 32
"""512 training rows after the 20% validation split: 16 batches, 8 per process, so no process pads its share."""


@pytest.fixture(autouse=True)
def fresh_accelerate_state():
    """Accelerate keeps one state per process; a test's must not leak into the next one or into forked children."""
    AcceleratorState._reset_state(reset_partial_state=True)
    yield
    AcceleratorState._reset_state(reset_partial_state=True)


def _data(seed=0):
    X = np.random.default_rng(seed).normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)
    X[:, 0] = np.arange(N_ROWS)  # the row's own index, to tell which rows each process trained on
    return X


def _estimator(**params):
    defaults = dict(
        n_latents=N_LATENTS, k=4, batch_size=BATCH_SIZE, max_epochs=2, validation_fraction=0.2,
        device="cpu", random_state=0, distributed=True,
    )
    return SparseAutoencoderTransformer(**{**defaults, **params})


def _fit_and_record(folder):
    """Run in each launched process: fit, and write down the rows of every training batch by epoch."""
    seen = []
    train_step = _distributed.DistributedSAENet.train_step

    def recording_train_step(net, batch, **fit_params):
        seen.append((len(net.history), batch[0][:, 0].long().tolist()))
        return train_step(net, batch, **fit_params)

    _distributed.DistributedSAENet.train_step = recording_train_step
    try:
        estimator = _estimator(aux_k=4, dead_window=64).fit(_data())
    finally:
        _distributed.DistributedSAENet.train_step = train_step
    # 32 validation rows, one batch: the second process validates nothing and still records the same metrics.
    one_valid_batch = _estimator(validation_fraction=0.05, max_epochs=1).fit(_data())
    rank = torch.distributed.get_rank()
    with open(folder / f"rank{rank}.pkl", "wb") as file:
        pickle.dump({
            "estimator": estimator,
            "seen": seen,
            "is_main": _distributed.is_main_process(),
            "one_valid_batch": one_valid_batch.history_[-1],
        }, file)


def _fit_on_own_rows():
    _estimator().fit(_data(seed=torch.distributed.get_rank()))


def test_two_processes_train_one_model_on_disjoint_shares(tmp_path):
    debug_launcher(_fit_and_record, args=(tmp_path,), num_processes=2)
    results = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    assert [result["is_main"] for result in results] == [True, False]

    for epoch in (1, 2):
        shares = [[row for e, rows in result["seen"] if e == epoch for row in rows] for result in results]
        assert len(shares[0]) == len(shares[1]) == 256  # half of the 512 training rows each
        assert not set(shares[0]) & set(shares[1])
        assert len(set(shares[0]) | set(shares[1])) == 512  # together, every training row once
    assert {tuple(rows) for _, rows in results[0]["seen"]} != {tuple(rows) for _, rows in results[1]["seen"]}

    estimators = [result["estimator"] for result in results]
    weights = [estimator.net_.module_.state_dict() for estimator in estimators]
    assert weights[0].keys() == weights[1].keys()
    for name in weights[0]:  # parameters and the firing counts that AuxK reads
        assert torch.equal(weights[0][name], weights[1][name]), name
    # Epoch metrics cover the rows of both processes, so they are the same on both.
    for key in ("train_loss", "train_nmse", "valid_loss", "valid_nmse", "valid_dead_fraction"):
        assert estimators[0].history_[:, key] == estimators[1].history_[:, key], key

    per_process = ("batches", "dur", "valid_batch_count")
    one_valid_batch = [
        {key: value for key, value in result["one_valid_batch"].items() if key not in per_process} for result in results
    ]
    assert one_valid_batch[0] == one_valid_batch[1]
    assert np.isfinite(one_valid_batch[0]["valid_nmse"])
    assert [len([b for b in result["one_valid_batch"]["batches"] if "valid_loss" in b]) for result in results] == [1, 0]

    # What a process returns is an ordinary fitted estimator: no accelerator state, usable here, where
    # there is no process group.
    estimator = estimators[0]
    assert type(estimator.net_) is SAENet and not hasattr(estimator.net_, "accelerator")
    restored = pickle.loads(pickle.dumps(estimator))
    X_new = np.random.default_rng(1).normal(size=(200, N_FEATURES)).astype(np.float32)
    codes = restored.transform(X_new)
    assert codes.shape == (200, N_LATENTS)
    np.testing.assert_array_equal(codes, estimator.transform(X_new))
    assert restored.reconstruct(X_new).shape == X_new.shape


def test_processes_given_different_rows_refuse_to_train():
    with pytest.raises(Exception, match="needs the same X in every process"):
        debug_launcher(_fit_on_own_rows, num_processes=2)


def test_distributed_without_a_launcher_is_a_single_process_fit():
    X = _data()
    estimator = _estimator().fit(X)
    assert type(estimator.net_) is SAENet and not hasattr(estimator.net_, "accelerator")
    assert estimator.n_iter_ == 2
    assert estimator.transform(X).shape == (N_ROWS, N_LATENTS)
    # 16 batches of 32 training rows a epoch: all of them in the one process.
    assert len(estimator.history_[-1, "batches"]) == 16 + 4  # and 4 validation batches
    assert _distributed.is_main_process()


def test_one_gpu_for_every_process_is_refused():
    with pytest.raises(ValueError, match="each process then takes the GPU its launcher assigns"):
        _distributed.make_accelerator("cuda:1")


@pytest.mark.parametrize("even", [True, False])
def test_in_memory_shares_are_disjoint_and_agree_on_order(even):
    X = torch.arange(50, dtype=torch.float32)[:, None].repeat(1, 3)
    training_rows = list(range(5, 50))  # as after a validation split: a Subset of skorch's Dataset

    def share(process_index, epoch):
        batches = _distributed.InMemoryBatches(
            Subset(Dataset(X), training_rows), 8, shuffle=True, seed=3, epoch=epoch
        )
        ids = _distributed.share_batches(
            batches.window_batches(), num_processes=2, process_index=process_index, even=even
        )
        return [batches[index][0][:, 0].long().tolist() for index in ids]

    shares = [share(0, epoch=1), share(1, epoch=1)]
    rows = [[row for batch in batches for row in batch] for batches in shares]
    # 6 batches (5 of 8 rows, 1 of 5): 3 each.
    assert sorted(rows[0] + rows[1]) == training_rows
    assert len(shares[0]) == len(shares[1]) == 3
    assert share(0, epoch=1) == shares[0]  # (seed, epoch) fixes the order: every process agrees on it
    assert share(0, epoch=2) != shares[0]


def test_shares_deal_out_whole_units_and_pad_only_for_training():
    units = [range(0, 3), range(3, 5), range(5, 8)]  # e.g. the batches of three windows
    assert _distributed.share_batches(units, num_processes=2, process_index=0, even=False) == [0, 1, 2, 5, 6, 7]
    assert _distributed.share_batches(units, num_processes=2, process_index=1, even=False) == [3, 4]
    # Padded from its own last batches, last first: for on-disk data, the window still loaded.
    assert _distributed.share_batches(units, num_processes=2, process_index=1, even=True) == [3, 4, 4, 3, 4, 3]
    # More processes than units: the one without a unit repeats the epoch's last batches.
    assert _distributed.share_batches(units[:1], num_processes=2, process_index=1, even=True) == [2, 1, 0]
    assert _distributed.share_batches(units[:1], num_processes=2, process_index=1, even=False) == []


def test_in_memory_batches_refuse_other_datasets():
    with pytest.raises(TypeError, match="skorch Dataset"):
        _distributed.InMemoryBatches(torch.zeros(4, 2), 2, shuffle=False, seed=0, epoch=1)


def test_distributed_refuses_what_it_cannot_keep_in_step(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=1, device="cpu", distributed=True)
    with pytest.raises(ValueError, match="partial_fit does not train data-parallel"):
        sae.partial_fit(X)
    with pytest.raises(ValueError, match="checkpoint_dir is not supported with distributed=True"):
        sae.set_params(checkpoint_dir=tmp_path / "ckpt").fit(X)
    assert not (tmp_path / "ckpt").exists()
