"""The sparse autoencoder as a torch module: no sklearn, no skorch.

::

    x_norm, mu, sigma = layer_norm_no_affine(x)      # normalize=True
    x_in  = (x_norm - w_mean) @ W_white              # whiten=True; else x_in = x_norm
    z_pre = (x_in - pre_bias) @ W_enc.T + b_lat
    h     = activation(z_pre)
    y_pre = h @ W_dec + pre_bias                     # tied=True: W_dec is W_enc
    x_hat = (y_pre @ W_unwhite + w_mean) * sigma + mu

``W_enc`` and ``W_dec`` both have shape ``(n_latents, n_features)``: row ``i``
of ``W_dec`` is the dictionary atom of latent ``i``. Tying the decoder makes
the two one parameter.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, replace
from typing import NamedTuple

import torch
from torch import nn

from ._activations import BatchTopK, JumpReLU, TopK, TopKSelection, code_activity, make_activation
from ._sparse_ops import prefix_decodes, topk_sae_encode, topk_sae_forward

__all__ = [
    "ModelSpec",
    "SparseAutoencoder",
    "SAEOutput",
    "Whitened",
    "layer_norm_no_affine",
    "geometric_median",
    "nmse_loss",
    "l1_penalty",
    "auxk_loss",
]

LAYER_NORM_EPS = 1e-5
"""Added to the variance in :func:`layer_norm_no_affine`, as ``nn.LayerNorm`` does."""

NORM_EPS = 1e-12
"""Floor of a norm that is divided by (decoder atoms, projections)."""

WHITENING_EPS = 1e-3
"""Added to every eigenvalue of the covariance before whitening, relative to their mean: directions with less
variance than a thousandth of the average are damped rather than blown up to unit variance (SAELens adds 1e-3 to
the eigenvalues of activations of unit scale)."""


class Whitened(NamedTuple):
    """With ``whiten=True``, the rows and reconstructions in the whitened space the objective is measured in."""

    x: torch.Tensor
    """The whitened rows the encoder takes (before ``pre_bias``)."""
    x_hat: torch.Tensor
    """Their reconstruction, ``h @ W_dec + pre_bias``."""
    prefix_x_hats: tuple | None = None
    """Matryoshka only: each nested prefix's reconstruction."""
    aux_residual_hat: torch.Tensor | None = None
    """AuxK only: the dead latents' reconstruction of the residual ``x - x_hat``."""


class SAEOutput(NamedTuple):
    """What :meth:`SparseAutoencoder.forward` returns."""

    x_hat: torch.Tensor
    """Reconstruction in input units, ``(batch, n_features)``."""
    codes: torch.Tensor | TopKSelection
    """Codes ``h``: dense ``(batch, n_latents)``, or the kept ``(batch, k)`` values and indices (sparse path)."""
    pre_activations: torch.Tensor | None
    """Encoder output before the activation, ``(batch, n_latents)``; ``None`` on the sparse path."""
    aux_residual_hat: torch.Tensor | None = None
    """AuxK only (training with dead latents): the dead latents' reconstruction of ``x - x_hat``, input units."""
    prefix_x_hats: tuple | None = None
    """Matryoshka only: the reconstruction by each nested prefix of the dictionary (smallest first), input units."""
    l0_penalty: torch.Tensor | None = None
    """JumpReLU only: the mean number of active latents a row (the codes' L0), in training with a gradient for
    the thresholds (:meth:`~sklearn_sae._activations.JumpReLU.l0_penalty`)."""
    pre_act_penalty: torch.Tensor | None = None
    """JumpReLU in training with dead latents: how far their pre-activations fall short of their thresholds."""
    x_norm: torch.Tensor | None = None
    """The rows as the encoder takes them, ``(batch, n_features)``: standardised under ``normalize=True`` (and
    whitened under ``whiten=True``), else the input itself. The L1 penalty divides by their norms, so that it does
    not depend on the input's scale; ``None`` stands for the input itself."""
    whitened: Whitened | None = None
    """``whiten=True`` only: the rows and reconstructions in the whitened space, where the objective compares
    them; ``x_hat`` and ``prefix_x_hats`` above stay in input units and ``aux_residual_hat`` is ``None``."""


def ledoit_wolf_shrinkage(centred: torch.Tensor, eigenvalues: torch.Tensor) -> float:
    """Ledoit and Wolf's (2004) weight in [0, 1] of the scaled identity in the shrunk covariance of ``centred``.

    ``centred`` holds ``n`` rows minus their mean; ``eigenvalues`` are those of their covariance
    ``centred.T @ centred / (n - 1)``. With ``S`` the covariance over ``n`` and ``mu = trace(S) / d``, the
    weight is ``min(b2, d2) / d2`` where ``d2 = ||S - mu I||_F^2`` (how far ``S`` is from a scaled identity)
    and ``b2 = (mean_k ||x_k||^4 - ||S||_F^2) / n`` (how much of that distance the rows' sampling noise
    explains). Both come from the eigenvalues and the rows' norms, without a second ``d x d`` product.
    """
    n = centred.shape[0]
    eigenvalues = eigenvalues.double() * (n - 1) / n  # those of S
    frobenius2 = float(eigenvalues.square().sum())
    mu = float(eigenvalues.mean())
    distance2 = frobenius2 - mu * mu * len(eigenvalues)
    if distance2 <= 0:  # S is already a scaled identity
        return 0.0
    noise2 = (float(centred.double().square().sum(dim=1).square().mean()) - frobenius2) / n
    return min(max(noise2, 0.0), distance2) / distance2


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


def row_mean_ratio(numerator: torch.Tensor, denominator: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``numerator / denominator``, leaving out rows whose denominator is 0.

    Such a row (an all-zero input) has no defined ratio; flooring the
    denominator instead would let that one row swamp the batch's loss.
    """
    valid = denominator > 0
    ratios = torch.where(valid, numerator / denominator.clamp_min(torch.finfo(denominator.dtype).tiny), 0.0)
    return ratios.sum() / valid.sum().clamp_min(1)


def nmse_loss(x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``||x_hat - x||^2 / ||x||^2`` (all-zero rows of ``x`` left out)."""
    return row_mean_ratio((x_hat - x).square().sum(dim=-1), x.square().sum(dim=-1))


def auxk_loss(residual_hat: torch.Tensor, x_hat: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """NMSE of the dead latents' best-scaled reconstruction of the residual ``x - x_hat`` (AuxK).

    The residual is a fixed target: only the dead latents learn from this term.
    Unlike OpenAI's AuxK, the dead latents' reconstruction is first multiplied
    by the constant (no gradient) non-negative factor that fits it best to the
    residual, row by row. Without it, ``aux_k`` unit-norm atoms add up to far
    more than the small residual of a good fit, so the term mostly says
    "shrink": it lowers the dead latents' biases and turns their encoder rows
    away from the data, which kills more latents than it revives (on UniRep
    vectors of 256 proteins' features, a 640-row dead window took the dead
    fraction from 35% to 72%; ``benchmarks/README.md``). After the best scale
    the gradient only turns the dead atoms towards the residual.
    """
    residual = (x - x_hat).detach()
    fit = (residual_hat * residual).sum(dim=-1, keepdim=True)
    power = residual_hat.square().sum(dim=-1, keepdim=True)
    scale = (fit / power.clamp_min(torch.finfo(power.dtype).tiny)).clamp_min(0.0).detach()
    return row_mean_ratio((scale * residual_hat - residual).square().sum(dim=-1), residual.square().sum(dim=-1))


def geometric_median(points: torch.Tensor, n_iter: int = 100, tol: float = 1e-6) -> torch.Tensor:
    """Point minimising the summed Euclidean distance to ``points`` (Weiszfeld's algorithm).

    A robust centre: unlike the mean it is not dragged by the outlying
    embeddings that protein language models produce.
    """
    points = points.double()
    median = points.mean(dim=0)
    for _ in range(n_iter):
        weights = 1.0 / (points - median).norm(dim=1).clamp_min(1e-12)
        updated = (weights[:, None] * points).sum(dim=0) / weights.sum()
        shift = (updated - median).norm()
        median = updated
        if shift <= tol * median.norm().clamp_min(1.0):
            break
    return median


def l1_penalty(codes, x: torch.Tensor) -> torch.Tensor:
    """Mean over rows of ``||h||_1 / ||x||_2`` (all-zero rows of ``x`` left out).

    ``x`` is the rows as the encoder takes them (:attr:`SAEOutput.x_norm`):
    standardised under ``normalize=True``, so the penalty means the same on
    embeddings of any scale, whatever their norms. ``codes`` may be dense or
    a :class:`TopKSelection` (whose values are all the non-zeros).
    """
    values = codes.values if isinstance(codes, TopKSelection) else codes
    return row_mean_ratio(values.abs().sum(dim=-1), x.norm(dim=-1))


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
    aux_k : int, default=0
        Training forward passes also let the ``aux_k`` most active dead
        latents reconstruct the residual (:func:`auxk_loss`); 0 turns it off.
        With a :class:`~sklearn_sae._activations.JumpReLU` activation, any
        positive value turns on its pre-activation term for every dead latent
        instead (:meth:`_dead_pre_act_penalty`).
    dead_window : int, default=10_000
        A latent is dead once it has not fired for this many training rows.
    prefixes : tuple of int, default=()
        Matryoshka (Bussmann et al. 2025; Nabeshima 2024): the sizes of the
        nested prefixes of the dictionary that must each reconstruct the
        input too; :meth:`forward` then also returns their reconstructions.
        ``()`` is a plain SAE.
    whiten : bool, default=False
        Whiten the (standardised) rows with the data set's mean and
        covariance before encoding, and undo it after decoding; the
        statistics are buffers set by :meth:`fit_whitening_` (the identity
        until then). The weights, ``pre_bias`` and the objective live in the
        whitened space.
    """

    def __init__(
        self,
        n_features: int,
        n_latents: int,
        activation: nn.Module,
        *,
        normalize: bool = True,
        tied: bool = True,
        aux_k: int = 0,
        dead_window: int = 10_000,
        prefixes: tuple = (),
        whiten: bool = False,
    ):
        super().__init__()
        self.n_features = n_features
        self.n_latents = n_latents
        self.normalize = normalize
        self.tied = tied
        self.aux_k = aux_k
        self.dead_window = dead_window
        self.prefixes = tuple(int(size) for size in prefixes)
        self.whiten = whiten
        self.activation = activation
        if whiten:  # buffers: saved, loaded, checkpointed and moved with the weights
            self.register_buffer("whitening_mean", torch.zeros(n_features))
            self.register_buffer("whitening_matrix", torch.eye(n_features))
            self.register_buffer("unwhitening_matrix", torch.eye(n_features))
        # Training rows seen since each latent last fired; a buffer so it survives pickling.
        self.register_buffer("rows_since_fired", torch.zeros(n_latents, dtype=torch.long))
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

    @torch.no_grad()
    def init_pre_bias_(self, x: torch.Tensor, method: str = "geometric_median") -> None:
        """Set ``pre_bias`` to the centre of ``x`` as the encoder sees it (after normalisation).

        Centring the data at the start spares the optimiser from learning the
        offset that all embeddings share, so latents start on the variation.
        """
        if method == "zeros":
            self.pre_bias.zero_()
            return
        x_norm = self.preprocess(x)[0]
        centre = x_norm.mean(dim=0) if method == "mean" else geometric_median(x_norm)
        self.pre_bias.copy_(centre.to(self.pre_bias.dtype))

    @torch.no_grad()
    def fit_whitening_(self, x: torch.Tensor, eps: float = WHITENING_EPS) -> None:
        """Set the whitening statistics from the rows ``x`` (in input units): their mean and covariance.

        After standardisation (``normalize=True``), the rows' mean ``m`` and covariance ``C = E diag(l) E^T``
        (float64) give the symmetric (ZCA) whitening ``W = E diag(l')^(-1/2) E^T`` and its inverse, so whitened
        rows ``(x - m) @ W`` have about identity covariance and stay as close as possible to the rows themselves.
        The eigenvalues are shrunk towards their mean, ``l' = (1 - s) l + s mean(l) + eps mean(l)``, by the
        Ledoit-Wolf weight ``s`` the rows support (:func:`ledoit_wolf_shrinkage`): near 0 on many rows, near 1
        on fewer rows than dimensions, where the sample covariance is singular and unshrunk whitening would blow
        the noise of held-out rows in its empty directions up to unit variance. At least 2 rows are needed.
        """
        if x.shape[0] < 2:
            raise ValueError(f"whiten=True estimates a covariance and needs at least 2 training rows, got {x.shape[0]}.")
        x_norm = (layer_norm_no_affine(x)[0] if self.normalize else x).double()
        mean = x_norm.mean(dim=0)
        centred = x_norm - mean
        covariance = centred.T @ centred / (x_norm.shape[0] - 1)
        eigenvalues, eigenvectors = torch.linalg.eigh(covariance)
        eigenvalues = eigenvalues.clamp_min(0)
        shrinkage = ledoit_wolf_shrinkage(centred, eigenvalues)
        average = max(float(eigenvalues.mean()), torch.finfo(torch.float32).tiny)
        eigenvalues = (1 - shrinkage) * eigenvalues + (shrinkage + eps) * average
        self.whitening_mean.copy_(mean)
        self.whitening_matrix.copy_((eigenvectors * eigenvalues.rsqrt()) @ eigenvectors.T)
        self.unwhitening_matrix.copy_((eigenvectors * eigenvalues.sqrt()) @ eigenvectors.T)

    @torch.no_grad()
    def normalize_decoder_(self) -> None:
        """Rescale every decoder atom to unit norm."""
        self.decoder_weight.div_(self.decoder_weight.norm(dim=1, keepdim=True).clamp_min(NORM_EPS))

    @torch.no_grad()
    def remove_parallel_decoder_grad_(self) -> None:
        """Drop the part of each atom's gradient along the atom, which only changes its norm.

        With the atoms renormalised after every step, that part is undone
        anyway; removing it keeps Adam's moment estimates for what matters.
        """
        W, grad = self.decoder_weight, self.decoder_weight.grad
        if grad is not None:
            grad.sub_((grad * W).sum(dim=1, keepdim=True) * W / W.square().sum(dim=1, keepdim=True).clamp_min(NORM_EPS))

    @property
    def dead_latents(self) -> torch.Tensor:
        """Boolean mask of latents that have not fired in the last ``dead_window`` training rows."""
        return self.rows_since_fired >= self.dead_window

    @property
    def decoder_weight(self) -> torch.Tensor:
        """``W_dec``, ``(n_latents, n_features)``: one dictionary atom per row, in the space the model encodes."""
        return self.W_enc if self.tied else self.W_dec

    def atoms(self) -> torch.Tensor:
        """The dictionary atoms in the standardised input space (``W_dec``, unwhitened under ``whiten=True``)."""
        return self.decoder_weight @ self.unwhitening_matrix if self.whiten else self.decoder_weight

    def preprocess(self, x: torch.Tensor):
        """Return ``(x_in, mu, sigma)``: the rows as the encoder takes them, and each row's mean and scale.

        ``x_in`` is ``x`` standardised (``normalize=True``; else ``x`` itself, with mean 0 and scale 1), then
        whitened (``whiten=True``).
        """
        x_in, mu, sigma = layer_norm_no_affine(x) if self.normalize else (x, x.new_zeros(()), x.new_ones(()))
        if self.whiten:
            x_in = (x_in - self.whitening_mean.to(x_in.dtype)) @ self.whitening_matrix.to(x_in.dtype)
        return x_in, mu, sigma

    def unwhiten(self, y: torch.Tensor, *, offset: bool = True) -> torch.Tensor:
        """Rows of the encoder's space back in the standardised space (the identity without ``whiten``).

        ``offset=False`` maps a difference of rows (a residual), which the mean does not shift.
        """
        if not self.whiten:
            return y
        y = y @ self.unwhitening_matrix.to(y.dtype)
        return y + self.whitening_mean.to(y.dtype) if offset else y

    def encode_pre(self, x_norm: torch.Tensor) -> torch.Tensor:
        """Pre-activations ``(x_norm - pre_bias) @ W_enc.T + b_lat``, float32.

        Under autocast only the product runs in bfloat16; the latent bias is
        added in float32, as the sparse path does, so both paths select the
        same latents.
        """
        return nn.functional.linear(x_norm - self.pre_bias, self.W_enc).float() + self.b_lat

    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Decoder output in the standardised space: ``codes @ W_dec + pre_bias``, unwhitened under ``whiten``."""
        return self.unwhiten(codes @ self.decoder_weight + self.pre_bias)

    def uses_sparse_path(self) -> bool:
        """Whether :meth:`forward` runs the sparse Top-K kernels of :mod:`._sparse_ops`.

        They compute the same function and gradients as the dense evaluation
        but touch only the kept latents after the encoder GEMM. Used
        whenever the activation is exactly Top-K: ``topk`` always,
        ``gumbel_topk`` in eval mode and once annealed; and for
        ``batchtopk`` in training, whose selection over the whole batch the
        kernels make too (at inference its threshold runs densely). AuxK does
        not need the dense pre-activations: it encodes only the dead latents;
        nor do Matryoshka's prefixes, decoded from the kept latents.
        """
        if isinstance(self.activation, BatchTopK):
            return self.training
        return isinstance(self.activation, TopK) and self.activation.is_hard

    @torch.no_grad()
    def encode_topk(self, x: torch.Tensor) -> TopKSelection:
        """Kept values and latent indices of each row, ``(batch, k)`` each, without dense codes."""
        values, indices = topk_sae_encode(self.preprocess(x)[0], self.W_enc, self.b_lat, self.pre_bias, self.activation.k)
        return TopKSelection(values, indices)

    def forward(self, x: torch.Tensor) -> SAEOutput:
        x_in, mu, sigma = self.preprocess(x)
        if self.uses_sparse_path():
            batch = isinstance(self.activation, BatchTopK)
            k = self.activation.current_k  # training may start wider than k
            y_pre, values, indices = topk_sae_forward(
                x_in, self.W_enc, self.b_lat, self.decoder_weight, self.pre_bias, k, batch=batch
            )
            codes = TopKSelection(values, indices)
            aux_residual = None
            if self.training:
                if batch and k == self.activation.k:  # the threshold averages batches kept at k only
                    self.activation.update_threshold_(values.detach())
                self.activation.step_()
                aux_residual = self._auxk_residual(x_in)
                self._track_firing(codes)
            prefixes = None
            if self.prefixes:  # each prefix decodes the kept latents among its own atoms: one sparse decode for all
                decodes = prefix_decodes(values, indices, self.decoder_weight, self.prefixes)
                prefixes = tuple(decode + self.pre_bias for decode in decodes)
            return self._output(x_in, mu, sigma, y_pre, codes, None, aux_residual, prefixes)
        z_pre = self.encode_pre(x_in)
        codes = self.activation(z_pre)
        y_pre = codes @ self.decoder_weight + self.pre_bias
        aux_residual = pre_act_penalty = None
        if self.training:
            if isinstance(self.activation, JumpReLU):
                pre_act_penalty = self._dead_pre_act_penalty(x_in)
            else:
                aux_residual = self._auxk_residual(x_in)
            self._track_firing(codes)
        prefixes = None
        if self.prefixes:  # each level adds its own atoms' part: a fraction of one decoder GEMM for all of them
            weight = self.decoder_weight.to(codes.dtype)
            bounds = (0, *self.prefixes)
            parts = [codes[:, start:end] @ weight[start:end] for start, end in zip(bounds, bounds[1:])]
            prefixes = tuple(decode + self.pre_bias for decode in itertools.accumulate(parts))
        l0_penalty = self.activation.l0_penalty(z_pre) if isinstance(self.activation, JumpReLU) else None
        return self._output(x_in, mu, sigma, y_pre, codes, z_pre, aux_residual, prefixes, l0_penalty, pre_act_penalty)

    def _output(self, x_in, mu, sigma, y_pre, codes, z_pre, aux_residual, prefixes, l0_penalty=None,
                pre_act_penalty=None) -> SAEOutput:
        """The :class:`SAEOutput` of reconstructions made in the encoder's space, mapped to input units.

        Under ``whiten=True`` the objective compares them in the whitened space, so they are also returned there
        (:class:`Whitened`), and the AuxK residual only there.
        """
        def to_input(y):
            return self.unwhiten(y) * sigma + mu

        x_hat = to_input(y_pre)
        prefix_x_hats = None if prefixes is None else tuple(to_input(prefix) for prefix in prefixes)
        whitened = None
        if self.whiten:
            whitened = Whitened(x_in, y_pre, prefixes, aux_residual)
        elif aux_residual is not None:
            aux_residual = aux_residual * sigma  # a residual: scaled back, not shifted
        return SAEOutput(
            x_hat, codes, z_pre, None if self.whiten else aux_residual, prefix_x_hats, l0_penalty, pre_act_penalty,
            x_in, whitened,
        )

    @torch.no_grad()
    def _track_firing(self, codes) -> None:
        fired = code_activity(codes, self.n_latents)[1]
        batch_rows = codes.values.shape[0] if isinstance(codes, TopKSelection) else codes.shape[0]
        self.rows_since_fired.add_(batch_rows).masked_fill_(fired, 0)

    def _dead_pre_activations(self, x_norm: torch.Tensor):
        """``(dead, z_dead)``: the dead latents' indices and pre-activations, float32, from the detached input.

        ``(None, None)`` when the term against dead latents is off (``aux_k`` 0) or no latent is dead. Only the
        dead latents are encoded (one small product), so the sparse path keeps its speed.
        """
        if self.aux_k <= 0:
            return None, None
        dead = self.dead_latents.nonzero().squeeze(1)
        if dead.numel() == 0:
            return None, None
        z_dead = nn.functional.linear((x_norm - self.pre_bias).detach(), self.W_enc[dead].detach()).float()
        return dead, z_dead + self.b_lat[dead]

    def _dead_pre_act_penalty(self, x_norm: torch.Tensor) -> torch.Tensor | None:
        """JumpReLU's term against dead latents: ``mean_rows sum_dead relu(theta_i - z_i) * ||W_dec,i||``.

        Anthropic's pre-activation loss (Circuits Updates, January 2025;
        SAELens's ``pre_act_loss_coefficient``). A JumpReLU latent dies when
        its threshold rises above every row's pre-activation: the L0 penalty
        raises the thresholds of rarely firing latents, and nothing pulls
        them back once the latent is silent, since a silent latent has no
        reconstruction gradient. This term pulls a dead latent's bias and
        its threshold towards each other until it fires again, at which
        point the reconstruction decides whether it stays. The input, the
        encoder rows and the atoms' norms are detached: ``pre_bias`` gets
        none of it, and the encoder rows, which are the atoms when tied, are
        not dragged towards the mean row (letting them move wrecked the
        revived atoms: held-out FVU 0.65 against 0.26 on 1,000 shipped
        proteins, 1,024 latents, 750 epochs). ``None`` when the term is off
        or no latent is dead.
        """
        dead, z_dead = self._dead_pre_activations(x_norm)
        if dead is None:
            return None
        shortfall = torch.relu(self.activation.threshold[dead] - z_dead)
        atom_norms = self.decoder_weight[dead].detach().float().norm(dim=1)
        return (shortfall * atom_norms).sum(dim=1).mean()

    def _auxk_residual(self, x_norm: torch.Tensor) -> torch.Tensor | None:
        """The ``aux_k`` most active dead latents' reconstruction of the residual, in the encoder's space.

        The dead latents learn from the AuxK term only
        through their atoms: the input and the code values are detached, so
        neither ``pre_bias`` nor the dead latents' biases and encoder inputs
        get its gradient. Through the code values, the term lowered the
        activations of the dead latents whose atoms point away from the
        residual, and over a long fit that killed a fifth of the latents on
        UniRep vectors of width 256 (``benchmarks/README.md``). With tied
        weights an atom is also its latent's encoder row, so turning it
        towards the residual still raises the latent's pre-activations on the
        rows it can help with.
        """
        dead, z_dead = self._dead_pre_activations(x_norm)
        if dead is None:
            return None
        values, positions = z_dead.topk(min(self.aux_k, dead.numel()), dim=-1, sorted=False)
        aux_codes = torch.zeros_like(z_dead).scatter(1, positions, torch.relu(values).detach())
        return aux_codes @ self.decoder_weight[dead].to(aux_codes.dtype)


@dataclass(frozen=True)
class ModelSpec:
    """Everything that fixes a :class:`SparseAutoencoder`'s computation and tensors: shapes, activation, options.

    What the estimator's parameters resolve to once the data's width is
    known; saved models, imports and checkpoints are checked against it, and
    every net is built from it. No sklearn, no skorch.

    Parameters
    ----------
    n_features, n_latents : int
        Input width and number of latents.
    activation : {"relu", "topk", "gumbel_topk", "batchtopk", "jumprelu"}
    k : int
        Latents kept per row (the top-k activations).
    normalize, tied : bool
        Standardise rows; share the encoder matrix with the decoder.
    aux_k, dead_window : int
        The AuxK term (0: off) and the rows after which a latent counts as dead.
    tau_start, tau_end : float
        The Gumbel temperature's start and end.
    anneal_steps : int or float
        The activation's start-up schedule (Gumbel annealing, Top-K's
        narrowing from ``k_start``), in training batches (int), or a fraction
        of a fit's batches (float) until :meth:`over_steps` resolves it.
    gumbel_candidates : str
        Which latents the Gumbel noise may select.
    k_start : int or None, default=None
        Latents Top-K keeps per row at the first training batch, narrowing
        to ``k`` over ``anneal_steps`` batches; ``None`` keeps ``k``.
    prefixes : tuple of int, default=()
        Matryoshka's nested prefix sizes (``()``: off).
    whiten : bool, default=False
        Whiten the rows before encoding (statistics set at the start of a fit).
    target_l0 : int or None, default=None
        JumpReLU's target L0 (its quadratic sparsity term), or None.
    """

    n_features: int
    n_latents: int
    activation: str
    k: int
    normalize: bool
    tied: bool
    aux_k: int
    dead_window: int
    tau_start: float
    tau_end: float
    anneal_steps: int | float
    gumbel_candidates: str
    k_start: int | None = None
    prefixes: tuple = ()
    whiten: bool = False
    target_l0: int | None = None

    def over_steps(self, total_steps: int) -> "ModelSpec":
        """This spec with a fractional ``anneal_steps`` resolved against a fit of ``total_steps`` batches (at least 1)."""
        if isinstance(self.anneal_steps, int):
            return self
        return replace(self, anneal_steps=max(1, round(self.anneal_steps * total_steps)))

    def module_kwargs(self) -> dict:
        """Keyword arguments of :class:`SparseAutoencoder` (``anneal_steps`` must be resolved)."""
        if not isinstance(self.anneal_steps, int):
            raise ValueError("anneal_steps is still a fraction; resolve it with ModelSpec.over_steps first.")
        activation = make_activation(
            self.activation, k=self.k, tau_start=self.tau_start, tau_end=self.tau_end,
            anneal_steps=self.anneal_steps, candidates=self.gumbel_candidates, n_latents=self.n_latents,
            k_start=self.k_start, target_l0=self.target_l0,
        )
        return dict(
            n_features=self.n_features, n_latents=self.n_latents, activation=activation, normalize=self.normalize,
            tied=self.tied, aux_k=self.aux_k, dead_window=self.dead_window, prefixes=self.prefixes,
            whiten=self.whiten,
        )

    def expected_tensors(self) -> dict:
        """Name to ``(shape, dtype)`` of every tensor of the module, built on the meta device (no memory, no draws)."""
        with torch.device("meta"):
            module = SparseAutoencoder(**self.over_steps(1).module_kwargs())
        return {name: (tuple(tensor.shape), tensor.dtype) for name, tensor in module.state_dict().items()}
