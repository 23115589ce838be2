"""The sparse autoencoder as a torch module: no sklearn, no skorch.

::

    x_norm, mu, sigma = layer_norm_no_affine(x)      # normalize=True
    z_pre = (x_norm - pre_bias) @ W_enc.T + b_lat
    h     = activation(z_pre)
    y_pre = h @ W_dec + pre_bias                     # tied=True: W_dec is W_enc
    x_hat = y_pre * sigma + mu

``W_enc`` and ``W_dec`` both have shape ``(n_latents, n_features)``: row ``i``
of ``W_dec`` is the dictionary atom of latent ``i``. Tying the decoder makes
the two one parameter.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import nn

__all__ = ["SparseAutoencoder", "SAEOutput", "layer_norm_no_affine", "nmse_loss", "l1_penalty"]

LAYER_NORM_EPS = 1e-5
"""Added to the variance in :func:`layer_norm_no_affine`, as ``nn.LayerNorm`` does."""

NORM_EPS = 1e-12
"""Floor of ``||x||`` in the loss terms, so that an all-zero row gives a finite loss."""


class SAEOutput(NamedTuple):
    """What :meth:`SparseAutoencoder.forward` returns."""

    x_hat: torch.Tensor
    """Reconstruction in input units, ``(batch, n_features)``."""
    codes: torch.Tensor
    """Sparse codes ``h``, ``(batch, n_latents)``."""
    pre_activations: torch.Tensor
    """Encoder output before the activation, ``(batch, n_latents)``."""


def layer_norm_no_affine(x: torch.Tensor, eps: float = LAYER_NORM_EPS):
    """Standardise each row to zero mean and unit variance, with no learned scale or shift.

    Returns
    -------
    x_norm, mu, sigma : torch.Tensor
        The standardised rows and the per-row mean and scale, ``(batch, 1)``
        each, such that ``x == x_norm * sigma + mu``.
    """
    mu = x.mean(dim=-1, keepdim=True)
    centred = x - mu
    sigma = (centred.square().mean(dim=-1, keepdim=True) + eps).sqrt()
    return centred / sigma, mu, sigma


def nmse_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``||x_hat - x||^2 / ||x||^2``."""
    error = (x_hat - x).square().sum(dim=-1)
    return (error / x.square().sum(dim=-1).clamp_min(NORM_EPS**2)).mean()


def l1_penalty(codes: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``||h||_1 / ||x||_2``: an L1 penalty that ignores the input scale."""
    return (codes.abs().sum(dim=-1) / x.norm(dim=-1).clamp_min(NORM_EPS)).mean()


class SparseAutoencoder(nn.Module):
    """Single-layer sparse autoencoder with optional per-sample normalisation.

    Parameters
    ----------
    n_features : int
        Width of the input vectors.
    n_latents : int
        Number of latents (dictionary atoms).
    activation : nn.Module
        Maps pre-activations to codes, see :mod:`sklearn_sae._activations`.
    normalize : bool, default=True
        Standardise each input row before encoding and undo it after decoding.
    tied : bool, default=True
        Use the encoder weight as the decoder (one parameter).
    """

    def __init__(self, n_features: int, n_latents: int, activation: nn.Module, *, normalize: bool = True, tied: bool = True):
        super().__init__()
        self.n_features = n_features
        self.n_latents = n_latents
        self.normalize = normalize
        self.tied = tied
        self.activation = activation
        self.pre_bias = nn.Parameter(torch.zeros(n_features))
        self.b_lat = nn.Parameter(torch.zeros(n_latents))
        self.W_enc = nn.Parameter(torch.empty(n_latents, n_features))
        self.W_dec = None if tied else nn.Parameter(torch.empty(n_latents, n_features))
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Kaiming-uniform encoder; decoder atoms of unit norm.

        An untied decoder starts as a copy of the encoder's rows, as in
        OpenAI's Top-K autoencoders, so encoder and decoder begin aligned.
        """
        nn.init.kaiming_uniform_(self.W_enc, nonlinearity="relu")
        if self.tied:
            self.W_enc.div_(self.W_enc.norm(dim=1, keepdim=True))
        else:
            self.W_dec.copy_(self.W_enc / self.W_enc.norm(dim=1, keepdim=True))
        self.pre_bias.zero_()
        self.b_lat.zero_()

    @property
    def decoder_weight(self) -> torch.Tensor:
        """``W_dec``, ``(n_latents, n_features)``: one dictionary atom per row."""
        return self.W_enc if self.tied else self.W_dec

    def preprocess(self, x: torch.Tensor):
        """Return ``(x_norm, mu, sigma)``; the identity when ``normalize=False``."""
        if self.normalize:
            return layer_norm_no_affine(x)
        return x, x.new_zeros(()), x.new_ones(())

    def encode_pre(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(x_norm - pre_bias) @ W_enc.T + b_lat``."""
        return nn.functional.linear(x_norm - self.pre_bias, self.W_enc, self.b_lat)

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder output in the model's (normalised) space: ``codes @ W_dec + pre_bias``."""
        return codes @ self.decoder_weight + self.pre_bias

    def forward(self, x: torch.Tensor) -> SAEOutput:
        x_norm, mu, sigma = self.preprocess(x)
        z_pre = self.encode_pre(x_norm)
        # Selection runs in float32 even under autocast: bf16 ties would make top-k arbitrary.
        codes = self.activation(z_pre.float())
        x_hat = self.decode(codes) * sigma + mu
        return SAEOutput(x_hat, codes, z_pre)
