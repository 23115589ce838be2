"""Resumable fits: the whole training state is written at the end of every epoch and read back on resume.

A fit given a ``checkpoint_dir`` writes ``checkpoint_dir/latest`` after each epoch, as one atomic
directory (:func:`sklearn_sae._atomic.atomic_directory`), so a fit killed at any moment leaves either
the previous epoch's checkpoint or the new one, never a mix. A later fit in the same directory with
the same settings and data picks up after the last complete epoch and, on the CPU with an int
``random_state``, ends bit-identical to a fit that was never interrupted.

What a checkpoint holds, and why each piece is needed for an exact continuation:

``module.safetensors``
    The module's parameters and buffers: weights, the position of the activation's start-up schedule
    (``n_steps``: Gumbel annealing, Top-K's narrowing from ``k_start``) and the dead-latent counters
    (``rows_since_fired``).
``training_state.pt``
    Adam's moments, the state of the LR schedulers, the torch RNG states (batch order and Gumbel noise
    draw from them) and early stopping's best weights. Written with ``torch.save`` and read with
    ``torch.load(weights_only=True)``, which rebuilds tensors and plain containers only and never runs
    code from the file.
``history.json``
    skorch's history, so the resumed fit's ``history_`` covers every epoch.
``checkpoint.json``
    The format version, the fingerprint of the settings and data, the seed the fit drew (the
    validation split depends on it), the number of complete epochs, whether the fit has finished
    (early stopping ended it, or it ran all its epochs), and the counters that skorch's callbacks
    carry from epoch to epoch (best scores, early-stopping misses, the LR schedule's batch count).

When a fit finishes, the checkpoint is written once more, with the weights the fit returns (early
stopping's best epoch restored) and ``"finished": true``: a later fit in the same directory gives
that model back without training.

skorch's own ``Checkpoint`` / ``LoadInitState`` pair shows the pattern followed here (save at epoch
end, restore in ``on_train_begin``) but does not fit as is: ``Checkpoint`` writes its files one by one
(a kill between two leaves a mismatched set) and keeps the callbacks' state only by pickling them, the
RNG state not at all; and a fit resumed through ``LoadInitState`` trains ``max_epochs`` more epochs
instead of the remaining ones.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from numbers import Integral, Real
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from skorch.callbacks import Callback, EarlyStopping, LRScheduler
from skorch.history import History

from ._atomic import (
    TEMPORARY_PREFIX,
    atomic_directory,
    check_replaceable,
    recover_replaced_directory,
    unexpected_entries,
)

__all__ = ["TrainingCheckpoint", "open_checkpoint", "training_fingerprint"]

CHECKPOINT_NAME = "latest"
"""The checkpoint's directory inside ``checkpoint_dir``: atomic replacement needs a sub-directory, so
that the temporary copies of work in progress stay inside the user's directory."""

CHECKPOINT_FILES = ("module.safetensors", "training_state.pt", "history.json", "checkpoint.json")
"""Every file a checkpoint holds; a ``latest`` directory holding anything else is not the package's to replace."""

WRITER = "fit() with checkpoint_dir"
"""The call that writes checkpoints, as refusals name it."""

FORMAT = "sklearn-sae-checkpoint"
FORMAT_VERSION = 2
"""2: every fit draws its validation split and epoch orders from ``numpy.random.default_rng([seed, ...])``
(:mod:`sklearn_sae._rows`); a version-1 checkpoint would resume with other batches than it started with."""

UNTRAINED_PARAMS = frozenset({"checkpoint_dir", "verbose", "device", "sparse_output"})
"""Estimator parameters that do not change what training computes, left out of the fingerprint.
``device`` is among them so that a fit interrupted on a GPU may go on elsewhere; only a continuation on
the same device is bit-identical."""

FINGERPRINT_ROWS = 256
"""Rows hashed to recognise the data: evenly spaced, so a different array of the same shape is caught
at the cost of hashing a few KB, while a change confined to rows between them is not."""


def data_fingerprint(X: np.ndarray) -> dict:
    """Shape, dtype and a hash of :data:`FINGERPRINT_ROWS` evenly spaced rows of ``X``."""
    rows = np.unique(np.linspace(0, len(X) - 1, num=min(len(X), FINGERPRINT_ROWS)).astype(np.intp))
    sample = np.ascontiguousarray(X[rows])
    return {
        "shape": list(X.shape),
        "dtype": str(X.dtype),
        "sample_sha256": hashlib.sha256(sample.tobytes()).hexdigest(),
    }


def _plain(value):
    """A parameter value as JSON stores it, so that a fingerprint compares equal after a round trip."""
    if isinstance(value, (bool, str)) or value is None:
        return value
    if isinstance(value, Integral):
        return int(value)
    if isinstance(value, Real):
        return float(value)
    return repr(value)


def training_fingerprint(params: dict, X: np.ndarray, eval_sets: dict | None = None) -> dict:
    """What a checkpoint must have been trained with to be resumed by this fit.

    Parameters
    ----------
    params : dict
        The estimator's parameters (``get_params(deep=False)``).
    X : ndarray of shape (n_samples, n_features)
        The validated training rows.
    eval_sets : dict of str to torch.Tensor, default=None
        The validated extra data sets; they add columns to the history.

    Returns
    -------
    fingerprint : dict
        JSON-serialisable; two fits may share a checkpoint only when their fingerprints are equal.
    """
    trained = {}
    for name, value in sorted(params.items()):
        if name in UNTRAINED_PARAMS:
            continue
        if name == "random_state" and not isinstance(value, Integral):
            # None or a RandomState instance: a fresh seed each fit, so the checkpoint keeps the seed it drew.
            value = None
        trained[name] = _plain(value)
    data = {"X": data_fingerprint(X)}
    for name, tensor in sorted((eval_sets or {}).items()):
        data[f"eval_sets[{name!r}]"] = data_fingerprint(tensor.numpy())
    return {"params": trained, "data": data}


def _fingerprint_differences(saved: dict, current: dict) -> list[str]:
    differences = []
    for section in ("params", "data"):
        before, now = saved.get(section, {}), current[section]
        for name in sorted(set(before) | set(now)):
            if before.get(name) != now.get(name):
                differences.append(
                    f"{name}: {_describe(before, name)} in the checkpoint, {_describe(now, name)} in this fit"
                )
    return differences


def _describe(section: dict, name: str) -> str:
    if name not in section:
        return "absent"
    value = section[name]
    if isinstance(value, dict) and "shape" in value:  # a data fingerprint
        return f"shape {tuple(value['shape'])} {value['dtype']}, rows hashed to {value['sample_sha256'][:12]}"
    return repr(value)


def foreign_checkpoint_content(path: Path) -> str | None:
    """What in an existing checkpoint directory ``path`` the package did not write; ``None`` when it wrote all of it.

    A checkpoint of any format version is the package's: its ``checkpoint.json`` names the checkpoint
    format, and it holds no file but :data:`CHECKPOINT_FILES`.
    """
    try:
        metadata = json.loads((path / "checkpoint.json").read_bytes())
    except (OSError, ValueError):  # missing, unreadable, not JSON
        metadata = None
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        return f"it has no checkpoint.json naming the format {FORMAT!r}, so it is not a checkpoint sklearn-sae wrote"
    return unexpected_entries(path, CHECKPOINT_FILES, writer="a checkpoint")


def _remove_interrupted_writes(directory: Path) -> None:
    """Delete the temporary directories of checkpoint writes that a killed process never finished."""
    for leftover in directory.glob(f"{TEMPORARY_PREFIX}{CHECKPOINT_NAME}-*"):
        shutil.rmtree(leftover, ignore_errors=True)


def _read_metadata(path: Path) -> dict:
    try:
        metadata = json.loads((path / "checkpoint.json").read_text())
    except (OSError, ValueError) as error:
        raise ValueError(
            f"{path} is not a readable checkpoint ({error}). Delete it to start the fit afresh, "
            "or use another checkpoint_dir."
        ) from error
    if metadata.get("format") != FORMAT or metadata.get("format_version") != FORMAT_VERSION:
        raise ValueError(
            f"{path} holds a checkpoint in format {metadata.get('format')!r} version "
            f"{metadata.get('format_version')!r}; this version of sklearn_sae reads {FORMAT!r} version "
            f"{FORMAT_VERSION}. Resume it with the sklearn_sae version that wrote it, or delete it to start afresh."
        )
    return metadata


def open_checkpoint(checkpoint_dir, fingerprint: dict, *, seed: int) -> TrainingCheckpoint:
    """The checkpoint callback of a fit in ``checkpoint_dir``: a fresh start, or the resumption of the checkpoint there.

    Parameters
    ----------
    checkpoint_dir : str or os.PathLike
        The estimator's ``checkpoint_dir``; created on the first write if missing.
    fingerprint : dict
        This fit's :func:`training_fingerprint`.
    seed : int
        The seed this fit drew; a resumed fit uses the seed of the fit it resumes instead.

    Returns
    -------
    checkpoint : TrainingCheckpoint
        Its ``epochs_done`` is the number of complete epochs to resume after (0 for a fresh start),
        its ``seed`` the seed the fit must use, and ``finished`` whether the fit there is done (no
        epoch is left to train).

    Raises
    ------
    ValueError
        If ``checkpoint_dir`` is a file, or its ``latest`` entry is not a checkpoint this package wrote (it is
        never replaced then), or holds a checkpoint written with other settings or other data,
        or one that cannot be read.
    """
    directory = Path(checkpoint_dir)
    if directory.exists() and not directory.is_dir():
        raise ValueError(f"checkpoint_dir={str(checkpoint_dir)!r} is a file; give a directory.")
    path = directory / CHECKPOINT_NAME
    if directory.is_dir():
        recover_replaced_directory(path)  # killed between the two renames of the last write
        _remove_interrupted_writes(directory)
    # Before the first epoch, not after it: a ``latest`` that is not a checkpoint is refused at once.
    check_replaceable(path, foreign_checkpoint_content, writer=WRITER, directory=True)
    if not path.is_dir() or not any(path.iterdir()):
        return TrainingCheckpoint(directory, fingerprint, seed=seed)
    metadata = _read_metadata(path)
    differences = _fingerprint_differences(metadata["fingerprint"], fingerprint)
    if differences:
        raise ValueError(
            f"checkpoint_dir={str(checkpoint_dir)!r} holds the checkpoint of a fit with other settings or data, "
            "which this fit cannot resume:\n  " + "\n  ".join(differences) + "\n"
            "Use another checkpoint_dir for this fit, or delete that directory to start afresh."
        )
    return TrainingCheckpoint(
        directory, fingerprint, seed=metadata["seed"], epochs_done=metadata["epochs_done"],
        finished=bool(metadata.get("finished", False)),  # absent from checkpoints written before it was recorded
    )


def _callback_counters(net) -> dict:
    """The numbers skorch's callbacks carry from one epoch to the next, by callback name.

    These are the fitted attributes (names ending in ``_``) holding a number: best scores, early
    stopping's misses and threshold, the LR schedule's batch count. Flags such as the epoch table's
    "header printed" are left out, so a resumed fit prints its table's header again.
    """
    counters = {}
    for name, callback in net.callbacks_:
        numbers = {}
        for attribute, value in vars(callback).items():
            if attribute.startswith("_") or not attribute.endswith("_") or isinstance(value, (bool, np.bool_)):
                continue
            if isinstance(value, (Real, np.number)):
                numbers[attribute] = value.item() if isinstance(value, np.generic) else value
        if numbers:
            counters[name] = numbers
    return counters


def _rng_states(device: torch.device) -> dict:
    states = {"cpu": torch.get_rng_state()}
    if device.type == "cuda":
        states["cuda"] = torch.cuda.get_rng_state(device)
    return states


def _tensor_states(net) -> dict:
    """Everything of the training state that is tensors (or optimizer-style dicts of them)."""
    schedulers, best_weights = {}, {}
    for name, callback in net.callbacks_:
        if isinstance(callback, LRScheduler) and getattr(callback, "lr_scheduler_", None) is not None:
            schedulers[name] = callback.lr_scheduler_.state_dict()
        if isinstance(callback, EarlyStopping) and getattr(callback, "best_model_weights_", None) is not None:
            best_weights[name] = callback.best_model_weights_
    return {
        "optimizer": net.optimizer_.state_dict(),
        "lr_schedulers": schedulers,
        "best_model_weights": best_weights,
        "rng": _rng_states(torch.device(net.device)),
    }


def _json_number(value):
    """NumPy scalars, which a callback may record in the history, as the Python numbers JSON writes."""
    if isinstance(value, np.generic):
        return value.item()
    raise TypeError(f"{type(value).__name__} in the training history cannot be written to a checkpoint.")


def write_checkpoint(path: Path, net, *, fingerprint: dict, seed: int, finished: bool = False) -> None:
    """Write the net's whole training state to the directory ``path``, atomically; ``finished`` marks a done fit."""
    with atomic_directory(path, foreign=foreign_checkpoint_content, writer=WRITER) as temporary:
        module_state = {name: tensor.detach().cpu().contiguous() for name, tensor in net.module_.state_dict().items()}
        save_file(module_state, temporary / "module.safetensors")
        torch.save(_tensor_states(net), temporary / "training_state.pt")
        (temporary / "history.json").write_text(json.dumps(net.history.to_list(), default=_json_number))
        metadata = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "fingerprint": fingerprint,
            "seed": seed,
            "epochs_done": len(net.history),
            "finished": finished,
            "callback_counters": _callback_counters(net),
        }
        (temporary / "checkpoint.json").write_text(json.dumps(metadata, indent=1))


def restore_checkpoint(path: Path, net) -> dict:
    """Load the training state in ``path`` into an initialised net; returns the checkpoint's metadata.

    Called once every callback has run ``on_train_begin``: what they reset there (the LR scheduler,
    early stopping) is overwritten, and the RNG is restored last, after anything they drew from it.
    """
    metadata = _read_metadata(path)
    device = torch.device(net.device)
    net.module_.load_state_dict(load_file(path / "module.safetensors"))
    # weights_only: the file is rebuilt from tensors and plain containers, no code in it is run.
    state = torch.load(path / "training_state.pt", map_location="cpu", weights_only=True)
    net.optimizer_.load_state_dict(state["optimizer"])
    callbacks = dict(net.callbacks_)
    for name, scheduler_state in state["lr_schedulers"].items():
        callbacks[name].lr_scheduler_.load_state_dict(scheduler_state)
    for name, weights in state["best_model_weights"].items():
        callbacks[name].best_model_weights_ = {key: tensor.to(device) for key, tensor in weights.items()}
    for name, numbers in metadata["callback_counters"].items():
        for attribute, value in numbers.items():
            setattr(callbacks[name], attribute, value)
    net.history = History(json.loads((path / "history.json").read_text()))
    torch.set_rng_state(state["rng"]["cpu"])
    if device.type == "cuda" and "cuda" in state["rng"]:
        torch.cuda.set_rng_state(state["rng"]["cuda"], device)
    return metadata


class TrainingCheckpoint(Callback):
    """Write a checkpoint at the end of every epoch and, marked finished, at the end of the fit; restore one on resume.

    Must be the net's last callback: its ``on_epoch_end`` then saves what
    every other callback recorded for the epoch, and its ``on_train_begin``
    overwrites what the others reset or drew at the start of training.
    Build it with :func:`open_checkpoint`.

    Parameters
    ----------
    directory : pathlib.Path
        The ``checkpoint_dir``; the checkpoint is its sub-directory
        :data:`CHECKPOINT_NAME`.
    fingerprint : dict
        The fit's :func:`training_fingerprint`, written with each checkpoint.
    seed : int
        The seed the fit runs with, written with each checkpoint.
    epochs_done : int, default=0
        Complete epochs of the checkpoint to resume; 0 starts afresh.
    finished : bool, default=False
        Whether the checkpoint holds a finished fit, which is then restored and not trained further.
    """

    def __init__(self, directory, fingerprint, *, seed, epochs_done=0, finished=False):
        self.directory = directory
        self.fingerprint = fingerprint
        self.seed = seed
        self.epochs_done = epochs_done
        self.finished = finished

    @property
    def path(self) -> Path:
        return Path(self.directory) / CHECKPOINT_NAME

    def on_train_begin(self, net, **kwargs):
        self._epochs_written = None  # the epochs of this fit's last write (on_train_end checks it is the last epoch)
        if not self.epochs_done:
            return
        metadata = restore_checkpoint(self.path, net)
        if metadata["epochs_done"] != self.epochs_done or len(net.history) != self.epochs_done:
            raise ValueError(
                f"The checkpoint in {self.directory} changed while this fit was starting (another fit writing "
                "to the same checkpoint_dir?). Give each fit its own checkpoint_dir."
            )
        if net.verbose:
            done = " (a finished fit: nothing is left to train)" if self.finished else ""
            print(f"Resuming after epoch {self.epochs_done} from the checkpoint in {self.directory}{done}.")

    def on_epoch_end(self, net, **kwargs):
        write_checkpoint(self.path, net, fingerprint=self.fingerprint, seed=self.seed)
        self._epochs_written = len(net.history)

    def on_train_end(self, net, **kwargs):
        # Early stopping ends a fit by raising in its own on_epoch_end, before this callback's: the stopping epoch
        # is written here, with the weights restored from the best epoch, and so is the end of a fit that ran all
        # its epochs. A fit stopped by the user (skorch catches KeyboardInterrupt) is not finished.
        if self.finished:
            return  # restored, not trained: the checkpoint already says so
        stopped_early = any(
            isinstance(callback, EarlyStopping) and getattr(callback, "misses_", 0) >= callback.patience
            for _, callback in net.callbacks_
        )
        ran_every_epoch = self._epochs_written == len(net.history) >= net.max_epochs
        if stopped_early or ran_every_epoch:
            write_checkpoint(self.path, net, fingerprint=self.fingerprint, seed=self.seed, finished=True)
