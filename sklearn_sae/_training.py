"""Training through skorch: the net, its loss, its batches and its LR schedule.

Nothing here knows about scikit-learn; :mod:`sklearn_sae._transformer`
builds an :class:`SAENet` in ``fit`` and drives it.
"""

from __future__ import annotations

import math
import sys
from typing import NamedTuple

import numpy as np
import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, GradientNormClipping, LRScheduler, PrintLog, ProgressBar
from skorch.dataset import ValidSplit
from skorch.utils import noop
from torch import nn
from torch.utils.data import Subset

from ._activations import code_activity
from ._model import SAEOutput, auxk_loss, l1_penalty, nmse_loss

__all__ = [
    "SAENet",
    "SAELoss",
    "LossTerms",
    "WarmupCosine",
    "TensorBatches",
    "EpochMetrics",
    "InitPreBias",
    "UnitNormDecoder",
    "build_net",
    "release_training_state",
]

PRE_BIAS_SAMPLE_ROWS = 4096
"""Rows drawn to estimate the data's centre for ``pre_bias``: enough for a starting point, and cheap
(Weiszfeld's iterations on 10,000 rows of width 1024 took a tenth of a 16-batch fit)."""

EPOCH_METRICS = ("nmse", "fvu", "l0", "dead_fraction")
"""Recorded in the history for every split each epoch, beside skorch's own ``*_loss``."""


class LossTerms(NamedTuple):
    """The loss as optimised and the terms it is made of."""

    total: torch.Tensor
    nmse: torch.Tensor
    l1: torch.Tensor


class SAELoss(nn.Module):
    """``NMSE + l1_coef * L1 (+ aux_coef * AuxK)``, normalised by the input's norm (see :mod:`._model`).

    The AuxK term is there only for training batches in which the model
    reports dead latents (``output.aux_residual_hat`` is set).
    """

    def __init__(self, l1_coef: float = 0.0, aux_coef: float = 0.0):
        super().__init__()
        self.l1_coef = l1_coef
        self.aux_coef = aux_coef

    def forward(self, output: SAEOutput, x: torch.Tensor) -> LossTerms:
        nmse = nmse_loss(output.x_hat, x)
        l1 = l1_penalty(output.codes, x)
        total = nmse + self.l1_coef * l1
        if output.aux_residual_hat is not None and self.aux_coef > 0:
            total = total + self.aux_coef * auxk_loss(output.aux_residual_hat, output.x_hat, x)
        return LossTerms(total, nmse, l1)


class WarmupCosine:
    """LR multiplier: linear warmup from 0 to 1, then cosine decay to 0.

    A class rather than a closure so that a fitted net can be pickled.

    Parameters
    ----------
    warmup_steps : int
        Number of optimiser steps of linear warmup.
    total_steps : int
        Number of optimiser steps in the whole run.
    """

    def __init__(self, warmup_steps: int, total_steps: int):
        self.warmup_steps = warmup_steps
        self.total_steps = total_steps

    def __call__(self, step: int) -> float:
        if step < self.warmup_steps:
            return (step + 1) / self.warmup_steps
        decay_steps = max(self.total_steps - self.warmup_steps, 1)
        progress = min((step - self.warmup_steps) / decay_steps, 1.0)
        return 0.5 * (1.0 + math.cos(math.pi * progress))


class TensorBatches:
    """Mini-batches sliced from one tensor: no per-sample Python, no collation.

    skorch hands the iterator its ``Dataset`` (or a ``Subset`` of it after the
    validation split); both wrap the full input tensor, so each batch is one
    indexing operation and one (non-blocking) copy to the device.

    Parameters
    ----------
    dataset : skorch.dataset.Dataset or torch.utils.data.Subset
        Holds the input tensor as ``X``.
    batch_size : int
        Rows per batch; the last batch may be smaller.
    shuffle : bool, default=False
        Draw a new order each epoch from torch's global RNG.
    device : str or torch.device, default="cpu"
        Where batches are delivered.
    """

    def __init__(self, dataset, batch_size: int, shuffle: bool = False, device="cpu"):
        if isinstance(dataset, Subset):
            self.X = dataset.dataset.X
            self.indices = torch.as_tensor(np.asarray(dataset.indices), dtype=torch.long)
        else:
            self.X = dataset.X
            self.indices = None
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.device = torch.device(device)

    def __len__(self) -> int:
        n_rows = len(self.X) if self.indices is None else len(self.indices)
        return math.ceil(n_rows / self.batch_size)

    def _order(self):
        n_rows = len(self.X) if self.indices is None else len(self.indices)
        if self.shuffle:
            permutation = torch.randperm(n_rows)
            return permutation if self.indices is None else self.indices[permutation]
        return self.indices  # None: contiguous slices

    def __iter__(self):
        order = self._order()
        n_rows = len(self.X) if order is None else len(order)
        non_blocking = self.device.type == "cuda"
        for start in range(0, n_rows, self.batch_size):
            stop = start + self.batch_size
            batch = self.X[start:stop] if order is None else self.X[order[start:stop]]
            yield batch.to(self.device, non_blocking=non_blocking), None


class SAENet(NeuralNet):
    """skorch net for the sparse autoencoder: the input is its own target.

    Differences from :class:`skorch.NeuralNet`: the loss is computed against
    ``X`` (``y`` is ignored), and with ``amp=True`` the forward pass runs
    under bfloat16 autocast while weights, outputs and the loss stay
    float32. Per-epoch metrics come from the :class:`EpochMetrics` callback.

    Parameters
    ----------
    *args, **kwargs
        As for :class:`skorch.NeuralNet`.
    amp : bool, default=False
        Run the forward pass under ``torch.autocast(dtype=torch.bfloat16)``.
    """

    def __init__(self, *args, amp: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp = amp

    def infer(self, x, **fit_params):
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.amp):
            output = super().infer(x, **fit_params)
        aux = output.aux_residual_hat
        return output._replace(x_hat=output.x_hat.float(), aux_residual_hat=None if aux is None else aux.float())

    def get_loss(self, y_pred, y_true, X=None, training=False):
        return self.criterion_(y_pred, X.to(self.device)).total


class _SplitTotals:
    """Running sums over one split for one epoch, kept on the device until the epoch ends.

    Everything :data:`EPOCH_METRICS` needs comes from the batches the epoch
    computes anyway, so the metrics cost no second pass over the data.
    """

    def __init__(self):
        self.n_rows = 0
        self.sums = None

    def update(self, x: torch.Tensor, output: SAEOutput, loss: torch.Tensor, n_latents: int) -> None:
        # Row-wise terms in float32 (the batch's own precision), sums over rows in float64:
        # converting the whole batch to float64 would cost a sizeable share of a training step.
        x = x.to(output.x_hat.device)
        error = (output.x_hat.detach() - x).square().sum(dim=-1)
        squared_norms = x.square().sum(dim=-1)
        nonzero_rows = squared_norms > 0  # NMSE is undefined on all-zero rows, as in the loss
        n_nonzero, fired = code_activity(output.codes, n_latents)
        batch = {
            "loss": loss.detach().double() * len(x),
            "nmse": torch.where(nonzero_rows, error / squared_norms.clamp_min(torch.finfo(x.dtype).tiny), 0.0).sum(
                dtype=torch.float64
            ),
            "nmse_rows": nonzero_rows.sum(),
            "residual": error.sum(dtype=torch.float64),
            "x_sum": x.sum(dim=0, dtype=torch.float64),
            "x_square_sum": squared_norms.sum(dtype=torch.float64),
            "nonzeros": n_nonzero,
            "fired": fired,
        }
        if self.sums is None:
            self.sums = batch
        else:
            for key, value in batch.items():
                self.sums[key] = self.sums[key] | value if key == "fired" else self.sums[key] + value
        self.n_rows += len(x)

    def result(self) -> dict:
        sums = {key: value.cpu() for key, value in self.sums.items()}
        n = self.n_rows
        total_variance = float(sums["x_square_sum"] - sums["x_sum"].square().sum() / n)
        residual = float(sums["residual"])
        return {
            "loss": float(sums["loss"]) / n,
            "nmse": float(sums["nmse"]) / max(int(sums["nmse_rows"]), 1),
            "fvu": residual / total_variance if total_variance > 0 else (0.0 if residual == 0 else float("inf")),
            "l0": float(sums["nonzeros"]) / n,
            "dead_fraction": 1.0 - float(sums["fired"].double().mean()),
        }


class EpochMetrics(Callback):
    """Record NMSE, FVU, L0 and the dead-latent fraction of every split, every epoch.

    ``train_*`` and ``valid_*`` are accumulated from the batches of the epoch
    (train mode for training, as optimised). Each named extra set of
    ``eval_sets`` is encoded at the end of the epoch in eval mode and gets
    ``{name}_loss`` too. A latent counts as dead for a split when it was
    zero on every row of that split during the epoch.

    Parameters
    ----------
    eval_sets : dict of str to torch.Tensor, default=None
        Extra data sets scored at the end of every epoch; released when
        training ends, so the fitted net does not carry them.
    batch_size : int, default=1024
        Rows per batch when scoring ``eval_sets``.
    """

    def __init__(self, eval_sets=None, batch_size=1024):
        self.eval_sets = eval_sets
        self.batch_size = batch_size

    def on_epoch_begin(self, net, **kwargs):
        self.totals_ = {"train": _SplitTotals(), "valid": _SplitTotals()}

    def on_batch_end(self, net, batch=None, training=False, loss=None, y_pred=None, **kwargs):
        self.totals_["train" if training else "valid"].update(batch[0], y_pred, loss, net.module_.n_latents)

    @torch.no_grad()
    def _score(self, net, X):
        totals = _SplitTotals()
        net.module_.eval()
        for start in range(0, len(X), self.batch_size):
            x = X[start : start + self.batch_size].to(net.device)
            output = net.infer(x)
            totals.update(x, output, net.get_loss(output, None, X=x), net.module_.n_latents)
        return totals.result()

    def on_train_end(self, net, **kwargs):
        # Neither the last epoch's device sums nor the eval data belong in the fitted (pickled) model.
        self.totals_ = None
        self.eval_sets = None

    def on_epoch_end(self, net, **kwargs):
        for prefix, totals in self.totals_.items():
            if totals.n_rows:
                results = totals.result()
                for metric in EPOCH_METRICS:
                    net.history.record(f"{prefix}_{metric}", results[metric])
        for name, X in (self.eval_sets or {}).items():
            results = self._score(net, X)
            for metric in ("loss",) + EPOCH_METRICS:
                net.history.record(f"{name}_{metric}", results[metric])


def _stdout_is_terminal() -> bool:
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


class EpochLog(PrintLog):
    """skorch's per-epoch table, with the best values coloured only when printing to a terminal.

    In a log file the ANSI colour codes are noise; the table itself is unchanged.
    """

    def format_row(self, row, key, color):
        if not _stdout_is_terminal():
            row = {name: value for name, value in row.items() if name != f"{key}_best"}
        return super().format_row(row, key, color)


class InitPreBias(Callback):
    """Set the module's ``pre_bias`` to the centre of the rows given to ``fit`` before the first step.

    skorch hands ``on_train_begin`` the rows before its validation split, so
    the centre is estimated on those (a starting point, not a fitted value).

    Parameters
    ----------
    method : {"geometric_median", "mean", "zeros"}
        How the centre is estimated, on up to :data:`PRE_BIAS_SAMPLE_ROWS` rows.
    """

    def __init__(self, method="geometric_median"):
        self.method = method

    def on_train_begin(self, net, X=None, y=None, **kwargs):
        rows = X
        if len(X) > PRE_BIAS_SAMPLE_ROWS:
            rows = X[torch.randperm(len(X))[:PRE_BIAS_SAMPLE_ROWS]]
        net.module_.init_pre_bias_(rows.to(net.device), method=self.method)


class UnitNormDecoder(Callback):
    """Keep decoder atoms at unit norm: project out the radial gradient, renormalise after each step.

    Without it an untied decoder can grow its atoms while shrinking the
    codes, which hides the L1 penalty and makes atoms incomparable.
    """

    def on_grad_computed(self, net, named_parameters, **kwargs):
        net.module_.remove_parallel_decoder_grad_()

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            net.module_.normalize_decoder_()


def release_training_state(net: SAENet) -> None:
    """Drop from a trained net what only more training would need, so fitted models stay lean.

    That is Adam's state (two moments, twice the size of the weights) and the LR scheduler, whose
    reference to the optimizer would otherwise pickle the optimizer a second time. A new ``fit``
    builds a fresh net, so nothing is lost; an incremental fit that continues training must keep
    them instead.
    """
    net.optimizer_ = None
    for _, callback in net.callbacks_:
        if isinstance(callback, LRScheduler):
            callback.lr_scheduler_ = None


def _fused_adam_available() -> bool:
    """Fused Adam (one kernel for all parameters) runs on CPU and CUDA from torch 2.4 on."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def _all_metric_keys(eval_sets):
    prefixes = ["train", "valid", *(eval_sets or {})]
    return [f"{prefix}_{metric}" for prefix in prefixes for metric in EPOCH_METRICS]


def build_net(
    module_kwargs: dict,
    *,
    l1_coef: float,
    lr: float,
    batch_size: int,
    max_epochs: int,
    warmup_steps: int,
    total_steps: int,
    grad_clip: float | None,
    validation_fraction: float,
    n_iter_no_change: int | None,
    amp: bool,
    device: str,
    random_state: int,
    verbose: int,
    eval_sets: dict | None = None,
    pre_bias_init: str = "geometric_median",
    unit_norm_decoder: bool = False,
    aux_coef: float = 0.0,
    checkpoint: Callback | None = None,
) -> SAENet:
    """Assemble the :class:`SAENet` and its callbacks from the estimator's settings.

    ``checkpoint`` (a :class:`sklearn_sae._checkpoint.TrainingCheckpoint`) comes last, after every
    callback that records or resets something it saves or restores.
    """
    from ._model import SparseAutoencoder

    has_validation = validation_fraction > 0
    callbacks = [
        ("init_pre_bias", InitPreBias(pre_bias_init)),
        ("epoch_metrics", EpochMetrics(eval_sets, batch_size=max(batch_size, 1024))),
        ("lr_schedule", LRScheduler(
            policy=torch.optim.lr_scheduler.LambdaLR,
            lr_lambda=WarmupCosine(warmup_steps, total_steps),
            step_every="batch",
        )),
    ]
    if unit_norm_decoder:  # before clipping, so the clipped norm is that of the applied gradient
        callbacks.append(("unit_norm_decoder", UnitNormDecoder()))
    if grad_clip is not None:
        callbacks.append(("grad_clip", GradientNormClipping(gradient_clip_value=grad_clip)))
    if n_iter_no_change is not None:
        callbacks.append(("early_stopping", EarlyStopping(
            monitor="valid_loss" if has_validation else "train_loss",
            patience=n_iter_no_change,
            load_best=True,  # stopping late must not cost the best weights
            sink=print if verbose else noop,
        )))
    # A batch bar redraws itself with carriage returns: readable on a terminal, hundreds of KB of noise in a file.
    if verbose >= 2 or (verbose == 1 and _stdout_is_terminal()):
        callbacks.append(("progress_bar", ProgressBar()))
    callbacks.append(("epoch_log", EpochLog(
        keys_ignored=[key for key in _all_metric_keys(eval_sets) if key.endswith("_fvu")],  # in history_, not shown
    )))
    if checkpoint is not None:
        callbacks.append(("checkpoint", checkpoint))

    return SAENet(
        SparseAutoencoder,
        criterion=SAELoss,
        criterion__l1_coef=l1_coef,
        criterion__aux_coef=aux_coef,
        optimizer=torch.optim.Adam,
        # The fused kernel cuts Adam's step from ~25% to ~7% of a Top-K training step on CPU.
        **({"optimizer__fused": True} if _fused_adam_available() else {}),
        lr=lr,
        batch_size=batch_size,
        max_epochs=max_epochs,
        iterator_train=TensorBatches,
        iterator_train__shuffle=True,
        iterator_train__device=device,
        iterator_valid=TensorBatches,
        iterator_valid__device=device,
        train_split=ValidSplit(validation_fraction, stratified=False, random_state=random_state) if has_validation else None,
        callbacks=callbacks,
        amp=amp,
        device=device,
        verbose=verbose,
        callbacks__print_log=None,  # replaced by EpochLog above
        **{f"module__{key}": value for key, value in module_kwargs.items()},
    )
