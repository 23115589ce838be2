"""Sparse autoencoders for protein (and other) embeddings, as scikit-learn transformers."""

from ._transformer import SparseAutoencoderTransformer
from .datasets import load_embeddings

__all__ = ["SparseAutoencoderTransformer", "load_embeddings"]
__version__ = "0.1.0"
