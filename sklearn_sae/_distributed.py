"""Data-parallel fits through HF Accelerate: the only module that knows about processes and ranks.

``SparseAutoencoderTransformer(distributed=True).fit(X)`` run by every
process of ``accelerate launch`` or ``torchrun`` trains one model: each
process reads its own share of the training batches, DistributedDataParallel
averages the gradients, so the weights stay identical everywhere, and every
process ends with the same plain, single-process estimator.

How the pieces fit:

- :class:`DistributedSAENet` is :class:`~sklearn_sae._training.SAENet` with
  skorch's :class:`~skorch.hf.AccelerateMixin`. Two departures from the mixin:
  the module stays unwrapped as ``module_`` (the callbacks call its methods)
  and only the training forward pass goes through the DDP wrapper; and the
  criterion is not prepared (it has no parameters, which DDP rejects on CPU,
  and a loss needs no synchronising).
- Each process builds the loader of its own share of every epoch
  (:class:`EpochShares`); Accelerate does not shard it. The seam
  :meth:`DistributedSAENet.batches` turns skorch's data set into a map-style
  data set of whole batches grouped into units read together: single
  batches of in-memory rows (:class:`InMemoryBatches`), windows of on-disk
  blocks (:class:`OnDiskBatches`, the shuffle buffer of
  :mod:`sklearn_sae._streaming`). Every process lays out the same units from
  (seed, epoch) alone and takes every ``num_processes``-th
  (:func:`share_batches`), so the shares are disjoint without any
  communication, and on-disk data is read once over all processes.
  Accelerate's sharding would deal out single batches, making every process
  read every window. Training shares are padded to equal length with the
  process's own last batches (each optimiser step synchronises; a process
  that ran out first would leave the others waiting); validation shares are
  not, so every row counts once.
- On-disk data (h5py datasets, memmaps): every process opens the file
  itself and passes the same array to ``fit`` (h5py objects do not pickle,
  and an HDF5 file opened before a fork must not be read from both sides of
  it); the processes check that they see the same shape
  and the same pre-bias sample. Validation blocks and the pre-bias sample
  derive from process 0's seed, so they are the same everywhere.
- Epoch metrics are sums over the batches; :class:`GlobalEpochMetrics` adds
  them up over the processes before recording, so ``history_`` (and early
  stopping, which reads it) is the same on every process.
"""

from __future__ import annotations

import math
import os

import numpy as np
import torch
from skorch.callbacks import Callback
from skorch.dataset import Dataset as SkorchDataset
from skorch.hf import AccelerateMixin
from skorch.utils import noop, to_tensor
from torch.utils.data import DataLoader, Subset
from torch.utils.data import Dataset as TorchDataset

from ._training import EpochMetrics, SAENet

__all__ = [
    "DistributedSAENet",
    "GlobalEpochMetrics",
    "BroadcastWeights",
    "SyncFiringCounts",
    "InMemoryBatches",
    "OnDiskBatches",
    "share_batches",
    "EpochShares",
    "make_accelerator",
    "fit_data_parallel",
    "fit_on_disk_data_parallel",
    "is_main_process",
]

_ACCELERATE_ATTRIBUTES = (
    "accelerator",
    "unwrap_after_train",
    "_wrapped_with_accelerator",
    "order_seed",
    "_replica",
    "callbacks__print_log__sink",  # the accelerator's print method, and so the accelerator
)
"""What :func:`_single_process_net` leaves behind: a pickled net holding them would still believe in the
process group it was trained in."""


def is_main_process() -> bool:
    """Whether this process should write files: rank 0 of a process group, or a process without one.

    Everything that writes during a fit (checkpoints, logs, saved models)
    must ask this first, or every process of a data-parallel fit writes the
    same file at once.
    """
    return not (torch.distributed.is_available() and torch.distributed.is_initialized()) or (
        torch.distributed.get_rank() == 0
    )


def _import_accelerate():
    try:
        import accelerate
    except ImportError as error:  # an optional dependency: say how to get it
        raise ImportError(
            "distributed=True trains through Hugging Face Accelerate, which is not installed. "
            "Install it with `pip install sklearn-sae[scale]` (or `pip install accelerate`)."
        ) from error
    return accelerate


def make_accelerator(device: str):
    """The :class:`accelerate.Accelerator` for a fit on ``device`` (a resolved torch device string).

    skorch places the module and the batches itself (``device_placement=False``),
    so that ``net.device`` stays a plain device string the callbacks can use.
    Mixed precision stays with the net's own ``amp``.

    Raises
    ------
    ValueError
        When ``device`` names one GPU (each process must use the GPU the
        launcher gives it), or when the environment describes several
        processes but Accelerate sees one, which would silently train a
        separate model in each process.
    """
    if device.startswith("cuda:"):
        raise ValueError(
            f"device={device!r} with distributed=True: every process would use that one GPU. Use device='cuda' "
            "or 'auto'; each process then takes the GPU its launcher assigns it (its LOCAL_RANK)."
        )
    accelerate = _import_accelerate()
    # DDP still broadcasts rank 0's buffers before each training forward pass; SyncFiringCounts has made them
    # equal by then, so that costs a small message and changes nothing (turning it off is deprecated in torch 2.13).
    accelerator = accelerate.Accelerator(cpu=device == "cpu", device_placement=False, mixed_precision="no")
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size > 1 and accelerator.num_processes != world_size:
        raise ValueError(
            f"The launcher started {world_size} processes (WORLD_SIZE) but Accelerate sees "
            f"{accelerator.num_processes}: each process would train its own model on all the rows. On CPUs, pass "
            "device='cpu' or set ACCELERATE_USE_CPU=1 so that Accelerate joins the gloo process group."
        )
    return accelerator


def _generator(seed: int, epoch: int) -> torch.Generator:
    # One stream per (seed, epoch); the odd multiplier keeps nearby seeds' streams apart.
    return torch.Generator().manual_seed((int(seed) * 1_000_003 + int(epoch)) % (2**63))


class InMemoryBatches(TorchDataset):
    """A map-style data set whose item ``i`` is the ``i``-th batch of rows of a tensor, as ``(X, None)``.

    The rows are permuted once per epoch from ``(seed, epoch)``, then cut
    into consecutive batches, so batches hold different rows every epoch.
    Each batch is a unit of its own for sharing out (:meth:`window_batches`).

    Parameters
    ----------
    dataset : skorch.dataset.Dataset or torch.utils.data.Subset
        What skorch hands its iterators: the input tensor as ``X``, or a
        ``Subset`` of it after the validation split.
    batch_size : int
        Rows per batch; the last batch may be smaller.
    shuffle : bool
        Permute the rows.
    seed, epoch : int
        Seed the permutation.
    """

    def __init__(self, dataset, batch_size: int, *, shuffle: bool, seed: int, epoch: int):
        if isinstance(dataset, Subset) and isinstance(dataset.dataset, SkorchDataset):
            self.X = dataset.dataset.X
            rows = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        elif isinstance(dataset, SkorchDataset):
            self.X = dataset.X
            rows = torch.arange(len(dataset.X))
        else:
            raise TypeError(
                f"A data-parallel fit reads batches from a skorch Dataset (or a Subset of one) holding a tensor; "
                f"got {type(dataset).__name__}."
            )
        if shuffle:
            rows = rows[torch.randperm(len(rows), generator=_generator(seed, epoch))]
        self.rows = rows
        self.batch_size = batch_size

    def __len__(self) -> int:
        return math.ceil(len(self.rows) / self.batch_size)

    def __getitem__(self, index: int):
        start = index * self.batch_size
        return self.X[self.rows[start : start + self.batch_size]], None

    def window_batches(self) -> list[range]:
        """Every batch on its own: rows in memory cost nothing to spread over the processes."""
        return [range(index, index + 1) for index in range(len(self))]


class OnDiskBatches(TorchDataset):
    """The batches of one epoch of on-disk blocks, as ``(X, None)`` in float32, in windows sized to share out.

    A :class:`~sklearn_sae._streaming.BlockBatches` whose shuffle buffer is
    cut down, where needed, so that the epoch has a multiple of
    ``num_processes`` windows of nearly equal size: each process then gets
    the same number of windows and reads only those from disk. A window
    never grows past the single-process buffer, so one process reads the
    windows a single-process fit would.

    Parameters
    ----------
    rows : OnDiskRows
        The on-disk input.
    blocks : array-like of int
        The blocks to serve (training or validation).
    batch_size : int
        Rows per batch; a window's last batch may be shorter.
    shuffle : bool
        Block order and row order within windows from ``(seed, epoch)``, as in
        a single-process fit; otherwise file order.
    seed, epoch : int
        Seed the order.
    num_processes : int
        Processes the windows are shared between.
    """

    def __init__(self, rows, blocks, batch_size: int, *, shuffle: bool, seed: int, epoch: int, num_processes: int):
        from ._streaming import BlockBatches

        blocks = np.asarray(blocks, dtype=np.int64)
        widest = BlockBatches(rows, blocks, batch_size, shuffle=False).blocks_per_window
        n_windows = num_processes * max(1, math.ceil(len(blocks) / (num_processes * widest)))
        blocks_per_window = max(1, math.ceil(len(blocks) / n_windows))
        row_bytes = rows.n_features * rows.dtype.itemsize
        self.batches = BlockBatches(
            rows, blocks, batch_size, shuffle=shuffle, seed=seed,
            buffer_bytes=blocks_per_window * rows.block_rows * row_bytes,
        )
        self.batches.set_epoch(epoch)

    def __len__(self) -> int:
        return len(self.batches)

    def __getitem__(self, index: int):
        return self.batches[index].float(), None

    def window_batches(self) -> list[range]:
        """The batch ids of each window: what :func:`share_batches` deals out."""
        return self.batches.window_batches()


def share_batches(units, *, num_processes: int, process_index: int, even: bool) -> list[int]:
    """The batch ids one process reads in an epoch: every ``num_processes``-th unit, starting at its index.

    A unit is a run of consecutive batch ids read together (a window of
    on-disk blocks, or a single in-memory batch). Every process lays out the
    same units from ``(seed, epoch)`` and takes its own, so the shares are
    disjoint and together hold every batch once, without any communication.

    Parameters
    ----------
    units : list of range
        The epoch's batch ids, grouped into units, in order.
    num_processes, process_index : int
        The launch's size and this process's rank.
    even : bool
        Pad every share to the length of the longest, as training needs:
        each optimiser step synchronises the gradients, so a process that ran
        out of batches first would leave the others waiting forever. A
        shorter share repeats its own last batches, last first (for on-disk
        data, rows of the window still loaded: no extra reads); a process with
        no unit of its own repeats the epoch's last batches. Validation
        passes ``even=False``: shares may differ, and every row counts once.

    Returns
    -------
    ids : list of int
    """
    shares = [[index for unit in units[rank::num_processes] for index in unit] for rank in range(num_processes)]
    own = shares[process_index]
    if not even:
        return own
    longest = max(len(share) for share in shares)
    pool = own or [index for unit in units for index in unit]
    return own + [pool[-1 - j % len(pool)] for j in range(longest - len(own))]


class DistributedSAENet(AccelerateMixin, SAENet):
    """:class:`~sklearn_sae._training.SAENet` trained data-parallel by an :class:`accelerate.Accelerator`.

    Build it with :func:`fit_data_parallel`, which turns it back into a plain
    :class:`SAENet` after training.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`SAENet` and :class:`skorch.hf.AccelerateMixin`;
        ``device`` must be the accelerator's device.
    order_seed : int, default=0
        Seeds the order of the batches each epoch; must be equal on every process.
    """

    def __init__(self, *args, order_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.order_seed = order_seed

    @property
    def _default_callbacks(self):
        # The epoch table is the SAE's own EpochLog, run last; skorch's print log (which the mixin would point at
        # the accelerator's printer) is not used.
        return [(name, callback) for name, callback in super()._default_callbacks if name != "print_log"]

    def _initialize_accelerator(self):
        # Unlike the mixin: the criterion is left alone (no parameters: DDP refuses it on CPU, and the loss needs
        # no syncing), and module_ stays the bare module the callbacks call methods of; the DDP wrapper sits beside
        # it, in an attribute skorch does not track (it would otherwise be saved and moved as a second module).
        if self._wrapped_with_accelerator:
            return self
        object.__setattr__(self, "_replica", self.accelerator.prepare(self.module_))
        with self._current_init_context("optimizer"):
            self.optimizer_ = self.accelerator.prepare(self.optimizer_)
        self._wrapped_with_accelerator = True
        return self

    def _unwrap_accelerator(self):
        # module_ is never wrapped, so there is nothing to undo, and the mixin's save_params / load_params may
        # call this in the middle of training (a checkpoint) without losing the DDP wrapper.
        pass

    def on_train_end(self, net, X=None, y=None, **kwargs):
        super().on_train_end(net, X=X, y=y, **kwargs)  # waits for every process
        object.__setattr__(self, "_replica", None)
        self._wrapped_with_accelerator = False

    def infer(self, x, **fit_params):
        replica = getattr(self, "_replica", None)
        if replica is None or not self.module_.training:
            return super().infer(x, **fit_params)  # evaluation needs no gradient sync
        # SAENet.infer through the DDP wrapper, whose backward pass averages the gradients over the processes.
        x = to_tensor(x, device=self.device)
        with torch.autocast(device_type=torch.device(self.device).type, dtype=torch.bfloat16, enabled=self.amp):
            output = replica(x, **fit_params)
        aux = output.aux_residual_hat
        return output._replace(x_hat=output.x_hat.float(), aux_residual_hat=None if aux is None else aux.float())

    def evaluation_step(self, batch, training=False):
        # The mixin gathers predictions from every process; the metrics are summed per process and added up at
        # the end of the epoch instead (GlobalEpochMetrics), so each process keeps its own batch's output.
        return super(AccelerateMixin, self).evaluation_step(batch, training=training)

    def batches(self, dataset, *, training: bool, epoch: int):
        """The map-style data set of whole batches for one epoch of ``dataset``, with ``window_batches()``.

        This is the only place that knows how skorch's ``dataset`` becomes
        batches: in-memory rows (a skorch ``Dataset`` or a ``Subset`` of one)
        become :class:`InMemoryBatches`, on-disk blocks (what
        :class:`~sklearn_sae._streaming.BlockSplit` hands out)
        :class:`OnDiskBatches`. ``epoch`` counts from 1.
        """
        from ._streaming import BlockSubset, OnDiskRows

        if isinstance(dataset, OnDiskRows):  # no validation split: every block trains
            dataset = BlockSubset(dataset, np.arange(dataset.n_blocks), self.order_seed)
        if isinstance(dataset, BlockSubset):
            # Epochs 0, 1, ... as a single-process streaming fit draws them, so one process reads the same batches.
            return OnDiskBatches(
                dataset.rows, dataset.blocks, self.batch_size, shuffle=training, seed=self.order_seed,
                epoch=epoch - 1, num_processes=self.accelerator.num_processes,
            )
        return InMemoryBatches(dataset, self.batch_size, shuffle=training, seed=self.order_seed, epoch=epoch)

    def get_iterator(self, dataset, training=False):
        # skorch asks once per fit and loops over the answer every epoch: the batches are laid out anew at each pass.
        return EpochShares(self, dataset, training=training)


class EpochShares:
    """What a :class:`DistributedSAENet` iterates over: at each pass, this process's batches of the current epoch.

    Each process builds the loader of its own share; Accelerate does not
    prepare it. Its sharding deals out single batches in turn, which for
    on-disk data would make every process read every window; here the units
    of :meth:`DistributedSAENet.batches` (windows, or single in-memory
    batches) are dealt out instead (:func:`share_batches`), disjoint by
    construction, and the loader needs nothing else from Accelerate: skorch
    moves each batch to the device itself. The epoch is read from the net's
    history when a pass starts (skorch has added its row by then).

    Parameters
    ----------
    net : DistributedSAENet
    dataset
        What skorch's split hands the iterator.
    training : bool
        Training shares are padded to equal length (every optimiser step
        synchronises); validation shares are not (every row counts once).
    """

    def __init__(self, net, dataset, *, training: bool):
        self.net = net
        self.dataset = dataset
        self.training = training

    def _loader(self) -> DataLoader:
        batches = self.net.batches(self.dataset, training=self.training, epoch=max(len(self.net.history), 1))
        state = self.net.accelerator.state
        ids = share_batches(
            batches.window_batches(), num_processes=state.num_processes, process_index=state.process_index,
            even=self.training,
        )
        return DataLoader(batches, batch_size=None, sampler=ids)

    def __len__(self) -> int:
        return len(self._loader())

    def __iter__(self):
        return iter(self._loader())


def _add_up_totals(totals, template: dict, device) -> None:
    """Replace one split's running sums by their totals over all processes.

    Every sum is added up in float64 (exact for counts below 2**53); boolean
    masks (which latents fired) become "true in any process". A process
    that saw no rows of the split contributes zeros shaped like ``template``
    (the sums of a split it did see), so all processes send the same vector.
    """
    from accelerate.utils import reduce

    sums = totals.sums if totals.sums is not None else {key: torch.zeros_like(value) for key, value in template.items()}
    keys = sorted(sums)
    flat = torch.cat(
        [torch.tensor([totals.n_rows], dtype=torch.float64, device=device)]
        + [sums[key].to(device, torch.float64).reshape(-1) for key in keys]
    )
    flat = reduce(flat, reduction="sum")
    totals.n_rows = int(flat[0])
    offset = 1
    added_up = {}
    for key in keys:
        like = sums[key]
        value = flat[offset : offset + like.numel()].reshape(like.shape)
        added_up[key] = value > 0 if like.dtype == torch.bool else value
        offset += like.numel()
    totals.sums = added_up


class GlobalEpochMetrics(EpochMetrics):
    """:class:`~sklearn_sae._training.EpochMetrics` over the rows of all processes.

    At the end of each epoch the per-process sums are added up across
    processes, then recorded as usual; ``train_loss`` and ``valid_loss``
    (which skorch records from the process's own batches) are replaced by
    the loss over all processes, so early stopping decides the same
    everywhere. Extra ``eval_sets`` are scored whole by every process.
    Without a process group it is :class:`EpochMetrics`.
    """

    def on_epoch_end(self, net, **kwargs):
        if _is_distributed(net):
            self._add_up_over_processes(net, net.accelerator)
        super().on_epoch_end(net, **kwargs)

    def _add_up_over_processes(self, net, accelerator) -> None:
        # Training always has rows in every process (the shares are even); validation may not.
        template = self.totals_["train"].sums
        for prefix, totals in self.totals_.items():
            _add_up_totals(totals, template, accelerator.device)
            if totals.n_rows:
                _record_with_best(net.history, f"{prefix}_loss", totals.result()["loss"])


def _record_with_best(history, key: str, value: float) -> None:
    """Record ``key`` for the current epoch and whether it is the lowest so far, as skorch's scoring does."""
    previous = [row[key] for row in history[:-1] if key in row]
    history.record(key, value)
    history.record(f"{key}_best", all(value <= earlier for earlier in previous))


class BroadcastWeights(Callback):
    """Copy rank 0's weights and buffers to every process once, after the start-of-training initialisation.

    The module's random initialisation and ``pre_bias`` from the data are
    seeded alike on every process already; this makes equal starting
    weights a guarantee rather than a consequence.
    """

    def on_train_begin(self, net, **kwargs):
        if not _is_distributed(net):
            return
        for tensor in net.module_.state_dict().values():
            torch.distributed.broadcast(tensor.data, src=0)


class SyncFiringCounts(Callback):
    """Keep the module's count of rows since each latent fired global, as one process would count it.

    After each training step every process has added its own rows and zeroed
    the latents that fired in its own batch. The global count is zero where
    a latent fired in any process, and otherwise the count before the step
    plus the rows of all processes. Dead latents (``dead_window``, AuxK)
    are then the same everywhere and mean the same as in a single-process fit.
    """

    def on_batch_begin(self, net, training=False, **kwargs):
        if training and _is_distributed(net):
            self.before_ = net.module_.rows_since_fired.clone()

    def on_batch_end(self, net, batch=None, training=False, **kwargs):
        if not (training and _is_distributed(net)):
            return
        counts = net.module_.rows_since_fired
        fired_and_rows = torch.cat([(counts == 0).long(), counts.new_tensor([len(batch[0])])])
        torch.distributed.all_reduce(fired_and_rows)
        fired_anywhere, n_rows = fired_and_rows[:-1] > 0, fired_and_rows[-1]
        counts.copy_(torch.where(fired_anywhere, 0, self.before_ + n_rows))

    def on_train_end(self, net, **kwargs):
        self.before_ = None


def _is_distributed(net) -> bool:
    accelerator = getattr(net, "accelerator", None)
    return accelerator is not None and accelerator.num_processes > 1


def _broadcast_seed(seed: int) -> int:
    from accelerate.utils import broadcast_object_list

    return int(broadcast_object_list([seed], from_process=0)[0])


def _check_same_rows(X: torch.Tensor, accelerator) -> None:
    """Raise on every process when the processes were not given the same rows.

    Each process reads its share of the batches from its own copy of ``X``;
    different copies would train on an unknown mixture. Compared: the
    shape and two sums over all the values.
    """
    values = X.to(torch.float64)
    _check_same_everywhere(
        [X.shape[0], X.shape[1], values.sum(), values.square().sum()], accelerator,
        remedy="Load the same full data set in every process; each one reads its own share of the batches.",
    )


def _check_same_everywhere(signature, accelerator, *, remedy: str) -> None:
    """Raise on every process unless ``signature`` (rows, features, then any numbers) is equal on all of them."""
    from accelerate.utils import gather

    signature = torch.tensor([float(value) for value in signature], dtype=torch.float64, device=accelerator.device)
    signatures = gather(signature.unsqueeze(0))
    if torch.equal(signatures, signatures[:1].expand_as(signatures)):
        return
    shapes = [tuple(int(n) for n in row[:2]) for row in signatures]
    if len(set(shapes)) > 1:
        difference = f"shapes by process: {shapes}"
    else:
        difference = f"all of shape {shapes[0]}, different values"
    raise ValueError(f"distributed=True needs the same X in every process, but they differ ({difference}). {remedy}")


def _single_process_net(net: DistributedSAENet) -> SAENet:
    """A plain :class:`SAENet` with the trained net's state, minus everything about the accelerator."""
    plain = SAENet.__new__(SAENet)
    plain.__dict__.update({key: value for key, value in vars(net).items() if key not in _ACCELERATE_ATTRIBUTES})
    plain._params_to_validate = net._params_to_validate - set(_ACCELERATE_ATTRIBUTES)
    return plain


def fit_data_parallel(build_net, X: torch.Tensor, *, n_train: int, batch_size: int, device: str,
                      seed: int) -> SAENet:
    """Train data-parallel over the processes of the current launch and return a plain, trained net.

    Parameters
    ----------
    build_net : callable
        ``build_net(steps_per_epoch=..., device=..., seed=...)`` returns the
        :class:`SAENet` a single-process fit would train, given this
        process's optimiser steps an epoch and process 0's seed (so that
        values resolved from them, such as ``max_epochs="auto"`` and
        ``lr="auto"``, are the same in every process); it is trained here as
        a :class:`DistributedSAENet` with the same settings.
    X : torch.Tensor
        All the rows, the same in every process.
    n_train : int
        Rows left for training after the validation split.
    batch_size : int
        Rows per batch in each process.
    device : str
        The resolved device: ``"cpu"`` or ``"cuda"``.
    seed : int
        This process's seed; process 0's is used everywhere.

    Returns
    -------
    net : SAENet
        Trained, on this process's device, identical on every process, and
        free of accelerator state (picklable, usable in a plain process).
    """
    accelerator = make_accelerator(device)
    seed = _broadcast_seed(seed)
    _check_same_rows(X, accelerator)
    # The LR schedule and the annealing count this process's optimiser steps: its share of the batches, rounded
    # up because the shorter shares repeat a batch (see share_batches).
    steps_per_epoch = math.ceil(math.ceil(n_train / batch_size) / accelerator.num_processes)
    template = build_net(steps_per_epoch=steps_per_epoch, device=_net_device(accelerator), seed=seed)
    return _train(template, X, accelerator, seed)


def fit_on_disk_data_parallel(build_net, rows, *, validation_fraction: float, pre_bias_init: str, batch_size: int,
                              device: str, seed: int) -> SAENet:
    """:func:`fit_data_parallel` for rows that stay on disk: each process reads only its own windows of blocks.

    Every process opens the on-disk array itself (h5py datasets do not pickle
    or survive a fork) and passes the same array. With process 0's seed,
    every process then draws the same validation blocks
    (:class:`~sklearn_sae._streaming.BlockSplit`), the same pre-bias sample
    and, each epoch, the same windows, of which it reads every
    ``num_processes``-th (:meth:`DistributedSAENet.batches`,
    :func:`share_batches`). A training share shorter than the longest repeats
    its own last batches. Validation windows are shared out too, and the
    metrics added up over the processes.

    Parameters
    ----------
    build_net : callable
        As for :func:`fit_data_parallel`, also given ``spread_sample=``, the
        rows (already read) that start ``pre_bias``.
    rows : OnDiskRows
        The on-disk input, the same in every process.
    validation_fraction : float
        Share of the blocks held out.
    pre_bias_init : str
        How ``pre_bias`` starts from the sample of rows.
    batch_size, device, seed
        As for :func:`fit_data_parallel`.

    Returns
    -------
    net : SAENet
        As for :func:`fit_data_parallel`.
    """
    from ._streaming import BlockSplit, configure_net, initial_sample

    accelerator = make_accelerator(device)
    seed = _broadcast_seed(seed)
    train_blocks, _ = BlockSplit(validation_fraction, seed).blocks(rows)
    first_epoch = OnDiskBatches(
        rows, train_blocks, batch_size, shuffle=True, seed=seed, epoch=0, num_processes=accelerator.num_processes
    )
    # As for the streaming fit, the schedule is laid out over the first epoch's steps (later ones differ by one
    # at most); every process takes as many as the longest share.
    steps_per_epoch = len(share_batches(
        first_epoch.window_batches(), num_processes=accelerator.num_processes,
        process_index=accelerator.process_index, even=True,
    ))
    # One read of the sample that starts pre_bias, and that lr="auto" is measured on.
    sample = initial_sample(rows, seed)
    template = build_net(
        steps_per_epoch=steps_per_epoch, device=_net_device(accelerator), seed=seed, spread_sample=sample.numpy()
    )
    configure_net(template, rows, validation_fraction=validation_fraction, seed=seed, pre_bias_init=pre_bias_init,
                  sample=sample)
    # The same file in every process shows as equal shapes, blocks and pre-bias samples (drawn from the same blocks).
    sample = dict(template.callbacks)["init_pre_bias"].sample.to(torch.float64)
    _check_same_everywhere(
        [rows.n_rows, rows.n_features, rows.block_rows, sample.sum(), sample.square().sum()], accelerator,
        remedy="Open the same on-disk array in every process; each one reads its own windows of blocks.",
    )
    return _train(template, rows, accelerator, seed)


def _net_device(accelerator) -> str:
    # Accelerate names the CPU "cpu:0", a location torch cannot map a pickled tensor back to: say "cpu".
    return "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)


def _train(template: SAENet, X, accelerator, seed: int) -> SAENet:
    """Fit ``template``'s distributed twin on ``X`` from ``seed``; return it as a plain net."""
    net = _distributed_twin(template, accelerator, seed)
    cuda_devices = [accelerator.device.index or 0] if accelerator.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda_devices):  # the caller's RNG is left as it was, as in a plain fit
        torch.manual_seed(seed)
        net.fit(X)
    return _single_process_net(net)


def _distributed_twin(net: SAENet, accelerator, seed: int) -> DistributedSAENet:
    """A :class:`DistributedSAENet` with ``net``'s settings, metrics over all processes, printing on process 0 only."""
    params = {
        key: value
        for key, value in net.get_params(deep=False).items()
        if not key.startswith("_") and key != "callbacks__print_log"  # see DistributedSAENet._default_callbacks
    }
    callbacks = []
    for name, callback in params.pop("callbacks"):
        if isinstance(callback, EpochMetrics):
            callback = GlobalEpochMetrics(callback.eval_sets, batch_size=callback.batch_size)
        if not accelerator.is_main_process:
            if name == "progress_bar":
                continue
            if hasattr(callback, "sink"):  # the epoch table, early stopping's message
                callback.sink = noop
        callbacks.append((name, callback))
        if name == "init_pre_bias":
            callbacks.append(("broadcast_weights", BroadcastWeights()))
            callbacks.append(("sync_firing_counts", SyncFiringCounts()))
    return DistributedSAENet(
        callbacks=callbacks, accelerator=accelerator, order_seed=seed, **params
    )
