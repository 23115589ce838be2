"""Choosing the sparsity weight of a ReLU or JumpReLU autoencoder for a target sparsity.

A ReLU SAE's sparsity is whatever its L1 penalty leaves, which makes it hard
to compare with a Top-K SAE of a given ``k``: ``make demo``'s ReLU
(``l1_coef=1e-3``, ``normalize=False``) keeps about 270 latents a shipped
protein, not 64. A JumpReLU SAE is the same
with an L0 penalty, whose weight is its ``l1_coef`` too. :func:`calibrate_l1_coef`
searches for the ``l1_coef`` that gives a chosen mean L0 on held-out rows, so
ReLU, JumpReLU and Top-K models can be compared at equal sparsity.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from sklearn.base import clone

from . import metrics
from ._warnings import warn_user

__all__ = ["calibrate_l1_coef", "L1Calibration"]

CALIBRATED_ACTIVATIONS = ("relu", "jumprelu")
"""The activations whose L0 follows from ``l1_coef`` (the top-k ones take theirs from ``k``)."""

MIN_RESPONSE = 0.05
"""While widening the bracket, ten times the weight must lower the L0 by at least this fraction; otherwise the fits
are too short for the penalty to act (Adam moves each weight by about ``lr`` a step, however large the penalty's
gradient), and a larger weight would not help either."""


@dataclass
class L1Calibration:
    """What :func:`calibrate_l1_coef` found.

    Attributes
    ----------
    l1_coef : float
        The weight whose fitted model came closest to the target L0.
    l0 : float
        The mean L0 of that model on the rows it was measured on.
    estimator : SparseAutoencoderTransformer
        That fitted model.
    trials : list of (float, float)
        Every ``(l1_coef, l0)`` tried, in order.
    """

    l1_coef: float
    l0: float
    estimator: object
    trials: list = field(default_factory=list)


def calibrate_l1_coef(estimator, X, target_l0, *, X_val=None, bracket=(1e-4, 1.0), rtol=0.1, max_fits=8):
    """Find the ``l1_coef`` at which ``estimator`` reaches a mean L0 of ``target_l0``.

    ``l1_coef`` is the L1 weight of ``activation="relu"`` and the L0 weight
    of ``activation="jumprelu"``. L0 falls as the weight grows, so the
    search is a bisection on ``log(l1_coef)``: each step fits a clone of
    ``estimator`` with the midpoint weight and measures the mean number of
    non-zero codes per row of ``X_val``. The bracket is widened (by factors of 10) while it does not
    contain the target, as long as ten times the weight lowers the L0 by at
    least 5%. The search stops when the L0 is within ``rtol`` of the target,
    or after ``max_fits`` fits, returning the closest model seen; when that
    model's L0 is not within ``rtol`` of the target, a warning says so and
    what to change.

    Each step is a full fit: to save time, calibrate a cheaper estimator
    (fewer epochs) and refit at the weight found; L0 keeps falling slowly as
    training goes on, so check the final model's L0.

    Parameters
    ----------
    estimator : SparseAutoencoderTransformer
        Unfitted template with ``activation="relu"`` or ``"jumprelu"``;
        cloned for every fit, with only ``l1_coef`` changed.
    X : array-like of shape (n_samples, n_features)
        Training rows.
    target_l0 : float
        The mean number of active latents per row wanted, > 0.
    X_val : array-like of shape (n_val, n_features), default=None
        Rows on which L0 is measured; ``None`` measures on ``X``.
    bracket : tuple of float, default=(1e-4, 1.0)
        Initial ``(low, high)`` range of ``l1_coef``, both > 0.
    rtol : float, default=0.1
        Accepted relative distance between the L0 reached and the target.
    max_fits : int, default=8
        Upper bound on the number of fits.

    Returns
    -------
    L1Calibration
        The weight, its L0, its fitted model and every trial.

    Raises
    ------
    ValueError
        For an ``estimator`` with a top-k activation, whose L0 is ``k``
        whatever ``l1_coef`` is, and for an invalid bracket, target or number
        of fits.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae import SparseAutoencoderTransformer
    >>> from sklearn_sae.calibration import calibrate_l1_coef
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> template = SparseAutoencoderTransformer(32, activation="relu", max_epochs=3, random_state=0, device="cpu")
    >>> found = calibrate_l1_coef(template, X, target_l0=8, max_fits=4)
    >>> len(found.trials) <= 4
    True
    """
    activation = estimator.get_params().get("activation")
    if activation not in CALIBRATED_ACTIVATIONS:
        raise ValueError(
            f"calibrate_l1_coef searches the sparsity weight of activation='relu' or 'jumprelu'; "
            f"activation={activation!r} keeps k latents a row (on average, for 'batchtopk'), whatever l1_coef is. "
            "Set k to the L0 you want instead."
        )
    low, high = bracket
    if not 0 < low < high:
        raise ValueError(f"bracket must be (low, high) with 0 < low < high, got {bracket!r}.")
    if not target_l0 > 0:
        raise ValueError(f"target_l0 must be > 0, got {target_l0!r}.")
    if max_fits < 1:
        raise ValueError(f"max_fits must be at least 1, got {max_fits!r}.")
    X_val = X if X_val is None else X_val
    trials, best = [], None

    def fit_at(l1_coef):
        nonlocal best
        with warnings.catch_warnings():
            # Trials at deliberately large penalties silence most ReLU latents; that is the search
            # working, not a fit to warn the caller about. The chosen model's history_ still shows it.
            warnings.filterwarnings("ignore", message=r".*latents never fired", category=UserWarning)
            fitted = clone(estimator).set_params(l1_coef=l1_coef).fit(X)
        l0 = metrics.l0(fitted.transform(X_val))
        trials.append((l1_coef, l0))
        if best is None or abs(l0 - target_l0) < abs(best.l0 - target_l0):
            best = L1Calibration(l1_coef, l0, fitted, trials)
        return l0

    def close_enough(l0):
        return abs(l0 - target_l0) <= rtol * target_l0

    # Widen the bracket until L0(low) >= target >= L0(high), or the fits run out, or L0 stops responding.
    l0_high, unresponsive = fit_at(high), None
    while l0_high > target_l0 and not close_enough(l0_high) and len(trials) < max_fits:
        low, high = high, high * 10
        previous, l0_high = l0_high, fit_at(high)
        if l0_high > (1 - MIN_RESPONSE) * previous:
            unresponsive = (low, previous, high, l0_high)
            break
    if not (close_enough(l0_high) or l0_high > target_l0):
        while len(trials) < max_fits:
            middle = math.sqrt(low * high)
            l0 = fit_at(middle)
            if close_enough(l0):
                break
            low, high = (middle, high) if l0 > target_l0 else (low, middle)
    if not close_enough(best.l0):
        _warn_not_reached(best, target_l0, rtol, unresponsive)
    return best


def _warn_not_reached(best, target_l0, rtol, unresponsive) -> None:
    """Say that the search ended away from the target, and what would get it closer."""
    found = (f"calibrate_l1_coef did not reach target_l0={target_l0:g} within rtol={rtol:g}: the closest fit has "
             f"L0 {best.l0:.4g} at l1_coef={best.l1_coef:.4g} after {len(best.trials)} fits. ")
    if unresponsive is not None:
        low, l0_low, high, l0_high = unresponsive
        advice = (f"Ten times the weight barely moved the L0 (l1_coef={low:.3g}: {l0_low:.4g}, {high:.3g}: "
                  f"{l0_high:.4g}): the fits are too short for the penalty to act, since Adam moves each weight by "
                  "about lr a step however large the penalty. Give the template more epochs (max_epochs) or a larger "
                  "lr.")
    else:
        advice = "Raise max_fits, or widen bracket towards the weight the trials point to."
    warn_user(found + advice)
