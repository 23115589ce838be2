"""Training and encoding speed against the encoder-GEMM limit, on CPU or GPU.

Every Top-K SAE must compute all pre-activations: one ``(B, d) x (d, L)``
GEMM per batch. Its rate (samples/s) is the reference every other figure is
divided by. Measured in one run, interleaved over ``--repeats`` rounds:

* ``gemm``: the encoder GEMM alone (forward only);
* ``dense_ref``: a plain PyTorch Top-K SAE training step (dense mask, dense
  decoder, autograd, Adam) written below, the straightforward baseline;
* ``fit[activation, fp32|amp]``: ``SparseAutoencoderTransformer.fit`` end to
  end (skorch loop, data slicing, callbacks, LR schedule, clipping, metrics);
  an activation written ``name+matryoshka`` trains with
  ``matryoshka=(1/16, 1/8, 1/4, 1/2)``;
* ``transform[activation, dense|csr]``: dense and sparse output;
* peak memory of ``transform`` with dense and with sparse output.

Usage::

    python benchmarks/bench_speed.py --quick
    python benchmarks/bench_speed.py                       # d=1024, L=8192, k=64, batch 1024
    python benchmarks/bench_speed.py --device cuda --latents 32768 --batch 4096
    OMP_NUM_THREADS=2 python benchmarks/bench_speed.py --no-amp --d 256 --latents 4096 --k 32 --batch 1024 \
        --batches 16 --activations topk,batchtopk,jumprelu,topk+matryoshka,batchtopk+matryoshka
"""

from __future__ import annotations

import argparse
import gc
import platform
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from sklearn_sae import SparseAutoencoderTransformer


class DenseTopKReference(torch.nn.Module):
    """The straightforward Top-K SAE: dense codes, dense decoder, autograd does the rest."""

    def __init__(self, d, n_latents, k):
        super().__init__()
        self.k = k
        self.W_enc = torch.nn.Parameter(torch.randn(n_latents, d) / d**0.5)
        self.b_lat = torch.nn.Parameter(torch.zeros(n_latents))
        self.W_dec = torch.nn.Parameter(self.W_enc.detach().clone())
        self.pre_bias = torch.nn.Parameter(torch.zeros(d))

    def forward(self, x):
        z = F.linear(x - self.pre_bias, self.W_enc, self.b_lat)
        values, indices = z.topk(self.k, dim=-1)
        codes = torch.zeros_like(z).scatter(1, indices, torch.relu(values))
        return codes @ self.W_dec + self.pre_bias


MATRYOSHKA = (1 / 16, 1 / 8, 1 / 4, 1 / 2)
"""The prefix fractions of the ``NAME+matryoshka`` cases."""


def synchronize(device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn, device):
    synchronize(device)
    start = time.perf_counter()
    fn()
    synchronize(device)
    return time.perf_counter() - start


def peak_rss_mib():
    """Peak resident memory of this process since the last reset (Linux)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak_rss():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--d", type=int, default=1024)
    parser.add_argument("--latents", type=int, default=8192)
    parser.add_argument("--k", type=int, default=64)
    parser.add_argument("--batches", type=int, default=32, help="training batches per fit (one epoch)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--activations", default="topk,gumbel_topk,batchtopk,jumprelu,topk+matryoshka,relu",
                        help="comma-separated; NAME+matryoshka adds matryoshka=MATRYOSHKA to activation NAME")
    parser.add_argument("--no-amp", action="store_true")
    parser.add_argument("--quick", action="store_true", help="d=256, L=2048, batch 256: about a minute")
    args = parser.parse_args(argv)
    if args.quick:
        args.d, args.latents, args.batch, args.k = 256, 2048, 256, 32
    device = torch.device(args.device)
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    n_rows = args.batch * args.batches
    X = rng.normal(size=(n_rows, args.d)).astype(np.float32)

    x = torch.from_numpy(X[: args.batch]).to(device)
    W = torch.randn(args.latents, args.d, device=device) / args.d**0.5
    reference = DenseTopKReference(args.d, args.latents, args.k).to(device)
    optimizer = torch.optim.Adam(reference.parameters(), lr=1e-4)

    def reference_step():
        loss = (reference(x) - x).square().sum(-1).mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()

    def fit(activation, amp):
        activation, _, variant = activation.partition("+")
        sae = SparseAutoencoderTransformer(
            n_latents=args.latents, activation=activation, k=args.k, batch_size=args.batch, max_epochs=1,
            validation_fraction=0.0, amp=amp, device=args.device, random_state=0, anneal_steps=1,
            matryoshka=MATRYOSHKA if variant == "matryoshka" else None,
        )
        return sae.fit(X)

    cases = {"gemm": (lambda: F.linear(x, W), args.batch), "dense_ref": (reference_step, args.batch)}
    fitted = {}
    for activation in args.activations.split(","):
        for amp in (False,) if args.no_amp else (False, True):
            name = f"fit[{activation},{'amp' if amp else 'fp32'}]"
            cases[name] = ((lambda a=activation, m=amp, n=name: fitted.__setitem__(n, fit(a, m))), n_rows)
    def transform(source, sparse):
        return fitted[source].set_params(sparse_output=sparse).transform(X)

    for activation in args.activations.split(","):
        source = f"fit[{activation},fp32]"
        for sparse in (False, True):
            name = f"transform[{activation},{'csr' if sparse else 'dense'}]"
            cases[name] = ((lambda s=source, o=sparse: transform(s, o)), n_rows)

    for fn, _ in cases.values():  # warm-up: allocator, kernels, first-call overheads
        fn()
    seconds = {name: [] for name in cases}
    for _ in range(args.repeats):
        for name, (fn, _) in cases.items():
            seconds[name].append(timed(fn, device))

    gemm_rate = args.batch / statistics.median(seconds["gemm"])
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}"
          + (f" ({torch.cuda.get_device_name(device)})" if device.type == "cuda" else ""))
    print(f"sizes: batch {args.batch}, d {args.d}, n_latents {args.latents}, k {args.k}, "
          f"{n_rows} rows per fit/transform, {args.repeats} repeats (median)\n")
    print("| case | median s | samples/s | share of encoder-GEMM rate |")
    print("|---|---:|---:|---:|")
    for name, (_, samples) in cases.items():
        median = statistics.median(seconds[name])
        rate = samples / median
        print(f"| {name} | {median:.4f} | {rate:,.0f} | {rate / gemm_rate:.2f} |")

    # A threshold activation's cost follows its L0 (JumpReLU's is whatever one epoch of its penalty left).
    print("\n| fitted model | training L0 (last epoch) | transform L0 |")
    print("|---|---:|---:|")
    for name, sae in fitted.items():
        codes = sae.set_params(sparse_output=True).transform(X[: args.batch])
        print(f"| {name} | {sae.history_[-1, 'train_l0']:.1f} | {codes.nnz / codes.shape[0]:.1f} |")

    if device.type == "cpu":
        source = fitted[f"fit[{args.activations.split(',')[0]},fp32]"]
        print("\n| transform output | peak RSS growth (MiB) |")
        print("|---|---:|")
        for sparse in (False, True):
            source.set_params(sparse_output=sparse)
            gc.collect()
            reset_peak_rss()
            before = peak_rss_mib()
            codes = source.transform(X)
            print(f"| {'sparse (CSR)' if sparse else 'dense'} | {peak_rss_mib() - before:.0f} |")
            del codes
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
