"""The estimator's ``device`` parameter: what each value means, and why one cannot be used.

Below the estimator, so that the modules that save, load and export a model
apply the same rule without importing the estimator.
"""

from __future__ import annotations

import re

import torch

__all__ = ["resolve_device"]


def resolve_device(device: str) -> str:
    """Turn the ``device`` parameter into a torch device string, or explain why it cannot be used."""
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device == "cpu":
        return device
    match = re.fullmatch(r"cuda(?::(\d+))?", device)
    if match is None:
        raise ValueError(f"device={device!r} is not understood; use 'auto', 'cpu', 'cuda' or 'cuda:N'.")
    if not torch.cuda.is_available():
        raise ValueError(
            f"device={device!r} was requested but PyTorch sees no CUDA GPU "
            "(torch.cuda.is_available() is False). Use device='cpu', or device='auto' to take a GPU only when there is one."
        )
    if match.group(1) is not None and int(match.group(1)) >= torch.cuda.device_count():
        raise ValueError(f"device={device!r} does not exist: PyTorch sees {torch.cuda.device_count()} CUDA device(s).")
    return device
