"""Training and encoding speed against the encoder-GEMM limit, on CPU or GPU.

Every Top-K SAE must compute all pre-activations: one ``(B, d) x (d, L)``
GEMM per batch. Its rate (samples/s) is the reference every other figure is
divided by. Measured in one run, interleaved over ``--repeats`` rounds:

* ``gemm``, ``gemm_bf16``: the encoder GEMM alone (forward only), in float32
  and in bfloat16;
* ``dense_ref``: a plain PyTorch Top-K SAE training step (dense mask, dense
  decoder, autograd, Adam) written below, the straightforward baseline;
* ``sparsify_step`` (with ``--sparsify``): one training step of EleutherAI
  sparsify's ``SparseCoder`` as its trainer runs it for an autoencoder (decoder
  renormalised, FVU loss, gradient parallel to the decoder rows removed, fired
  latents counted, the loss read back) with ``torch.optim.Adam``; its forward
  casts to bfloat16 itself on a CUDA GPU that supports it, and stays float32
  elsewhere;
* ``fit[activation, fp32|amp]``: ``SparseAutoencoderTransformer.fit`` end to
  end (skorch loop, data slicing, callbacks, LR schedule, clipping, metrics);
  an activation written ``name+matryoshka`` trains with
  ``matryoshka=(1/16, 1/8, 1/4, 1/2)``;
* ``transform[activation, dense|csr]``: dense and sparse output.

Each case's peak memory comes from one more, untimed call: on a GPU what
``torch.cuda.max_memory_allocated`` reached above what was allocated before
the call, on the CPU the peak resident set above the resident set before it.
``--json PATH`` writes every figure to a file as well (``gpu_check.py`` reads it).

Usage::

    python benchmarks/bench_speed.py --quick
    python benchmarks/bench_speed.py                       # d=1024, L=8192, k=64, batch 1024
    python benchmarks/bench_speed.py --device cuda --latents 32768 --batch 4096 --sparsify
    OMP_NUM_THREADS=2 python benchmarks/bench_speed.py --no-amp --d 256 --latents 4096 --k 32 --batch 1024 \
        --batches 16 --activations topk,batchtopk,jumprelu,topk+matryoshka,batchtopk+matryoshka
"""

from __future__ import annotations

import argparse
import gc
import json
import math
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
    """Make the peak resident set the current one; False where the kernel does not allow it."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def peak_memory_mib(fn, device):
    """Peak memory one call of ``fn`` takes above what was in use before it, in MiB (NaN if unknown)."""
    gc.collect()
    if device.type == "cuda":
        synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
        before = torch.cuda.memory_allocated(device)
        fn()
        synchronize(device)
        return (torch.cuda.max_memory_allocated(device) - before) / 2**20
    if not reset_peak_rss():
        fn()
        return float("nan")
    before = peak_rss_mib()
    fn()
    # The kernel folds each thread's resident-page count in lazily, so a call that adds nothing can read a
    # few pages below the start: that is no growth.
    return max(peak_rss_mib() - before, 0.0)


def sparsify_step(x, n_latents, k):
    """One training step of sparsify's ``SparseCoder`` on the batch ``x``, as its trainer takes one."""
    from sparsify import SparseCoder, SparseCoderConfig

    coder = SparseCoder(x.shape[1], SparseCoderConfig(num_latents=n_latents, k=k), device=x.device)
    optimizer = torch.optim.Adam(coder.parameters(), lr=1e-4)
    did_fire = torch.zeros(n_latents, dtype=torch.bool, device=x.device)

    def step():
        coder.set_decoder_norm_to_unit_norm()
        out = coder(x)
        did_fire[out.latent_indices.flatten()] = True
        out.fvu.backward()
        float(out.fvu.detach())  # its trainer reads the loss back every step
        coder.remove_gradient_parallel_to_decoder_directions()
        optimizer.step()
        optimizer.zero_grad()

    return step


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
    parser.add_argument("--sparsify", action="store_true", help="also time sparsify's SparseCoder training step")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
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
    x_bf16, W_bf16 = x.bfloat16(), W.bfloat16()
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

    cases = {
        "gemm": (lambda: F.linear(x, W), args.batch),
        "gemm_bf16": (lambda: F.linear(x_bf16, W_bf16), args.batch),
        "dense_ref": (reference_step, args.batch),
    }
    errors = {}
    if args.sparsify:
        try:
            cases["sparsify_step"] = (sparsify_step(x, args.latents, args.k), args.batch)
        except ImportError as error:  # reported, and the run fails at its end: never a silent skip
            errors["sparsify_step"] = f"EleutherAI sparsify (eai-sparsify) is not importable: {error}"
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
    peak_mib = {name: peak_memory_mib(fn, device) for name, (fn, _) in cases.items()}  # untimed

    rates = {name: samples / statistics.median(seconds[name]) for name, (_, samples) in cases.items()}
    sparsify_rate = rates.get("sparsify_step", math.nan)
    results = {
        name: {"median_s": statistics.median(seconds[name]), "samples_per_s": rate,
               "share_of_gemm": rate / rates["gemm"], "share_of_gemm_bf16": rate / rates["gemm_bf16"],
               "vs_sparsify": rate / sparsify_rate, "peak_mib": peak_mib[name]}
        for name, rate in rates.items()
    }
    device_name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor() or "cpu"
    sparsify_precision = "bf16" if device.type == "cuda" and torch.cuda.is_bf16_supported() else "fp32"
    print(f"\nmachine: {platform.processor() or platform.machine()}, torch {torch.__version__}, "
          f"threads {torch.get_num_threads()}, device {device}"
          + (f" ({device_name})" if device.type == "cuda" else ""))
    print(f"sizes: batch {args.batch}, d {args.d}, n_latents {args.latents}, k {args.k}, "
          f"{n_rows} rows per fit/transform, {args.repeats} repeats (median)\n")
    memory = "peak CUDA memory above the start (MiB)" if device.type == "cuda" else "peak RSS growth (MiB)"
    print(f"| case | median s | samples/s | share of fp32 GEMM rate | share of bf16 GEMM rate | x sparsify "
          f"| {memory} |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, row in results.items():
        print(f"| {name} | {row['median_s']:.4f} | {row['samples_per_s']:,.0f} | {row['share_of_gemm']:.2f} | "
              f"{row['share_of_gemm_bf16']:.2f} | {row['vs_sparsify']:.2f} | {row['peak_mib']:,.1f} |")
    if args.sparsify and not errors:
        print(f"\nsparsify's step ran in {sparsify_precision} (its forward casts to bf16 on a CUDA GPU that "
              "supports it, and stays in float32 elsewhere)")

    # A threshold activation's cost follows its L0 (JumpReLU's is whatever one epoch of its penalty left).
    print("\n| fitted model | training L0 (last epoch) | transform L0 |")
    print("|---|---:|---:|")
    l0 = {}
    for name, sae in fitted.items():
        codes = sae.set_params(sparse_output=True).transform(X[: args.batch])
        l0[name] = {"train_l0": float(sae.history_[-1, "train_l0"]), "transform_l0": codes.nnz / codes.shape[0]}
        print(f"| {name} | {l0[name]['train_l0']:.1f} | {l0[name]['transform_l0']:.1f} |")

    for name, message in errors.items():
        print(f"\nFAILED {name}: {message}")
    if args.json:
        report = {
            "device": device.type, "device_name": device_name, "torch": torch.__version__,
            "threads": torch.get_num_threads(), "sparsify_precision": sparsify_precision if args.sparsify else None,
            "sizes": {"batch": args.batch, "d": args.d, "n_latents": args.latents, "k": args.k, "rows": n_rows,
                      "repeats": args.repeats},
            "cases": results, "l0": l0, "errors": errors,
        }
        with open(args.json, "w", encoding="utf-8") as f:
            json.dump(report, f, indent=1, allow_nan=True)
    return 1 if errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
