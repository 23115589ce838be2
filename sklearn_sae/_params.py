"""What the estimator's parameters mean, below the sklearn face.

The parameter constraints, and the two values a parameter dict resolves to:
a :class:`~sklearn_sae._model.ModelSpec` (what the model computes, once the
data's width is known) and :class:`TrainingSettings` (how it is trained).
The estimator, saved-model reading and imports from other libraries all
resolve parameters here, so none of them needs the estimator class.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from numbers import Integral, Real

from sklearn.utils._param_validation import Interval, RealNotInt, StrOptions, validate_parameter_constraints

from ._activations import GUMBEL_CANDIDATES
from ._defaults import (
    AUXK_COEF,
    PRE_ACT_COEF,
    RELU_L1_COEF,
    default_aux_k,
    default_dead_window,
    default_k_start,
    default_n_iter_no_change,
    default_n_latents,
)
from ._model import ModelSpec
from ._precision import resolve_amp
from ._warnings import warn_user

__all__ = [
    "PARAMETER_CONSTRAINTS",
    "ANNEAL_FRACTION",
    "WARMUP_TAU_START",
    "DEFAULT_L1_COEF",
    "ESTIMATOR_NAME",
    "MODEL_PARAMS",
    "OUTPUT_PARAMS",
    "TrainingSettings",
    "changed_params",
    "check_params",
    "resolve_n_latents",
    "resolve_k_start",
    "resolve_gumbel_start",
    "matryoshka_prefixes",
    "prefix_sizes",
    "model_spec",
    "training_settings",
    "renamed_params",
    "check_activation_params",
    "expected_l0",
]

ESTIMATOR_NAME = "SparseAutoencoderTransformer"

ANNEAL_FRACTION = 0.005
"""``anneal_steps="auto"`` with an explicit ``lr``: the Gumbel noise acts over the first 0.5% of the fit's batches
(benchmarks/bench_gumbel.py: short, early noise revives the latents that Top-K leaves dead from the
start; a longer noisy phase from a temperature of 1 drifts the latent bias down and kills them instead)."""

WARMUP_TAU_START = 0.3
"""``tau_start="auto"`` with ``lr="auto"``, whose noise then lasts the learning-rate warmup (``anneal_steps="auto"``).
At the soft-start rate of ``lr="auto"`` (5/3 of a hard start's) the 0.5% start from 1 left 2.9-3.7% of the latents
silent on the test proteins of the design card's call (``k=64``); 5% from 1 kept them alive but raised the held-out
FVU of all the NEAR proteins at ``k=32`` by a third; 5% from 0.3 did neither (benchmarks/README.md, "k_start for
BatchTopK and Matryoshka, and the design card's Gumbel call")."""

DEFAULT_L1_COEF = {"relu": RELU_L1_COEF, "topk": 0.0, "gumbel_topk": 0.0, "batchtopk": 0.0, "jumprelu": 0.0}
"""``l1_coef=None`` means this: ReLU needs the penalty to be sparse, Top-K does not, JumpReLU has its L0 one."""

DEFAULT_L0_COEF = 1e-3
"""``l0_coef=None`` for ``"jumprelu"`` without ``target_l0``: the weight of its L0 penalty."""

DEFAULT_TARGET_L0_COEF = 1e-3
"""``l0_coef=None`` for ``"jumprelu"`` with ``target_l0``: the weight of its quadratic pull towards the target."""

DEPRECATED_SINCE, REMOVED_IN = "0.2", "0.4"
"""The releases of the deprecation cycle of the parameter meanings :func:`renamed_params` moves."""

PARAMETER_CONSTRAINTS: dict = {
    "n_latents": [Interval(Integral, 1, None, closed="left"), None],
    "activation": [StrOptions({"relu", "topk", "gumbel_topk", "batchtopk", "jumprelu"})],
    "k": [Interval(Integral, 1, None, closed="left")],
    "k_start": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "l1_coef": [Interval(Real, 0, None, closed="left"), None],
    "l0_coef": [Interval(Real, 0, None, closed="left"), None],
    "target_l0": [Interval(Integral, 1, None, closed="left"), None],
    "normalize": ["boolean"],
    "whiten": ["boolean"],
    "tied": ["boolean"],
    "pre_bias_init": [StrOptions({"geometric_median", "mean", "zeros"})],
    "unit_norm_decoder": ["boolean"],
    "aux_k": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "aux_coef": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    "pre_act_coef": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"}), None],
    "dead_window": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "tau_start": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "tau_end": [Interval(Real, 0, None, closed="neither")],
    "anneal_steps": [
        Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="right"), StrOptions({"auto"})
    ],
    "gumbel_candidates": [StrOptions(set(GUMBEL_CANDIDATES))],
    "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "warmup_steps": [Interval(Integral, 0, None, closed="left"), Interval(RealNotInt, 0, 1, closed="left")],
    "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "tol": [Interval(Real, 0, None, closed="left")],
    "amp": ["boolean", StrOptions({"auto"})],
    "device": [str],
    "sparse_output": ["boolean"],
    "random_state": ["random_state"],
    "verbose": ["verbose"],
    "checkpoint_dir": [str, os.PathLike, None],
    "distributed": ["boolean"],
    "matryoshka": ["array-like", None],
}
"""The estimator's ``_parameter_constraints``: every parameter, checked by sklearn's validation."""


MODEL_PARAMS = frozenset({
    "n_latents", "activation", "k", "k_start", "normalize", "whiten", "tied", "aux_k", "dead_window", "tau_start",
    "tau_end", "anneal_steps", "gumbel_candidates", "matryoshka", "target_l0", "pre_act_coef",
})
"""The parameters :func:`model_spec` reads: what a fitted model computes and keeps (its shapes, activation and
schedules). After a fit they are the fitted model's, whatever ``set_params`` does, until the next ``fit``."""

OUTPUT_PARAMS = frozenset({"sparse_output", "verbose", "device", "checkpoint_dir", "distributed"})
"""The parameters that say how results are delivered or where work runs, not what the model computes: a fitted
model reads them when it is used, so ``set_params`` changes them at once."""


def changed_params(fitted: dict, current: dict, names) -> dict:
    """``{name: (fitted value, current value)}`` for each of ``names`` whose value differs between the two dicts.

    Values are compared as the estimator uses them: a sequence or array (``matryoshka``) by its items,
    anything else by ``==``, and objects that do not compare to a bool (a ``RandomState``) by identity.
    """
    return {name: (fitted[name], current[name]) for name in sorted(names) if not _same(fitted[name], current[name])}


def _same(a, b) -> bool:
    if a is b:
        return True
    if hasattr(a, "__len__") and hasattr(b, "__len__") and not isinstance(a, str) and not isinstance(b, str):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    try:
        return bool(a == b)
    except (TypeError, ValueError):
        return False


def check_params(params: dict) -> None:
    """Check every parameter as ``fit`` does (sklearn's ``InvalidParameterError``, a ``ValueError``, if one fails)."""
    validate_parameter_constraints(PARAMETER_CONSTRAINTS, params, caller_name=ESTIMATOR_NAME)


def renamed_params(params: dict, *, warn: bool) -> dict:
    """``params`` with the meanings JumpReLU used to give other parameters moved to their own names.

    For ``activation="jumprelu"``, ``l1_coef`` used to weigh the L0 penalty (now ``l0_coef``), and ``aux_k=None``
    and ``aux_coef`` turned off and weighed its pre-activation term against dead latents (now ``pre_act_coef``).
    Those uses keep working until release 0.4: the values move to the new names, with a ``FutureWarning`` when
    ``warn`` (fit and partial_fit warn; reading a saved model, whose file may predate the new names, does not).
    Giving both the old and the new name is a ``ValueError``.
    """
    if params["activation"] != "jumprelu":
        return params
    params = dict(params)
    moves = []
    if params["l1_coef"] is not None:
        _refuse_both(params, "l1_coef", "l0_coef", None)
        params["l0_coef"], params["l1_coef"] = params["l1_coef"], None
        moves.append(f"l1_coef={params['l0_coef']!r} -> l0_coef={params['l0_coef']!r}")
    if params["aux_k"] is None:
        _refuse_both(params, "aux_k", "pre_act_coef", "auto")
        params["pre_act_coef"], params["aux_k"] = None, "auto"
        moves.append("aux_k=None -> pre_act_coef=None")
    if params["aux_coef"] != "auto":
        if params["pre_act_coef"] is not None:  # aux_k=None above turned the term off: its weight does not matter
            _refuse_both(params, "aux_coef", "pre_act_coef", "auto")
            params["pre_act_coef"] = params["aux_coef"]
        moves.append(f"aux_coef={params['aux_coef']!r} -> pre_act_coef={params['pre_act_coef']!r}")
        params["aux_coef"] = "auto"
    if moves and warn:
        warn_user(
            f"For activation='jumprelu', {', '.join(moves)}: these parameters used to set JumpReLU's L0 penalty and "
            f"its term against dead latents, which have their own names since {DEPRECATED_SINCE}; the old use stops "
            f"working in {REMOVED_IN}. Pass the new names (l1_coef and aux_k / aux_coef now mean the L1 penalty and "
            "AuxK only).",
            FutureWarning,
        )
    return params


def _refuse_both(params: dict, old: str, new: str, new_default) -> None:
    if params[new] != new_default:
        raise ValueError(
            f"activation='jumprelu' got both {old}={params[old]!r} (its former name for this setting) and "
            f"{new}={params[new]!r}. Pass {new} only."
        )


def check_activation_params(params: dict) -> None:
    """Refuse the parameters that only one activation reads when another is chosen (they would be ignored)."""
    activation = params["activation"]
    if activation == "jumprelu":
        return
    jumprelu_only = {"l0_coef": None, "target_l0": None, "pre_act_coef": "auto"}
    given = [name for name, default in jumprelu_only.items() if params[name] != default]
    if given:
        hint = " (the top-k activations take their L0 from k)" if "target_l0" in given else ""
        raise ValueError(
            f"{', '.join(given)} apply to activation='jumprelu' only, not to activation={activation!r}{hint}. "
            f"Leave {' and '.join(given)} at the default, or choose activation='jumprelu'."
        )


def expected_l0(params: dict) -> int:
    """The L0 a fit is sized for (the default dictionary, the dead window): ``target_l0`` if set, else ``k``."""
    return int(params["target_l0"]) if params["target_l0"] is not None else int(params["k"])


def resolve_n_latents(params: dict, n_features: int, *, n_train: int | None = None) -> int:
    """``n_latents``, its default filled in from the data's shape, checked against ``k``; ``aux_k`` checked too.

    ``n_train`` is the number of training rows when known (``fit``), which caps the default.
    """
    sparse_codes = params["activation"] not in ("relu", "jumprelu")  # k bounds the top-k activations only
    n_latents = params["n_latents"]
    if n_latents is None:
        capped = params["activation"] != "relu"  # JumpReLU's dictionary starves on few rows as the top-k ones do
        n_latents = default_n_latents(n_features, k=expected_l0(params), n_train=n_train, capped=capped)
    if params["target_l0"] is not None and params["target_l0"] > n_latents:
        raise ValueError(
            f"target_l0={params['target_l0']} is larger than n_latents={n_latents}: a row cannot have more active "
            "latents than there are. Lower target_l0 or raise n_latents."
        )
    if sparse_codes and params["k"] > n_latents:
        raise ValueError(
            f"k={params['k']} is larger than n_latents={n_latents}: a row cannot have more non-zeros than there are "
            "latents. Lower k or raise n_latents."
        )
    if isinstance(params["aux_k"], Integral) and not sparse_codes:
        leave = (
            "leave aux_k='auto' for activation='jumprelu' (its own term against dead latents, which takes every dead "
            "latent, is weighed by pre_act_coef)" if params["activation"] == "jumprelu"
            else f"set aux_k=None for activation={params['activation']!r}"
        )
        raise ValueError(f"An integer aux_k applies to the top-k activations only; {leave}.")
    return int(n_latents)


def resolve_k_start(params: dict, n_latents: int) -> int | None:
    """Latents Top-K keeps per row at the first training batch, or ``None`` when it keeps ``k`` throughout.

    ``"auto"`` is :func:`~sklearn_sae._defaults.default_k_start` for ``"topk"`` with ``lr="auto"``, and
    ``None`` for an explicit ``lr`` and for the other activations; an integer is checked against ``k`` and
    ``n_latents``, and refused for the other activations.
    """
    k_start, activation, k = params["k_start"], params["activation"], int(params["k"])
    if k_start is None:
        return None
    if activation not in ("topk", "batchtopk") or (k_start == "auto" and activation != "topk"):
        if k_start == "auto":  # BatchTopK narrows only when asked: "auto" has not been measured to win there
            return None
        raise ValueError(
            f"k_start applies to activation='topk' and 'batchtopk' only; set k_start=None (or 'auto') for "
            f"activation={activation!r}."
        )
    no_warmup = params["warmup_steps"] == 0  # the narrowing runs over the warmup: without one there is none
    if k_start == "auto":
        # One recipe with lr="auto", which gives the soft start its higher rate; at a rate the user chose, a
        # wider start only cost FVU where it was measured (make demo's 1e-3).
        return default_k_start(k, n_latents) if params["lr"] == "auto" and not no_warmup else None
    if no_warmup:
        raise ValueError(
            f"k_start={k_start} narrows to k over the learning-rate warmup, and warmup_steps=0 gives none. Set "
            "warmup_steps above 0, or k_start=None to keep k from the first batch."
        )
    if not k <= k_start <= n_latents:
        raise ValueError(
            f"k_start={k_start} must lie between k={k} and n_latents={n_latents}: training starts by keeping "
            "k_start latents a row and narrows to k."
        )
    return int(k_start)


def resolve_gumbel_start(params: dict) -> tuple[float, int | float]:
    """Gumbel-Top-K's ``tau_start`` and ``anneal_steps`` (a fraction until a fit resolves it), ``"auto"`` resolved.

    With ``lr="auto"`` and a warmup, ``"auto"`` anneals from a temperature of :data:`WARMUP_TAU_START` over the
    learning-rate warmup (``warmup_steps``), as long as Top-K's narrowing from ``k_start`` under the same soft-start
    rate; otherwise from 1 over :data:`ANNEAL_FRACTION` of the batches.
    """
    over_warmup = params["lr"] == "auto" and params["warmup_steps"] != 0
    tau_start, anneal_steps = params["tau_start"], params["anneal_steps"]
    if tau_start == "auto":
        tau_start = WARMUP_TAU_START if over_warmup else 1.0
    if anneal_steps == "auto":
        anneal_steps = params["warmup_steps"] if over_warmup else ANNEAL_FRACTION
    return float(tau_start), (int(anneal_steps) if isinstance(anneal_steps, Integral) else float(anneal_steps))


def model_spec(params: dict, n_features: int, n_latents: int, *, anneal_steps: int | None = None) -> ModelSpec:
    """The model ``params`` describe for rows of ``n_features`` and ``n_latents`` latents.

    ``anneal_steps``, when given, is the resolved length of the activation's
    start-up schedule in a fit that already ran (a saved model carries it);
    otherwise the parameter's, a fraction until a fit resolves it: Gumbel
    annealing's ``anneal_steps``, and for Top-K's narrowing from ``k_start``
    to ``k`` the learning-rate warmup's ``warmup_steps``.
    """
    params = renamed_params(params, warn=False)
    check_activation_params(params)
    k, activation = int(params["k"]), params["activation"]
    k_start = resolve_k_start(params, int(n_latents))
    if activation == "jumprelu":  # its pre-activation term pulls up every dead latent
        aux_k = 0 if params["pre_act_coef"] is None else int(n_latents)
    elif activation == "relu" or params["aux_k"] is None:
        aux_k = 0
    else:
        aux_k = default_aux_k(k, n_latents) if params["aux_k"] == "auto" else int(params["aux_k"])
    dead_window = params["dead_window"]
    dead_window = default_dead_window(expected_l0(params), n_latents) if dead_window == "auto" else int(dead_window)
    tau_start, gumbel_anneal_steps = resolve_gumbel_start(params)
    if anneal_steps is None:
        anneal_steps = gumbel_anneal_steps if k_start is None else params["warmup_steps"]
        anneal_steps = int(anneal_steps) if isinstance(anneal_steps, Integral) else float(anneal_steps)
    return ModelSpec(
        prefixes=matryoshka_prefixes(params, int(n_latents)),
        n_features=int(n_features), n_latents=int(n_latents), activation=activation, k=k,
        normalize=bool(params["normalize"]), tied=bool(params["tied"]), aux_k=aux_k, dead_window=dead_window,
        tau_start=tau_start, tau_end=float(params["tau_end"]), anneal_steps=anneal_steps,
        gumbel_candidates=params["gumbel_candidates"], k_start=k_start, whiten=bool(params["whiten"]),
        target_l0=None if params["target_l0"] is None else int(params["target_l0"]),
    )


MATRYOSHKA_ACTIVATIONS = ("topk", "gumbel_topk", "batchtopk")
"""The activations Matryoshka training composes with (Bussmann et al. 2025 train BatchTopK; Top-K and
Gumbel-Top-K keep the same fixed sparsity). ReLU and JumpReLU are refused: their sparsity penalty would pull
against the prefixes' reconstructions, which ask each prefix to carry as much of the input as it can."""


def prefix_sizes(fractions, n_latents: int) -> tuple:
    """The latents in the nested prefix of each fraction of ``n_latents``: ``round(f * n_latents)``, at least 1."""
    return tuple(max(1, round(fraction * n_latents)) for fraction in fractions)


def matryoshka_prefixes(params: dict, n_latents: int) -> tuple:
    """The latents in each nested prefix of ``params["matryoshka"]`` (fractions), or ``()`` when it is None.

    The fractions must be strictly increasing in (0, 1) and give distinct prefixes smaller than the dictionary;
    a prefix may hold fewer latents than ``k`` (it reconstructs with the kept latents among its own).
    """
    fractions = params.get("matryoshka")
    if fractions is None:
        return ()
    try:
        fractions = [float(fraction) for fraction in fractions]
    except (TypeError, ValueError):
        raise ValueError(
            f"matryoshka must hold increasing fractions of the dictionary in (0, 1), such as (1/16, 1/8, 1/4, 1/2); "
            f"got {fractions!r}, which holds something other than numbers."
        ) from None
    if params["activation"] not in MATRYOSHKA_ACTIVATIONS:
        raise ValueError(
            f"matryoshka applies to the top-k activations {MATRYOSHKA_ACTIVATIONS}, not to "
            f"activation={params['activation']!r}: its nested prefixes each reconstruct with the same codes, which "
            "an L1 penalty would push apart. Set matryoshka=None or choose a top-k activation."
        )
    if not fractions or any(not 0 < fraction < 1 for fraction in fractions) or sorted(set(fractions)) != fractions:
        raise ValueError(
            f"matryoshka must hold increasing fractions of the dictionary in (0, 1), such as (1/16, 1/8, 1/4, 1/2); "
            f"got {tuple(fractions)}. The whole dictionary is always the last level."
        )
    sizes = prefix_sizes(fractions, n_latents)
    if sorted(set(sizes)) != list(sizes) or sizes[-1] >= n_latents:
        raise ValueError(
            f"matryoshka={tuple(fractions)} gives prefixes of {sizes} latents out of {n_latents}: they must be "
            "distinct and smaller than the dictionary. Use fewer or coarser levels, or more latents."
        )
    return sizes


@dataclass(frozen=True)
class TrainingSettings:
    """How a model is trained: the estimator's training parameters, ``"auto"`` values still unresolved.

    ``lr="auto"`` and ``max_epochs="auto"`` depend on the rows and the
    number of processes, and fractional ``warmup_steps`` on the run's
    length: :func:`sklearn_sae._training.train_net` resolves them, once.
    """

    lr: float | str
    max_epochs: int | str
    batch_size: int
    warmup_steps: int | float
    grad_clip: float | None
    validation_fraction: float
    n_iter_no_change: int | None
    tol: float
    l1_coef: float
    l0_coef: float
    aux_coef: float
    pre_act_coef: float
    pre_bias_init: str
    unit_norm_decoder: bool
    amp: bool
    verbose: int


def training_settings(params: dict) -> TrainingSettings:
    """The training settings of ``params`` (checked already)."""
    params = renamed_params(params, warn=False)
    activation = params["activation"]
    l1_coef = DEFAULT_L1_COEF[activation] if params["l1_coef"] is None else float(params["l1_coef"])
    l0_coef = 0.0
    if activation == "jumprelu":
        default = DEFAULT_L0_COEF if params["target_l0"] is None else DEFAULT_TARGET_L0_COEF
        l0_coef = default if params["l0_coef"] is None else float(params["l0_coef"])
    uses_aux = activation not in ("relu", "jumprelu") and params["aux_k"] is not None
    aux_coef = AUXK_COEF if params["aux_coef"] == "auto" else float(params["aux_coef"])
    pre_act_coef = 0.0
    if activation == "jumprelu" and params["pre_act_coef"] is not None:
        pre_act_coef = PRE_ACT_COEF if params["pre_act_coef"] == "auto" else float(params["pre_act_coef"])
    return TrainingSettings(
        lr=params["lr"] if params["lr"] == "auto" else float(params["lr"]),
        max_epochs=params["max_epochs"] if params["max_epochs"] == "auto" else int(params["max_epochs"]),
        batch_size=int(params["batch_size"]),
        warmup_steps=params["warmup_steps"],
        grad_clip=params["grad_clip"],
        validation_fraction=float(params["validation_fraction"]),
        n_iter_no_change=(
            default_n_iter_no_change(params["max_epochs"]) if params["n_iter_no_change"] == "auto"
            else params["n_iter_no_change"]
        ),
        tol=float(params["tol"]),
        l1_coef=l1_coef,
        l0_coef=l0_coef,
        aux_coef=aux_coef if uses_aux else 0.0,
        pre_act_coef=pre_act_coef,
        pre_bias_init=params["pre_bias_init"],
        unit_norm_decoder=bool(params["unit_norm_decoder"]) and not params["tied"],
        amp=resolve_amp(params["amp"], params["device"]),
        verbose=int(params["verbose"]),
    )
