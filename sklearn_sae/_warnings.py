"""Warnings that point at the user's line, however deep in the package they are raised."""

from __future__ import annotations

import contextlib
import os
import sys
import warnings

__all__ = ["warn_user"]


def _package_dir(name: str) -> str | None:
    module = sys.modules.get(name)
    path = getattr(module, "__file__", None)
    return os.path.dirname(path) + os.sep if path else None


def _internal_prefixes() -> tuple[str, ...]:
    # The package itself, and the libraries whose frames sit between a public method and the raise (sklearn's
    # _fit_context wrapper, skorch's training loop and callbacks, torch's no_grad and contextlib's decorators).
    names = ("sklearn_sae", "sklearn", "skorch", "torch", "accelerate")
    return tuple(prefix for prefix in map(_package_dir, names) if prefix) + (contextlib.__file__,)


def warn_user(message: str, category: type[Warning] = UserWarning) -> None:
    """Issue a warning attributed to the first frame outside this package and the libraries it runs in.

    A ``stacklevel`` counted by hand breaks whenever a call moves one level
    deeper; this finds the user's frame instead, so ``python -W error`` and
    warning filters by module see the line that called ``fit``.
    """
    internal = _internal_prefixes()
    frame, level = sys._getframe(1), 2  # level 2: warn_user's caller
    while frame is not None and frame.f_code.co_filename.startswith(internal):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level if frame is not None else 2)
