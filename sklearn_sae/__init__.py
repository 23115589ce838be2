"""Sparse autoencoders for protein (and other) embeddings, as scikit-learn transformers."""

import importlib

__all__ = ["SparseAutoencoderTransformer", "load_embeddings"]
__version__ = "0.1.0"

_LAZY = {"SparseAutoencoderTransformer": "._transformer", "load_embeddings": ".datasets"}
"""Public names imported on first use, so that ``sklearn_sae.interpret`` (codes and labels only)
works without importing PyTorch."""


def __getattr__(name):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(__all__))
