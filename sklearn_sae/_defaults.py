"""Defaults that come from the data: the values ``"auto"`` and ``None`` resolve to at fit time.

Each rule is a small pure function of the data's shape and the estimator's
other settings, so that a default fit keeps its dictionary alive on
embeddings of any width and size, not only on the set a constant was tuned
on. ``benchmarks/bench_defaults.py`` measures them on protein embeddings of
two models at widths 256 and 1,900 and on synthetic protein-LM-like sets
(``benchmarks/README.md`` has the figures and the diagnosis behind each rule).
No torch, no sklearn.
"""

from __future__ import annotations

import math
from numbers import Integral

import numpy as np

from ._warnings import warn_user

__all__ = [
    "LATENTS_PER_FEATURE",
    "MIN_FIRINGS_PER_LATENT",
    "LR_SCALE",
    "SOFT_START_LR_SCALE",
    "REFERENCE_BATCH_SIZE",
    "REFERENCE_N_LATENTS",
    "MIN_RATE_N_LATENTS",
    "MIN_MEASURABLE_SPREAD",
    "MIN_TRAINING_STEPS",
    "MIN_TRAINING_EPOCHS",
    "AUTO_DECAY_FRACTION",
    "AUX_K_PER_K",
    "K_START_PER_K",
    "DEAD_WINDOW_PER_INTERVAL",
    "DEAD_WARNING_FRACTION",
    "RELU_L1_COEF",
    "default_n_latents",
    "resolve_lr",
    "resolve_max_epochs",
    "resolve_steps",
    "default_lr",
    "encoder_input_spread",
    "default_max_epochs",
    "default_n_iter_no_change",
    "default_aux_k",
    "default_k_start",
    "default_dead_window",
]

LATENTS_PER_FEATURE = 4
"""At most this many latents per input feature (``benchmarks/sweep_defaults.py``: on the shipped proteins
4x matched 8x and 16x in validation NMSE with fewer dead latents)."""

MIN_FIRINGS_PER_LATENT = 128
"""A default dictionary is no larger than lets each latent fire on this many training rows an epoch on average
(``n_train * k / n_latents``): on 2,016 UniRep-1,900 rows, 1,024 latents stayed alive where 2,016 lost 11% on
held-out rows. 128 rather than 64 (half the latents on small sets) lowered the held-out FVU of every small set of
``benchmarks/bench_defaults.py`` (Top-K, 3 seeds, early stopping): 1,000 NEAR proteins 0.099 -> 0.083, UniRep-256
0.053 -> 0.046, UniRep-1,900 0.094 -> 0.088 (seed 0), synthetic 1,024- and 2,560-wide sets by 6%; with every latent
still alive. Sets of 10,000 rows and more are not capped at the default ``4 * n_features``."""

LR_SCALE = 0.12
"""``lr="auto"`` is ``LR_SCALE * min(spread, 1) / sqrt(n_features)`` (:func:`default_lr`): 6.1e-3 on the shipped
NEAR proteins, 1.0e-3 on UniRep-256 and 2.0e-3 on UniRep-1,900 vectors of the same proteins."""

SOFT_START_LR_SCALE = 0.2
"""``LR_SCALE`` for a top-k activation whose training starts soft: Gumbel-Top-K's noisy selection, or Top-K's wider
``k_start``. The start decides which latents survive the rate's peak, and a soft one keeps them alive at a rate that
kills those of a hard start: on all the shipped proteins (3 seeds) Top-K from ``k`` at 1e-2 left 11% of its latents
silent on the training rows and 27% on held-out rows, Gumbel-Top-K 0-0.2% and 1.3-1.7% at a held-out FVU of 0.029
(0.038 at 6.1e-3). 1.65 times ``LR_SCALE`` met the dead-latent targets of ``benchmarks/bench_defaults.py`` on every
set for both soft starts, and lowered the held-out FVU on each (``benchmarks/README.md``, "A higher rate for
Gumbel-Top-K" and "Top-K that starts wider"); 2.5 times it did not."""

REFERENCE_BATCH_SIZE = 256
"""The batch size ``LR_SCALE`` and ``SOFT_START_LR_SCALE`` were measured at (the default); ``lr="auto"`` is lowered by
``sqrt(batch_size / REFERENCE_BATCH_SIZE)`` for smaller batches. Adam's step has the same size at any batch, so a
smaller batch takes more steps, each on a noisier gradient: on 2,016 UniRep-1,900 rows with 1,024 latents, batches of
32 at the rates of batches of 256 left 72% of the latents dead (soft start) and 6.2% (hard start); lowered by
sqrt(32 / 256) every latent stayed alive, at a held-out FVU of 0.091 and 0.098 (``benchmarks/README.md``, "Smaller
batches"). Larger batches keep the reference rate."""

REFERENCE_N_LATENTS = 1024
"""The dictionary size ``LR_SCALE`` and ``SOFT_START_LR_SCALE`` were measured at (all the shipped proteins, 1,024
latents). A Top-K dictionary smaller than this takes ``sqrt(REFERENCE_N_LATENTS / n_latents)`` times the rate, as
EleutherAI's sparsify sets its Top-K default (``2e-4 / sqrt(n_latents / 2**14)``, after OpenAI's scaling of the rate
with the dictionary's size): each latent of a small dictionary fires on more rows a batch, and at the reference rate
the small Top-K dictionaries of ``benchmarks/bench_defaults.py`` (126-504 latents) were still improving when the
plateau rule ended their fits. Raised, Top-K reached a lower held-out FVU on each of the seven small sets (0.6-11%
lower, 3-5 seeds) in 2-25% fewer epochs, with at most 0.6% of the latents silent on held-out rows
(``benchmarks/README.md``, "A faster rate for small Top-K dictionaries"). Larger dictionaries keep the reference
rate: all the NEAR proteins, at 1,024 latents, are where a higher rate killed latents. The other activations keep it
at every size, measured: Matryoshka BatchTopK lost up to 5.3% of its latents on the training rows of the
2,000-protein NEAR subset (0.4% before), Gumbel-Top-K up to 1.8% on UniRep-1,900 (none before), BatchTopK's FVU rose
4% on the NEAR subset, and JumpReLU's ``target_l0`` missed its target by 15% on a 64-latent toy set at 1.4 times the
rate."""

MIN_RATE_N_LATENTS = 128
"""... and no further than ``sqrt(REFERENCE_N_LATENTS / MIN_RATE_N_LATENTS)`` (2.8x): the smallest dictionary
measured had 126 latents."""

MIN_MEASURABLE_SPREAD = 1e-6
"""A spread at most this (one row, or rows that are all the same after standardisation) says nothing about the data:
``lr="auto"`` then assumes spread 1 and warns, instead of resolving to a rate of 0 that never trains."""

MIN_TRAINING_STEPS = 3_000
"""``max_epochs="auto"`` trains for at least this many optimizer steps: 2,000 proteins give 8 batches an epoch,
and 20 epochs of them (160 steps) left a small learning rate far from converged."""

MIN_TRAINING_EPOCHS = 10
"""... and at least this many epochs, so large data sets still see every row several times."""

AUTO_PATIENCE_EPOCHS = 10
"""``n_iter_no_change="auto"`` with ``max_epochs="auto"``: once the validation loss has not fallen by ``tol`` for this
many epochs, decay the rate to 0 and stop (:data:`AUTO_DECAY_FRACTION`), and keep the best weights. The 3,000 steps
are a budget for data that needs them; 1,000 rows reach it only after 750 epochs, where a JumpReLU dictionary
memorised its rows (held-out FVU 0.09 after 136 epochs, 0.45 after 750) and Top-K gained nothing (held-out FVU
0.0975 after 86 epochs against 0.0971 after 750)."""

AUTO_DECAY_FRACTION = 0.2
"""With ``max_epochs="auto"``, once the validation loss stops improving (``n_iter_no_change``, ``tol``) the learning
rate falls linearly from where the cosine over the budget has it to 0 over this fraction of the steps run so far, and
the fit ends there; see :mod:`sklearn_sae._plateau`."""

K_START_PER_K = 4
"""``k_start="auto"`` (with ``lr="auto"``): Top-K keeps ``4 * k`` latents a row at the first training batch and
narrows to ``k`` over the learning-rate warmup. On all the shipped proteins (seed 0, the rate of a hard start) 4k
kept every latent alive on held-out rows at a held-out FVU of 0.0332, 8k too at 0.0352, where starting from k left
2.0% silent at 0.0345 (``benchmarks/README.md``, "Top-K that starts wider")."""

AUX_K_PER_K = 8
"""``aux_k="auto"`` lets ``8 * k`` dead latents reconstruct the residual (OpenAI used 512 at k=32; 256 kept more
latents alive than 64 on the UniRep vectors)."""

AUXK_COEF = 1 / 32
"""``aux_coef="auto"`` for the top-k activations: OpenAI's AuxK weight."""

PRE_ACT_COEF = 0.003
"""``pre_act_coef="auto"`` for ``"jumprelu"``, the weight of the dead latents' pre-activation term. On the shipped
proteins (1,024 latents, ``l1_coef=1e-3``, 10 epochs) 0.003, 0.01 and 1/32 all kept every latent alive (74% dead
without it), at test L0 29.2, 30.8 and 39.6 (FVU 0.0489, 0.0467, 0.0401): the smallest weight moves the L0 that
``l1_coef`` sets the least."""

DEAD_WINDOW_PER_INTERVAL = 20
"""``dead_window="auto"``: a latent is dead for AuxK once it has not fired for 20 times the rows an average
latent waits between firings (``n_latents / k``), OpenAI's ratio (10M tokens at 16M latents and k=32). Longer
windows (256 intervals, half an epoch) lowered the held-out FVU on the shipped proteins by 4-6% but left 3-5% of the
latents silent on held-out rows there, 15-21% on a synthetic set, and 5.5% on the test proteins of ``make demo``
(``benchmarks/README.md``, "The AuxK window")."""

RELU_L1_COEF = 5e-3
"""``l1_coef=None`` for ``"relu"``: the weight of the L1 term ``||h||_1 / ||x_norm||``, which divides by the norm of
the row the encoder takes, so one weight means the same on embeddings of any scale. The NMSE beside it still
depends on how far the rows sit from the origin (rows sharing a large offset have a small NMSE for the same fit), so
the weight must leave room for such sets: 5e-3 kept every latent alive on the fitted and held-out rows of the shipped
proteins (1,000 and 15,259 fitted) and of two synthetic protein-LM-like sets (1,024 and 1,280 wide, offset 7x their
spread), at an L0 of 155 (shipped) and 280 (synthetic) of 1,024 to 5,120 latents; 1e-2 left 4-5% of the latents
silent on the fitted synthetic rows, 3e-2 a third (``benchmarks/README.md``, "ReLU's default penalty"). For a target
L0, :func:`~sklearn_sae.calibration.calibrate_l1_coef` searches the weight."""

DEAD_WARNING_FRACTION = 0.10
"""A fit whose last epoch left more than this fraction of latents dead on its training rows warns."""


def default_n_latents(n_features: int, *, k: int, n_train: int | None, capped: bool) -> int:
    """Number of latents when ``n_latents=None``.

    ``LATENTS_PER_FEATURE * n_features``, and with ``capped`` (every
    activation but ReLU, whose L1 penalty leaves dense codes) no more than
    lets an average latent fire on :data:`MIN_FIRINGS_PER_LATENT` training
    rows an epoch (``n_train * k / n_latents``, ``k`` being the L0 to expect:
    JumpReLU's is set by its penalty, near ``k`` once calibrated), and never
    below ``k``. ``n_train=None`` (rows not known in advance, as in
    ``partial_fit``) skips the cap.
    """
    n_latents = LATENTS_PER_FEATURE * n_features
    if not capped:
        return max(n_latents, 1)
    if n_train is not None:
        n_latents = min(n_latents, n_train * k // MIN_FIRINGS_PER_LATENT)
    return max(n_latents, k)


def default_k_start(k: int, n_latents: int) -> int:
    """Latents Top-K keeps per row at the first training batch when ``k_start="auto"``: ``K_START_PER_K * k``, at
    most ``n_latents``."""
    return min(K_START_PER_K * k, n_latents)


def encoder_input_spread(rows: np.ndarray, *, normalize: bool) -> float:
    """Root-mean-square distance of the encoder's input rows from their mean, per dimension.

    With ``normalize=True`` the rows are first standardised as the model
    does, so every row has norm ``sqrt(n_features)`` and the spread is
    ``sqrt(1 - ||mean row||^2 / n_features)``: 1 when the rows share no
    common direction, near 0 when one direction dominates them all (0.82 on
    the shipped NEAR proteins, 0.14 on UniRep-256 vectors of the same
    proteins). ``rows`` is a sample of at least two rows.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if normalize:
        centred_rows = rows - rows.mean(axis=1, keepdims=True)
        rows = centred_rows / np.sqrt(centred_rows.var(axis=1, keepdims=True) + 1e-5)  # the model's layer norm
    deviations = rows - rows.mean(axis=0)
    return float(np.sqrt(np.mean(np.sum(deviations**2, axis=1)) / rows.shape[1]))


def default_lr(
    n_features: int, spread: float = 1.0, *, soft_start: bool = False, batch_size: int = REFERENCE_BATCH_SIZE,
    n_latents: int | None = None,
) -> float:
    """Peak learning rate when ``lr="auto"``: ``LR_SCALE * min(spread, 1) / sqrt(n_features)``.

    A soft start (``soft_start=True``: Gumbel-Top-K, or Top-K narrowing from
    ``k_start``) takes :data:`SOFT_START_LR_SCALE` instead of :data:`LR_SCALE`.
    Batches smaller than :data:`REFERENCE_BATCH_SIZE` multiply the rate by
    ``sqrt(batch_size / REFERENCE_BATCH_SIZE)``. ``n_latents``, the size of a
    Top-K dictionary (``None`` for the other activations), multiplies it by
    ``sqrt(REFERENCE_N_LATENTS / n_latents)`` below :data:`REFERENCE_N_LATENTS`
    (at most that of :data:`MIN_RATE_N_LATENTS` latents).

    Adam moves every weight by about ``lr`` a step, whatever its gradient's
    size. A unit-norm encoder row of width ``d`` then moves by about
    ``lr * sqrt(d)``, so one rate that suits width 256 is 2.7x more violent
    at width 1,900 (a fixed 1e-2 left 95% of the latents dead on UniRep
    vectors of width 1,900). The biases move by ``lr`` against
    pre-activations whose size is the data's ``spread`` (see
    :func:`encoder_input_spread`), so rows that share one large common
    direction need a smaller rate: on the two 256-wide sets of the benchmark
    5e-3 kept the NEAR proteins' dictionary alive (spread 0.82) and killed
    5-10% of the UniRep-256 one (spread 0.14). ``spread`` is capped at 1 so
    that unnormalised data of a large scale cannot raise the rate beyond what
    the encoder rows bear.
    """
    scale = SOFT_START_LR_SCALE if soft_start else LR_SCALE
    batch_factor = math.sqrt(min(batch_size, REFERENCE_BATCH_SIZE) / REFERENCE_BATCH_SIZE)
    dictionary_factor = 1.0
    if n_latents is not None:
        measured_latents = min(max(n_latents, MIN_RATE_N_LATENTS), REFERENCE_N_LATENTS)
        dictionary_factor = math.sqrt(REFERENCE_N_LATENTS / measured_latents)
    return scale * min(spread, 1.0) * batch_factor * dictionary_factor / math.sqrt(n_features)


def default_max_epochs(batches_per_epoch: int) -> int:
    """Epochs when ``max_epochs="auto"``: at least :data:`MIN_TRAINING_STEPS` steps and :data:`MIN_TRAINING_EPOCHS`."""
    return max(MIN_TRAINING_EPOCHS, math.ceil(MIN_TRAINING_STEPS / max(batches_per_epoch, 1)))


def default_aux_k(k: int, n_latents: int) -> int:
    """Dead latents in the AuxK term when ``aux_k="auto"`` (top-k activations; JumpReLU's term takes every one)."""
    return min(AUX_K_PER_K * k, n_latents)


def default_n_iter_no_change(max_epochs) -> int | None:
    """Early-stopping patience when ``n_iter_no_change="auto"``: :data:`AUTO_PATIENCE_EPOCHS` for an automatic
    training length, None (train for exactly ``max_epochs``) when the length was chosen."""
    return AUTO_PATIENCE_EPOCHS if max_epochs == "auto" else None


def default_dead_window(k: int, n_latents: int) -> int:
    """Training rows without firing after which a latent counts as dead, when ``dead_window="auto"``."""
    return max(1, math.ceil(DEAD_WINDOW_PER_INTERVAL * n_latents / k))


def resolve_lr(
    lr, sample, *, normalize: bool, soft_start: bool, batch_size: int, n_latents: int | None, whiten: bool = False
) -> float:
    """The peak learning rate: ``lr``, or for ``"auto"`` one scaled to the width and spread of ``sample``'s rows.

    ``soft_start`` chooses the scale, ``batch_size`` lowers it for small batches and ``n_latents`` (a Top-K
    dictionary's size, else ``None``) raises it for small dictionaries (:func:`default_lr`).
    Whitened rows (``whiten=True``) have spread 1 by construction.

    A sample with no measurable spread (one row, or identical rows) would
    give a rate of 0 and a model that never trains: it is taken as spread 1,
    with a warning.
    """
    if lr != "auto":
        return float(lr)
    sample = np.asarray(sample)
    n_rows, n_features = sample.shape
    if whiten:
        return default_lr(n_features, 1.0, soft_start=soft_start, batch_size=batch_size, n_latents=n_latents)
    measured = encoder_input_spread(sample, normalize=normalize) if n_rows >= 2 else 0.0
    spread = measured if measured > MIN_MEASURABLE_SPREAD else 1.0
    rate = default_lr(n_features, spread, soft_start=soft_start, batch_size=batch_size, n_latents=n_latents)
    if spread != measured:
        warn_user(
            f"lr='auto' scales the learning rate to the spread of the rows, and "
            f"{'a single row has' if n_rows == 1 else f'these {n_rows} rows have'} none "
            f"(spread {measured:.3g}); it assumes spread 1, lr={rate:.3g}. Pass lr explicitly, or start with rows "
            "that vary (partial_fit resolves lr='auto' on its first call's rows)."
        )
    return rate


def resolve_max_epochs(max_epochs, steps_per_epoch: int) -> int:
    """Epochs of a fit: ``max_epochs``, or for ``"auto"`` enough for a minimum number of optimizer steps."""
    return default_max_epochs(steps_per_epoch) if max_epochs == "auto" else int(max_epochs)


def resolve_steps(value, total_steps: int, *, minimum: int) -> int:
    """A schedule length given as batches (int) or as a fraction of the run's ``total_steps`` (float)."""
    if isinstance(value, Integral):
        return int(value)
    return max(minimum, round(value * total_steps))
