"""The automatic training length: a cosine schedule over a budget, cut short when the validation loss levels off.

``max_epochs="auto"`` gives a fit a budget of epochs (:func:`~sklearn_sae._defaults.default_max_epochs`) and lays
the warmup and cosine decay of the learning rate over it; early stopping (``n_iter_no_change``) may end the fit
sooner. Stopped in the middle of the cosine, a fit never lowers its rate, and the part of a schedule where the rate
falls is where the error drops most. So when the validation loss has not improved by a relative ``tol`` for
``n_iter_no_change`` epochs, the rate falls linearly from where it is to 0 over a fifth of the steps run so far,
and the fit stops there with the best epoch's weights. A fit that never levels off runs the whole cosine: on large
sets, holding the rate at its peak for longer than the cosine does killed latents.
"""

from __future__ import annotations

import copy
import math

from skorch.callbacks import EarlyStopping, LRScheduler

__all__ = ["WarmupCosine", "WarmupPlateauDecay", "DecayOnPlateau", "plateau_schedule"]


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


class WarmupPlateauDecay(WarmupCosine):
    """LR multiplier: linear warmup from 0 to 1, cosine decay to 0 at ``total_steps``, or a linear one from a plateau.

    Until :meth:`decay_from` is called this is :class:`WarmupCosine`; from the step it names the
    multiplier falls linearly from its value there to 0 over
    ``decay_fraction`` of the steps before it. The state is plain numbers
    in the instance's ``__dict__``, which
    ``torch.optim.lr_scheduler.LambdaLR`` saves in its ``state_dict``, so a
    checkpoint resumes it.

    Parameters
    ----------
    warmup_steps : int
        Optimiser steps of linear warmup.
    total_steps : int
        Optimiser steps of the whole budget.
    decay_fraction : float
        Length of a decay started at a plateau, as a fraction of the steps before it.
    """

    def __init__(self, warmup_steps: int, total_steps: int, decay_fraction: float):
        super().__init__(warmup_steps, total_steps)
        self.decay_fraction = decay_fraction
        self.decay_start = self.end_step = total_steps
        self.last_step = 0

    def __call__(self, step: int) -> float:
        # LambdaLR asks for the multiplier of the next step after each one: ``step`` is the number of steps done.
        self.last_step = step
        if step < self.decay_start:
            return super().__call__(step)
        remaining = max(self.end_step - step, 0) / max(self.end_step - self.decay_start, 1)
        return super().__call__(self.decay_start) * remaining

    @property
    def decaying(self) -> bool:
        """Whether a decay started at a plateau is under way (or has run out)."""
        return self.decay_start < self.total_steps and self.last_step >= self.decay_start

    @property
    def ended(self) -> bool:
        """Whether every step of the schedule has run (the rate has reached 0)."""
        return self.last_step >= self.end_step

    def decay_from(self, step: int) -> None:
        """Start the decay at ``step``, over ``decay_fraction`` of the steps so far, unless one has started."""
        if self.decaying or step >= self.end_step:
            return
        self.decay_start = step
        self.end_step = min(self.total_steps, step + max(1, round(self.decay_fraction * step)))


def plateau_schedule(net) -> WarmupPlateauDecay | None:
    """The :class:`WarmupPlateauDecay` of ``net``'s LR scheduler, or ``None`` when it runs another schedule."""
    for _, callback in net.callbacks_:
        scheduler = getattr(callback, "lr_scheduler_", None) if isinstance(callback, LRScheduler) else None
        lambdas = getattr(scheduler, "lr_lambdas", ())
        if lambdas and isinstance(lambdas[0], WarmupPlateauDecay):
            return lambdas[0]
    return None


class DecayOnPlateau(EarlyStopping):
    """Early stopping for :class:`WarmupPlateauDecay`: a plateau starts the decay, the decay's end stops the fit.

    As skorch's :class:`~skorch.callbacks.EarlyStopping` (patience counts
    the epochs without a relative fall of ``threshold``), with three
    differences. The weights restored at the end are those of the lowest
    loss, whether or not it fell by ``threshold``: the decay's epochs gain
    less than that each, and they are what the decay is for. The epochs up
    to ``start_epoch`` (those of the learning-rate warmup) are not scored:
    while the rate, Top-K's narrowing or JumpReLU's thresholds are still
    settling the loss may rise, and an early epoch kept as the best would
    end the fit with a model that has hardly trained. And running out of
    patience does not stop the fit but starts the decay; the fit stops when
    the decay has run out. ``misses_`` then equals ``patience``, which marks
    a checkpoint of the fit as finished.

    Parameters
    ----------
    start_epoch : int, default=0
        Epochs not scored.
    **kwargs
        Passed to :class:`~skorch.callbacks.EarlyStopping`.
    """

    def __init__(self, start_epoch: int = 0, **kwargs):
        super().__init__(**kwargs)
        self.start_epoch = start_epoch

    def on_epoch_end(self, net, **kwargs):
        schedule = plateau_schedule(net)
        if schedule is None:
            raise RuntimeError("DecayOnPlateau needs the net's learning rate to follow a WarmupPlateauDecay.")
        if len(net.history) > self.start_epoch:
            self._score(net, count_misses=not schedule.decaying)
        if self.misses_ >= self.patience and not schedule.decaying:
            self._sink(
                f"{self.monitor} has not improved by {self.threshold:g} (relative) in the last {self.patience} epochs: "
                f"decaying the learning rate to 0 from step {schedule.last_step}.", verbose=net.verbose,
            )
            schedule.decay_from(schedule.last_step)
            self.misses_ = 0
        if schedule.ended:
            self.misses_ = self.patience
            raise KeyboardInterrupt  # skorch ends the fit; on_train_end restores the best epoch

    def on_train_begin(self, net, **kwargs):
        super().on_train_begin(net, **kwargs)
        self.best_score_ = math.inf

    def _score(self, net, *, count_misses: bool) -> None:
        score = net.history[-1, self.monitor]
        if score < self.best_score_:
            self.best_score_ = score
            self.best_epoch_ = net.history[-1, "epoch"]
            if self.load_best:
                self.best_model_weights_ = copy.deepcopy(net.module_.state_dict())
        if not self._is_score_improved(score):
            self.misses_ += int(count_misses)
            return
        self.misses_ = 0
        self.dynamic_threshold_ = self._calc_new_threshold(score)
