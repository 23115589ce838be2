"""Training through skorch: the net, its loss and callbacks, and the one function every fit mode goes through.

:func:`train_net` seeds torch once, opens the checkpoint, lays out the
schedule over the run's optimiser steps once, resolves ``lr="auto"`` and
``max_epochs="auto"``, builds the net with the callbacks of its mode and
fits it, for rows in memory or on disk (:mod:`sklearn_sae._rows`), in one
process or data-parallel (a *strategy*: :class:`SingleProcess` here, the
Accelerate one in :mod:`sklearn_sae._distributed`). ``partial_fit`` builds
its net here too (:func:`build_net` with ``mode="incremental"``) and runs it
in :mod:`sklearn_sae._incremental`. Nothing here knows about scikit-learn.
"""

from __future__ import annotations

import contextlib
import math
import sys
from typing import NamedTuple

import torch
from skorch import NeuralNet
from skorch.callbacks import Callback, EarlyStopping, GradientNormClipping, LRScheduler, PrintLog, ProgressBar
from skorch.dataset import unpack_data
from skorch.utils import noop
from torch import nn

from ._activations import JumpReLU, TopK, TopKSelection, code_activity, firing_ceiling, starts_soft
from ._checkpoint import open_checkpoint
from ._defaults import AUTO_DECAY_FRACTION, resolve_lr, resolve_max_epochs, resolve_steps
from ._model import ModelSpec, SAEOutput, SparseAutoencoder, auxk_loss, l1_penalty, nmse_loss
from ._params import TrainingSettings
from ._plateau import DecayOnPlateau, WarmupCosine, WarmupPlateauDecay
from ._rows import EpochIterator, RowsSplit, share_batches
from .metrics import fvu_of, merge_centred

__all__ = [
    "SAENet",
    "SAELoss",
    "LossTerms",
    "WarmupCosine",
    "EpochMetrics",
    "PreBiasFromSample",
    "UnitNormDecoder",
    "SingleProcess",
    "build_net",
    "train_net",
    "rate_dictionary_size",
    "fitted_net",
    "seeded_torch",
    "release_training_state",
]

PRE_BIAS_SAMPLE_ROWS = 4096
"""Rows drawn to estimate the data's centre for ``pre_bias``: enough for a starting point, and cheap
(Weiszfeld's iterations on 10,000 rows of width 1024 took a tenth of a 16-batch fit)."""

WHITENING_ROWS_PER_FEATURE = 16
"""``whiten=True`` estimates the covariance on up to this many training rows per feature (at least
:data:`PRE_BIAS_SAMPLE_ROWS`, at most :data:`WHITENING_MAX_ROWS`): enough that its small eigenvalues are not
mostly noise, at the cost of one pass of a few seconds."""

WHITENING_MAX_ROWS = 65_536


def start_sample_rows(spec: ModelSpec) -> int:
    """Training rows drawn before a fit to start it: the pre-bias and ``lr="auto"`` (and the whitening)."""
    if not spec.whiten:
        return PRE_BIAS_SAMPLE_ROWS
    return min(WHITENING_MAX_ROWS, max(PRE_BIAS_SAMPLE_ROWS, WHITENING_ROWS_PER_FEATURE * spec.n_features))

CALIBRATION_ROWS = 512
"""Rows encoded at a time when :func:`reach_target_l0_` calibrates JumpReLU's thresholds (bounds its memory)."""

EPOCH_METRICS = ("nmse", "fvu", "l0", "l1", "dead_fraction")
"""Recorded in the history for every split each epoch, beside skorch's own ``*_loss``."""


class LossTerms(NamedTuple):
    """The loss of one batch, as :class:`SAELoss` computes it, and the terms it is made of."""

    total: torch.Tensor
    """What training differentiates: ``objective`` plus the training aids of the batch (AuxK weighted by
    ``aux_coef``, or JumpReLU's pre-activation term weighted by ``pre_act_coef``)."""
    objective: torch.Tensor
    """``reconstruction + l1_coef * L1 (+ l0_coef * JumpReLU's sparsity term)``: the loss every split records,
    and early stopping compares."""
    nmse: torch.Tensor
    """The whole dictionary's NMSE."""
    l1: torch.Tensor
    """The L1 term, ``mean ||h||_1 / ||x_norm||``."""


class SAELoss(nn.Module):
    """One objective per activation, the same in training, validation and every eval set.

    ``objective = reconstruction + l1_coef * L1 + l0_coef * L0 term``, each
    term a mean over the batch's rows (see :mod:`._model`):

    - ``reconstruction`` is the NMSE (between whitened rows and their
      reconstructions under ``whiten=True``); with Matryoshka
      (``prefix_x_hats`` set) the mean of the NMSEs of every nested prefix
      and of the whole dictionary: equal weights, as in Bussmann et al.
      (2025), averaged rather than summed (SAELens sums them) so that the
      term stays on the scale of one NMSE beside the coefficients.
    - ``L1`` is ``||h||_1 / ||x_norm||`` (the codes over the norm of the row
      the encoder takes, so ``l1_coef`` means the same on embeddings of any
      scale). ``l1_coef`` is 0 unless the user sets it, but for ReLU.
    - ``L0 term`` is JumpReLU's (``output.l0_penalty`` set): the codes' L0,
      Rajamanoharan et al.'s penalty, or with ``target_l0`` its quadratic
      distance to the target. Its value is the same in training and in
      evaluation; in training its gradient reaches the thresholds through
      the straight-through estimator.

    The training aids are not part of the objective: the AuxK term
    (``aux_residual_hat``, in training batches in which latents are dead),
    weighted by ``aux_coef``, and JumpReLU's pre-activation term against
    dead latents (``output.pre_act_penalty``), weighted by ``pre_act_coef``.
    They exist only in training and only while latents are dead, so a loss
    that counted them would change meaning from split to split and from
    epoch to epoch; they are added to ``LossTerms.total``, which training
    differentiates, and left out of ``LossTerms.objective``, which every
    split's ``*_loss`` in the history records. Each split's loss is then
    exactly its recorded terms: ``nmse`` (or the mean of ``nmse_level*`` and
    ``nmse``) plus ``l1_coef`` times ``l1``, plus for JumpReLU ``l0_coef``
    times ``l0`` (``sparsity`` with ``target_l0``), up to float rounding,
    when no row is all zero (a batch's ratios leave such rows out, while
    skorch weighs each batch's loss by all its rows).
    """

    def __init__(self, l1_coef: float = 0.0, aux_coef: float = 0.0, *, l0_coef: float = 0.0,
                 pre_act_coef: float = 0.0):
        super().__init__()
        self.l1_coef = l1_coef
        self.l0_coef = l0_coef
        self.aux_coef = aux_coef
        self.pre_act_coef = pre_act_coef

    def forward(self, output: SAEOutput, x: torch.Tensor) -> LossTerms:
        l1 = l1_penalty(output.codes, x if output.x_norm is None else output.x_norm)
        # Reconstructions are compared in input units, or in the whitened space when the model whitens its rows.
        space = output if output.whitened is None else output.whitened
        if output.whitened is not None:
            x = output.whitened.x
        nmse = nmse_loss(space.x_hat, x)
        reconstruction = nmse
        if space.prefix_x_hats:  # Matryoshka: the mean NMSE over the nested prefixes and the whole dictionary
            levels = [nmse_loss(prefix, x) for prefix in space.prefix_x_hats] + [nmse]
            reconstruction = torch.stack(levels).mean()
        objective = reconstruction + self.l1_coef * l1
        if output.l0_penalty is not None:  # JumpReLU: its L0 (or its pull towards target_l0) makes it sparse
            objective = objective + self.l0_coef * output.l0_penalty
        total = objective
        if space.aux_residual_hat is not None and self.aux_coef > 0:
            total = total + self.aux_coef * auxk_loss(space.aux_residual_hat, space.x_hat, x)
        if output.pre_act_penalty is not None and self.pre_act_coef > 0:
            total = total + self.pre_act_coef * output.pre_act_penalty
        return LossTerms(total, objective, nmse, l1)


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
    order_seed : int, default=0
        Seeds the order of every epoch's batches (:class:`~sklearn_sae._rows.EpochIterator`).
    """

    def __init__(self, *args, amp: bool = False, order_seed: int = 0, **kwargs):
        super().__init__(*args, **kwargs)
        self.amp = amp
        self.order_seed = order_seed

    @property
    def num_processes(self) -> int:
        """Processes that share each epoch's batches: 1 here, the launch's size for a data-parallel net."""
        return 1

    def batch_ids(self, units, *, training: bool) -> list[int]:
        """The batch ids of an epoch this net takes: all of them (a data-parallel net takes its share)."""
        return share_batches(units, num_processes=1, process_index=0, even=training)

    def get_iterator(self, dataset, training=False):
        # Rows in memory and on disk, one process or many: one iterator, which lays out each epoch as it starts.
        return EpochIterator(self, dataset, training=training)

    def infer(self, x, **fit_params):
        device_type = torch.device(self.device).type
        with torch.autocast(device_type=device_type, dtype=torch.bfloat16, enabled=self.amp):
            output = super().infer(x, **fit_params)
        return to_float32(output)

    def get_loss(self, y_pred, y_true, X=None, training=False):
        """The batch's objective (:attr:`LossTerms.objective`): what every split records as its loss."""
        return self.criterion_(y_pred, X.to(self.device)).objective

    def train_step_single(self, batch, **fit_params):
        # As skorch's, but the backward pass runs on the objective plus the training aids (LossTerms.total), while
        # the step reports the objective alone, which skorch records as train_loss: the loss of every split means
        # the same, and early stopping without a validation split compares what validation would.
        self._set_training(True)
        Xi, _ = unpack_data(batch)
        y_pred = self.infer(Xi, **fit_params)
        terms = self.criterion_(y_pred, Xi.to(self.device))
        self.backward(terms.total)
        return {"loss": terms.objective, "y_pred": y_pred}

    def backward(self, loss: torch.Tensor) -> None:
        """Compute the gradients of ``loss`` (a data-parallel net also averages them over the processes)."""
        loss.backward()


def to_float32(output: SAEOutput) -> SAEOutput:
    """``output`` with its reconstructions in float32, whatever precision autocast computed them in."""
    def floats(space):
        aux, prefixes = space.aux_residual_hat, space.prefix_x_hats
        return space._replace(
            x_hat=space.x_hat.float(),
            aux_residual_hat=None if aux is None else aux.float(),
            prefix_x_hats=None if prefixes is None else tuple(prefix.float() for prefix in prefixes),
        )

    output = floats(output)
    return output if output.whitened is None else output._replace(whitened=floats(output.whitened))


def _row_ratios(numerator: torch.Tensor, denominator: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Sum in float64 of ``numerator / denominator`` over the ``valid`` rows (whose denominator is positive)."""
    ratios = numerator / denominator.clamp_min(torch.finfo(denominator.dtype).tiny)
    return torch.where(valid, ratios, 0.0).sum(dtype=torch.float64)


def _mean_or_convention(total: float, n_rows: int, numerator: float) -> float:
    """``total / n_rows``; with no row to average over, 0 when nothing is left over (``numerator`` 0), else inf.

    The convention of :func:`sklearn_sae.metrics.nmse` and :func:`~sklearn_sae.metrics.l1` for an undefined ratio.
    """
    if n_rows > 0:
        return total / n_rows
    return 0.0 if numerator == 0 else float("inf")


class _SplitTotals:
    """Running sums over one split for one epoch, kept on the device until the epoch ends.

    Everything :data:`EPOCH_METRICS` needs comes from the batches the epoch
    computes anyway, so the metrics cost no second pass over the data. Row
    ratios (NMSE, L1) leave out the rows whose denominator is 0, as the loss
    does (:func:`sklearn_sae._model.row_mean_ratio`) and as
    :mod:`sklearn_sae.metrics` does.
    """

    def __init__(self):
        self.n_rows = 0
        self.sums = None
        self.moments = (0, None, 0.0)  # the rows' count, mean row and centred sum of squares, for the FVU

    def update(self, x: torch.Tensor, output: SAEOutput, loss: torch.Tensor, n_latents: int) -> None:
        # Row-wise terms in float32 (the batch's own precision), sums over rows in float64:
        # converting the whole batch to float64 would cost a sizeable share of a training step.
        x = x.to(output.x_hat.device)
        error = (output.x_hat.detach() - x).square().sum(dim=-1)
        squared_norms = x.square().sum(dim=-1)
        # The NMSEs are the objective's terms, in the space it compares (whitened rows under whiten=True); the
        # FVUs are always in input units, as score() and metrics.fvu measure them.
        space = output if output.whitened is None else output.whitened
        space_x = x if output.whitened is None else output.whitened.x.detach()
        space_error = error if output.whitened is None else (space.x_hat.detach() - space_x).square().sum(dim=-1)
        space_norms = space_x.square().sum(dim=-1)
        nonzero_rows = space_norms > 0  # NMSE is undefined on all-zero rows, as in the loss
        x_norm = x if output.x_norm is None else output.x_norm.detach()
        code_values = output.codes.values if isinstance(output.codes, TopKSelection) else output.codes
        code_l1 = code_values.detach().float().abs().sum(dim=-1)
        encoder_norms = x_norm.float().norm(dim=-1)  # the L1 term's denominator, as in the loss
        n_nonzero, fired = code_activity(output.codes, n_latents)
        batch = {
            "loss": loss.detach().double() * len(x),
            "nmse": _row_ratios(space_error, space_norms, nonzero_rows),
            "nmse_rows": nonzero_rows.sum(),
            "l1": _row_ratios(code_l1, encoder_norms, encoder_norms > 0),
            "l1_rows": (encoder_norms > 0).sum(),
            "l1_numerator": code_l1.sum(dtype=torch.float64),
            "residual": error.sum(dtype=torch.float64),
            "nonzeros": n_nonzero,
            "fired": fired,
        }
        if output.l0_penalty is not None:  # JumpReLU's sparsity term, a mean over the batch's rows
            batch["sparsity"] = output.l0_penalty.detach().double() * len(x)
        if output.prefix_x_hats:
            prefix_errors = [(prefix.detach() - x).square().sum(dim=-1) for prefix in output.prefix_x_hats]
            space_errors = prefix_errors if output.whitened is None else [
                (prefix.detach() - space_x).square().sum(dim=-1) for prefix in space.prefix_x_hats
            ]
            batch["prefix_residuals"] = torch.stack([error.sum(dtype=torch.float64) for error in prefix_errors])
            batch["prefix_nmse"] = torch.stack(
                [_row_ratios(error, space_norms, nonzero_rows) for error in space_errors]
            )
        if self.sums is None:
            self.sums = batch
        else:
            for key, value in batch.items():
                self.sums[key] = self.sums[key] | value if key == "fired" else self.sums[key] + value
        x64 = x.double()
        batch_mean = x64.mean(dim=0)
        self.moments = merge_centred(*self.moments, len(x), batch_mean, (x64 - batch_mean).square().sum())
        self.n_rows += len(x)

    def result(self) -> dict:
        sums = {key: value.cpu() for key, value in self.sums.items()}
        n = self.n_rows
        centred = float(self.moments[2])
        nmse_rows = int(sums["nmse_rows"])

        def fvu(residual: float) -> float:
            return fvu_of(residual, centred)

        levels = {}
        if "prefix_residuals" in sums:
            residuals, nmses = sums["prefix_residuals"].tolist(), sums["prefix_nmse"].tolist()
            for level, (prefix_residual, prefix_nmse) in enumerate(zip(residuals, nmses)):
                levels[f"fvu_level{level}"] = fvu(prefix_residual)
                levels[f"nmse_level{level}"] = _mean_or_convention(prefix_nmse, nmse_rows, prefix_residual)
        if "sparsity" in sums:
            levels["sparsity"] = float(sums["sparsity"]) / n
        return {
            **levels,
            "loss": float(sums["loss"]) / n,
            "nmse": _mean_or_convention(float(sums["nmse"]), nmse_rows, float(sums["residual"])),
            "fvu": fvu(float(sums["residual"])),
            "l0": float(sums["nonzeros"]) / n,
            "l1": _mean_or_convention(float(sums["l1"]), int(sums["l1_rows"]), float(sums["l1_numerator"])),
            "dead_fraction": 1.0 - float(sums["fired"].double().mean()),
        }


class EpochMetrics(Callback):
    """Record NMSE, FVU, L0, L1 and the dead-latent fraction of every split, every epoch.

    ``train_*`` and ``valid_*`` are accumulated from the batches of the epoch
    (train mode for training, as optimised; eval mode for validation). Each
    named extra set of ``eval_sets`` is encoded at the end of the epoch in
    eval mode and gets ``{name}_loss`` too. A latent counts as dead for a
    split when it was zero on every row of that split during the epoch.
    Matryoshka adds each nested prefix's FVU and NMSE (``*_fvu_level0``,
    ``*_nmse_level0``, ...) for every split, and JumpReLU its sparsity term
    (``*_sparsity``: the L0, or with ``target_l0`` the quadratic distance to
    it). Every split's loss is the
    objective (:class:`SAELoss`), exactly the recorded terms combined.

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
                _record(net.history, prefix, totals.result(), with_loss=False)  # skorch records its own *_loss
        for name, X in (self.eval_sets or {}).items():
            _record(net.history, name, self._score(net, X), with_loss=True)


def _record(history, prefix: str, results: dict, *, with_loss: bool) -> None:
    """Record one split's :meth:`_SplitTotals.result` as ``{prefix}_{metric}``, Matryoshka's levels included."""
    extra = sorted(key for key in results if "_level" in key or key == "sparsity")
    for metric in (("loss",) if with_loss else ()) + EPOCH_METRICS + tuple(extra):
        history.record(f"{prefix}_{metric}", results[metric])


def _stdout_is_terminal() -> bool:
    return hasattr(sys.stdout, "isatty") and sys.stdout.isatty()


class EpochLog(PrintLog):
    """skorch's per-epoch table, with the best values coloured only when printing to a terminal.

    In a log file the ANSI colour codes are noise; the table itself is unchanged.
    """

    def _sorted_keys(self, keys):
        # Matryoshka's per-level measures are for history_, not for the table.
        return [key for key in super()._sorted_keys(keys) if "_level" not in key]

    def format_row(self, row, key, color):
        if not _stdout_is_terminal():
            row = {name: value for name, value in row.items() if name != f"{key}_best"}
        return super().format_row(row, key, color)


class PreBiasFromSample(Callback):
    """Start ``pre_bias`` at the centre of a sample of rows drawn before training (and estimate the whitening).

    The sample (see :func:`train_net`) is dropped once used, so the fitted
    net does not carry it. A resumed fit restores ``pre_bias`` afterwards.

    Parameters
    ----------
    method : {"geometric_median", "mean", "zeros"}
        How the centre is estimated.
    sample : torch.Tensor
        The rows, at most :data:`PRE_BIAS_SAMPLE_ROWS`.
    """

    def __init__(self, method="geometric_median", sample=None):
        self.method = method
        self.sample = sample

    def on_train_begin(self, net, **kwargs):
        if self.sample is not None:
            start_from_sample(net.module_, self.sample.to(net.device), self.method)
            self.sample = None


def start_from_sample(module: SparseAutoencoder, sample: torch.Tensor, pre_bias_init: str) -> None:
    """Set what a new model estimates from training rows: the whitening (``whiten=True``), then ``pre_bias``."""
    if module.whiten:
        module.fit_whitening_(sample)
    module.init_pre_bias_(sample[:PRE_BIAS_SAMPLE_ROWS], method=pre_bias_init)
    if isinstance(module.activation, JumpReLU) and module.activation.target_l0 is not None:
        with torch.no_grad():
            module.activation.init_thresholds_(module.encode_pre(module.preprocess(sample[:PRE_BIAS_SAMPLE_ROWS])[0]))


def reach_target_l0_(module: SparseAutoencoder, rows: torch.Tensor, training_rows: torch.Tensor) -> None:
    """End a JumpReLU fit with ``target_l0`` on the target: one common threshold scale for ``rows``'s mean L0.

    ``rows`` are at most :data:`PRE_BIAS_SAMPLE_ROWS` rows of the fit, its validation rows (else its start
    sample) or the rows of a ``partial_fit`` call; no latent that fires on ``training_rows`` (the start sample,
    or the call's rows) loses more than half its firing rows there (:func:`firing_ceiling`). Any other model is
    left as it is.
    See :meth:`JumpReLU.calibrate_thresholds_`.
    """
    activation = module.activation
    if not isinstance(activation, JumpReLU) or activation.target_l0 is None:
        return
    device = module.pre_bias.device

    def pre_activations(block):
        return module.encode_pre(module.preprocess(block.to(device))[0])

    with torch.no_grad():
        training = torch.cat([pre_activations(block) for block in training_rows[:PRE_BIAS_SAMPLE_ROWS].split(
            CALIBRATION_ROWS)])
        ceiling = firing_ceiling(training, activation.threshold)
        del training
        activation.calibrate_thresholds_(
            map(pre_activations, rows.split(CALIBRATION_ROWS)), len(rows), threshold_ceiling=ceiling
        )


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

    That is Adam's state (two moments, twice the size of the weights), the LR scheduler, whose
    reference to the optimizer would otherwise pickle the optimizer a second time, and early
    stopping's copy of the best epoch's weights (already restored into the module). A new ``fit``
    builds a fresh net, so nothing is lost; an incremental fit that continues training must keep
    them instead.
    """
    net.optimizer_ = None
    for _, callback in net.callbacks_:
        if isinstance(callback, LRScheduler):
            callback.lr_scheduler_ = None
        if isinstance(callback, EarlyStopping):
            callback.best_model_weights_ = None


@contextlib.contextmanager
def seeded_torch(device, seed: int):
    """A context in which torch's global RNG (and the GPU's, on CUDA) starts from ``seed``.

    The one place that seeds torch. The caller's RNG state is restored on
    exit, so training never changes it.
    """
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        yield


class SingleProcess:
    """The strategy of a fit in one process: the net is a plain :class:`SAENet` on ``device``.

    :func:`train_net` asks its strategy for the seed every process uses,
    the net class and the callbacks of its nets, the batches a process takes
    and the checks that the processes agree; the data-parallel strategy
    (:class:`sklearn_sae._distributed.DataParallel`) answers them for a
    launch of several.
    """

    net_class = SAENet
    num_processes = 1

    def __init__(self, device: str):
        self.device = device

    def agree_seed(self, seed: int) -> int:
        return seed

    def net_kwargs(self) -> dict:
        return {}

    def adapt_callbacks(self, callbacks: list) -> list:
        return callbacks

    def steps_per_epoch(self, units) -> int:
        return sum(len(unit) for unit in units)

    def check_same_rows(self, rows, sample) -> None:
        pass

    def unwrap(self, net: SAENet) -> SAENet:
        return net


def _fused_adam_available() -> bool:
    """Fused Adam (one kernel for all parameters) runs on CPU and CUDA from torch 2.4 on."""
    major, minor = (int(part) for part in torch.__version__.split(".")[:2])
    return (major, minor) >= (2, 4)


def _all_metric_keys(eval_sets):
    prefixes = ["train", "valid", *(eval_sets or {})]
    return [f"{prefix}_{metric}" for prefix in prefixes for metric in EPOCH_METRICS]


def _callbacks(settings: TrainingSettings, *, mode: str, total_steps: int, warmup_steps: int, warmup_epochs: int,
               eval_sets, pre_bias_sample, schedule, checkpoint) -> list:
    """The net's callbacks, in the order they run, for ``mode`` ``"fit"`` or ``"incremental"``.

    A run of ``partial_fit`` calls gets no pre-bias start (the caller does it
    once; skorch calls ``on_train_begin`` on every call) and no early
    stopping (it would restore the weights of an earlier call), and its
    ``schedule`` callback sets the learning rate instead of the warmup and
    cosine decay, which need the run's length. The checkpoint comes last,
    after every callback that records or resets something it saves.
    """
    callbacks = []
    if mode == "fit":
        callbacks.append(("init_pre_bias", PreBiasFromSample(settings.pre_bias_init, pre_bias_sample)))
    callbacks.append(("epoch_metrics", EpochMetrics(eval_sets, batch_size=max(settings.batch_size, 1024))))
    # The automatic length ends when the validation loss levels off, with a decay of the rate (see ._plateau).
    plateau = settings.max_epochs == "auto" and settings.n_iter_no_change is not None and mode == "fit"
    if schedule is None:
        multiplier = (WarmupPlateauDecay(warmup_steps, total_steps, AUTO_DECAY_FRACTION) if plateau
                      else WarmupCosine(warmup_steps, total_steps))
        schedule = LRScheduler(policy=torch.optim.lr_scheduler.LambdaLR, lr_lambda=multiplier, step_every="batch")
    callbacks.append(("lr_schedule", schedule))
    if settings.unit_norm_decoder:  # before clipping, so the clipped norm is that of the applied gradient
        callbacks.append(("unit_norm_decoder", UnitNormDecoder()))
    if settings.grad_clip is not None:
        callbacks.append(("grad_clip", GradientNormClipping(gradient_clip_value=settings.grad_clip)))
    if settings.n_iter_no_change is not None and mode == "fit":
        stopping = dict(
            monitor="valid_loss" if settings.validation_fraction > 0 else "train_loss",
            patience=settings.n_iter_no_change,
            threshold=settings.tol,
            threshold_mode="rel",
            load_best=True,  # stopping late must not cost the best weights
            sink=print if settings.verbose else noop,
        )
        # The warmup's epochs are not scored: the loss may rise while the rate and the activation settle.
        callbacks.append(("early_stopping", DecayOnPlateau(start_epoch=warmup_epochs, **stopping) if plateau
                          else EarlyStopping(**stopping)))
    # A batch bar redraws itself with carriage returns: readable on a terminal, hundreds of KB of noise in a file.
    if settings.verbose >= 2 or (settings.verbose == 1 and _stdout_is_terminal()):
        callbacks.append(("progress_bar", ProgressBar()))
    callbacks.append(("epoch_log", EpochLog(
        # In history_, not shown: the table keeps to the loss, NMSE, L0 and dead fraction.
        keys_ignored=[key for key in _all_metric_keys(eval_sets) if key.endswith(("_fvu", "_l1"))],
    )))
    if checkpoint is not None:
        callbacks.append(("checkpoint", checkpoint))
    return callbacks


def build_net(
    spec: ModelSpec,
    settings: TrainingSettings,
    *,
    lr: float,
    seed: int,
    total_steps: int = 1,
    max_epochs: int = 1,
    mode: str = "fit",
    eval_sets: dict | None = None,
    pre_bias_sample: torch.Tensor | None = None,
    schedule: Callback | None = None,
    checkpoint: Callback | None = None,
    strategy=None,
) -> SAENet:
    """The :class:`SAENet` of a run, with its final callbacks, not yet initialised.

    Parameters
    ----------
    spec : ModelSpec
        The model; a fractional ``anneal_steps`` is resolved over ``total_steps``.
    settings : TrainingSettings
        How it is trained; ``lr`` and ``max_epochs`` come resolved.
    lr : float
        Peak learning rate.
    seed : int
        Seeds the validation split and the epochs' order.
    total_steps : int, default=1
        Optimiser steps the LR schedule, a fractional ``warmup_steps`` and
        ``anneal_steps`` are laid out over.
    max_epochs : int, default=1
    mode : {"fit", "incremental"}, default="fit"
        A fit, or a run of ``partial_fit`` calls (no split; see :func:`_callbacks`).
    eval_sets : dict of str to torch.Tensor, default=None
        Extra sets scored every epoch.
    pre_bias_sample : torch.Tensor, default=None
        The rows ``pre_bias`` starts at the centre of (``mode="fit"``).
    schedule : skorch Callback, default=None
        Replaces the warmup-cosine schedule (``mode="incremental"``).
    checkpoint : TrainingCheckpoint, default=None
    strategy : SingleProcess or DataParallel, default=None
        Which net class and callbacks; ``None`` is one process on the CPU.
    """
    strategy = strategy or SingleProcess("cpu")
    warmup_steps = resolve_steps(settings.warmup_steps, total_steps, minimum=0)
    warmup_epochs = math.ceil(warmup_steps / max(total_steps // max(max_epochs, 1), 1))
    callbacks = _callbacks(
        settings, mode=mode, total_steps=total_steps, warmup_steps=warmup_steps, warmup_epochs=warmup_epochs,
        eval_sets=eval_sets,
        pre_bias_sample=pre_bias_sample, schedule=schedule, checkpoint=checkpoint,
    )
    has_validation = mode == "fit" and settings.validation_fraction > 0
    return strategy.net_class(
        SparseAutoencoder,
        criterion=SAELoss,
        criterion__l1_coef=settings.l1_coef,
        criterion__l0_coef=settings.l0_coef,
        criterion__aux_coef=settings.aux_coef,
        criterion__pre_act_coef=settings.pre_act_coef,
        optimizer=torch.optim.Adam,
        # The fused kernel cuts Adam's step from ~25% to ~7% of a Top-K training step on CPU.
        **({"optimizer__fused": True} if _fused_adam_available() else {}),
        lr=lr,
        batch_size=settings.batch_size,
        max_epochs=max_epochs,
        train_split=RowsSplit(settings.validation_fraction, seed) if has_validation else None,
        callbacks=strategy.adapt_callbacks(callbacks),
        amp=settings.amp,
        order_seed=seed,
        device=strategy.device,
        verbose=settings.verbose,
        callbacks__print_log=None,  # replaced by EpochLog
        **strategy.net_kwargs(),
        **{f"module__{key}": value for key, value in spec.over_steps(total_steps).module_kwargs().items()},
    )


def rate_dictionary_size(activation: nn.Module, n_latents: int, prefixes: tuple) -> int | None:
    """The dictionary size ``lr="auto"`` scales the rate to: ``n_latents`` for Top-K trained on one reconstruction,
    else ``None``, the reference rate (:data:`~sklearn_sae._defaults.REFERENCE_N_LATENTS` says why)."""
    return n_latents if type(activation) is TopK and not prefixes else None  # GumbelTopK is a TopK too


def train_net(
    spec: ModelSpec,
    rows,
    settings: TrainingSettings,
    *,
    seed: int,
    strategy,
    eval_sets: dict | None = None,
    checkpoint_dir=None,
    fingerprint: dict | None = None,
) -> SAENet:
    """Train a model on ``rows``: the one function behind every ``fit``.

    In order: the processes agree on a seed; the checkpoint in
    ``checkpoint_dir`` (if any) is opened, and a resumed fit takes its seed;
    the steps of an epoch are counted on the first epoch's layout (this
    process's share of it), and so ``max_epochs="auto"`` and the schedule's
    length; a sample of the training rows (never the validation rows) is
    drawn to start ``pre_bias`` and to measure the spread behind
    ``lr="auto"``; the net is built and fitted with torch
    seeded; the strategy unwraps it; a JumpReLU with ``target_l0`` has its
    thresholds scaled onto the target (:func:`reach_target_l0_`).

    Parameters
    ----------
    spec : ModelSpec
    rows : InMemoryRows or OnDiskRows
        All the rows; the validation split is taken here.
    settings : TrainingSettings
    seed : int
        This process's seed.
    strategy : SingleProcess or DataParallel
    eval_sets : dict of str to torch.Tensor, default=None
    checkpoint_dir : str or os.PathLike, default=None
        Write a checkpoint every epoch, and resume the one found there.
    fingerprint : dict, default=None
        The fit's checkpoint fingerprint (with ``checkpoint_dir``).

    Returns
    -------
    net : SAENet
        Trained, in one process's terms (picklable, usable anywhere).
    """
    seed = strategy.agree_seed(seed)
    checkpoint, epochs_done = None, 0
    if checkpoint_dir is not None:
        checkpoint = open_checkpoint(checkpoint_dir, fingerprint, seed=seed)
        seed, epochs_done = checkpoint.seed, checkpoint.epochs_done
    # The validation rows stay held out of what the fit estimates (the pre-bias and lr="auto" come from train) but
    # the end of a target_l0 fit, which measures on them the L0 of rows the model was not trained on.
    train, valid = rows.split(settings.validation_fraction, seed)
    first_epoch = train.epoch(
        settings.batch_size, seed=seed, epoch=0, shuffle=True, num_processes=strategy.num_processes
    )
    # Later epochs of rows on disk may differ by a batch: the schedule is laid out over the first one's steps.
    steps_per_epoch = strategy.steps_per_epoch(first_epoch.units())
    max_epochs = resolve_max_epochs(settings.max_epochs, steps_per_epoch)
    total_steps = steps_per_epoch * max_epochs
    sample = train.sample(start_sample_rows(spec), seed)
    strategy.check_same_rows(rows, sample)
    activation = spec.over_steps(total_steps).module_kwargs()["activation"]
    lr = resolve_lr(
        settings.lr, sample[:PRE_BIAS_SAMPLE_ROWS].numpy(), normalize=spec.normalize, whiten=spec.whiten,
        soft_start=starts_soft(activation), batch_size=settings.batch_size,
        n_latents=rate_dictionary_size(activation, spec.n_latents, spec.prefixes),
    )
    net = build_net(
        spec, settings, lr=lr, seed=seed,
        total_steps=total_steps, max_epochs=max_epochs, eval_sets=eval_sets, pre_bias_sample=sample,
        checkpoint=checkpoint, strategy=strategy,
    )
    # A finished checkpoint (early-stopped, or all its epochs run) is restored and given back without training.
    remaining_epochs = 0 if checkpoint is not None and checkpoint.finished else max_epochs - epochs_done
    with seeded_torch(strategy.device, seed):
        net.fit(rows, epochs=remaining_epochs)
    net = strategy.unwrap(net)
    # After the best epoch's weights are back. The L0 asked for is that of new rows: the validation rows measure
    # it (the fitted rows' L0 differed from new rows' by up to 10%); every process draws the same ones.
    if spec.activation == "jumprelu" and spec.target_l0 is not None:
        reach_target_l0_(net.module_, sample if valid is None else valid.sample(PRE_BIAS_SAMPLE_ROWS, seed), sample)
    return net


def fitted_net(spec: ModelSpec, settings: TrainingSettings, state_dict: dict, *, device: str, history=None) -> SAENet:
    """An initialised net holding ``state_dict``, as a saved or imported model is loaded; never trained from here.

    ``spec.anneal_steps`` must be resolved (a saved model carries it). The
    state must hold exactly the module's tensors with its shapes;
    ``load_state_dict`` raises otherwise.
    """
    net = build_net(spec, settings, lr=1.0, seed=0, strategy=SingleProcess(device))
    with seeded_torch(device, 0):  # initialisation draws random weights; keep the caller's RNG untouched
        net.initialize()
    net.module_.load_state_dict(state_dict)
    release_training_state(net)
    if history is not None:
        net.history = history
    return net
