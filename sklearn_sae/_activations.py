"""Sparsifying activations of the autoencoder: ReLU, Top-K and Gumbel-Top-K.

Every activation maps pre-activations ``z_pre`` of shape ``(batch, n_latents)``
to codes of the same shape. Codes may also travel as a :class:`TopKSelection`
(the ``k`` kept values and their indices), as the sparse Top-K path of
:mod:`sklearn_sae._sparse_ops` produces them; :func:`dense_codes` and
:func:`code_activity` accept either form.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import torch
from torch import nn

__all__ = [
    "ReLU",
    "TopK",
    "GumbelTopK",
    "BatchTopK",
    "JumpReLU",
    "GUMBEL_CANDIDATES",
    "TopKSelection",
    "make_activation",
    "schedule_length",
    "schedule_start",
    "starts_soft",
    "dense_codes",
    "code_activity",
]

HARD_TAU = 1e-6
"""At or below this temperature the Gumbel noise can only reorder pre-activations closer than about
``10 * tau``, so an annealed :class:`GumbelTopK` trains as plain Top-K (and takes its sparse path)."""


class TopKSelection(NamedTuple):
    """The kept entries of a top-k activation, row by row."""

    values: torch.Tensor
    """``(batch, k)`` non-negative kept values (after ReLU)."""
    indices: torch.Tensor
    """``(batch, k)`` latent index of each kept value."""


def _scatter_codes(selection: TopKSelection, n_latents: int) -> torch.Tensor:
    codes = selection.values.new_zeros(selection.values.shape[0], n_latents)
    return codes.scatter(1, selection.indices, selection.values)


def dense_codes(codes, n_latents: int) -> torch.Tensor:
    """Codes as a dense ``(batch, n_latents)`` tensor, whether given dense or as a :class:`TopKSelection`."""
    return _scatter_codes(codes, n_latents) if isinstance(codes, TopKSelection) else codes


def code_activity(codes, n_latents: int):
    """Number of non-zero codes in the batch, and which latents fired at least once.

    Returns
    -------
    n_nonzero : torch.Tensor
        Scalar count of non-zero entries.
    fired : torch.Tensor
        Boolean ``(n_latents,)`` mask.
    """
    if isinstance(codes, TopKSelection):
        nonzero = codes.values != 0
        # A scatter rather than boolean-mask indexing, which would wait for the GPU on every batch.
        hits = torch.zeros(n_latents, dtype=torch.int32, device=nonzero.device)
        hits.scatter_add_(0, codes.indices.reshape(-1), nonzero.reshape(-1).to(torch.int32))
        return nonzero.sum(), hits > 0
    nonzero = codes != 0
    return nonzero.sum(), nonzero.any(dim=0)


class ReLU(nn.Module):
    """Dense ReLU codes; sparsity comes from the L1 penalty in the loss."""

    def forward(self, z_pre: torch.Tensor) -> torch.Tensor:
        return torch.relu(z_pre)


class TopK(nn.Module):
    """Keep the ``k`` largest pre-activations of each row, zero the rest.

    The kept values pass through a ReLU, so a row has at most ``k``
    non-zeros. Gradients reach the kept entries only.

    With ``k_start > k`` training starts wider: training batch ``i``
    (counting from 0) keeps ``round(k_start + (k - k_start) * i / (anneal_steps - 1))``
    latents a row, so the first batch keeps ``k_start``, the last annealing
    batch, number ``anneal_steps - 1``, exactly ``k``, and every later batch
    ``k``. The autoencoder's training forward (the sparse path) selects
    :attr:`current_k` and calls :meth:`step_` once a batch. Early batches
    then send gradient to several times more latents, before the learning
    rate's peak decides which survive (as
    dictionary_learning's ``k_anneal_steps``, which starts from the input
    width). Evaluation always keeps ``k``.

    Parameters
    ----------
    k : int
        Number of latents kept per row.
    k_start : int or None, default=None
        Latents kept per row at the first training forward call; ``None``
        (or ``k``) keeps ``k`` from the start.
    anneal_steps : int, default=0
        Training batches over which the number kept falls to ``k``.
    """

    def __init__(self, k: int, k_start: int | None = None, anneal_steps: int = 0):
        super().__init__()
        self.k = k
        self.k_start = k if k_start is None else k_start
        self.anneal_steps = anneal_steps
        if self.has_schedule:
            # A buffer, so the schedule's position survives state_dict, pickling, checkpoints and device moves.
            # Only then: a model without the schedule keeps the tensors of files saved before it existed.
            self.register_buffer("n_steps", torch.zeros((), dtype=torch.long))

    @property
    def has_schedule(self) -> bool:
        """Whether training starts with more than ``k`` latents a row."""
        return self.k_start > self.k and self.anneal_steps > 1

    def extra_repr(self) -> str:
        schedule = f", k_start={self.k_start}, anneal_steps={self.anneal_steps}" if self.has_schedule else ""
        return f"k={self.k}{schedule}"

    @property
    def is_hard(self) -> bool:
        """Whether the next forward call is exactly a top-k selection (so the sparse path may replace it)."""
        return True

    @property
    def current_k(self) -> int:
        """Latents kept per row by the next forward call: :meth:`k_at` the schedule's position in training."""
        if not self.training or not self.has_schedule:
            return self.k
        return self.k_at(int(self.n_steps))

    def k_at(self, step: int) -> int:
        """Latents kept per row by training batch number ``step`` (counting from 0)."""
        if not self.has_schedule or step >= self.anneal_steps - 1:
            return self.k
        return round(self.k_start + (self.k - self.k_start) * step / (self.anneal_steps - 1))

    def step_(self) -> None:
        """Account for one training batch (the autoencoder's sparse path calls it)."""
        if self.has_schedule:
            self.n_steps += 1

    def select(self, z_pre: torch.Tensor) -> TopKSelection:
        """Return the kept values and their latent indices, ``(batch, current_k)`` each."""
        values, indices = z_pre.topk(self.current_k, dim=-1, sorted=False)
        return TopKSelection(torch.relu(values), indices)

    def forward(self, z_pre: torch.Tensor) -> torch.Tensor:
        """Dense codes keeping :attr:`current_k` latents a row; it does not advance the schedule.

        The autoencoder trains a hard Top-K on the sparse path
        (:func:`sklearn_sae._sparse_ops.topk_sae_forward`), which selects the
        same entries and calls :meth:`step_` once a training batch; this dense
        form serves evaluation (where it keeps ``k``) and Gumbel-Top-K's.
        """
        return _scatter_codes(self.select(z_pre), z_pre.shape[-1])


GUMBEL_CANDIDATES = ("positive", "all")
"""Which latents the noisy selection of :class:`GumbelTopK` may choose from."""


class GumbelTopK(TopK):
    """Top-K with Gumbel noise and a temperature that anneals to hard Top-K.

    In training mode each forward call draws standard Gumbel noise ``g`` and
    keeps the ``k`` largest perturbed scores ``z_pre / tau + g`` among the
    candidate latents; the kept latents output ``relu(z_pre)``. The forward
    pass uses that hard mask; the backward pass uses a soft one
    (straight-through estimator): for each latent, the two-class
    Gumbel-softmax, i.e. ``sigmoid(score - threshold)``, of its perturbed
    score against the midpoint between the k-th and (k+1)-th largest scores.
    Latents just outside the selection therefore still receive gradient while
    ``tau`` is large.

    Two sets of candidates:

    ``"positive"`` (the default)
        Only latents with ``z_pre > 0`` can be selected; a row with fewer
        than ``k`` of them keeps them all. A noisy slot is then never spent
        on a latent whose output would be ``relu(z_pre) = 0``.
    ``"all"`` (``topk(z_pre / tau + g)``)
        Every latent competes, as in Gumbel-Top-K as first written. Slots that
        go to negative pre-activations output nothing and pass no gradient,
        and over a long noisy phase the latent bias drifts down until most
        latents stay negative and die once the noise is gone
        (``benchmarks/README.md`` has the measurements).

    ``tau`` falls linearly from ``tau_start`` to ``tau_end`` over
    ``anneal_steps`` training forward calls, reaching ``tau_end`` exactly at
    the last of them, and then stays there, where ``z_pre / tau`` swamps the
    noise and the selection is the hard Top-K. In eval mode there is no
    noise: the activation is exactly :class:`TopK`.

    Parameters
    ----------
    k : int
        Number of latents kept per row.
    tau_start, tau_end : float
        Temperature at the first and at the last annealing forward call.
    anneal_steps : int
        Number of training forward calls over which ``tau`` is annealed.
    candidates : {"positive", "all"}, default="positive"
        Which latents the noisy selection may keep (see above).
    """

    def __init__(
        self, k: int, tau_start: float = 1.0, tau_end: float = 1e-8, anneal_steps: int = 10_000, candidates="positive"
    ):
        super().__init__(k)
        if candidates not in GUMBEL_CANDIDATES:
            raise ValueError(f"candidates={candidates!r} is not one of {GUMBEL_CANDIDATES}.")
        self.tau_start = tau_start
        self.tau_end = tau_end
        self.anneal_steps = anneal_steps
        self.candidates = candidates
        # A buffer, so the annealing position survives state_dict, pickling and device moves.
        self.register_buffer("n_steps", torch.zeros((), dtype=torch.long))

    def extra_repr(self) -> str:
        return (
            f"k={self.k}, tau_start={self.tau_start}, tau_end={self.tau_end}, anneal_steps={self.anneal_steps}, "
            f"candidates={self.candidates!r}"
        )

    @property
    def is_hard(self) -> bool:
        return not self.training or (self.annealed and self.tau_end <= HARD_TAU)

    @property
    def annealed(self) -> bool:
        """Whether the next training forward call runs at ``tau_end`` (the last annealing call or later)."""
        return int(self.n_steps) >= self.anneal_steps - 1

    def step_(self) -> None:
        self.n_steps += 1

    @property
    def tau(self) -> float:
        """Temperature used by the next training forward call.

        Call ``i`` (counting from 0) runs at ``tau_start + (tau_end - tau_start) * i / (anneal_steps - 1)``,
        so the first call runs at ``tau_start`` and the last annealing call, number ``anneal_steps - 1``,
        at exactly ``tau_end``.
        """
        return self.temperature_at(int(self.n_steps))

    def temperature_at(self, step: int) -> float:
        """Temperature of training forward call number ``step`` (counting from 0)."""
        if step >= self.anneal_steps - 1:
            return self.tau_end
        return self.tau_start + (self.tau_end - self.tau_start) * step / (self.anneal_steps - 1)

    def forward(self, z_pre: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(z_pre)
        tau = self.tau
        self.step_()
        n_latents = z_pre.shape[-1]
        if self.k >= n_latents:  # every latent is kept: nothing to select
            return torch.relu(z_pre)
        uniform = torch.rand_like(z_pre).clamp_(torch.finfo(z_pre.dtype).tiny, 1.0)
        scores = z_pre / tau - torch.log(-torch.log(uniform))
        if self.candidates == "positive":
            # A finite floor rather than -inf keeps the threshold and every gradient finite when a row has
            # fewer than k + 1 positive pre-activations. Such latents are never selected ahead of a
            # positive one, and if they are (fewer than k positives) they output relu(z_pre) = 0 anyway.
            scores = scores.masked_fill(z_pre <= 0, torch.finfo(scores.dtype).min / 4)
        top_scores, top_indices = scores.topk(self.k + 1, dim=-1)
        hard = torch.zeros_like(z_pre).scatter_(1, top_indices[:, : self.k], 1.0)
        threshold = 0.5 * (top_scores[:, self.k - 1 : self.k] + top_scores[:, self.k :])
        soft = torch.sigmoid(scores - threshold)
        mask = hard + (soft - soft.detach())
        return torch.relu(z_pre) * mask


class BatchTopK(nn.Module):
    """BatchTopK (Bussmann et al. 2024): the ``k * batch`` largest activations of a whole batch in training.

    In training, the ``k * n_rows`` largest ReLU'd pre-activations of the
    batch are kept, wherever they are, so rows use more or fewer latents and
    the mean L0 is ``k``. The codes would then depend on the batch; at
    inference a latent fires where its pre-activation exceeds one global
    threshold ``theta`` instead, so codes are a function of the row alone.
    ``theta`` is a running average of the smallest kept positive activation
    ``m`` of each training batch: the exponential moving average of rate
    0.01 of the paper and of SAELens (dictionary_learning uses 0.001 and
    starts after 1,000 steps), ``u <- 0.99 * u + 0.01 * m`` from ``u = 0``,
    divided by the weight it has gathered, ``theta = u / (1 - 0.99**n)``
    after ``n`` batches, as Adam corrects its moments. That is a departure:
    SAELens uses ``u`` itself, which stays below the batches' cut for the
    first few hundred steps (too many latents fire after a short fit), and
    starting ``u`` at the first batch's value holds ``theta`` near that
    batch's cut (on the shipped proteins, 1,024 latents and k=32, one
    57-batch epoch left an inference L0 of 19.9 that way, 26.6 corrected;
    after 1,710 batches both gave 31.8). Once ``0.99**n`` is negligible it is
    SAELens's average. The count ``n`` is a buffer too; ``theta`` is kept in
    float32 (SAELens: float64) and updated in float64. ``theta`` is a
    buffer, so saving, loading, pickling and checkpoints carry it.

    In a data-parallel fit each process selects within its own batch and
    ``theta`` is averaged over the processes after every step
    (:class:`sklearn_sae._distributed.SyncThreshold`), so every process
    holds the same ``theta``: the running average of the processes' mean
    batch minimum, rather than of their global minimum, which is the
    smallest of several noisy estimates of the same cut and would bias
    ``theta`` low.

    The module's :meth:`forward` is the inference rule only: the
    autoencoder's training forward makes the batch's selection with the
    sparse kernels (:func:`sklearn_sae._sparse_ops.topk_sae_forward` with
    ``batch=True``), without a dense decode, and reports it through
    :meth:`update_threshold_`.

    With ``k_start > k`` training starts wider, as :class:`TopK`'s does: a
    training batch keeps ``k_t * n_rows`` activations, ``k_t`` narrowing
    linearly from ``k_start`` at the first batch to ``k`` at batch
    ``anneal_steps - 1`` (:meth:`k_at`). ``theta`` averages only the batches
    kept at ``k``: a wider batch's smallest kept activation lies below the
    cut of ``k`` a row, and it would leave ``theta`` low (too many latents
    firing at inference) for the hundreds of batches the average takes to
    forget it.

    Parameters
    ----------
    k : int
        Mean non-zeros per row in training.
    k_start : int or None, default=None
        Mean non-zeros per row at the first training batch; ``None`` (or
        ``k``) keeps ``k`` from the start.
    anneal_steps : int, default=0
        Training batches over which the mean falls to ``k``.
    """

    THRESHOLD_RATE = 0.01

    def __init__(self, k: int, k_start: int | None = None, anneal_steps: int = 0):
        super().__init__()
        self.k = k
        self.k_start = k if k_start is None else k_start
        self.anneal_steps = anneal_steps
        self.register_buffer("threshold", torch.zeros(()))
        self.register_buffer("n_updates", torch.zeros((), dtype=torch.long))
        if self.has_schedule:  # only then: a model without it keeps the tensors of files saved before it existed
            self.register_buffer("n_steps", torch.zeros((), dtype=torch.long))

    has_schedule = TopK.has_schedule
    k_at = TopK.k_at
    step_ = TopK.step_

    @property
    def current_k(self) -> int:
        """Mean non-zeros per row of the next training batch (:meth:`k_at` the schedule's position)."""
        return self.k_at(int(self.n_steps)) if self.training and self.has_schedule else self.k

    def extra_repr(self) -> str:
        schedule = f", k_start={self.k_start}, anneal_steps={self.anneal_steps}" if self.has_schedule else ""
        return f"k={self.k}{schedule}"

    def forward(self, z_pre: torch.Tensor) -> torch.Tensor:
        """Inference codes: every pre-activation above ``theta``, in training and evaluation mode alike.

        The training selection over the batch is the autoencoder's sparse path
        (:func:`sklearn_sae._sparse_ops.topk_sae_forward` with ``batch=True``),
        which reports it to :meth:`update_threshold_`.
        """
        # theta >= 0, so this is relu(z) * (z > theta), as SAELens computes it, in one pass over the block.
        return torch.where(z_pre > self.threshold.to(z_pre.dtype), z_pre, 0.0)

    @torch.no_grad()
    def update_threshold_(self, kept: torch.Tensor) -> None:
        """Move ``theta`` towards the smallest positive value of ``kept``, a training batch's kept activations.

        ``kept`` may hold zeros (a selection's unkept entries), which do not count.
        """
        # Without a host sync: a batch with no positive kept value leaves theta as it was.
        smallest = torch.where(kept > 0, kept, torch.inf).min().double()
        decay = 1.0 - self.THRESHOLD_RATE
        n = self.n_updates.double()
        average = self.threshold.double() * (1.0 - decay**n)  # the uncorrected average u
        updated = (decay * average + self.THRESHOLD_RATE * smallest) / (1.0 - decay ** (n + 1))
        found = torch.isfinite(smallest)
        self.threshold.copy_(torch.where(found, updated.to(self.threshold.dtype), self.threshold))
        self.n_updates.add_(found.long())


class _JumpReLUFunction(torch.autograd.Function):
    """``z * H(z - theta)``: the straight-through gradient for ``z``, a rectangle-kernel estimate for ``theta``."""

    @staticmethod
    def forward(ctx, z_pre, threshold, bandwidth):
        ctx.save_for_backward(z_pre, threshold)
        ctx.bandwidth = bandwidth
        return z_pre * (z_pre > threshold)

    @staticmethod
    def backward(ctx, grad_output):
        z_pre, threshold = ctx.saved_tensors
        near = ((z_pre - threshold).abs() < ctx.bandwidth / 2).to(grad_output.dtype)
        grad_z = grad_output * (z_pre > threshold)
        grad_threshold = -(threshold / ctx.bandwidth) * near * grad_output
        return grad_z, grad_threshold.sum(dim=0), None


class _StepFunction(torch.autograd.Function):
    """``H(z - theta)``, with the rectangle-kernel gradient for ``theta`` only (the L0 penalty)."""

    @staticmethod
    def forward(ctx, z_pre, threshold, bandwidth):
        ctx.save_for_backward(z_pre, threshold)
        ctx.bandwidth = bandwidth
        return (z_pre > threshold).to(z_pre.dtype)

    @staticmethod
    def backward(ctx, grad_output):
        z_pre, threshold = ctx.saved_tensors
        near = ((z_pre - threshold).abs() < ctx.bandwidth / 2).to(grad_output.dtype)
        return None, (-(1.0 / ctx.bandwidth) * near * grad_output).sum(dim=0), None


class JumpReLU(nn.Module):
    """JumpReLU (Rajamanoharan et al. 2024): a latent fires where its pre-activation exceeds its own learned threshold.

    ``h = z * H(z - theta)`` with one threshold per latent, kept as
    ``log_threshold`` so that it stays positive. The step has no gradient,
    so training uses the paper's straight-through estimators with a
    rectangle kernel of width ``bandwidth``: ``z`` gets the gradient of the
    kept entries, ``theta`` the kernel's estimate. Sparsity comes from an L0
    penalty, ``sum_i H(z_i - theta_i)`` averaged over the rows
    (:meth:`l0_penalty`, which the autoencoder's forward returns in training
    and evaluation alike), weighted in the loss by the estimator's
    ``l0_coef``; or, with ``target_l0``, from the quadratic pull of each row's
    L0 towards it (Gemma Scope 2, SAELens's ``"quadratic"`` mode), after
    which a fit scales the thresholds onto the target
    (:meth:`calibrate_thresholds_`).

    Departures from the paper: the reconstruction term beside the penalty
    is this package's NMSE (each row's squared error over its squared norm),
    where the paper uses the squared error of inputs rescaled to a fixed
    mean norm, so its sparsity coefficients do not carry over to
    ``l0_coef``. Its threshold start and bandwidth (both 0.001)
    suit language-model activations of a larger scale; the pre-activations
    of standardised embeddings are of order 1, and with 0.001 the
    thresholds hardly moved (almost no pre-activation fell inside the
    kernel), whatever the penalty. Both start at 0.05 here. And the
    thresholds learn through a scaled logarithm, ten times faster than the
    weights (:attr:`THRESHOLD_SPEED`).

    Parameters
    ----------
    n_latents : int
    threshold : float, default=0.05
        Initial threshold of every latent.
    bandwidth : float, default=0.05
        Width of the rectangle kernel of the threshold's gradient.
    target_l0 : int or None, default=None
        With a target, :meth:`l0_penalty` is the mean over rows of
        ``2 / target_l0 * (L0_row - target_l0) ** 2`` instead of the mean L0.
    """

    THRESHOLD_SPEED = 10.0
    """``log(theta) = THRESHOLD_SPEED * log_threshold``: Adam moves every parameter by about ``lr`` a step, and
    ``lr`` suits the weights; with it the thresholds rose too slowly to reach the L0 a penalty asks for within a
    few hundred steps (measured on the shipped proteins), so they learn ten times faster, as a learning rate of
    their own would make them."""

    MIN_START_THRESHOLD = 1e-3
    """The lowest threshold :meth:`init_thresholds_` starts a latent at (a latent whose pre-activations are mostly
    negative fires wherever they are positive)."""

    def __init__(self, n_latents: int, threshold: float = 0.05, bandwidth: float = 0.05, target_l0: int | None = None):
        super().__init__()
        self.bandwidth = bandwidth
        self.target_l0 = target_l0
        self.log_threshold = nn.Parameter(torch.full((n_latents,), math.log(threshold) / self.THRESHOLD_SPEED))

    @property
    def threshold(self) -> torch.Tensor:
        return (self.THRESHOLD_SPEED * self.log_threshold).exp()

    def l0_penalty(self, z_pre: torch.Tensor) -> torch.Tensor:
        """The sparsity term: the mean over rows of the codes' L0, or of its quadratic distance to ``target_l0``.

        A row's L0 is the number of latents above their threshold, the L0 of
        :meth:`forward`'s codes in training and evaluation alike (a code is
        non-zero exactly where ``z > theta``, the thresholds being positive),
        so the loss is one objective in every split; its gradient reaches the
        thresholds only, through the rectangle kernel. With ``target_l0`` the
        term is ``2 / target_l0 * (L0_row - target_l0) ** 2``, averaged over
        the rows, which pushes the thresholds up on rows with too many active
        latents and down on rows with too few.
        """
        l0 = _StepFunction.apply(z_pre, self.threshold.to(z_pre.dtype), self.bandwidth).sum(dim=-1)
        if self.target_l0 is None:
            return l0.mean()
        return (2.0 / self.target_l0 * (l0 - self.target_l0).square()).mean()

    def extra_repr(self) -> str:
        return "" if self.target_l0 is None else f"target_l0={self.target_l0}"

    @torch.no_grad()
    def init_thresholds_(self, z_pre: torch.Tensor) -> None:
        """Start each latent's threshold where it lets the latent fire on ``target_l0 / n_latents`` of the rows.

        ``z_pre`` are pre-activations of a sample of training rows. Every latent then starts with the same
        firing rate and the rows with ``target_l0`` active latents on average, so the quadratic term starts
        near its minimum instead of fighting its way there from a threshold of another scale (a fixed start
        of 0.05 left the L0 at 3 times the target on 1,024-wide embeddings whose pre-activations are of
        order 1). Thresholds stay positive.
        """
        if self.target_l0 is None:
            raise ValueError("init_thresholds_ needs a target_l0.")
        n_latents = z_pre.shape[1]
        quantile = 1.0 - min(self.target_l0 / n_latents, 1.0)
        threshold = torch.quantile(z_pre.float(), quantile, dim=0).clamp_min(self.MIN_START_THRESHOLD)
        self.log_threshold.copy_(threshold.log() / self.THRESHOLD_SPEED)

    @torch.no_grad()
    def calibrate_thresholds_(self, z_pre_blocks, n_rows: int, *, threshold_ceiling=None) -> float:
        """Scale the thresholds by one common factor so that ``n_rows`` rows average ``target_l0`` active latents.

        ``z_pre_blocks`` is an iterable of blocks of the pre-activations of ``n_rows`` rows in all. The quadratic
        pull settles where the reconstruction error's gradient balances it, an L0 off the target; this closes
        that gap at the end of a fit without a stronger pull (which killed latents). A latent fires where
        ``z / theta > 1``, so the factor is the ``(k + 1)``-th largest ratio ``z / theta`` over the rows, ``k``
        being the target times ``n_rows``: exactly ``k`` entries then exceed it (fewer with ties).

        ``threshold_ceiling`` (one value per latent, or ``None``) caps the rising thresholds of the latents
        whose threshold is below it: see :func:`firing_ceiling`.

        Returns
        -------
        factor : float
            What the thresholds were multiplied by; 1.0 where no pre-activation is positive. Where fewer than
            ``k + 1`` are, half the smallest positive ratio (every positive pre-activation then fires).
        """
        if self.target_l0 is None:
            raise ValueError("calibrate_thresholds_ needs a target_l0.")
        threshold = self.threshold.float()
        keep = round(self.target_l0 * n_rows) + 1
        largest = threshold.new_empty(0)
        for z_pre in z_pre_blocks:
            # Only the keep largest ratios decide the factor: holding those alone bounds the memory.
            pooled = torch.cat([largest, (z_pre.float() / threshold).clamp_min(0.0).flatten()])
            largest = torch.topk(pooled, min(keep, len(pooled)), sorted=False).values
        positive = largest[largest > 0]
        if len(positive) == 0:
            return 1.0
        factor = float(positive.min()) if len(positive) == keep else float(positive.min()) / 2
        scaled = threshold * factor
        if threshold_ceiling is not None:
            ceiling = threshold_ceiling.float()
            scaled = torch.where(ceiling > threshold, scaled.minimum(ceiling), scaled)
        self.log_threshold.copy_(scaled.log() / self.THRESHOLD_SPEED)
        return factor

    def forward(self, z_pre: torch.Tensor) -> torch.Tensor:
        threshold = self.threshold.to(z_pre.dtype)
        if not self.training:
            return torch.where(z_pre > threshold, z_pre, 0.0)  # relu(z) * (z > theta): the thresholds are positive
        # No ReLU around it: the thresholds are positive, and a ReLU would cut the gradient that the entries just
        # below their threshold send to it.
        return _JumpReLUFunction.apply(z_pre, threshold, self.bandwidth)


KEEP_FIRING = 0.5
"""The share of each latent's firing training rows that :func:`firing_ceiling` keeps firing."""

CEILING_MARGIN = 1e-4
"""How far below the pre-activation it keeps :func:`firing_ceiling` sets a ceiling (relative): more than the
rounding of ``log_threshold``."""


@torch.no_grad()
def firing_ceiling(z_pre: torch.Tensor, threshold: torch.Tensor) -> torch.Tensor:
    """The highest threshold each latent may rise to and still fire on :data:`KEEP_FIRING` of the rows it fires on.

    ``z_pre`` are pre-activations of training rows. Raising every threshold by one factor thins each latent's
    firing by the share of its pre-activations within that factor of its threshold: few of a frequent latent's,
    and possibly all of a rare latent's, which would then die; capped here, no latent that fires on these rows
    loses more than half of them. A latent that fires on none gets its threshold back (no cap: it is silent).
    """
    z_pre = z_pre.float()
    n_firing = (z_pre > threshold).sum(dim=0)
    kept = (n_firing.float() * KEEP_FIRING).ceil().long().clamp_min(1)  # the kept-th largest keeps firing
    ordered = z_pre.sort(dim=0, descending=True).values
    ceiling = ordered.gather(0, (kept - 1).unsqueeze(0)).squeeze(0) * (1.0 - CEILING_MARGIN)
    return torch.where(n_firing > 0, ceiling, threshold)


def _narrows(activation: nn.Module) -> bool:
    """Whether ``activation`` is a Top-K or BatchTopK whose training narrows from ``k_start`` to ``k``."""
    return type(activation) in (TopK, BatchTopK) and activation.has_schedule


def schedule_length(activation: nn.Module) -> int | None:
    """The resolved length of ``activation``'s start-up schedule, in training batches; ``None`` when it has none.

    Gumbel-Top-K's temperature annealing, or the narrowing from ``k_start`` to ``k`` of Top-K and BatchTopK:
    what a saved model records so that training it further continues the same schedule.
    """
    if isinstance(activation, GumbelTopK) or _narrows(activation):
        return int(activation.anneal_steps)
    return None


def schedule_start(activation: nn.Module) -> int | None:
    """The ``k_start`` of a Top-K or BatchTopK whose training narrows from it to ``k``, else ``None``."""
    return activation.k_start if _narrows(activation) else None


def starts_soft(activation: nn.Module) -> bool:
    """Whether ``activation``'s training starts softer than its inference: Gumbel noise, or a top-k wider than
    ``k``."""
    return isinstance(activation, GumbelTopK) or _narrows(activation)


def make_activation(
    name: str, *, k: int, tau_start: float, tau_end: float, anneal_steps: int, candidates: str = "positive",
    n_latents: int | None = None, k_start: int | None = None, target_l0: int | None = None,
) -> nn.Module:
    """Build the activation module called ``name`` (``relu``, ``topk``, ``gumbel_topk``, ``batchtopk``)."""
    if name == "relu":
        return ReLU()
    if name == "topk":
        return TopK(k, k_start=k_start, anneal_steps=anneal_steps)
    if name == "batchtopk":
        return BatchTopK(k, k_start=k_start, anneal_steps=anneal_steps)
    if name == "jumprelu":
        if n_latents is None:
            raise ValueError("activation='jumprelu' needs n_latents: it has one threshold per latent.")
        return JumpReLU(n_latents, target_l0=target_l0)
    if name == "gumbel_topk":
        return GumbelTopK(k, tau_start=tau_start, tau_end=tau_end, anneal_steps=anneal_steps, candidates=candidates)
    raise ValueError(f"Unknown activation {name!r}; expected 'relu', 'topk', 'gumbel_topk', 'batchtopk' or 'jumprelu'.")
