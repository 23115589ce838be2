"""Data-parallel fits (``distributed=True``): two CPU processes through ``accelerate.debug_launcher``.

The launcher forks two processes joined by a gloo process group; what each one
saw and trained is written to a folder and checked here, in the parent, which
never joined the group: the place to check that the result works in a plain process.
"""

import pickle
import subprocess
import sys
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

pytest.importorskip("accelerate")  # the launcher below imports it in its own interpreter
from accelerate.state import AcceleratorState  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer  # noqa: E402
from sklearn_sae import _distributed, _rows  # noqa: E402
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


class LaunchFailed(Exception):
    """A launched process failed; the message holds its standard error."""


def _launch(function, *args):
    """Run ``function(*args)`` in two processes forked by ``accelerate.debug_launcher``, from a new interpreter.

    OpenMP's thread pool does not survive a fork: once a process has run a
    parallel region (any earlier test in this session), a forked child that
    enters one can wait forever for threads it does not have. So the launcher
    runs in a fresh interpreter that imports the test module of ``function``
    and has run no torch operation before it forks. ``args`` are paths.
    """
    code = (
        "import importlib, pathlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from accelerate import debug_launcher\n"
        "tests = importlib.import_module(sys.argv[2])\n"
        "debug_launcher(getattr(tests, sys.argv[3]), args=tuple(map(pathlib.Path, sys.argv[4:])), num_processes=2)\n"
    )
    module = function.__module__.rpartition(".")[2]  # the file's name: the launcher imports it from tests/
    command = [sys.executable, "-c", code, str(Path(__file__).parent), module, function.__name__, *map(str, args)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    if result.returncode != 0:
        raise LaunchFailed(result.stderr[-4000:])


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


def _fit_with_own_seed_and_auto_lr(folder):
    """Run in each launched process: a fit whose processes are given different seeds, with lr="auto"."""
    # More rows than the 4,096 the spread is measured on: the sample, and so lr, depends on the seed.
    X = (np.random.default_rng(0).normal(size=(5_000, N_FEATURES)) + np.linspace(0, 3, N_FEATURES)).astype(np.float32)
    rank = torch.distributed.get_rank()
    estimator = _estimator(lr="auto", batch_size=1024, max_epochs=1, random_state=rank).fit(X)
    (folder / f"rank{rank}.lr").write_text(repr(estimator.net_.lr))


def test_processes_given_different_seeds_resolve_one_learning_rate(tmp_path):
    _launch(_fit_with_own_seed_and_auto_lr, tmp_path)
    lrs = [float((tmp_path / f"rank{rank}.lr").read_text()) for rank in range(2)]
    assert lrs[0] == lrs[1] > 0  # process 0's seed draws the sample everywhere


def _fit_on_own_rows():
    _estimator().fit(_data(seed=torch.distributed.get_rank()))


def test_two_processes_train_one_model_on_disjoint_shares(tmp_path):
    _launch(_fit_and_record, tmp_path)
    results = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    assert [result["is_main"] for result in results] == [True, False]

    for epoch in (1, 2):
        shares = [[row for e, rows in result["seen"] if e == epoch for row in rows] for result in results]
        assert len(shares[0]) == len(shares[1]) == 256  # half of the 512 training rows each
        assert not set(shares[0]) & set(shares[1])
        assert len(set(shares[0]) | set(shares[1])) == 512  # together, every training row once
    assert {tuple(rows) for _, rows in results[0]["seen"]} != {tuple(rows) for _, rows in results[1]["seen"]}
    first, second = ([tuple(rows) for e, rows in results[0]["seen"] if e == epoch] for epoch in (1, 2))
    assert first != second  # each epoch draws its own batches

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
    assert estimator.net_.get_params()["order_seed"] == estimator.net_.order_seed  # a whole net, not a torn one
    restored = pickle.loads(pickle.dumps(estimator))
    X_new = np.random.default_rng(1).normal(size=(200, N_FEATURES)).astype(np.float32)
    codes = restored.transform(X_new)
    assert codes.shape == (200, N_LATENTS)
    np.testing.assert_array_equal(codes, estimator.transform(X_new))
    assert restored.reconstruct(X_new).shape == X_new.shape


def _open_on_disk(path):
    """What every launched process does with an on-disk input: open the file itself (h5py objects do not pickle)."""
    if path.suffix == ".h5":
        return h5py.File(path, "r")["X"]
    return np.load(path, mmap_mode="r")


def _fit_on_disk_and_record(folder, path):
    """Run in each launched process: fit on the file, noting the rows of each training batch and the windows read."""
    seen, windows = [], []
    train_step = _distributed.DistributedSAENet.train_step
    load_window = _rows.BlockBatches._load_window

    def recording_train_step(net, batch, **fit_params):
        seen.append((len(net.history), batch[0][:, 0].long().tolist()))
        return train_step(net, batch, **fit_params)

    def recording_load_window(batches, window):
        if batches.shuffle:  # training windows
            windows.append((batches.epoch, batches._windows[window].tolist()))
        return load_window(batches, window)

    _distributed.DistributedSAENet.train_step = recording_train_step
    _rows.BlockBatches._load_window = recording_load_window
    try:
        estimator = _estimator().fit(_open_on_disk(path))
    finally:
        _distributed.DistributedSAENet.train_step = train_step
        _rows.BlockBatches._load_window = load_window
    rank = torch.distributed.get_rank()
    with open(folder / f"rank{rank}.pkl", "wb") as file:
        pickle.dump({"estimator": estimator, "seen": seen, "windows": windows}, file)


def _write_on_disk(path, X):
    if path.suffix == ".h5":
        with h5py.File(path, "w") as file:
            file.create_dataset("X", data=X, chunks=(16, N_FEATURES))
    else:
        np.save(path, X)


@pytest.mark.parametrize("name", ["X.h5", "X.npy"])
def test_two_processes_read_disjoint_windows_of_an_on_disk_input(tmp_path, name):
    path = tmp_path / name
    _write_on_disk(path, _data())
    _launch(_fit_on_disk_and_record, tmp_path, path)
    results = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]

    rows = _rows.OnDiskRows(_open_on_disk(path))
    train_blocks = results[0]["estimator"].net_.train_split(rows)[0].blocks  # the split all processes used
    n_train = int(rows.block_sizes(train_blocks).sum())
    for epoch in (1, 2):
        # Whole windows per process, each read once: together every training block, and no block twice.
        read = [[block for e, blocks in result["windows"] if e == epoch - 1 for block in blocks] for result in results]
        assert read[0] and read[1] and not set(read[0]) & set(read[1])
        assert sorted(read[0] + read[1]) == train_blocks.tolist()
        # The rows trained on: every training row once over the two processes, plus the shorter share's padding
        # (a repeat of its own rows), so both take the same number of steps.
        batches = [[rows for e, rows in result["seen"] if e == epoch] for result in results]
        assert len(batches[0]) == len(batches[1])
        shares = [{row for batch in share for row in batch} for share in batches]
        assert not shares[0] & shares[1]
        assert len(shares[0] | shares[1]) == n_train
    epochs = [{block for e, blocks in results[0]["windows"] if e == epoch for block in blocks} for epoch in (0, 1)]
    assert epochs[0] != epochs[1]  # windows are drawn anew each epoch

    estimators = [result["estimator"] for result in results]
    for name_, tensor in estimators[0].net_.module_.state_dict().items():
        assert torch.equal(tensor, estimators[1].net_.module_.state_dict()[name_]), name_
    assert estimators[0].history_[:, "valid_loss"] == estimators[1].history_[:, "valid_loss"]

    # A plain process (this one: no process group) transforms with what a process returned, from disk too.
    estimator = pickle.loads(pickle.dumps(estimators[0]))
    assert type(estimator.net_) is SAENet
    X = _open_on_disk(path)
    assert estimator.transform(X).shape == (N_ROWS, N_LATENTS)
    np.testing.assert_allclose(estimator.transform(X), estimator.transform(_data()), rtol=1e-6)


def _fit_signals_on_disk(folder, path):
    estimator = _estimator(n_latents=32, max_epochs=3).fit(_open_on_disk(path))
    if torch.distributed.get_rank() == 0:
        (folder / "fitted.pkl").write_bytes(pickle.dumps(estimator))


def test_two_processes_on_disk_train_as_well_as_one(tmp_path):
    from sklearn_sae.datasets import make_sparse_signals

    X = make_sparse_signals(n_samples=1000, n_features=N_FEATURES, n_atoms=32, n_active=3, random_state=0)[0]
    train, held_out = X[:800].astype(np.float32), X[800:]
    _write_on_disk(tmp_path / "X.h5", train)
    _launch(_fit_signals_on_disk, tmp_path, tmp_path / "X.h5")
    distributed = pickle.loads((tmp_path / "fitted.pkl").read_bytes())
    # One process with the same rows per optimiser step (2 x 32), reading the same file.
    with h5py.File(tmp_path / "X.h5", "r") as file:
        single = _estimator(n_latents=32, max_epochs=3, batch_size=2 * BATCH_SIZE, distributed=False).fit(file["X"])
    assert distributed.score(held_out) > single.score(held_out) - 0.05


def test_processes_given_different_rows_refuse_to_train():
    with pytest.raises(LaunchFailed, match="needs the same X in every process"):
        _launch(_fit_on_own_rows)


def _fit_on_own_file(folder):
    _estimator().fit(_open_on_disk(folder / f"X{torch.distributed.get_rank()}.npy"))


def test_processes_given_different_files_refuse_to_train(tmp_path):
    for rank in range(2):
        _write_on_disk(tmp_path / f"X{rank}.npy", _data(seed=rank))
    with pytest.raises(LaunchFailed, match="Open the same on-disk array in every process"):
        _launch(_fit_on_own_file, tmp_path)


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
    training_rows = list(range(5, 50))  # as after a validation split
    training = _rows.InMemoryRows(X, indices=training_rows)

    def share(process_index, epoch):
        batches = training.epoch(8, seed=3, epoch=epoch, shuffle=True)
        ids = _rows.share_batches(batches.units(), num_processes=2, process_index=process_index, even=even)
        return [batches[index][:, 0].long().tolist() for index in ids]

    shares = [share(0, epoch=1), share(1, epoch=1)]
    rows = [[row for batch in batches for row in batch] for batches in shares]
    # 6 batches (5 of 8 rows, 1 of 5): 3 each.
    assert sorted(rows[0] + rows[1]) == training_rows
    assert len(shares[0]) == len(shares[1]) == 3
    assert share(0, epoch=1) == shares[0]  # (seed, epoch) fixes the order: every process agrees on it
    assert share(0, epoch=2) != shares[0]


def test_shares_deal_out_whole_units_and_pad_only_for_training():
    units = [range(0, 3), range(3, 5), range(5, 8)]  # e.g. the batches of three windows
    assert _rows.share_batches(units, num_processes=2, process_index=0, even=False) == [0, 1, 2, 5, 6, 7]
    assert _rows.share_batches(units, num_processes=2, process_index=1, even=False) == [3, 4]
    # Padded from its own last batches, last first: for on-disk data, the window still loaded.
    assert _rows.share_batches(units, num_processes=2, process_index=1, even=True) == [3, 4, 4, 3, 4, 3]
    # More processes than units: the one without a unit repeats the epoch's last batches.
    assert _rows.share_batches(units[:1], num_processes=2, process_index=1, even=True) == [2, 1, 0]
    assert _rows.share_batches(units[:1], num_processes=2, process_index=1, even=False) == []


def test_distributed_refuses_what_it_cannot_keep_in_step(tmp_path):
    X = np.random.default_rng(0).normal(size=(64, 8)).astype(np.float32)
    sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=1, device="cpu", distributed=True)
    with pytest.raises(ValueError, match="partial_fit does not train data-parallel"):
        sae.partial_fit(X)
    with pytest.raises(ValueError, match="checkpoint_dir is not supported with distributed=True"):
        sae.set_params(checkpoint_dir=tmp_path / "ckpt").fit(X)
    assert not (tmp_path / "ckpt").exists()


def _fit_batchtopk(folder):
    """Run in each launched process: a data-parallel BatchTopK fit; write down its threshold and weights."""
    estimator = _estimator(activation="batchtopk").fit(_data())
    rank = torch.distributed.get_rank()
    with open(folder / f"rank{rank}.pkl", "wb") as file:
        pickle.dump(estimator.net_.module_.state_dict(), file)


def test_a_data_parallel_batchtopk_fit_ends_with_one_threshold_everywhere(tmp_path):
    _launch(_fit_batchtopk, tmp_path)
    states = [pickle.loads((tmp_path / f"rank{rank}.pkl").read_bytes()) for rank in range(2)]
    assert float(states[0]["activation.threshold"]) > 0
    for name, tensor in states[0].items():  # the threshold too: averaged over the processes every step
        assert torch.equal(tensor, states[1][name]), name
