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
    default_aux_coef,
    default_aux_k,
    default_dead_window,
    default_k_start,
    default_n_iter_no_change,
    default_n_latents,
)
from ._model import ModelSpec

__all__ = [
    "PARAMETER_CONSTRAINTS",
    "ANNEAL_FRACTION",
    "DEFAULT_L1_COEF",
    "ESTIMATOR_NAME",
    "MODEL_PARAMS",
    "OUTPUT_PARAMS",
    "TrainingSettings",
    "changed_params",
    "check_params",
    "resolve_n_latents",
    "resolve_k_start",
    "matryoshka_prefixes",
    "prefix_sizes",
    "model_spec",
    "training_settings",
]

ESTIMATOR_NAME = "SparseAutoencoderTransformer"

ANNEAL_FRACTION = 0.005
"""``anneal_steps`` default: the Gumbel noise acts over the first 0.5% of the fit's batches
(benchmarks/bench_gumbel.py: short, early noise revives the latents that Top-K leaves dead from the
start; a longer noisy phase drifts the latent bias down and kills them instead)."""

DEFAULT_L1_COEF = {"relu": 1e-3, "topk": 0.0, "gumbel_topk": 0.0, "batchtopk": 0.0, "jumprelu": 1e-3}
"""``l1_coef=None`` means this: ReLU needs the penalty to be sparse, Top-K does not."""

PARAMETER_CONSTRAINTS: dict = {
    "n_latents": [Interval(Integral, 1, None, closed="left"), None],
    "activation": [StrOptions({"relu", "topk", "gumbel_topk", "batchtopk", "jumprelu"})],
    "k": [Interval(Integral, 1, None, closed="left")],
    "k_start": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "l1_coef": [Interval(Real, 0, None, closed="left"), None],
    "normalize": ["boolean"],
    "whiten": ["boolean"],
    "tied": ["boolean"],
    "pre_bias_init": [StrOptions({"geometric_median", "mean", "zeros"})],
    "unit_norm_decoder": ["boolean"],
    "aux_k": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "aux_coef": [Interval(Real, 0, None, closed="left"), StrOptions({"auto"})],
    "dead_window": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "tau_start": [Interval(Real, 0, None, closed="neither")],
    "tau_end": [Interval(Real, 0, None, closed="neither")],
    "anneal_steps": [Interval(Integral, 1, None, closed="left"), Interval(RealNotInt, 0, 1, closed="right")],
    "gumbel_candidates": [StrOptions(set(GUMBEL_CANDIDATES))],
    "lr": [Interval(Real, 0, None, closed="neither"), StrOptions({"auto"})],
    "batch_size": [Interval(Integral, 1, None, closed="left")],
    "max_epochs": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"})],
    "warmup_steps": [Interval(Integral, 0, None, closed="left"), Interval(RealNotInt, 0, 1, closed="left")],
    "grad_clip": [Interval(Real, 0, None, closed="neither"), None],
    "validation_fraction": [Interval(Real, 0, 1, closed="left")],
    "n_iter_no_change": [Interval(Integral, 1, None, closed="left"), StrOptions({"auto"}), None],
    "amp": ["boolean"],
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
    "tau_end", "anneal_steps", "gumbel_candidates", "matryoshka",
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


def resolve_n_latents(params: dict, n_features: int, *, n_train: int | None = None) -> int:
    """``n_latents``, its default filled in from the data's shape, checked against ``k``; ``aux_k`` checked too.

    ``n_train`` is the number of training rows when known (``fit``), which caps the default.
    """
    sparse_codes = params["activation"] not in ("relu", "jumprelu")  # k bounds the top-k activations only
    n_latents = params["n_latents"]
    if n_latents is None:
        capped = params["activation"] != "relu"  # JumpReLU's dictionary starves on few rows as the top-k ones do
        n_latents = default_n_latents(n_features, k=params["k"], n_train=n_train, capped=capped)
    if sparse_codes and params["k"] > n_latents:
        raise ValueError(
            f"k={params['k']} is larger than n_latents={n_latents}: a row cannot have more non-zeros than there are "
            "latents. Lower k or raise n_latents."
        )
    if isinstance(params["aux_k"], Integral) and not sparse_codes:
        jumprelu_note = (
            " or aux_k='auto' (its term against dead latents takes every dead latent)"
            if params["activation"] == "jumprelu" else ""
        )
        raise ValueError(
            f"An integer aux_k applies to the top-k activations only; set aux_k=None for "
            f"activation={params['activation']!r}{jumprelu_note}."
        )
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
    if activation != "topk":
        if k_start == "auto":
            return None
        raise ValueError(
            f"k_start applies to activation='topk' only; set k_start=None (or 'auto') for activation={activation!r}."
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


def model_spec(params: dict, n_features: int, n_latents: int, *, anneal_steps: int | None = None) -> ModelSpec:
    """The model ``params`` describe for rows of ``n_features`` and ``n_latents`` latents.

    ``anneal_steps``, when given, is the resolved length of the activation's
    start-up schedule in a fit that already ran (a saved model carries it);
    otherwise the parameter's, a fraction until a fit resolves it: Gumbel
    annealing's ``anneal_steps``, and for Top-K's narrowing from ``k_start``
    to ``k`` the learning-rate warmup's ``warmup_steps``.
    """
    k, activation = int(params["k"]), params["activation"]
    k_start = resolve_k_start(params, int(n_latents))
    if activation == "relu" or params["aux_k"] is None:
        aux_k = 0
    elif activation == "jumprelu":  # its pre-activation term pulls up every dead latent
        aux_k = int(n_latents)
    else:
        aux_k = default_aux_k(k, n_latents) if params["aux_k"] == "auto" else int(params["aux_k"])
    dead_window = params["dead_window"]
    dead_window = default_dead_window(k, n_latents) if dead_window == "auto" else int(dead_window)
    if anneal_steps is None:
        anneal_steps = params["warmup_steps" if k_start is not None else "anneal_steps"]
        anneal_steps = int(anneal_steps) if isinstance(anneal_steps, Integral) else float(anneal_steps)
    return ModelSpec(
        prefixes=matryoshka_prefixes(params, int(n_latents)),
        n_features=int(n_features), n_latents=int(n_latents), activation=activation, k=k,
        normalize=bool(params["normalize"]), tied=bool(params["tied"]), aux_k=aux_k, dead_window=dead_window,
        tau_start=float(params["tau_start"]), tau_end=float(params["tau_end"]), anneal_steps=anneal_steps,
        gumbel_candidates=params["gumbel_candidates"], k_start=k_start, whiten=bool(params["whiten"]),
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
    l1_coef: float
    aux_coef: float
    pre_bias_init: str
    unit_norm_decoder: bool
    amp: bool
    verbose: int


def training_settings(params: dict) -> TrainingSettings:
    """The training settings of ``params`` (checked already)."""
    l1_coef = DEFAULT_L1_COEF[params["activation"]] if params["l1_coef"] is None else float(params["l1_coef"])
    activation = params["activation"]
    uses_aux = activation != "relu" and params["aux_k"] is not None
    aux_coef = default_aux_coef(activation) if params["aux_coef"] == "auto" else float(params["aux_coef"])
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
        l1_coef=l1_coef,
        aux_coef=aux_coef if uses_aux else 0.0,
        pre_bias_init=params["pre_bias_init"],
        unit_norm_decoder=bool(params["unit_norm_decoder"]) and not params["tied"],
        amp=bool(params["amp"]),
        verbose=int(params["verbose"]),
    )
