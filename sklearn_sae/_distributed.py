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
- The batches: :class:`~sklearn_sae._rows.EpochIterator` lays out every
  epoch's units (single batches of rows in memory, windows of on-disk
  blocks) from (seed, epoch) alone, the same in every process, and
  :meth:`DistributedSAENet.batch_ids` takes every ``num_processes``-th unit
  (:func:`~sklearn_sae._rows.share_batches`), so the shares are disjoint
  without any communication, and on-disk data is read once over all
  processes (Accelerate's sharding would deal out single batches, making
  every process read every window). Training shares are padded to equal
  length with the process's own last batches (each optimiser step
  synchronises; a process that ran out first would leave the others
  waiting); validation shares are not, so every row counts once.
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

import os

import torch
from skorch.callbacks import Callback
from skorch.hf import AccelerateMixin
from skorch.utils import noop, to_tensor

from ._activations import BatchTopK
from ._rows import OnDiskRows, share_batches
from ._training import EpochMetrics, SAENet, to_float32
from .metrics import merge_centred

__all__ = [
    "DataParallel",
    "DistributedSAENet",
    "GlobalEpochMetrics",
    "BroadcastWeights",
    "SyncFiringCounts",
    "SyncThreshold",
    "make_accelerator",
    "is_main_process",
]

_ACCELERATE_ATTRIBUTES = (
    "accelerator",
    "unwrap_after_train",
    "_wrapped_with_accelerator",
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


class DistributedSAENet(AccelerateMixin, SAENet):
    """:class:`~sklearn_sae._training.SAENet` trained data-parallel by an :class:`accelerate.Accelerator`.

    Built by :func:`sklearn_sae._training.train_net` with the
    :class:`DataParallel` strategy, which turns it back into a plain
    :class:`SAENet` after training.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`SAENet` and :class:`skorch.hf.AccelerateMixin`;
        ``device`` must be the accelerator's device and ``order_seed`` equal
        on every process.
    """

    @property
    def num_processes(self) -> int:
        return self.accelerator.num_processes

    def batch_ids(self, units, *, training: bool) -> list[int]:
        """This process's share of an epoch's units; training shares are padded to equal length."""
        state = self.accelerator.state
        return share_batches(
            units, num_processes=state.num_processes, process_index=state.process_index, even=training
        )

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
        return to_float32(output)

    # SAENet's step (the objective reported, the objective plus the training aids differentiated), not the mixin's;
    # its backward pass goes through the accelerator, which averages the gradients over the processes.
    train_step_single = SAENet.train_step_single

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def evaluation_step(self, batch, training=False):
        # The mixin gathers predictions from every process; the metrics are summed per process and added up at
        # the end of the epoch instead (GlobalEpochMetrics), so each process keeps its own batch's output.
        return super(AccelerateMixin, self).evaluation_step(batch, training=training)


def _add_up_totals(totals, template: dict, device, n_features: int) -> None:
    """Replace one split's running sums by their totals over all processes.

    Every sum is added up in float64 (exact for counts below 2**53); boolean
    masks (which latents fired) become "true in any process". A process
    that saw no rows of the split contributes zeros shaped like ``template``
    (the sums of a split it did see), so all processes send the same vector.
    The rows' moments behind the FVU are not sums: every process's count,
    mean row and centred sum of squares are gathered and merged as one
    process merges its batches (:func:`~sklearn_sae.metrics.merge_centred`).
    """
    from accelerate.utils import gather, reduce

    n, mean, centred = totals.moments
    mean = torch.zeros(n_features, dtype=torch.float64, device=device) if mean is None else mean.to(device)
    packed = torch.cat([torch.tensor([float(n), float(centred)], dtype=torch.float64, device=device), mean])
    moments = (0, None, 0.0)
    for row in gather(packed.unsqueeze(0)):
        if row[0] > 0:
            moments = merge_centred(*moments, int(row[0]), row[2:], row[1])
    totals.moments = moments

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
            _add_up_totals(totals, template, accelerator.device, net.module_.n_features)
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


class SyncThreshold(Callback):
    """Average BatchTopK's inference threshold ``theta`` over the processes after every step.

    Each process updates ``theta`` (a buffer) from its own batch during the
    forward pass, after DDP has broadcast the buffers; averaging after the
    step keeps one threshold everywhere, the running average of the
    processes' batch minima. Nothing else needs it: JumpReLU's thresholds
    are derived from a parameter, which the averaged gradients keep equal.
    """

    def on_batch_end(self, net, training=False, **kwargs):
        activation = net.module_.activation
        if training and isinstance(activation, BatchTopK) and _is_distributed(net):
            torch.distributed.all_reduce(activation.threshold, op=torch.distributed.ReduceOp.SUM)
            activation.threshold.div_(net.accelerator.num_processes)


def _is_distributed(net) -> bool:
    accelerator = getattr(net, "accelerator", None)
    return accelerator is not None and accelerator.num_processes > 1


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


def _net_device(accelerator) -> str:
    # Accelerate names the CPU "cpu:0", a location torch cannot map a pickled tensor back to: say "cpu".
    return "cpu" if accelerator.device.type == "cpu" else str(accelerator.device)


class DataParallel:
    """The strategy of a data-parallel fit over the processes of the current launch (see the module's notes).

    :func:`sklearn_sae._training.train_net` asks it, as it asks
    :class:`~sklearn_sae._training.SingleProcess`: for the seed every
    process uses (process 0's), the net class (:class:`DistributedSAENet`)
    and its callbacks, the optimiser steps of this process's share of an
    epoch (so that ``max_epochs="auto"`` and the schedule count the steps
    actually taken), a check that every process was given the same rows,
    and a plain, single-process net once trained.

    Parameters
    ----------
    device : str
        The resolved device: ``"cpu"`` or ``"cuda"``.
    """

    net_class = DistributedSAENet

    def __init__(self, device: str):
        self.accelerator = make_accelerator(device)
        self.device = _net_device(self.accelerator)
        self.num_processes = self.accelerator.num_processes

    def agree_seed(self, seed: int) -> int:
        from accelerate.utils import broadcast_object_list

        return int(broadcast_object_list([seed], from_process=0)[0])

    def net_kwargs(self) -> dict:
        return {"accelerator": self.accelerator}

    def adapt_callbacks(self, callbacks: list) -> list:
        """Metrics over all processes, equal starting weights and firing counts, printing on process 0 only."""
        adapted = []
        for name, callback in callbacks:
            if isinstance(callback, EpochMetrics):
                callback = GlobalEpochMetrics(callback.eval_sets, batch_size=callback.batch_size)
            if not self.accelerator.is_main_process:
                if name == "progress_bar":
                    continue
                if hasattr(callback, "sink"):  # the epoch table, early stopping's message
                    callback.sink = noop
            adapted.append((name, callback))
            if name == "init_pre_bias":
                adapted.append(("broadcast_weights", BroadcastWeights()))
                adapted.append(("sync_firing_counts", SyncFiringCounts()))
                adapted.append(("sync_threshold", SyncThreshold()))
        return adapted

    def steps_per_epoch(self, units) -> int:
        # Every process takes as many as the longest share (the shorter ones repeat batches).
        state = self.accelerator.state
        return len(share_batches(units, num_processes=state.num_processes, process_index=state.process_index,
                                 even=True))

    def check_same_rows(self, rows, sample) -> None:
        """Raise on every process unless all were given rows of the same shape and the same sample of them.

        The sample is drawn from process 0's seed, so the same data gives the same rows everywhere.
        """
        sample = sample.to(torch.float64)
        on_disk = isinstance(rows, OnDiskRows)
        _check_same_everywhere(
            [rows.n_rows, rows.n_features, rows.block_rows if on_disk else 0, sample.sum(), sample.square().sum()],
            self.accelerator,
            remedy="Open the same on-disk array in every process; each one reads its own windows of blocks."
            if on_disk else "Load the same full data set in every process; each one reads its own share of the batches.",
        )

    def unwrap(self, net: DistributedSAENet) -> SAENet:
        return _single_process_net(net)
