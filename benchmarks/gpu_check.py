"""The one prepared GPU check: run it on a machine with a CUDA GPU, read the Markdown report it writes.

Steps, each a subprocess run from the repository's root, timed, its output kept:

1. ``pytest -m cuda``: every test marked ``cuda`` (``tests/test_cuda.py`` and the CUDA tests
   elsewhere: fit / transform / score / CSR output for every activation in fp32 and bf16, save and
   load across devices, resume, a streaming fit with pinned read-ahead, ``partial_fit``, the
   caller's CUDA RNG). On a GPU none may be skipped.
2. ``bench_speed.py`` at d=1,024, 32,768 latents, k=64, batch 4,096, fp32 and bf16: ``fit`` and
   ``transform`` rows/s against the encoder GEMM of the same shape and a dense PyTorch Top-K SAE.
3. ``bench_streaming.py speed``: a fit from an HDF5 file that stays on disk against the in-memory
   fit, on the GPU.

It fails loudly, never skips: without a CUDA GPU it exits with status 2 before running anything,
and it exits with status 1 when a step fails or a CUDA test is skipped. ``--dry-run`` prints the
steps without running them (the test suite checks that, and the refusal, on the CPU).

Usage (well under 8 minutes on one H100/H200-class GPU)::

    python benchmarks/gpu_check.py --out gpu_report.md
"""

from __future__ import annotations

import argparse
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def steps(python: str) -> list[tuple[str, list[str]]]:
    """``(title, command)`` of every step, in order."""
    return [
        ("CUDA-marked tests", [python, "-m", "pytest", "-m", "cuda", "-q", "-rs", "tests"]),
        ("bench_speed at d=1024, 32,768 latents, k=64, batch 4,096 (fp32 and bf16)",
         [python, "benchmarks/bench_speed.py", "--device", "cuda", "--d", "1024", "--latents", "32768",
          "--k", "64", "--batch", "4096", "--batches", "32", "--repeats", "3", "--activations", "topk,batchtopk"]),
        ("streaming against in-memory fit on the GPU",
         [python, "benchmarks/bench_streaming.py", "speed", "--device", "cuda", "--rows", "200000",
          "--repeats", "3"]),
    ]


def _skipped_tests(output: str) -> bool:
    return " skipped" in output.splitlines()[-1] if output.strip() else False


def run(out: Path, python: str, timeout: int) -> int:
    import torch

    report = ["# GPU check", "", f"torch {torch.__version__}, CUDA {torch.version.cuda}, "
              f"{torch.cuda.get_device_name(0)}", ""]
    failed = []
    for title, command in steps(python):
        start = time.perf_counter()
        try:
            result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=timeout)
            code, output = result.returncode, result.stdout + result.stderr
        except subprocess.TimeoutExpired as error:
            code, output = "timeout", f"{error.stdout or ''}{error.stderr or ''}"
        seconds = time.perf_counter() - start
        if code != 0 or (title == "CUDA-marked tests" and _skipped_tests(output)):
            failed.append(title)
        report += [f"## {title}", "", f"`{shlex.join(command)}`: exit {code}, {seconds:.0f} s", "", "```",
                   "\n".join(output.strip().splitlines()[-60:]), "```", ""]
        print(f"{title}: exit {code}, {seconds:.0f} s", flush=True)
    report.append(f"**{'FAILED: ' + ', '.join(failed) if failed else 'All steps passed.'}**")
    out.write_text("\n".join(report) + "\n", encoding="utf-8")
    print(f"wrote {out}")
    return 1 if failed else 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="gpu_report.md", help="the Markdown report to write")
    parser.add_argument("--timeout", type=int, default=240, help="seconds allowed to each step")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and exit")
    args = parser.parse_args(argv)
    if args.dry_run:
        for title, command in steps(sys.executable):
            print(f"{title}: {shlex.join(command)}")
        return 0
    import torch

    if not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False); this check "
              "runs only on one and does not skip.", file=sys.stderr)
        return 2
    return run(Path(args.out), sys.executable, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
