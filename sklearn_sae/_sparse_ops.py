"""Sparse forward and backward of the Top-K autoencoder.

A dense autograd evaluation of a Top-K SAE scatters the codes into a
``(batch, n_latents)`` matrix and decodes it with a second dense GEMM; its
backward then costs three more. Only ``k`` entries of each row are non-zero, so
everything after the encoder GEMM can work on the ``(batch, k)`` selection:

::

    x_c    = x_in - pre_bias
    z      = x_c @ W_enc.T + b_lat                    # the one dense GEMM
    v, idx = topk(z, k);  v = relu(v)                 # (batch, k) each
    x_rec  = sum_j v[:, j] * W_dec[idx[:, j]] + pre_bias

The backward, with ``g = dL/dx_rec`` and ``dv = dL/dv`` (from a loss on the
codes, if any):

::

    dv      += <g[b], W_dec[idx[b, j]]>               # one dot per kept entry
    dz       = dv * (v > 0)
    dW_dec[l] = sum_{(b, j): idx[b, j] = l} v[b, j] * g[b]
    dW_enc[l] = sum_{(b, j): idx[b, j] = l} dz[b, j] * x_c[b]
    db_lat[l] = sum_{(b, j): idx[b, j] = l} dz[b, j]
    dpre_bias = g.sum(0) - db_lat @ W_enc
    dx_in     = sum_j dz[:, j] * W_enc[idx[:, j]]

Each sum is one ``embedding_bag`` (the dot products are its per-sample-weights
backward), the primitive that torch implements fast on CPU and CUDA for
exactly this gather-and-weighted-sum pattern. The weight gradients and the
dot products are bags *per latent*: the kept entries are sorted by latent
once, and each latent's bag sums (or dots its atom with) the batch rows that
selected it, so each atom is read once rather than once per row that kept it. That avoids the alternatives measured in
``benchmarks/bench_sparse_ops.py`` (``index_add_`` of a materialised
``(batch * k, n_features)`` matrix, COO/CSR ``torch.sparse.mm``, dense
scatter-and-GEMM), and every reduction runs in a fixed order, so the result
is deterministic on CUDA as well (no ``atomicAdd``).

Nothing of size ``(batch, n_latents)`` is kept for the backward: the saved
tensors are ``x_c`` and the ``(batch, k)`` selection. On CPU the selection
itself runs in stages (see :func:`_topk`), about half the time of
``torch.topk``.

Under autocast (``amp=True``) the GEMM adds the latent bias in its
accumulator and writes the pre-activations in bfloat16; the selection reads
them as they are, and the decode gathers from the bfloat16 copy of the weight
that the GEMM read. The kept values, the reconstruction, the backward and the
gradients are float32 (the float32 master weights are what the optimiser
updates).

BatchTopK (``batch=True``) keeps the ``k * batch`` largest ReLU'd
pre-activations of the whole batch instead, so rows keep different numbers.
Everything after the selection carries over: :func:`_batch_topk` returns each
row's candidates as a ``(batch, width)`` selection whose entries outside the
batch's budget are 0, and the kernels above work on it as they do on a
``(batch, k)`` one (a zero value decodes to nothing and passes no gradient).
Matryoshka's prefix reconstructions are decoded from the same selection by
:func:`prefix_decodes`, all levels in one ``embedding_bag``.
"""

from __future__ import annotations

import itertools
import math
from typing import NamedTuple

import torch
from torch.autograd.function import once_differentiable
from torch.nn import functional as F

__all__ = ["topk_sae_forward", "topk_sae_encode", "prefix_decodes", "BATCH_TOPK_WIDTH"]

_MODE_SUM = 0  # embedding_bag's mode code for "sum"

BATCH_TOPK_WIDTH = 4
"""BatchTopK's selection first takes each row's ``4 * k`` largest pre-activations as candidates, and doubles
that width while a row's candidates are all kept. In BatchTopK fits of the shipped proteins the row that kept
the most in a batch kept 2.2-2.8 times ``k`` (median over batches) and at most 6.8 times (k=8, first batches)."""


def _autocast_dtype(device_type: str) -> torch.dtype | None:
    """The dtype autocast would give the encoder GEMM here, or None when autocast is off."""
    if not hasattr(torch, "get_autocast_dtype"):  # torch < 2.4
        if device_type == "cpu":
            return torch.get_autocast_cpu_dtype() if torch.is_autocast_cpu_enabled() else None
        return torch.get_autocast_gpu_dtype() if torch.is_autocast_enabled() else None
    if torch.is_autocast_enabled(device_type):
        return torch.get_autocast_dtype(device_type)
    return None


def _pre_activations(x_c, W_enc, b_lat, gemm_dtype):
    """``(z, W_gemm)``: the pre-activations and the encoder weight the GEMM read, both in the GEMM's dtype.

    Under autocast (``gemm_dtype`` other than the parameters' dtype) the
    latent bias enters the GEMM, whose accumulator adds it before the one
    rounding of the output, and the pre-activations stay in ``gemm_dtype``:
    the selection reads half the bytes, and no ``(batch, n_latents)`` block
    is converted back. ``W_gemm`` is the weight cast once per pass, which
    the decode of a tied model reads again.
    """
    if gemm_dtype is None or gemm_dtype == W_enc.dtype:
        return torch.addmm(b_lat, x_c, W_enc.t()), W_enc
    W_gemm = W_enc.to(gemm_dtype)
    return torch.addmm(b_lat.to(gemm_dtype), x_c.to(gemm_dtype), W_gemm.t()), W_gemm


def _select(z, k, batch):
    """The top-k of each row of ``z`` (the batch's top ``k * batch`` with ``batch=True``), ReLU'd, in ``z``'s dtype."""
    if batch:
        return _batch_topk(z, k)
    values, indices = _topk(z, k)
    return values.clamp_(min=0), indices


def _encode_select(x_c, W_enc, b_lat, k, gemm_dtype, batch=False):
    """Kept values (in the parameters' dtype) and their latents, and the weight the GEMM read."""
    z, W_gemm = _pre_activations(x_c, W_enc, b_lat, gemm_dtype)
    values, indices = _select(z, k, batch)
    return values.to(W_enc.dtype), indices, W_gemm


def _batch_topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The ``k * batch`` largest entries of ``relu(z)`` over the whole batch, as a ``(batch, width)`` selection.

    Each row's ``width`` largest entries are its candidates (:func:`_topk`);
    the batch's budget is chosen among all candidates, and the candidates it
    does not take get value 0. That is the batch's top ``k * batch`` as long
    as no row has every candidate kept with a positive value: such a row
    might have more entries above the batch's cut, so the width doubles
    (up to ``n_latents``) and the selection runs again. The check reads one
    boolean on the host per try (a synchronisation on a GPU). Ties at the cut
    may be broken otherwise than a top-k over the flattened batch would.
    """
    batch, n_latents = z.shape
    budget = k * batch
    width = min(n_latents, BATCH_TOPK_WIDTH * k)
    while True:
        values, indices = _topk(z, width)
        values.clamp_(min=0)
        kept = values.new_zeros(batch * width, dtype=torch.bool)
        kept[values.reshape(-1).topk(budget, sorted=False).indices] = True
        kept = kept.view(batch, width)
        if width == n_latents or not bool((kept.all(dim=1) & (values.amin(dim=1) > 0)).any()):
            return values.mul_(kept), indices
        width = min(n_latents, 2 * width)


def _topk(z: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``z.topk(k, dim=1, sorted=False)``, in two stages on CPU.

    torch's CPU top-k costs about 5 ns per element. Cut each row into ``G``
    groups of ``s`` (latents ``g, g + G, g + 2G, ...``): the ``k`` groups with
    the largest maxima hold a top-k of the row, since every element outside
    them is at most the k-th largest group maximum, itself one of k elements
    at least that large. So a top-k of the ``G`` maxima (in turn by this
    function) and one of the ``k * s`` candidates replace the top-k of
    ``L = G * s`` elements; with ``s ~ sqrt(L / k)`` that halves the selection
    time at ``L=8192, k=64``.
    Ties may be broken differently from ``torch.topk``, never wrongly. On
    CUDA, torch's radix select is already fast and is used as it is.
    """
    n_latents = z.shape[1]
    group = 1 << max(int(math.log2(math.sqrt(n_latents / k))), 0)
    if z.device.type != "cpu" or group < 4 or n_latents % group:
        return z.topk(k, dim=1, sorted=False)
    n_groups = n_latents // group
    strided = z.view(z.shape[0], group, n_groups)
    top_groups = _topk(strided.amax(1), k)[1]
    candidates = strided.gather(2, top_groups[:, None, :].expand(-1, group, -1)).flatten(1)
    values, position = candidates.topk(k, dim=1, sorted=False)
    member = torch.div(position, k, rounding_mode="floor")
    return values, member * n_groups + top_groups.gather(1, position % k)


def _decode(values, indices, W_dec, pre_bias):
    """``sum_j values[:, j] * W_dec[indices[:, j]] + pre_bias`` in ``pre_bias``'s dtype, gathering in ``W_dec``'s.

    A bfloat16 ``W_dec`` (the copy the GEMM read under autocast) halves the
    bytes of the gather, which dominates the decode; the bag accumulates in
    float32 and its sum is rounded once.
    """
    if W_dec.dtype == pre_bias.dtype:
        return F.embedding_bag(indices, W_dec, per_sample_weights=values, mode="sum").add_(pre_bias)
    decoded = F.embedding_bag(indices, W_dec, per_sample_weights=values.to(W_dec.dtype), mode="sum")
    return decoded.to(pre_bias.dtype).add_(pre_bias)


class _LatentBags(NamedTuple):
    """The kept entries grouped by latent (see :func:`_latent_bags`)."""

    rows: torch.Tensor
    bounds: torch.Tensor
    order: torch.Tensor
    latents: torch.Tensor


def _latent_bags(indices: torch.Tensor, n_latents: int) -> _LatentBags:
    """Group the kept entries by latent: ``(rows, bounds, order, latents)``.

    Entry ``order[i]`` of the flattened selection is the ``i``-th in latent
    order; it belongs to batch row ``rows[i]`` and to latent ``latents[i]``,
    and latent ``l`` owns the entries ``bounds[l]:bounds[l + 1]``. Stable,
    so sums run in batch order.
    """
    sorted_latents, order = indices.reshape(-1).sort(stable=True)
    bounds = torch.searchsorted(sorted_latents, torch.arange(n_latents + 1, device=indices.device))
    return _LatentBags(torch.div(order, indices.shape[1], rounding_mode="floor"), bounds, order, sorted_latents)


def _atom_dots(bags: _LatentBags, atoms: torch.Tensor, table: torch.Tensor) -> torch.Tensor:
    """``<atoms[latents[i]], table[rows[i]]>`` for every kept entry ``i``, in latent order.

    ``embedding_bag``'s per-sample-weights backward with the latents as the
    bags: each atom is read once, in order, against rows of the small
    ``(batch, n_features)`` table, instead of one atom gathered from the
    whole dictionary per kept entry (a third of the time on CPU, same sums).
    """
    return torch.ops.aten._embedding_bag_per_sample_weights_backward(
        atoms, table, bags.rows, bags.bounds[:-1], bags.latents, _MODE_SUM
    )


def _bag_sum(rows, bounds, weights, table):
    """``out[l] = sum_{bounds[l] <= i < bounds[l+1]} weights[i] * table[rows[i]]``."""
    return F.embedding_bag(rows, table, bounds, per_sample_weights=weights, mode="sum", include_last_offset=True)


class _TopKSAE(torch.autograd.Function):
    """Top-K SAE from input to reconstruction; ``W_dec=None`` means tied to ``W_enc``."""

    @staticmethod
    def forward(ctx, x_in, W_enc, b_lat, W_dec, pre_bias, k, gemm_dtype, batch):
        with torch.autocast(x_in.device.type, enabled=False):
            x_c = x_in.to(W_enc.dtype) - pre_bias
            values, indices, W_gemm = _encode_select(x_c, W_enc, b_lat, k, gemm_dtype, batch)
            # The decode gathers from the weight in the GEMM's dtype (for a tied model, the very copy it read).
            decoder = W_gemm if W_dec is None else W_dec.to(W_gemm.dtype)
            x_rec = _decode(values, indices, decoder, pre_bias)
        ctx.save_for_backward(x_c, W_enc, W_dec, values, indices)
        ctx.x_dtype = x_in.dtype
        ctx.mark_non_differentiable(indices)
        return x_rec, values, indices

    @staticmethod
    @once_differentiable
    def backward(ctx, grad_rec, grad_values, _grad_indices):
        x_c, W_enc, W_dec, values, indices = ctx.saved_tensors
        need_x, need_enc, need_b_lat, need_dec, need_pre_bias = ctx.needs_input_grad[:5]
        tied = W_dec is None
        decoder = W_enc if tied else W_dec
        batch = indices.shape[0]
        n_latents = W_enc.shape[0]
        grad_x = grad_enc = grad_b_lat = grad_dec = grad_pre_bias = None
        with torch.autocast(x_c.device.type, enabled=False):
            grad_rec = grad_rec.contiguous()
            bags = _latent_bags(indices, n_latents)
            rows, bounds, order = bags.rows, bags.bounds, bags.order
            values_sorted = values.reshape(-1)[order]
            # dL/dv = <grad_rec[b], W_dec[idx[b, j]]> plus the codes' own gradient, then the ReLU's mask (latent order).
            grad_v_sorted = _atom_dots(bags, decoder, grad_rec) + grad_values.reshape(-1)[order]
            grad_z_sorted = grad_v_sorted.mul_(values_sorted > 0)
            if need_b_lat or need_pre_bias:
                grad_b_lat = _bag_sum(rows, bounds, grad_z_sorted, grad_rec.new_ones(batch, 1)).view(n_latents)
            if tied and need_enc:
                # One bag per latent over [grad_rec; x_c]: both terms of the tied weight's gradient at once.
                both_rows = torch.stack([rows, rows + batch], dim=1).reshape(-1)
                both_weights = torch.stack([values_sorted, grad_z_sorted], dim=1).reshape(-1)
                grad_enc = _bag_sum(both_rows, 2 * bounds, both_weights, torch.cat([grad_rec, x_c]))
            else:
                if need_enc:
                    grad_enc = _bag_sum(rows, bounds, grad_z_sorted, x_c)
                if need_dec:
                    grad_dec = _bag_sum(rows, bounds, values_sorted, grad_rec)
            if need_pre_bias:
                grad_pre_bias = grad_rec.sum(0) - grad_b_lat @ W_enc
            if need_x:
                grad_z = torch.empty_like(values)
                grad_z.view(-1)[order] = grad_z_sorted
                grad_x = F.embedding_bag(indices, W_enc, per_sample_weights=grad_z, mode="sum").to(ctx.x_dtype)
        if not need_b_lat:
            grad_b_lat = None
        return grad_x, grad_enc, grad_b_lat, grad_dec, grad_pre_bias, None, None, None


def topk_sae_forward(
    x_in: torch.Tensor,
    W_enc: torch.Tensor,
    b_lat: torch.Tensor,
    W_dec: torch.Tensor,
    pre_bias: torch.Tensor,
    k: int,
    *,
    batch: bool = False,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Top-K SAE forward pass whose backward touches only the kept latents.

    Computes ``z = (x_in - pre_bias) @ W_enc.T + b_lat``, keeps the ``k``
    largest entries of each row of ``z`` (ReLU on the kept values) and decodes
    them, ``x_rec = sum_j values[:, j] * W_dec[indices[:, j]] + pre_bias``,
    without forming the dense ``(batch, n_latents)`` codes. Gradients reach
    ``W_enc``, ``b_lat``, ``W_dec``, ``pre_bias`` and ``x_in`` (when they
    require grad), through ``x_rec`` and through ``values``.

    Under ``torch.autocast`` the encoder GEMM, the selection and the decode's
    gather run in the autocast dtype (the GEMM and the decode accumulate in
    float32); the outputs, the backward and the gradients are in the
    parameters' dtype.

    Parameters
    ----------
    x_in : torch.Tensor
        Input rows (already normalised), ``(batch, n_features)``.
    W_enc : torch.Tensor
        Encoder weight, ``(n_latents, n_features)``.
    b_lat : torch.Tensor
        Latent bias, ``(n_latents,)``.
    W_dec : torch.Tensor
        Decoder weight, ``(n_latents, n_features)``; the same tensor object
        as ``W_enc`` for a tied autoencoder, whose one gradient then holds
        both terms.
    pre_bias : torch.Tensor
        Subtracted before encoding and added after decoding, ``(n_features,)``.
    k : int
        Latents kept per row, ``1 <= k <= n_latents``.
    batch : bool, default=False
        BatchTopK: keep the ``k * batch`` largest ReLU'd pre-activations of
        the whole batch instead (:func:`_batch_topk`); the selection is then
        ``(batch, width)`` with ``width >= k``, and its entries outside the
        budget are 0.

    Returns
    -------
    x_rec : torch.Tensor
        Reconstruction, ``(batch, n_features)``, in the parameters' dtype.
    values : torch.Tensor
        Kept values after ReLU, ``(batch, k)`` (``(batch, width)`` with
        ``batch=True``), in no particular order.
    indices : torch.Tensor
        Latent of each value, of the same shape, int64; not differentiable.
    """
    tied = W_dec is W_enc
    gemm_dtype = _autocast_dtype(x_in.device.type)
    return _TopKSAE.apply(x_in, W_enc, b_lat, None if tied else W_dec, pre_bias, k, gemm_dtype, batch)


@torch.no_grad()
def topk_sae_encode(
    x_in: torch.Tensor, W_enc: torch.Tensor, b_lat: torch.Tensor, pre_bias: torch.Tensor, k: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Kept values and latent indices, ``(batch, k)`` each, of :func:`topk_sae_forward` (no grad)."""
    gemm_dtype = _autocast_dtype(x_in.device.type)
    with torch.autocast(x_in.device.type, enabled=False):
        return _encode_select(x_in.to(W_enc.dtype) - pre_bias, W_enc, b_lat, k, gemm_dtype)[:2]


def prefix_decodes(values: torch.Tensor, indices: torch.Tensor, W_dec: torch.Tensor, sizes) -> list[torch.Tensor]:
    """Decodes of a selection by nested prefixes of the dictionary (Matryoshka), ``(batch, n_features)`` each.

    Decode ``i`` is ``sum_j values[:, j] * W_dec[indices[:, j]]`` over the
    kept latents below ``sizes[i]`` (no ``pre_bias``). Each row's
    selection is sorted by latent once, so that the latents between two
    consecutive sizes form one bag: one ``embedding_bag`` over the selection
    decodes every level's increment, and running sums over the levels
    give the prefixes. Whatever the number of levels, that costs about one
    sparse decode, forward and backward (torch's autograd of
    ``embedding_bag`` and ``gather``; gradients reach ``values`` and
    ``W_dec``). Entries no prefix needs (latents at or above ``sizes[-1]``,
    and zero values, such as BatchTopK's unkept candidates) all become latent
    ``sizes[-1]``, the bag's ``padding_idx``, which ``embedding_bag`` skips.
    """
    batch, width = indices.shape
    unused = sizes[-1]
    keys = torch.where((values != 0) & (indices < unused), indices, unused)
    sorted_keys, order = keys.detach().sort(dim=1, stable=True)
    boundaries = torch.as_tensor(sizes, dtype=sorted_keys.dtype, device=indices.device)
    # Bag (row, 0) starts at the row's first entry; bag (row, i) at its first latent >= sizes[i - 1]; the last bag
    # of a row (the unused entries) runs to the start of the next row.
    starts = torch.searchsorted(sorted_keys, boundaries.expand(batch, -1).contiguous())
    offsets = torch.cat([starts.new_zeros(batch, 1), starts], dim=1)
    offsets = offsets + torch.arange(0, batch * width, width, device=indices.device)[:, None]
    levels = F.embedding_bag(
        sorted_keys.reshape(-1), W_dec, offsets.reshape(-1), per_sample_weights=values.gather(1, order).reshape(-1),
        mode="sum", padding_idx=unused,
    ).view(batch, len(sizes) + 1, -1)
    # Running sums of the slices: torch's cumsum backward over a short strided dimension costs more than the decode.
    return list(itertools.accumulate(levels.unbind(dim=1)[:-1]))
