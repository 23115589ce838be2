"""Speed of the sparse Top-K SAE step against the encoder GEMM and a dense autograd step.

Each repetition runs every case once, in turn, so that background load hits
all of them alike; the table shows medians over the repetitions and each
case's time as a multiple of the encoder GEMM's, measured in the same run.
Run it with the package importable (``make venv`` installs it; or prefix
``PYTHONPATH=.``):

    python benchmarks/bench_sparse_ops.py                      # B=1024, d=1024, L=8192, k=64
    python benchmarks/bench_sparse_ops.py --quick              # small sizes, < 1 min
    python benchmarks/bench_sparse_ops.py --untied --autocast  # untied decoder, bf16 encoder GEMM
    python benchmarks/bench_sparse_ops.py --primitives         # also the alternatives for each backward term
    python benchmarks/bench_sparse_ops.py --threads 1 --cpu-time  # steadier numbers on a loaded machine

Cases:

- ``encoder GEMM``: ``F.linear(x, W_enc, b_lat)``, the ``2*B*d*L``-flop floor of any step.
- ``dense step``: the dense autograd model (top-k, codes scattered into ``(B, L)``,
  decoded with a GEMM), NMSE loss, backward.
- ``sparse step``: :func:`sklearn_sae._sparse_ops.topk_sae_forward`, NMSE loss, backward.
- ``sparse step + Adam``: the same, then ``Adam.step()`` and ``zero_grad()``; torch's
  default (foreach) Adam, and the fused one.

``saved MiB`` is what autograd keeps for the backward, parameters excepted.
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings

import torch
from torch.nn import functional as F

from sklearn_sae._sparse_ops import _topk, topk_sae_forward


def _nmse(x_rec, x):
    return ((x_rec - x).square().sum(1) / x.square().sum(1)).mean()


def _dense_forward(x, W_enc, b_lat, W_dec, pre_bias, k):
    z_pre = F.linear(x - pre_bias, W_enc, b_lat).float()
    values, indices = z_pre.topk(k, dim=1, sorted=False)
    codes = torch.zeros_like(z_pre).scatter(1, indices, torch.relu(values))
    return codes @ W_dec + pre_bias


def _sparse_forward(x, W_enc, b_lat, W_dec, pre_bias, k):
    return topk_sae_forward(x, W_enc, b_lat, W_dec, pre_bias, k)[0]


def _saved_mib(forward, params, *args):
    """MiB that autograd saves for the backward of ``forward(*args)``, not counting parameters."""
    param_storages = {p.untyped_storage().data_ptr() for p in params}
    storages = {}

    def pack(tensor):
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in param_storages:
            storages[storage.data_ptr()] = storage.nbytes()
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        forward(*args)
    return sum(storages.values()) / 2**20


def _time(fn, device, clock):
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = clock()
    fn()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return clock() - start


def _interleaved(cases, repeats, device, clock):
    for fn in cases.values():  # warm-up: allocator, thread pool, lazy init
        fn()
    times = {name: [] for name in cases}
    for _ in range(repeats):
        for name, fn in cases.items():
            times[name].append(_time(fn, device, clock))
    return {name: statistics.median(ts) for name, ts in times.items()}


def _print_table(title, medians, reference, batch, extra=None):
    print(f"\n{title}")
    header = f"{'case':34s} {'ms (median)':>12s} {'samples/s':>11s} {'x ' + reference:>14s}"
    if extra:
        header += f" {'saved MiB':>10s}"
    print(header)
    print("-" * len(header))
    for name, seconds in medians.items():
        row = f"{name:34s} {seconds * 1e3:12.1f} {batch / seconds:11.0f} {seconds / medians[reference]:14.2f}"
        if extra:
            row += f" {extra[name]:10.1f}" if name in extra else f" {'':>10s}"
        print(row)


def bench_steps(args, device):
    torch.manual_seed(0)
    B, d, L, k = args.batch, args.d, args.latents, args.k
    x = torch.randn(B, d, device=device)
    W_enc = torch.nn.Parameter(torch.randn(L, d, device=device) / d**0.5)
    W_dec = W_enc if not args.untied else torch.nn.Parameter(W_enc.detach().clone())
    b_lat = torch.nn.Parameter(torch.randn(L, device=device) * 0.1)
    pre_bias = torch.nn.Parameter(torch.randn(d, device=device) * 0.1)
    params = [W_enc, b_lat, pre_bias] + ([W_dec] if args.untied else [])
    adam = torch.optim.Adam(params, lr=1e-4)
    fused_adam = torch.optim.Adam(params, lr=1e-4, fused=True)
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.autocast)

    def gemm():
        with torch.no_grad(), autocast:
            F.linear(x, W_enc, b_lat)

    def step(forward):
        def run():
            for p in params:
                p.grad = None
            with autocast:
                loss = _nmse(forward(x, W_enc, b_lat, W_dec, pre_bias, k), x)
            loss.backward()

        return run

    sparse_step = step(_sparse_forward)

    def with_optimizer(optimizer):
        def run():
            sparse_step()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)

        return run

    # The two steps compute the same gradients (tests/test_sparse_ops.py pins this at small sizes).
    cases = {
        "encoder GEMM": gemm,
        "dense step (fwd+bwd)": step(_dense_forward),
        "sparse step (fwd+bwd)": sparse_step,
        "sparse step + Adam": with_optimizer(adam),
        "sparse step + Adam(fused=True)": with_optimizer(fused_adam),
    }
    with autocast:
        saved = {
            "dense step (fwd+bwd)": _saved_mib(_dense_forward, params, x, W_enc, b_lat, W_dec, pre_bias, k),
            "sparse step (fwd+bwd)": _saved_mib(_sparse_forward, params, x, W_enc, b_lat, W_dec, pre_bias, k),
        }
    medians = _interleaved(cases, args.repeats, device, args.clock)
    gemm_gflops = 2 * B * d * L / medians["encoder GEMM"] / 1e9
    _print_table(
        f"Training step, B={B} d={d} L={L} k={k}, {'untied' if args.untied else 'tied'}, "
        f"{'bf16 autocast' if args.autocast else 'float32'}, {device} "
        f"(encoder GEMM {gemm_gflops:.0f} GFLOP/s)",
        medians,
        "encoder GEMM",
        B,
        saved,
    )


def bench_primitives(args, device):
    """Each backward term by the chosen primitive and by the alternatives that lost."""
    torch.manual_seed(0)
    B, d, L, k = args.batch, args.d, args.latents, args.k
    x_c = torch.randn(B, d, device=device)
    W = torch.randn(L, d, device=device) / d**0.5
    grad_rec = torch.randn(B, d, device=device)
    z = F.linear(x_c, W)
    values, indices = z.topk(k, dim=1, sorted=False)
    grad_z = torch.randn(B, k, device=device)
    flat = indices.reshape(-1)
    entry_row = torch.arange(B, device=device).repeat_interleave(k)
    sorted_latents, order = flat.sort(stable=True)
    bounds = torch.searchsorted(sorted_latents, torch.arange(L + 1, device=device))
    rows = entry_row[order]

    def bag(weights, table):
        return F.embedding_bag(rows, table, bounds, per_sample_weights=weights, mode="sum", include_last_offset=True)

    def csr(weights, table):
        latent_sorted = torch.sparse_csr_tensor(bounds, rows, weights, (L, B))
        return latent_sorted @ table

    def coo(weights, table):
        return torch.sparse.mm(torch.sparse_coo_tensor(torch.stack([flat, entry_row]), weights, (L, B)), table)

    def dense(weights, table):
        return torch.zeros(B, L, device=device).scatter_(1, indices, weights.view(B, k)).t() @ table

    def index_add(weights, table):
        outer = (weights.view(B, k, 1) * table[:, None]).view(-1, d)  # (B*k, d) materialised
        return torch.zeros(L, d, device=device).index_add_(0, flat, outer)

    def psw_backward():
        return torch.ops.aten._embedding_bag_per_sample_weights_backward(grad_rec, W, flat, bag_starts, entry_row, 0)

    def sort_by_latent():
        return torch.searchsorted(flat.sort(stable=True)[0], torch.arange(L + 1, device=device))

    def tied_merged():
        return F.embedding_bag(
            torch.stack([rows, rows + B], 1).reshape(-1),
            torch.cat([grad_rec, x_c]),
            2 * bounds,
            per_sample_weights=torch.stack([v_sorted, grad_z.reshape(-1)[order]], 1).reshape(-1),
            mode="sum",
            include_last_offset=True,
        )

    v_sorted = values.reshape(-1)[order]
    bag_starts = torch.arange(0, B * k, k, device=device)
    cases = {
        "encoder GEMM": lambda: F.linear(x_c, W),
        "select: staged _topk [chosen]": lambda: _topk(z, k),
        "select: torch.topk(sorted=False)": lambda: z.topk(k, dim=1, sorted=False),
        "decode: embedding_bag": lambda: F.embedding_bag(indices, W, per_sample_weights=values, mode="sum"),
        "dv: emb-bag psw backward [chosen]": psw_backward,
        "dv: dense (g @ W.T).gather": lambda: (grad_rec @ W.t()).gather(1, indices),
        "dv: gather (B,k,d) rows + bmm": lambda: torch.bmm(W[indices], grad_rec[:, :, None]),
        "sort by latent + bounds": sort_by_latent,
        "dW_dec: latent bags [chosen]": lambda: bag(v_sorted, grad_rec),
        "dW_dec: CSR (L,B) @ g": lambda: csr(v_sorted, grad_rec),
        "dW_dec: COO sparse.mm": lambda: coo(values.reshape(-1), grad_rec),
        "dW_dec: dense scatter + GEMM": lambda: dense(values.reshape(-1), grad_rec),
        "dW_dec: index_add_ of (B*k,d)": lambda: index_add(values.reshape(-1), grad_rec),
        "tied dW: one merged bag [chosen]": tied_merged,
        "tied dW: two bags + add": lambda: bag(v_sorted, grad_rec).add_(bag(grad_z.reshape(-1)[order], x_c)),
        "fresh (L,d) zeros (page faults)": lambda: torch.zeros(L, d, device=device),
    }
    medians = _interleaved(cases, args.repeats, device, args.clock)
    _print_table(f"Primitives, B={B} d={d} L={L} k={k}, float32, {device}", medians, "encoder GEMM", B)


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--latents", type=int, default=8192)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--quick", action="store_true", help="B=512 d=512 L=4096 k=32, 3 repeats")
    parser.add_argument("--untied", action="store_true", help="separate decoder weight")
    parser.add_argument("--autocast", action="store_true", help="bf16 autocast around the steps")
    parser.add_argument("--primitives", action="store_true", help="also time each backward term's alternatives")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--threads", type=int, help="torch CPU threads (default: torch's choice)")
    parser.add_argument(
        "--cpu-time",
        action="store_true",
        help="time with process CPU time instead of wall clock: steadier on a loaded machine with --threads 1",
    )
    args = parser.parse_args()
    args.clock = time.process_time if args.cpu_time else time.perf_counter
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.quick:
        args.batch, args.d, args.latents, args.k, args.repeats = 512, 512, 4096, 32, 3
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
    warnings.filterwarnings("ignore", message="Sparse invariant checks")
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, device {device}, "
        f"{'CPU' if args.cpu_time else 'wall'} time, medians of {args.repeats} interleaved repeats"
    )
    bench_steps(args, device)
    if args.primitives:
        bench_primitives(args, device)


if __name__ == "__main__":
    main()
