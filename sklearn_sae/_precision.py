"""The estimator's ``amp`` parameter: whether a fit computes its matrix products in bfloat16.

``amp=True`` and ``amp=False`` mean what they say. ``amp="auto"`` takes
bfloat16 where the device multiplies bfloat16 matrices natively, so that a
bfloat16 product is faster than a float32 one, and float32 elsewhere:

- a CUDA GPU of compute capability 8.0 or above (Ampere on), whose tensor
  cores take bfloat16;
- a CPU with AMX (``amx_bf16``: Intel Xeon from Sapphire Rapids on) or with
  AVX-512 BF16 (``avx512_bf16``: Intel Cooper Lake, AMD Zen 4 on), on which
  oneDNN multiplies bfloat16 matrices with bfloat16 dot-product instructions.
  Without either, bfloat16 is converted to float32 inside the product and is
  slower than float32 itself.

The choice depends on the hardware only, never on a timing, so a fit with an
int ``random_state`` gives the same result on the same machine every time.
Below the estimator: the parameter layer resolves it, the estimator records
it as ``amp_``.
"""

from __future__ import annotations

import functools
from pathlib import Path

import torch

from ._device import resolve_device

__all__ = ["AMP_CPU_FLAGS", "cpu_flags", "bfloat16_is_native", "resolve_amp"]

AMP_CPU_FLAGS = ("amx_bf16", "avx512_bf16")
"""CPU features (as Linux's ``/proc/cpuinfo`` names them) under which ``amp="auto"`` takes bfloat16 on a CPU."""

REPORTED_CPU_FLAGS = ("avx2", "avx512f", "avx512_bf16", "amx_tile", "amx_bf16")
"""The CPU features :func:`cpu_flags` reports (what decides the speed of float32 and bfloat16 products)."""

# torch.cpu.get_capabilities() (torch >= 2.10) names some features otherwise than /proc/cpuinfo does.
_TORCH_NAMES = {"avx512f": "avx512_f"}


@functools.lru_cache(maxsize=1)
def cpu_flags() -> dict:
    """Which of :data:`REPORTED_CPU_FLAGS` this CPU has, ``{name: bool}``.

    From torch's own CPU detection where it offers one (the features torch
    dispatches on), else from ``/proc/cpuinfo``; a feature that neither
    reports counts as absent.
    """
    capabilities = getattr(torch.cpu, "get_capabilities", None)
    if capabilities is not None:
        found = capabilities()
        return {name: bool(found.get(_TORCH_NAMES.get(name, name), False)) for name in REPORTED_CPU_FLAGS}
    listed = set()
    try:
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8", errors="replace").splitlines():
            if line.startswith("flags"):
                listed = set(line.partition(":")[2].split())
                break
    except OSError:  # not Linux: report what torch itself can tell
        if hasattr(torch.cpu, "_is_amx_tile_supported"):
            listed = {"amx_tile", "amx_bf16"} if torch.cpu._is_amx_tile_supported() else set()
    return {name: name in listed for name in REPORTED_CPU_FLAGS}


def bfloat16_is_native(device: str) -> bool:
    """Whether ``device`` (a resolved torch device string) multiplies bfloat16 matrices natively."""
    device = torch.device(device)
    if device.type == "cuda":
        return torch.cuda.get_device_capability(device) >= (8, 0)
    if device.type == "cpu":
        flags = cpu_flags()
        return any(flags[name] for name in AMP_CPU_FLAGS)
    return False


def resolve_amp(amp, device: str) -> bool:
    """The precision a fit with these ``amp`` and ``device`` parameters uses: True for bfloat16 products.

    Parameters
    ----------
    amp : bool or "auto"
        The estimator's ``amp`` parameter.
    device : str
        The estimator's ``device`` parameter (``"auto"`` is resolved here).
    """
    if isinstance(amp, str) and amp == "auto":
        return bfloat16_is_native(resolve_device(device))
    return bool(amp)
