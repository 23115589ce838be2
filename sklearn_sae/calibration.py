"""Choosing the sparsity weight of a ReLU or JumpReLU autoencoder for a target sparsity.

A ReLU SAE's sparsity is whatever its L1 penalty leaves, which makes it hard
to compare with a Top-K SAE of a given ``k``. A JumpReLU SAE is the same with
an L0 penalty (``l0_coef``). :func:`calibrate_l1_coef` searches for the
weight (``l1_coef`` for ReLU, ``l0_coef`` for JumpReLU) that gives a chosen
mean L0 on held-out rows, so ReLU, JumpReLU and Top-K models can be compared
at equal sparsity. (JumpReLU can also reach an L0 in one fit:
``target_l0``.)
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, field

from sklearn.base import clone

from . import metrics
from ._warnings import warn_user

__all__ = ["calibrate_l1_coef", "L1Calibration"]

CALIBRATED_PARAMETER = {"relu": "l1_coef", "jumprelu": "l0_coef"}
"""The activations whose L0 follows from a penalty weight, and that weight's parameter (the top-k ones take their
L0 from ``k``)."""

MIN_RESPONSE = 0.05
"""While widening the bracket upwards, ten times the weight must lower the L0 by at least this fraction; otherwise
the fits are too short for the penalty to act (Adam moves each weight by about ``lr`` a step, however large the
penalty's gradient), and a larger weight would not help either."""


@dataclass
class L1Calibration:
    """What :func:`calibrate_l1_coef` found.

    Attributes
    ----------
    coef : float
        The weight whose fitted model came closest to the target L0.
    l0 : float
        The mean L0 of that model on the rows it was measured on.
    estimator : SparseAutoencoderTransformer
        That fitted model.
    trials : list of (float, float)
        Every ``(coef, l0)`` tried, in order.
    parameter : {"l1_coef", "l0_coef"}
        The estimator parameter ``coef`` is a value of: ``"l1_coef"`` for
        ``"relu"``, ``"l0_coef"`` for ``"jumprelu"``.
    """

    coef: float
    l0: float
    estimator: object
    trials: list = field(default_factory=list)
    parameter: str = "l1_coef"

    @property
    def l1_coef(self) -> float:
        """Deprecated name of :attr:`coef` (it is ``l0_coef``'s value for JumpReLU)."""
        warnings.warn(
            "L1Calibration.l1_coef was renamed coef in 0.2 (for JumpReLU it is l0_coef's value); l1_coef stops "
            "working in 0.4. Read .coef, and .parameter for the parameter it sets.",
            FutureWarning, stacklevel=2,
        )
        return self.coef


def calibrate_l1_coef(estimator, X, target_l0, *, X_val=None, bracket=(1e-4, 1.0), rtol=0.1, max_fits=8):
    """Find the sparsity weight at which ``estimator`` reaches a mean L0 of ``target_l0``.

    The weight is ``l1_coef`` for ``activation="relu"`` and ``l0_coef`` for
    ``activation="jumprelu"``. L0 falls as the weight grows, so the search
    is a bisection on the weight's logarithm: each step fits a clone of
    ``estimator`` with the midpoint weight and measures the mean number of
    non-zero codes per row of ``X_val``. The bracket is first widened, by
    factors of 10 up or down, until it contains the target; upwards only as
    long as ten times the weight lowers the L0 by at least 5%. The search
    stops when the L0 is within ``rtol`` of the target, or after
    ``max_fits`` fits, returning the closest model seen, with a warning that
    says what to change if that one is not within ``rtol``.

    Each step is a full fit: to save time, calibrate a cheaper estimator
    (fewer epochs) and refit at the weight found; L0 keeps falling slowly as
    training goes on, so check the final model's L0.

    Parameters
    ----------
    estimator : SparseAutoencoderTransformer
        Unfitted template with ``activation="relu"`` or ``"jumprelu"``;
        cloned for every fit, with only the weight changed.
    X : array-like of shape (n_samples, n_features)
        Training rows.
    target_l0 : float
        The mean number of active latents per row wanted, > 0.
    X_val : array-like of shape (n_val, n_features), default=None
        Rows on which L0 is measured; ``None`` measures on ``X``.
    bracket : tuple of float, default=(1e-4, 1.0)
        Initial ``(low, high)`` range of the weight, both > 0.
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
        whatever the weight is, and for an invalid bracket, target or number
        of fits, or a target above ``n_latents``.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae import SparseAutoencoderTransformer
    >>> from sklearn_sae.calibration import calibrate_l1_coef
    >>> X = np.random.default_rng(0).normal(size=(300, 8)).astype(np.float32)
    >>> template = SparseAutoencoderTransformer(32, activation="relu", max_epochs=10, batch_size=32,
    ...                                         random_state=0, device="cpu")
    >>> found = calibrate_l1_coef(template, X, target_l0=8, max_fits=6)
    >>> found.parameter, abs(found.l0 - 8) <= 0.8, len(found.trials) <= 6
    ('l1_coef', True, True)
    """
    params = estimator.get_params()
    activation = params.get("activation")
    if activation not in CALIBRATED_PARAMETER:
        raise ValueError(
            f"calibrate_l1_coef searches the sparsity weight of activation='relu' or 'jumprelu'; "
            f"activation={activation!r} keeps k latents a row (on average, for 'batchtopk'), whatever its weight is. "
            "Set k to the L0 you want instead."
        )
    parameter = CALIBRATED_PARAMETER[activation]
    low, high = bracket
    if not 0 < low < high:
        raise ValueError(f"bracket must be (low, high) with 0 < low < high, got {bracket!r}.")
    if not target_l0 > 0:
        raise ValueError(f"target_l0 must be > 0, got {target_l0!r}.")
    if params.get("n_latents") is not None and target_l0 > params["n_latents"]:
        raise ValueError(
            f"target_l0={target_l0} is above n_latents={params['n_latents']}: no row can have more active latents "
            "than there are."
        )
    if max_fits < 1:
        raise ValueError(f"max_fits must be at least 1, got {max_fits!r}.")
    X_val = X if X_val is None else X_val
    trials, best = [], None
    # A JumpReLU template may still carry its L0 weight under its former name, l1_coef: clear it.
    fixed = {"l1_coef": None} if parameter == "l0_coef" else {}

    def fit_at(coef):
        nonlocal best
        with warnings.catch_warnings():
            # Trials at deliberately large penalties silence most ReLU latents; that is the search
            # working, not a fit to warn the caller about. The chosen model's history_ still shows it.
            warnings.filterwarnings("ignore", message=r".*latents never fired", category=UserWarning)
            fitted = clone(estimator).set_params(**fixed, **{parameter: coef}).fit(X)
        l0 = metrics.l0(fitted.transform(X_val))
        trials.append((coef, l0))
        if best is None or abs(l0 - target_l0) < abs(best.l0 - target_l0):
            best = L1Calibration(coef, l0, fitted, trials, parameter)
        return l0

    def close_enough(l0):
        return abs(l0 - target_l0) <= rtol * target_l0

    def fits_left():
        return len(trials) < max_fits

    # Widen the bracket until L0(low) >= target >= L0(high), up or down, or the fits run out, or L0 stops responding.
    l0_high, unresponsive = fit_at(high), None
    while l0_high > target_l0 and not close_enough(l0_high) and fits_left():
        low, high = high, high * 10
        previous, l0_high = l0_high, fit_at(high)
        if l0_high > (1 - MIN_RESPONSE) * previous:
            unresponsive = (low, previous, high, l0_high)
            break
    if not close_enough(l0_high) and l0_high < target_l0 and fits_left():
        l0_low = fit_at(low)
        while l0_low < target_l0 and not close_enough(l0_low) and fits_left():
            low, high = low / 10, low
            l0_low = fit_at(low)
    if not close_enough(best.l0) and min(l0 for _, l0 in trials) <= target_l0 <= max(l0 for _, l0 in trials):
        while fits_left():
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
    trials = ", ".join(f"{coef:.3g} -> {l0:.3g}" for coef, l0 in best.trials)
    found = (f"calibrate_l1_coef stopped at {best.parameter}={best.coef:.3g}, whose L0 is {best.l0:.4g}, not within "
             f"rtol={rtol:g} of target_l0={target_l0:g} after {len(best.trials)} fits (trials: {trials}). ")
    if unresponsive is not None:
        low, l0_low, high, l0_high = unresponsive
        advice = (f"Ten times the weight barely moved the L0 ({low:.3g}: {l0_low:.4g}, {high:.3g}: {l0_high:.4g}): "
                  "the fits are too short for the penalty to act, since Adam moves each weight by about lr a step "
                  "however large the penalty. Give the template more epochs (max_epochs) or a larger lr.")
    else:
        advice = "Raise max_fits, widen bracket towards the weight the trials point to, or train each fit longer."
    warn_user(found + advice)
