"""Saving and loading fitted models as safetensors weights plus a JSON description: no pickle.

A saved model is a directory of two files:

``sklearn_sae.json``
    Everything but the weights, as plain JSON: ``"format": "sklearn_sae"``, the format version, the
    package version, the constructor parameters, the fitted attributes, the resolved length of the
    activation's start-up schedule, the training history and the SHA-256 of the weights file.
    Exports to other libraries (:mod:`._interop`) carry a file of the same name as a record of the
    estimator, whose ``format`` names that library; the field tells the two apart.
``model.safetensors``
    The torch module's ``state_dict`` (parameters and buffers), contiguous CPU tensors.

:func:`foreign_model_content` recognises the directories the package writes, saved models and exports
alike, so that :func:`save_model` and an export replace those and refuse anything else.

This module reads and writes a :class:`SavedModel` (parameters, shapes, weights, fitted attributes,
history) and never sees the estimator: the estimator hands its parts down to :func:`save_model` and
builds itself from what :func:`read_model` returns.

Reading runs no code from the files (safetensors holds raw tensors; JSON holds data) and needs no
GPU. Every inconsistency a damaged or hand-edited directory can have is caught here, before torch
sees the tensors, and reported as a ``ValueError`` that names the file and the field.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import math
import numbers
import os
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from ._atomic import atomic_directory, unexpected_entries
from ._params import ESTIMATOR_NAME, PARAMETER_CONSTRAINTS, check_params, model_spec, resolve_n_latents
from ._warnings import warn_user

__all__ = [
    "CONFIG_NAME",
    "EXPORT_FILES",
    "FORMAT",
    "FORMAT_VERSION",
    "WEIGHTS_NAME",
    "SavedModel",
    "foreign_model_content",
    "is_saved_model",
    "read_model",
    "read_safetensors",
    "save_model",
]

CONFIG_NAME = "sklearn_sae.json"
"""The JSON description of a saved model; a directory holding it is in this package's format."""

FORMAT = "sklearn_sae"
"""The ``format`` field of a saved model's config (an export's record names the other library there)."""

WEIGHTS_NAME = "model.safetensors"
"""The module's tensors."""

EXPORT_FILES = {"sparsify": ("cfg.json", "sae.safetensors"), "saelens": ("cfg.json", "sae_weights.safetensors")}
"""The files an export (:mod:`._interop`) writes beside its ``sklearn_sae.json``, by format: the other libraries'
config and weights. Kept here, with the saved model's, so that one place knows every directory the package writes."""

FORMAT_VERSION = 1
"""Version of the directory layout and JSON schema; raise it when a reader of the previous one
could misread the new one, and teach :func:`read_model` to read every older version."""

PARAMS_ADDED_IN_FORMAT_1 = {
    "k_start": None, "whiten": False, "l0_coef": None, "target_l0": None, "pre_act_coef": "auto", "tol": 0.0,
}
"""Parameters added since the first files of format version 1 were written, each with the value that computes and
trains on as those files' models did: a file without ``k_start`` holds a Top-K trained with ``k`` from the start,
one without ``whiten`` a model that does not whiten. A JumpReLU file from before ``l0_coef`` and ``pre_act_coef``
keeps its ``l1_coef`` and ``aux_k``/``aux_coef``, which :func:`~sklearn_sae._params.renamed_params` reads as
those."""

_FITTED_INTEGERS = ("n_features_in_", "n_latents_", "n_iter_")


class SavedModel(NamedTuple):
    """A fitted model as files hold it: what the estimator saves and what it is rebuilt from.

    Attributes
    ----------
    params : dict
        Constructor parameters; an import from another library sets only the
        ones its files determine, the others keep their defaults.
    n_features, n_latents : int
        The module's shapes.
    anneal_steps : int or None
        The resolved length of the fit's start-up schedule: Gumbel annealing
        (``"gumbel_topk"``) or the narrowing from ``k_start`` (``"topk"``);
        ``None`` without one. A refit may resolve a fraction differently.
    state_dict : dict of str to torch.Tensor
        The module's tensors, on the CPU.
    history : list of dict
        skorch's history (empty for an import).
    n_iter : int
        Epochs run.
    feature_names : list of str or None
        ``feature_names_in_``, when the model was fitted on named columns.
    lr : float or None
        ``lr_``, the peak learning rate the fit used (``lr="auto"`` resolved);
        None when not known (an import, or a file saved before it was kept).
    amp : bool or None
        ``amp_``, whether the fit computed its products in bfloat16
        (``amp="auto"`` resolved); None when not known (an import, or a file
        saved before it was kept: its ``amp`` parameter then says).
    """

    params: dict
    n_features: int
    n_latents: int
    anneal_steps: int | None
    state_dict: dict
    history: list
    n_iter: int
    feature_names: list | None = None
    lr: float | None = None
    amp: bool | None = None
_HASH_CHUNK_BYTES = 1 << 24


def package_version() -> str:
    """The installed sklearn-sae version, or ``"unknown"`` when running from an uninstalled source tree."""
    try:
        return importlib.metadata.version("sklearn-sae")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def is_saved_model(directory) -> bool:
    """Whether ``directory`` holds a model written by :func:`save_model`, judged by its config file.

    A config whose ``format`` names another library is the record of an
    export, not a saved model. One that cannot be parsed counts as a saved
    model, so that loading it reports the damage.
    """
    path = Path(directory) / CONFIG_NAME
    if not path.is_file():
        return False
    try:
        config = json.loads(path.read_bytes())
    except ValueError:  # invalid JSON or UTF-8
        return True
    return not (isinstance(config, dict) and isinstance(config.get("format"), str) and config["format"] != FORMAT)


def foreign_model_content(directory) -> str | None:
    """What in an existing, non-empty ``directory`` the package did not write; ``None`` when it wrote all of it.

    The package's model directories are a saved model (``sklearn_sae.json``
    of format ``"sklearn_sae"`` and ``model.safetensors``) and an export
    (``sklearn_sae.json`` whose format names the library, with that
    library's :data:`EXPORT_FILES`). A directory is the package's when its
    ``sklearn_sae.json`` is one of these and it holds no other entry: a
    saved model or an export with a file of the user's beside it is not,
    since replacing the directory would delete that file. Configs written
    before the ``format`` field existed are told apart by their other
    fields (a saved model's ``estimator``, an export record's ``version``).

    Parameters
    ----------
    directory : pathlib.Path
        An existing directory.

    Returns
    -------
    reason : str or None
        A few words for the refusal, or ``None``.
    """
    config_path = directory / CONFIG_NAME
    if not config_path.is_file():
        return unexpected_entries(directory, (), writer="sklearn-sae")
    try:
        config = json.loads(config_path.read_bytes())
    except ValueError:  # invalid JSON or UTF-8
        config = None
    if not isinstance(config, dict):
        return f"its {CONFIG_NAME} is not a JSON object, so sklearn-sae did not write it"
    format_name = config.get("format")
    if format_name is None:  # written before configs named their format
        if config.get("estimator") == ESTIMATOR_NAME:
            format_name = FORMAT
        elif "version" in config and "activation" in config:
            format_name = "sparsify" if (directory / EXPORT_FILES["sparsify"][1]).exists() else "saelens"
    if format_name == FORMAT:
        return unexpected_entries(directory, (CONFIG_NAME, WEIGHTS_NAME), writer="save()")
    if isinstance(format_name, str) and format_name in EXPORT_FILES:
        files = (CONFIG_NAME, *EXPORT_FILES[format_name])
        return unexpected_entries(directory, files, writer=f"an export to {format_name}")
    return f"its {CONFIG_NAME} names format {format_name!r}, which sklearn-sae does not write"


# ---------------------------------------------------------------- writing


def save_model(model: SavedModel, directory) -> None:
    """Write ``model`` to ``directory``, replacing what the package wrote there before.

    The directory is written under a temporary name and renamed into place
    once complete, so an interrupted save leaves the previous content as it
    was. A directory that exists must be empty or hold only what the package
    writes (a saved model or an export: :func:`foreign_model_content`); it
    is then replaced whole. Anything else is refused with a ``ValueError``,
    so nothing is deleted by accident.
    """
    state = {name: tensor.detach().to("cpu").contiguous() for name, tensor in model.state_dict.items()}
    config = _config_of(model)
    with atomic_directory(directory, foreign=foreign_model_content, writer="save()") as staging:
        save_file(state, staging / WEIGHTS_NAME, metadata={"format": "pt"})
        config["weights_sha256"] = _sha256(staging / WEIGHTS_NAME)
        (staging / CONFIG_NAME).write_text(json.dumps(config, indent=1, allow_nan=False) + "\n", encoding="utf-8")


def _config_of(model: SavedModel) -> dict:
    """The JSON document describing ``model`` (all but the weights' checksum)."""
    fitted = {"n_features_in_": int(model.n_features), "n_latents_": int(model.n_latents), "n_iter_": int(model.n_iter)}
    if model.feature_names is not None:
        fitted["feature_names_in_"] = [str(name) for name in model.feature_names]
    if model.lr is not None:
        fitted["lr_"] = float(model.lr)
    if model.amp is not None:
        fitted["amp_"] = bool(model.amp)
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "sklearn_sae_version": package_version(),
        "estimator": ESTIMATOR_NAME,
        "params": _json_params(model.params),
        "fitted": fitted,
        # The fit resolved a fractional anneal_steps over its own number of batches; a refit may not.
        "anneal_steps": None if model.anneal_steps is None else int(model.anneal_steps),
        "weights_sha256": None,  # filled in once the weights are written
        "history": _to_json(list(model.history), "history"),
    }


def _json_params(params: dict) -> dict:
    """Constructor parameters as JSON values; a ``RandomState`` instance is stored as ``None``, with a warning.

    The state of a generator has no faithful, portable JSON form, and it only
    matters to a later refit: the saved weights do not depend on it.
    """
    params = dict(params)
    random_state = params.get("random_state")
    if random_state is not None and not isinstance(random_state, numbers.Integral):
        warn_user(
            f"random_state={random_state!r} is not an int and cannot be saved; the saved model has random_state=None, "
            "so refitting the loaded model is not reproducible. Pass an int random_state to save it."
        )
        params["random_state"] = None
    return {name: _to_json(value, f"params.{name}") for name, value in params.items()}


def _to_json(value, where: str):
    """``value`` as plain JSON types (numpy and torch scalars and arrays included); non-finite floats become null.

    Strict JSON has no NaN or infinity, and a diverged fit's history can hold them.
    """
    if value is None or isinstance(value, (bool, str)):
        return value
    if isinstance(value, os.PathLike):  # a directory parameter; it loads back as a str
        return os.fspath(value)
    if isinstance(value, np.bool_):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        value = float(value)
        return value if math.isfinite(value) else None
    if isinstance(value, (np.ndarray, torch.Tensor)):
        value = value.tolist() if isinstance(value, np.ndarray) else value.detach().cpu().tolist()
        return _to_json(value, where)
    if isinstance(value, (list, tuple)):
        return [_to_json(item, f"{where}[{index}]") for index, item in enumerate(value)]
    if isinstance(value, dict):
        if not all(isinstance(key, str) for key in value):
            raise TypeError(f"{where} has keys that are not strings; they cannot be saved to JSON.")
        return {key: _to_json(item, f"{where}.{key}") for key, item in value.items()}
    raise TypeError(f"{where} has type {type(value).__name__}, which cannot be saved to JSON.")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while chunk := handle.read(_HASH_CHUNK_BYTES):
            digest.update(chunk)
    return digest.hexdigest()


# ---------------------------------------------------------------- reading


def read_model(directory) -> SavedModel:
    """The model in a directory written by :func:`save_model`, every field and tensor checked.

    Parameters
    ----------
    directory : str or os.PathLike
        The saved model's directory.

    Returns
    -------
    model : SavedModel
        With the saved parameters (``device`` among them: the caller sets its own).

    Raises
    ------
    ValueError
        When the directory, a file or a field is missing, damaged, of a newer
        format, or disagrees with the others; the message names the file
        and the field.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise ValueError(f"{directory} is not a directory; give the directory a model was saved to.")
    config_path, weights_path = directory / CONFIG_NAME, directory / WEIGHTS_NAME
    if not config_path.is_file():
        raise ValueError(
            f"{directory} has no {CONFIG_NAME}, so it is not a model saved by SparseAutoencoderTransformer.save "
            f"(expected {CONFIG_NAME} and {WEIGHTS_NAME} in it)."
        )
    config = _read_config(config_path)
    params, fitted = config["params"], config["fitted"]
    n_latents = _checked_n_latents(params, config, config_path)
    spec = model_spec(params, fitted["n_features_in_"], n_latents, anneal_steps=config["anneal_steps"])
    state_dict = _read_weights(weights_path, config, spec.expected_tensors(), config_path)
    return SavedModel(
        params=params,
        n_features=fitted["n_features_in_"],
        n_latents=n_latents,
        anneal_steps=config["anneal_steps"],
        state_dict=state_dict,
        history=config["history"],
        n_iter=fitted["n_iter_"],
        feature_names=fitted.get("feature_names_in_"),
        lr=fitted.get("lr_"),
        amp=fitted.get("amp_"),
    )


def _read_config(path: Path) -> dict:
    """The parsed config, with every field's presence and type checked."""
    try:
        config = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ValueError(f"{path} is not valid JSON ({error}); the file is damaged or truncated.") from None
    if not isinstance(config, dict):
        raise ValueError(f"{path} must hold a JSON object, found {type(config).__name__}.")
    format_name = _field(config, "format", str, path)
    if format_name != FORMAT:
        raise ValueError(
            f"{path}: field 'format' is {format_name!r}, not {FORMAT!r}: the directory holds a model in another "
            "format (an export?), not one written by SparseAutoencoderTransformer.save."
        )
    version = _field(config, "format_version", int, path)
    if version > FORMAT_VERSION:
        raise ValueError(
            f"{path} has format_version {version}, written by a newer sklearn-sae "
            f"({config.get('sklearn_sae_version', 'unknown version')}); this one reads up to {FORMAT_VERSION}. "
            "Upgrade sklearn-sae to load it."
        )
    if version < 1:
        raise ValueError(f"{path}: format_version {version} is not a valid version (expected 1 to {FORMAT_VERSION}).")
    estimator_name = _field(config, "estimator", str, path)
    if estimator_name != ESTIMATOR_NAME:
        raise ValueError(f"{path}: field 'estimator' is {estimator_name!r}, but {ESTIMATOR_NAME} is loading it.")
    _field(config, "weights_sha256", str, path)
    _field(config, "params", dict, path)
    fitted = _field(config, "fitted", dict, path)
    for name in _FITTED_INTEGERS:
        minimum = 0 if name == "n_iter_" else 1
        if _field(fitted, name, int, path, prefix="fitted.") < minimum:
            raise ValueError(f"{path}: field 'fitted.{name}' is {fitted[name]}; it must be at least {minimum}.")
    if "feature_names_in_" in fitted:
        names = _field(fitted, "feature_names_in_", list, path, prefix="fitted.")
        if len(names) != fitted["n_features_in_"] or not all(isinstance(name, str) for name in names):
            raise ValueError(
                f"{path}: field 'fitted.feature_names_in_' must be a list of {fitted['n_features_in_']} strings "
                "(fitted.n_features_in_)."
            )
    if "lr_" in fitted and (isinstance(fitted["lr_"], bool) or not isinstance(fitted["lr_"], (int, float))
                            or not fitted["lr_"] > 0):
        raise ValueError(f"{path}: field 'fitted.lr_' is {fitted['lr_']!r}; it must be a positive number.")
    if "amp_" in fitted and not isinstance(fitted["amp_"], bool):
        raise ValueError(f"{path}: field 'fitted.amp_' is {fitted['amp_']!r}; it must be true or false.")
    if "anneal_steps" not in config:
        raise ValueError(f"{path} has no field 'anneal_steps'; the file is damaged or was edited.")
    history = _field(config, "history", list, path)
    for index, entry in enumerate(history):
        if not isinstance(entry, dict) or not isinstance(entry.get("batches", []), list):
            raise ValueError(f"{path}: field 'history[{index}]' must be an object whose 'batches' is a list.")
    return config


def _is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _field(mapping: dict, name: str, kind: type, path: Path, *, prefix: str = ""):
    """``mapping[name]``, checked to be present and of JSON type ``kind``."""
    if name not in mapping:
        raise ValueError(f"{path} has no field '{prefix}{name}'; the file is damaged or was edited.")
    value = mapping[name]
    if not (_is_int(value) if kind is int else isinstance(value, kind)):
        raise ValueError(f"{path}: field '{prefix}{name}' is {value!r}; expected a JSON {_JSON_TYPE_NAMES[kind]}.")
    return value


_JSON_TYPE_NAMES = {int: "integer", str: "string", dict: "object", list: "array"}


def _checked_n_latents(params: dict, config: dict, path: Path) -> int:
    """The model's number of latents, after checking every saved parameter as ``fit`` would, and against the rest."""
    expected = set(PARAMETER_CONSTRAINTS)
    for name, value in PARAMS_ADDED_IN_FORMAT_1.items():
        params.setdefault(name, value)
    unknown, missing = sorted(set(params) - expected), sorted(expected - set(params))
    # Strict both ways: a parameter filled with today's default could silently change a saved model.
    if unknown or missing:
        raise ValueError(
            f"{path}: field 'params' does not match {ESTIMATOR_NAME}'s parameters "
            f"(unknown: {unknown or 'none'}; missing: {missing or 'none'}). The file is damaged, or it was saved "
            "by another version of sklearn-sae."
        )
    fitted = config["fitted"]
    try:
        check_params(params)
        # n_latents=None was resolved from the training rows, which the file does not hold: take the saved count
        resolved = params if params["n_latents"] is not None else {**params, "n_latents": fitted["n_latents_"]}
        n_latents = resolve_n_latents(resolved, fitted["n_features_in_"])
    except ValueError as error:  # sklearn's InvalidParameterError is a ValueError too
        raise ValueError(f"{path}: field 'params' is not valid: {error}") from None
    anneal_steps = config["anneal_steps"]
    if params["activation"] == "gumbel_topk" and not (_is_int(anneal_steps) and anneal_steps >= 1):
        raise ValueError(f"{path}: field 'anneal_steps' is {anneal_steps!r}; a gumbel_topk model needs an int >= 1.")
    narrowing = params["activation"] in ("topk", "batchtopk")  # from k_start
    if narrowing and not (anneal_steps is None or (_is_int(anneal_steps) and anneal_steps >= 0)):
        raise ValueError(
            f"{path}: field 'anneal_steps' is {anneal_steps!r}; a {params['activation']} model needs null or an "
            "int >= 0."
        )
    if params["activation"] != "gumbel_topk" and not narrowing and anneal_steps is not None:
        raise ValueError(
            f"{path}: field 'anneal_steps' is {anneal_steps!r}; it must be null unless params.activation is "
            "'gumbel_topk', 'topk' or 'batchtopk'."
        )
    if n_latents != fitted["n_latents_"]:
        raise ValueError(
            f"{path}: field 'fitted.n_latents_' is {fitted['n_latents_']}, but the parameters give "
            f"n_latents={n_latents} (params.n_latents={params['n_latents']})."
        )
    return n_latents


def read_safetensors(path: Path) -> dict:
    """The tensors of a safetensors file, on the CPU; an unreadable or damaged file is a ValueError naming it."""
    try:
        return load_file(path, device="cpu")
    except (SafetensorError, OSError) as error:
        raise ValueError(f"{path} is not a readable safetensors file ({error}).") from None


def _read_weights(path: Path, config: dict, expected: dict, config_path: Path) -> dict:
    """The tensors of ``path`` on the CPU, after checking them against the config and ``expected``."""
    if not path.is_file():
        raise ValueError(f"{path} is missing; a saved model needs {WEIGHTS_NAME} beside {CONFIG_NAME}.")
    if _sha256(path) != config["weights_sha256"]:
        raise ValueError(
            f"{path} does not match the checksum in {config_path} (field 'weights_sha256'): the weights file is "
            "damaged or truncated, or it was replaced after saving."
        )
    tensors = read_safetensors(path)
    missing, extra = sorted(set(expected) - set(tensors)), sorted(set(tensors) - set(expected))
    if missing or extra:
        raise ValueError(
            f"{path} does not hold the tensors {config_path} describes: missing {missing or 'none'}, "
            f"unexpected {extra or 'none'} (check fields 'params.tied' and 'params.activation')."
        )
    for name, (shape, dtype) in expected.items():
        if tuple(tensors[name].shape) != shape:
            raise ValueError(
                f"{path}: tensor '{name}' has shape {tuple(tensors[name].shape)}, but {config_path} (fields "
                f"'fitted.n_features_in_' and 'fitted.n_latents_') gives {shape}."
            )
        if tensors[name].dtype != dtype:
            raise ValueError(f"{path}: tensor '{name}' has dtype {tensors[name].dtype}; expected {dtype}.")
    return tensors
