"""Incremental training: the machinery behind ``SparseAutoencoderTransformer.partial_fit``.

A run of ``partial_fit`` calls trains one skorch net, one pass over each call's rows. Everything that
must carry over from one call to the next lives in the module (weights, the Gumbel temperature step,
the dead-latent counters), in the net (Adam's moments, the history) or in one callback,
:class:`IncrementalRun`, which owns what skorch would otherwise reset on every call: the learning-rate
schedule's position, the torch RNG state of the run, and the row and batch counts. Because all of it is
in the net, a pickled net continues exactly where it stopped.

Nothing here knows about scikit-learn; the estimator builds the net and calls down into this module.
"""

from __future__ import annotations

import contextlib
import math

import numpy as np
import torch
from skorch.callbacks import Callback

from ._training import WarmupCosine

__all__ = ["IncrementalRun", "make_incremental", "incremental_run", "train_one_pass"]

_DROPPED_CALLBACKS = ("init_pre_bias", "early_stopping")
"""Callbacks of ``fit`` that a run of ``partial_fit`` calls must not have: skorch calls ``on_train_begin`` and
``on_train_end`` on every call, so the pre-bias would be re-estimated on every block and early stopping would
restore the weights of an earlier block."""


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
        cuda = [torch.device(device).index or 0] if device.startswith("cuda") else []
        with torch.random.fork_rng(devices=cuda):
            if self.rng_states is None:
                torch.manual_seed(self.seed)
            else:
                torch.set_rng_state(self.rng_states[0])
                if cuda:
                    torch.cuda.set_rng_state(self.rng_states[1], cuda[0])
            yield
            self.rng_states = (torch.get_rng_state(),) + ((torch.cuda.get_rng_state(cuda[0]),) if cuda else ())


def make_incremental(net, *, warmup_steps: int, seed: int) -> IncrementalRun:
    """Turn a net built for ``fit`` (not yet initialised) into one for a run of ``partial_fit`` calls.

    The run trains on every row it is given (no validation split), never stops
    early, and follows :class:`IncrementalRun`'s learning-rate schedule instead
    of ``fit``'s warmup and cosine decay, which needs the run's length.
    """
    run = IncrementalRun(warmup_steps, seed)
    callbacks = [
        (name, run if name == "lr_schedule" else callback)
        for name, callback in net.callbacks
        if name not in _DROPPED_CALLBACKS
    ]
    net.set_params(train_split=None, callbacks=callbacks)
    return run


def incremental_run(net) -> IncrementalRun | None:
    """The run a net is in the middle of, or ``None`` for a net from ``fit`` or ``load``.

    Those have no optimizer state left (``release_training_state``), so a
    ``partial_fit`` after them starts a new run from their weights.
    """
    if net is None or getattr(net, "optimizer_", None) is None:
        return None
    run = dict(net.callbacks_).get("lr_schedule")
    return run if isinstance(run, IncrementalRun) else None


def train_one_pass(net, X: np.ndarray, *, lr: float, device: str) -> None:
    """One pass of ``net`` over the float32 rows ``X`` at peak learning rate ``lr``, in the run's RNG."""
    run = incremental_run(net)
    run.lr = lr
    # A private copy: the caller's block may be read-only or change after the call.
    X_tensor = torch.from_numpy(np.array(X, dtype=np.float32, order="C", copy=True))
    with run.seeded(device):
        net.partial_fit(X_tensor, epochs=1)
    run.n_samples_seen += len(X_tensor)
