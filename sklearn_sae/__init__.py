"""Sparse autoencoders for protein (and other) embeddings, as scikit-learn transformers."""

from ._transformer import SparseAutoencoderTransformer

__all__ = ["SparseAutoencoderTransformer"]
__version__ = "0.1.0"
