"""Export fitted models to the SAE libraries people already use, and import models from them.

Two targets, both a directory with a ``cfg.json`` and one safetensors file:

``"sparsify"`` (EleutherAI sparsify, ``sparsify.SparseCoder.load_from_disk``)
    ``cfg.json`` holds the ``SparseCoderConfig`` fields plus ``d_in``;
    ``sae.safetensors`` holds ``encoder.weight`` ``(n_latents, n_features)``,
    ``encoder.bias``, ``W_dec`` ``(n_latents, n_features)`` and ``b_dec``. The
    coder computes ``topk(relu((x - b_dec) @ encoder.weight.T + encoder.bias))``
    and decodes with ``codes @ W_dec + b_dec``. It has no input normalisation
    and no activation other than Top-K (and GroupMax).
``"saelens"`` (SAELens >= 6, ``sae_lens.SAE.load_from_disk``)
    ``cfg.json`` holds the ``SAEConfig`` fields with ``architecture``;
    ``sae_weights.safetensors`` holds ``W_enc`` ``(n_features, n_latents)``,
    ``b_enc``, ``W_dec`` ``(n_latents, n_features)`` and ``b_dec``. With
    ``apply_b_dec_to_input=True`` the ``"standard"`` architecture computes
    ``relu((x - b_dec) @ W_enc + b_enc)`` and ``"topk"`` keeps the ``k``
    largest of ``(x - b_dec) @ W_enc + b_enc`` through a ReLU, exactly our
    ``relu`` and ``topk``. Its ``"layer_norm"`` normalisation is not ours (see
    :func:`export_model`).

So the mapping of our parameters is ``pre_bias -> b_dec``, ``b_lat ->
encoder bias``, ``W_enc -> encoder weight`` and ``W_dec -> W_dec``; a tied
model is written with two explicit copies of its one matrix. Files are read
and written with ``json`` and ``safetensors`` only: nothing here unpickles.

Every export also writes ``sklearn_sae.json``, a record of the estimator it
was made from, which the other libraries ignore; with it :func:`load_foreign`
rebuilds the original estimator, its normalisation and tying included:
exactly, except for a ``normalization="layer_norm"`` export, whose weights
come back within one float32 rounding. (It is a file of its own because
sparsify logs a warning for every unknown key of its ``cfg.json``.) The
export replaces a directory only if the package wrote it
(:func:`._persistence.foreign_model_content`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch
from safetensors.torch import save_file

from ._activations import BatchTopK, GumbelTopK, JumpReLU, TopK
from ._atomic import atomic_directory
from ._model import LAYER_NORM_EPS
from ._params import prefix_sizes
from ._persistence import EXPORT_FILES, SavedModel, foreign_model_content, read_safetensors

__all__ = ["FORMATS", "NORMALIZATIONS", "export_model", "load_foreign"]

FORMATS = ("sparsify", "saelens")
"""Values of ``format`` accepted by :func:`export_model`."""

NORMALIZATIONS = ("standardized", "layer_norm")
"""Opt-ins of :func:`export_model` for a model with ``normalize=True`` (see there)."""

CONFIG_FILE, SPARSIFY_WEIGHTS_FILE = EXPORT_FILES["sparsify"]
_, SAELENS_WEIGHTS_FILE = EXPORT_FILES["saelens"]

SAELENS_FORMAT_VERSION = "6.0.0"
"""The SAELens release whose ``cfg.json`` layout the export follows. SAELens converts configs that name
no version, or an older one, from its pre-6 layout, so the export names the layout it is written in."""

MARKER_FILE = "sklearn_sae.json"
"""The record of the original estimator that every export carries beside the foreign files."""

MARKER_VERSION = 1

_UPCAST_EXACTLY = (torch.float16, torch.bfloat16)
"""Foreign weight dtypes that become float32 without rounding (float64 would round)."""


# ----------------------------------------------------------------------------- export


def export_model(
    module, directory, format, *, unit_norm_decoder: bool, normalization=None, as_topk=False, matryoshka=None
) -> None:
    """Write a fitted module in another library's format (see :meth:`SparseAutoencoderTransformer.export`).

    ``unit_norm_decoder`` is the estimator's parameter of that name (sparsify
    records whether decoder rows are kept at unit norm). ``matryoshka`` is the
    estimator's parameter of that name: a Matryoshka model exports as its
    activation alone (the nested prefixes are a property of its training, not
    of what it computes), and the record keeps the fractions so that
    importing the directory back restores them (``size / n_latents`` for
    each prefix when the parameter no longer gives the module's prefixes).
    """
    if format not in FORMATS:
        raise ValueError(f"format={format!r} is not supported; use one of {FORMATS}.")
    if normalization is not None and normalization not in NORMALIZATIONS:
        raise ValueError(f"normalization={normalization!r} is not understood; use None or one of {NORMALIZATIONS}.")
    # What the fitted module computes, not the estimator's parameters, which set_params may have changed since.
    activation = _activation_name(module.activation)
    architecture, k = _exported_activation(activation, module, format, as_topk)
    _check_normalization(module.normalize, format, normalization)
    weights = _module_weights(module)
    n_latents, n_features = weights["W_enc"].shape
    if normalization == "layer_norm":
        if n_features < 2:
            raise ValueError("normalization='layer_norm' needs at least 2 features: SAELens divides by the sample std.")
        weights = _fold_bessel_correction(weights, n_features)
    marker = {
        "version": MARKER_VERSION,
        "format": format,
        "activation": activation,
        "normalize": bool(module.normalize),
        "normalization": normalization,
        "layer_norm_eps": LAYER_NORM_EPS,
        "tied": bool(module.tied) and not module.whiten,  # the whitening folded in unties the two matrices
    }
    if module.prefixes:
        marker["matryoshka"] = _matryoshka_fractions(module, matryoshka)
    if architecture == "jumprelu":
        if k is not None:  # BatchTopK's training budget and the batches its theta averages, which the file lacks
            marker["k"] = int(k)
            marker["threshold_updates"] = int(module.activation.n_updates)
        weights["threshold"] = module.activation.threshold.detach().float().cpu().expand(n_latents).clone()
    if format == "sparsify":
        # Atoms of unit norm in the whitened space are not after the whitening is folded in.
        unit_norm_decoder = not module.tied and unit_norm_decoder and not module.whiten
        config, tensors, weights_file = _sparsify_files(weights, k, n_features, n_latents, unit_norm_decoder)
    else:
        config, tensors, weights_file = _saelens_files(weights, architecture, k, n_features, n_latents, normalization)
    with atomic_directory(directory, foreign=foreign_model_content, writer="export()") as temporary:
        save_file(tensors, str(temporary / weights_file), metadata={"format": "pt"})
        (temporary / CONFIG_FILE).write_text(json.dumps(config, indent=2), encoding="utf-8")
        (temporary / MARKER_FILE).write_text(json.dumps(marker, indent=2), encoding="utf-8")


def _matryoshka_fractions(module, matryoshka) -> list:
    """The prefix fractions of a Matryoshka module: the estimator's if they still give its prefixes."""
    n_latents = module.n_latents
    try:
        fractions = [float(fraction) for fraction in matryoshka]
    except (TypeError, ValueError):  # None, or set_params gave it something else since the fit
        fractions = None
    if fractions and prefix_sizes(fractions, n_latents) == module.prefixes:
        return fractions
    return [size / n_latents for size in module.prefixes]


def _activation_name(activation) -> str:
    """The estimator's name of a fitted activation module."""
    if isinstance(activation, GumbelTopK):
        return "gumbel_topk"
    if isinstance(activation, BatchTopK):
        return "batchtopk"
    if isinstance(activation, JumpReLU):
        return "jumprelu"
    return "topk" if isinstance(activation, TopK) else "relu"


def _exported_activation(activation, module, format, as_topk):
    """``("relu" | "topk", k)`` the export will use, or why this activation cannot be exported as asked."""
    n_latents = module.n_latents
    if activation == "batchtopk":
        if format == "sparsify":
            raise ValueError(
                "activation='batchtopk' cannot be exported to sparsify: at inference it keeps every activation "
                "above one learned threshold, a variable number per row, which sparsify's Top-K coders cannot "
                "compute. Export it to format='saelens' (as a JumpReLU SAE), or save it with save()."
            )
        # At inference it is a JumpReLU whose thresholds all equal theta, as SAELens saves BatchTopK SAEs.
        return "jumprelu", module.activation.k
    if activation == "jumprelu":
        if format == "sparsify":
            raise ValueError(
                "activation='jumprelu' cannot be exported to sparsify, whose coders are Top-K only: a JumpReLU "
                "keeps every activation above its latent's threshold. Export it to format='saelens'."
            )
        return "jumprelu", None
    if activation == "topk":
        return "topk", module.activation.k
    if activation == "gumbel_topk":
        if not as_topk:
            raise ValueError(
                "activation='gumbel_topk' is exported as plain Top-K: at inference it is exactly Top-K (the exported "
                "model gives the same codes), but its Gumbel noise and temperature schedule are training state that "
                f"{format} cannot hold, so training the exported model further would not continue the same schedule. "
                "Pass as_topk=True to export it as Top-K."
            )
        return "topk", module.activation.k
    # ReLU codes are Top-K codes with k = n_latents: every pre-activation is kept and passed through the ReLU.
    if as_topk:
        return "topk", n_latents
    if format == "sparsify":
        raise ValueError(
            "activation='relu' has no counterpart in sparsify, whose coders are Top-K only. Pass as_topk=True to "
            f"export it as Top-K with k = n_latents_ = {n_latents}, which keeps every latent and so gives exactly "
            "the ReLU codes (dense, not sparse by construction), or export to format='saelens' (its 'standard' "
            "architecture is a ReLU SAE)."
        )
    return "relu", None


def _check_normalization(normalize, format, normalization):
    if not normalize:
        if normalization is not None:
            raise ValueError(
                f"normalization={normalization!r} applies to models fitted with normalize=True; this one has "
                "normalize=False and exports exactly as it is. Leave normalization=None."
            )
        return
    if normalization == "layer_norm" and format != "saelens":
        raise ValueError(
            "normalization='layer_norm' is SAELens's run-time layer norm; sparsify has no input normalisation. "
            "Use normalization='standardized' (the exported coder then takes rows already standardised by "
            "sklearn_sae's layer norm)."
        )
    if normalization is None:
        choices = "normalization='standardized'"
        if format == "saelens":
            choices += " or normalization='layer_norm' (SAELens's own layer norm, close to but not equal to ours)"
        raise ValueError(
            "This model standardises each row (normalize=True: zero mean and variance 1, with 1e-5 added to the "
            f"biased variance), and {format} has no normalisation that computes exactly that. Pass {choices}; "
            "see the export docstring for what each means and how close it is."
        )


def _module_weights(module) -> dict[str, torch.Tensor]:
    """The module's parameters as separate contiguous float32 CPU tensors (a tied decoder copied).

    A model that whitens its rows (``whiten=True``) has the whitening folded in, so that the weights read
    standardised rows: with whitened rows ``z = (x - m) @ W`` (``W`` symmetric), the encoder's
    ``(z - p) @ W_enc.T`` is ``(x - (m + p @ W^-1)) @ (W_enc @ W).T`` and the decoder's ``(h @ W_dec + p) @ W^-1
    + m`` is ``h @ (W_dec @ W^-1) + (m + p @ W^-1)``. The two matrices then differ, so a tied model is exported
    untied (it imports back as an untied model with the same codes).
    """
    weights = {
        "W_enc": module.W_enc.detach().double().cpu(),
        "W_dec": module.decoder_weight.detach().double().cpu(),
        "pre_bias": module.pre_bias.detach().double().cpu(),
        "b_lat": module.b_lat.detach().double().cpu(),
    }
    if module.whiten:
        mean = module.whitening_mean.double().cpu()
        whitening, unwhitening = module.whitening_matrix.double().cpu(), module.unwhitening_matrix.double().cpu()
        weights["W_enc"] = weights["W_enc"] @ whitening
        weights["W_dec"] = weights["W_dec"] @ unwhitening
        weights["pre_bias"] = mean + weights["pre_bias"] @ unwhitening
    return {name: tensor.float().contiguous() for name, tensor in weights.items()}


def _bessel_factor(n_features: int) -> float:
    """``sqrt(n / (n - 1))``: SAELens's Bessel-corrected std over the biased one."""
    return math.sqrt(n_features / (n_features - 1))


def _fold_bessel_correction(weights, n_features):
    """Weights for SAELens's layer norm, which divides by the Bessel-corrected std instead of the biased one.

    SAELens standardises with ``std_u = r * s`` (``s`` the biased std, ``r = sqrt(n / (n - 1))``), so its
    standardised rows are ours divided by ``r``, and it undoes the normalisation with ``* std_u``. Scaling
    the encoder by ``r`` and the decoder and ``b_dec`` by ``1 / r`` absorbs the constant ``r`` in both
    directions; only the placement of eps (see :meth:`SparseAutoencoderTransformer.export`) remains.
    :func:`_unfold_bessel_correction` undoes it on import.
    """
    r = _bessel_factor(n_features)
    # In float64, so the fold adds one float32 rounding per weight and no more.
    return {
        "W_enc": (weights["W_enc"].double() * r).float(),
        "W_dec": (weights["W_dec"].double() / r).float(),
        "pre_bias": (weights["pre_bias"].double() / r).float(),
        "b_lat": weights["b_lat"],
    }


def _unfold_bessel_correction(weights, n_features):
    """The weights :func:`_fold_bessel_correction` was given, within one float32 rounding each.

    Scaling by ``r`` in float32 may send two values to one, so the original weights cannot always be
    recovered bit for bit; a tied model's two copies, each unfolded, agree within two roundings and
    come back as one matrix (the encoder's).
    """
    r = _bessel_factor(n_features)
    W_enc = (weights["W_enc"].double() / r).float()
    W_dec = (weights["W_dec"].double() * r).float()
    if torch.allclose(W_enc, W_dec, rtol=_TIED_AFTER_UNFOLD_RTOL, atol=0.0):
        W_dec = W_enc.clone()
    return {
        "W_enc": W_enc,
        "W_dec": W_dec,
        "pre_bias": (weights["pre_bias"].double() * r).float(),
        "b_lat": weights["b_lat"],
        **({"threshold": weights["threshold"]} if "threshold" in weights else {}),
    }


_TIED_AFTER_UNFOLD_RTOL = 4 * torch.finfo(torch.float32).eps
"""How far a tied model's encoder and decoder may differ once unfolded: two float32 roundings on each side."""


def _sparsify_files(weights, k, n_features, n_latents, unit_norm_decoder):
    config = {
        "activation": "topk",
        # sparsify renormalises decoder rows only while training; it means the same constraint as ours.
        "normalize_decoder": bool(unit_norm_decoder),
        "num_latents": n_latents,
        "k": k,
        "multi_topk": False,
        "skip_connection": False,
        "transcode": False,
        "d_in": n_features,
    }
    tensors = {
        "encoder.weight": weights["W_enc"],
        "encoder.bias": weights["b_lat"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["pre_bias"],
    }
    return config, tensors, SPARSIFY_WEIGHTS_FILE


def _saelens_files(weights, architecture, k, n_features, n_latents, normalization):
    config = {
        "architecture": {"relu": "standard", "topk": "topk", "jumprelu": "jumprelu"}[architecture],
        "d_in": n_features,
        "d_sae": n_latents,
        "dtype": "float32",
        "device": "cpu",
        "apply_b_dec_to_input": True,
        "normalize_activations": "layer_norm" if normalization == "layer_norm" else "none",
        "reshape_activations": "none",
        "metadata": {"sae_lens_version": SAELENS_FORMAT_VERSION},
    }
    if architecture == "topk":
        config.update(k=k, rescale_acts_by_decoder_norm=False)
    tensors = {
        "W_enc": weights["W_enc"].t().contiguous(),
        "b_enc": weights["b_lat"],
        "W_dec": weights["W_dec"],
        "b_dec": weights["pre_bias"],
    }
    if architecture == "jumprelu":
        tensors["threshold"] = weights["threshold"]
    return config, tensors, SAELENS_WEIGHTS_FILE


# ----------------------------------------------------------------------------- import


def load_foreign(directory):
    """The model in a sparsify or SAELens directory, or ``None`` if it is neither.

    A directory with ``cfg.json`` and ``sae.safetensors`` is read as sparsify's;
    one with ``cfg.json`` and ``sae_weights.safetensors`` as SAELens's. Only
    architectures this package computes exactly are accepted: sparsify Top-K
    coders (no skip connection, not a transcoder, not Multi-TopK), SAELens
    ``"standard"`` (imported as ``activation="relu"``), ``"topk"`` and
    ``"jumprelu"`` (positive thresholds) SAEs that subtract ``b_dec`` from the
    input, with no input normalisation (SAELens's ``"layer_norm"`` only in
    this package's own ``normalization="layer_norm"`` exports, see below).
    Anything else raises ``ValueError`` saying what cannot be represented.
    float16 and bfloat16 weights are converted to float32 (exactly) and float64 refused;
    SAELens's ``hook_z`` reshaping only flattens ``(n_heads, d_head)`` into
    the rows this package takes. The imported model starts with no record
    of dead latents (neither library keeps one in its files). Directories
    written by :meth:`SparseAutoencoderTransformer.export` come back as the
    model that was exported (normalisation, tying, BatchTopK and Matryoshka
    included), with the same ``transform`` bit for bit when the export was
    exact, except JumpReLU's: its thresholds come back through their scaled
    logarithm, within a float32 rounding, so a pre-activation within that
    rounding of its threshold may fire on one side only. An export with
    ``normalization="layer_norm"`` comes back as the ``normalize=True`` model
    it was made from, the Bessel factor folded out of the decoder, encoder and
    ``b_dec`` again: those weights within one float32 rounding of the
    original's, so its codes agree with the original's to float32 rounding
    (a Top-K choice between two pre-activations that tie within it may differ).

    Only JSON and safetensors are read: nothing is unpickled.

    Parameters
    ----------
    directory : str or os.PathLike
        The directory holding the model.

    Returns
    -------
    model : SavedModel or None
        With the parameters the files determine (the others keep their
        defaults) and an empty history; ``None`` when the directory holds
        neither format. The estimator builds itself from it.
    """

    directory = Path(directory)
    if not (directory / CONFIG_FILE).is_file():
        return None
    marker = _marker(directory)
    if (directory / SPARSIFY_WEIGHTS_FILE).is_file():
        weights, params = _read_sparsify(directory)
    elif (directory / SAELENS_WEIGHTS_FILE).is_file():
        weights, params = _read_saelens(directory, marker)
    else:
        return None
    return _saved_model(weights, params, marker)


def _read_config(path: Path) -> dict:
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}).") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} should hold a JSON object, not {type(config).__name__}.")
    return config


def _read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """The tensors of a safetensors file, as float32 (exactly, or a ValueError saying why not)."""
    tensors = read_safetensors(path)
    for name, tensor in tensors.items():
        if tensor.dtype in _UPCAST_EXACTLY:
            tensors[name] = tensor.float()
        elif tensor.dtype != torch.float32:
            raise ValueError(
                f"{path.name} stores {name!r} as {tensor.dtype}; this package computes in float32 and "
                "imports float32, float16 or bfloat16 weights only (those convert to float32 without rounding)."
            )
    return tensors


def _expect_tensors(tensors, shapes, where):
    """Check that ``tensors`` are exactly the names of ``shapes`` with those shapes."""
    unexpected = sorted(set(tensors) - set(shapes))
    if unexpected:
        raise ValueError(
            f"{where} holds tensors this package has no counterpart for: {unexpected}. Only "
            f"{sorted(shapes)} can be imported exactly."
        )
    missing = sorted(set(shapes) - set(tensors))
    if missing:
        raise ValueError(f"{where} lacks the tensors {missing}; it cannot be imported.")
    for name, shape in shapes.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(f"{where}: {name!r} has shape {tuple(tensors[name].shape)}, expected {shape}.")


def _marker(directory: Path) -> dict:
    """The record an export of this package left, or ``{}`` for a directory another library wrote."""
    path = directory / MARKER_FILE
    if not path.is_file():
        return {}
    marker = _read_config(path)
    return marker if marker.get("version") == MARKER_VERSION else {}


def _read_sparsify(directory):
    """The weights of a sparsify coder, in this package's names, and the parameters they need."""
    config = _read_config(directory / CONFIG_FILE)
    where = f"sparsify coder at {directory}"
    if config.get("transcode", False):
        raise ValueError(f"The {where} is a transcoder (it predicts another layer's output); only autoencoders import.")
    if config.get("skip_connection", False):
        raise ValueError(f"The {where} has a linear skip connection (W_skip), which this package's model lacks.")
    if config.get("activation", "topk") != "topk":
        raise ValueError(f"The {where} uses activation={config['activation']!r}; only 'topk' can be imported.")
    if config.get("multi_topk", False):
        raise ValueError(
            f"The {where} was trained with Multi-TopK: sparsify's forward() then reconstructs from the top 4k "
            "latents while encode() keeps k, and this package's model has one k. It cannot be imported exactly."
        )
    if "d_in" not in config or "k" not in config:
        raise ValueError(f"{directory / CONFIG_FILE} lacks 'd_in' or 'k'; it is not a sparsify config.")
    tensors = _read_tensors(directory / SPARSIFY_WEIGHTS_FILE)
    n_features, k = int(config["d_in"]), int(config["k"])
    n_latents = tensors["encoder.weight"].shape[0] if "encoder.weight" in tensors else 0
    _expect_tensors(
        tensors,
        {
            "encoder.weight": (n_latents, n_features),
            "encoder.bias": (n_latents,),
            "W_dec": (n_latents, n_features),
            "b_dec": (n_features,),
        },
        where,
    )
    if not 1 <= k <= n_latents:
        raise ValueError(f"The {where} has k={k} for {n_latents} latents; k must be between 1 and n_latents.")
    weights = {
        "W_enc": tensors["encoder.weight"],
        "W_dec": tensors["W_dec"],
        "pre_bias": tensors["b_dec"],
        "b_lat": tensors["encoder.bias"],
    }
    params = {"activation": "topk", "k": k, "unit_norm_decoder": bool(config.get("normalize_decoder", True))}
    return weights, params


SETTLED_THRESHOLD_UPDATES = 10_000
"""BatchTopK's count of threshold updates when an export's record lacks it: ``0.99**10_000`` is 2e-44, so its
``theta`` is taken as a settled average, which further training moves at the rate of 0.01 a batch."""

SAELENS_ARCHITECTURES = {"standard": "relu", "topk": "topk", "jumprelu": "jumprelu"}
"""SAELens architectures that import, and the activation each becomes (a JumpReLU that this package
exported from a BatchTopK model comes back as one)."""


def _read_saelens(directory, marker):
    """The weights of a SAELens SAE, in this package's names, and the parameters they need.

    SAELens's ``"layer_norm"`` is read only in a directory this package exported with
    ``normalization="layer_norm"`` (its record says so): that model comes back with ``normalize=True``
    and the Bessel factor folded out of its weights.
    """
    config = _read_config(directory / CONFIG_FILE)
    where = f"SAELens SAE at {directory}"
    architecture = config.get("architecture", "standard")
    if architecture not in SAELENS_ARCHITECTURES:
        raise ValueError(
            f"The {where} has architecture {architecture!r}; only {sorted(SAELENS_ARCHITECTURES)} (ReLU, Top-K "
            "and JumpReLU SAEs) compute what this package's model computes."
        )
    if not config.get("apply_b_dec_to_input", True):
        raise ValueError(
            f"The {where} has apply_b_dec_to_input=False: its encoder does not subtract b_dec, while this "
            "package's always subtracts pre_bias, and folding b_dec into b_enc would round. It cannot be "
            "imported exactly."
        )
    normalization = config.get("normalize_activations", "none")
    our_layer_norm = (normalization == "layer_norm" and marker.get("normalization") == "layer_norm"
                      and marker.get("layer_norm_eps") == LAYER_NORM_EPS)
    if normalization != "none" and not our_layer_norm:
        raise ValueError(
            f"The {where} normalises its input with normalize_activations={normalization!r}, which this package "
            "does not compute (its normalize=True standardises with the biased variance plus 1e-5, where SAELens's "
            "'layer_norm' divides by the Bessel-corrected std plus 1e-5). It cannot be imported exactly."
        )
    if architecture == "topk" and config.get("rescale_acts_by_decoder_norm", False):
        raise ValueError(
            f"The {where} has rescale_acts_by_decoder_norm=True (it ranks latents by pre-activation times decoder "
            "norm); folding the norms into the weights would round. Fold them in SAELens first "
            "(sae.fold_W_dec_norm()), set rescale_acts_by_decoder_norm to False, and save it again."
        )
    if config.get("finetuning_scaling_factor", False):
        raise ValueError(f"The {where} has a finetuning scaling factor, which this package's model lacks.")
    if "d_in" not in config or "d_sae" not in config:
        raise ValueError(f"{directory / CONFIG_FILE} lacks 'd_in' or 'd_sae'; it is not a SAELens config.")
    tensors = _read_tensors(directory / SAELENS_WEIGHTS_FILE)
    n_features, n_latents = int(config["d_in"]), int(config["d_sae"])
    _expect_tensors(
        tensors,
        {
            "W_enc": (n_features, n_latents),
            "b_enc": (n_latents,),
            "W_dec": (n_latents, n_features),
            "b_dec": (n_features,),
            **({"threshold": (n_latents,)} if architecture == "jumprelu" else {}),
        },
        where,
    )
    activation = SAELENS_ARCHITECTURES[architecture]
    params = {"activation": activation}
    if activation == "topk":
        k = int(config.get("k", 0))
        if not 1 <= k <= n_latents:
            raise ValueError(f"The {where} has k={k} for {n_latents} latents; k must be between 1 and n_latents.")
        params["k"] = k
    weights = {
        "W_enc": tensors["W_enc"].t().contiguous(),
        "W_dec": tensors["W_dec"],
        "pre_bias": tensors["b_dec"],
        "b_lat": tensors["b_enc"],
    }
    if architecture == "jumprelu":
        threshold = tensors["threshold"]
        if not bool((threshold > 0).all()):
            raise ValueError(
                f"The {where} is a JumpReLU SAE with thresholds at or below 0; this package's JumpReLU learns "
                "positive thresholds (as their logarithm), so it cannot hold them exactly."
            )
        weights["threshold"] = threshold
        params["activation"] = "jumprelu"
    if our_layer_norm:
        weights = _unfold_bessel_correction(weights, n_features)
        params["normalize"] = True
    return weights, params


def _saved_model(weights, params, marker) -> SavedModel:
    """The model computing ``weights``; our own exports get back their normalisation and tying."""

    n_latents, n_features = weights["W_enc"].shape
    # The exported coder ran on rows standardised by our layer norm: put the layer norm back in front.
    # (A "layer_norm" export ran SAELens's, which the reader has already replaced by ours.)
    normalize = params.get("normalize") is True or (
        marker.get("normalization") == "standardized" and marker.get("layer_norm_eps") == LAYER_NORM_EPS
    )
    # Tie only what was tied: a foreign SAE whose matrices happen to agree (SAELens's initialisation) stays untied.
    tied = marker.get("tied") is True and torch.equal(weights["W_enc"], weights["W_dec"])
    state_dict = {
        "pre_bias": weights["pre_bias"],
        "b_lat": weights["b_lat"],
        "W_enc": weights["W_enc"],
        "rows_since_fired": torch.zeros(n_latents, dtype=torch.long),
    }
    if not tied:
        state_dict["W_dec"] = weights["W_dec"]
    if marker.get("activation") == "relu" and params.get("k") == n_latents:
        params = {**params, "activation": "relu"}  # our ReLU model, exported with as_topk=True
    threshold = weights.get("threshold")
    if threshold is not None and marker.get("activation") == "batchtopk" and bool((threshold == threshold[0]).all()):
        # Our BatchTopK, exported as a JumpReLU: one threshold; the training budget k only our record knows.
        params = {**params, "activation": "batchtopk"}
        state_dict["activation.threshold"] = threshold[0].clone()
        # Training on continues the same average; a record without the count (an older export) counts it as settled.
        updates = marker.get("threshold_updates")
        updates = updates if isinstance(updates, int) and updates >= 1 else SETTLED_THRESHOLD_UPDATES
        state_dict["activation.n_updates"] = torch.tensor(updates, dtype=torch.long)
        if isinstance(marker.get("k"), int) and 1 <= marker["k"] <= n_latents:
            params = {**params, "k": marker["k"]}
    elif threshold is not None:
        state_dict["activation.log_threshold"] = threshold.log() / JumpReLU.THRESHOLD_SPEED
    if isinstance(marker.get("matryoshka"), list):  # trained with nested prefixes: a fit further keeps them
        params = {**params, "matryoshka": marker["matryoshka"]}
    params = {"n_latents": n_latents, "normalize": normalize, "tied": tied, **params}
    return SavedModel(
        params=params, n_features=n_features, n_latents=n_latents, anneal_steps=None, state_dict=state_dict,
        history=[], n_iter=0,
    )
