"""Incremental training: the machinery behind ``SparseAutoencoderTransformer.partial_fit``.

A run of ``partial_fit`` calls trains one skorch net, one pass over each call's rows. Everything that
must carry over from one call to the next lives in the module (weights, the Gumbel temperature step,
the dead-latent counters), in the net (Adam's moments, the history) or in one callback,
:class:`IncrementalRun`, which owns what skorch would otherwise reset on every call: the learning-rate
schedule's position, the torch RNG state of the run, and the row and batch counts. Because all of it is
in the net, a pickled net continues exactly where it stopped.

Nothing here knows about scikit-learn; the estimator calls down into :func:`start_run` and
:func:`train_one_pass`, and the net is built by :func:`sklearn_sae._training.build_net` with the callbacks of
its mode.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from skorch.callbacks import Callback

from ._activations import starts_soft
from ._defaults import resolve_lr, resolve_steps
from ._model import ModelSpec
from ._params import TrainingSettings
from ._rows import InMemoryRows
from ._training import (
    PRE_BIAS_SAMPLE_ROWS,
    SingleProcess,
    WarmupCosine,
    build_net,
    rate_dictionary_size,
    reach_target_l0_,
    seeded_torch,
    start_from_sample,
    start_sample_rows,
)

__all__ = ["IncrementalRun", "start_run", "incremental_run", "train_one_pass"]


class IncrementalRun(Callback):
    """What a run of ``partial_fit`` calls carries from one call to the next, beyond the weights.

    It sets the learning rate of every training batch itself (linear warmup
    over ``warmup_steps`` batches, then constant), because skorch's
    ``LRScheduler`` rebuilds its scheduler on every ``partial_fit`` call and
    positions it by epochs, not batches. It also keeps the torch RNG state
    between calls, so that with a fixed seed a sequence of calls is
    reproducible while the caller's global RNG is never touched.

    Parameters
    ----------
    warmup_steps : int
        Training batches over which the learning rate rises linearly to
        ``lr``; 0 starts at ``lr``.
    seed : int
        Seed of the run's torch RNG, used by the first call.

    Attributes
    ----------
    lr : float or None
        Peak learning rate of the current call, set by :func:`train_one_pass`
        before every call, so that a ``set_params(lr=...)`` between calls
        takes effect.
    auto_lr : float or None
        What the estimator's ``lr="auto"`` resolved to in this run (once, on
        the rows of the first call made with it), or ``None`` before that.
    n_steps : int
        Training batches run so far.
    n_samples_seen : int
        Rows trained on so far.
    """

    def __init__(self, warmup_steps: int, seed: int):
        self.lr = None
        self.auto_lr = None
        self.warmup_steps = warmup_steps
        self.seed = seed
        self.n_steps = 0
        self.n_samples_seen = 0
        self.rng_states = None  # torch's CPU (and CUDA) RNG state at the end of the last call

    def lr_factor(self, step: int) -> float:
        """Multiplier of the peak learning rate at training batch ``step`` (counting from 0).

        ``fit``'s schedule over a run with no end: its cosine decay never
        starts, so the rate stays at its peak after the warmup.
        """
        return WarmupCosine(self.warmup_steps, math.inf)(step)

    def on_batch_begin(self, net, training=False, **kwargs):
        if not training:
            return
        lr = self.lr * self.lr_factor(self.n_steps)
        for group in net.optimizer_.param_groups:
            group["lr"] = lr
        net.history.record_batch("event_lr", lr)  # the same key as fit's schedule, for the same plots

    def on_batch_end(self, net, training=False, **kwargs):
        if training:
            self.n_steps += 1

    @contextlib.contextmanager
    def seeded(self, device: str):
        """A context with torch's RNG where the run left it (seeded on the first call); the caller's is restored."""
        cuda = [torch.device(device).index or 0] if torch.device(device).type == "cuda" else []
        with seeded_torch(device, self.seed):
            if self.rng_states is not None:
                torch.set_rng_state(self.rng_states[0])
                if cuda:
                    torch.cuda.set_rng_state(self.rng_states[1], cuda[0])
            yield
            self.rng_states = (torch.get_rng_state(),) + ((torch.cuda.get_rng_state(cuda[0]),) if cuda else ())


def start_run(spec: ModelSpec, settings: TrainingSettings, X: np.ndarray, *, lr: float, seed: int, device: str,
              fitted=None):
    """The initialised net of a new run of ``partial_fit`` calls, whose first call brings the rows ``X``.

    The run's length is unknown, so fractions of it (``warmup_steps``, a
    fractional ``anneal_steps``) are taken of the first call's batches. A new
    model starts ``pre_bias`` at the centre of ``X``; ``fitted`` (a net from
    ``fit`` or ``load``) gives its weights and history instead.
    """
    first_call_batches = math.ceil(X.shape[0] / settings.batch_size)
    run = IncrementalRun(resolve_steps(settings.warmup_steps, first_call_batches, minimum=0), seed)
    net = build_net(
        spec, settings, lr=lr, seed=seed, total_steps=first_call_batches, mode="incremental", schedule=run,
        strategy=SingleProcess(device),
    )
    with run.seeded(device):
        net.initialize()
        if fitted is None:
            rows = InMemoryRows(torch.from_numpy(np.array(X, dtype=np.float32, order="C", copy=True)))
            start_from_sample(net.module_, rows.sample(start_sample_rows(spec), seed).to(net.device),
                              settings.pre_bias_init)
    if fitted is not None:
        net.module_.load_state_dict(fitted.module_.state_dict())
        net.history = fitted.history
    return net


def incremental_run(net) -> IncrementalRun | None:
    """The run a net is in the middle of, or ``None`` for a net from ``fit`` or ``load``.

    Those have no optimizer state left (``release_training_state``), so a
    ``partial_fit`` after them starts a new run from their weights.
    """
    if net is None or getattr(net, "optimizer_", None) is None:
        return None
    run = dict(net.callbacks_).get("lr_schedule")
    return run if isinstance(run, IncrementalRun) else None


def train_one_pass(net, X: np.ndarray, *, lr, normalize: bool, device: str) -> None:
    """One pass of ``net`` over the float32 rows ``X`` at peak learning rate ``lr``, in the run's RNG.

    ``lr="auto"`` is resolved once a run, on the rows of the first call made
    with it (``normalize`` is the model's, and so is the activation that
    chooses the scale), and kept for the later calls.
    """
    run = incremental_run(net)
    # A private copy: the caller's block may be read-only or change after the call.
    rows = InMemoryRows(torch.from_numpy(np.array(X, dtype=np.float32, order="C", copy=True)))
    # The rows that measure this call: for lr="auto" on a run's first call, and for target_l0 at its end.
    sample = rows.sample(PRE_BIAS_SAMPLE_ROWS, run.seed)
    if lr == "auto":
        if run.auto_lr is None:
            run.auto_lr = resolve_lr("auto", sample.numpy(),
                                     normalize=normalize, whiten=net.module_.whiten,
                                     soft_start=starts_soft(net.module_.activation),
                                     batch_size=net.batch_size,
                                     n_latents=rate_dictionary_size(net.module_.activation, net.module_.n_latents,
                                                                    net.module_.prefixes))
        lr = run.auto_lr
    run.lr = float(lr)
    with run.seeded(device):
        net.partial_fit(rows, epochs=1)
    # Each call ends on target_l0 (JumpReLU), as a fit does, measured on this call's rows.
    reach_target_l0_(net.module_, sample, sample)
    run.n_samples_seen += len(rows)
