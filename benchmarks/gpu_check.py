"""The one prepared GPU check: run it on a machine with a CUDA GPU, read the Markdown report it writes.

Steps, each a subprocess run from the repository's root with the repository first on ``PYTHONPATH``,
timed, its output kept:

1. ``tests``: ``pytest -m cuda``, every test marked ``cuda`` (``tests/test_cuda.py``: fit / transform /
   score / CSR output for every activation in fp32 and bf16, save and load across devices, resume, a
   streaming fit with pinned read-ahead, ``partial_fit``, the caller's CUDA RNG). On a GPU none may be
   skipped.
2. ``speed``: ``bench_speed.py`` at d=1,024, 32,768 latents, k=64, batch 4,096, fp32 and bf16: ``fit``
   and ``transform`` rows/s against the encoder GEMM of the same shape (float32 and bfloat16), a dense
   PyTorch Top-K SAE and one training step of EleutherAI sparsify's ``SparseCoder``, with each case's
   peak memory.
3. ``streaming``: ``bench_streaming.py speed``, a fit from an HDF5 file that stays on disk against the
   in-memory fit of the same rows.
4. ``synth``: ``bench_synth.py --curve``, our BatchTopK and Matryoshka on SynthSAEBench-16k at the published
   setting (16,384 features in 768 dimensions, width 4,096, k 25), trained on a stream drawn on the GPU
   and scored at 1M, 2M, 4M ... samples until the F1 of the published table (200M samples) is reached,
   with the samples/s. It needs a device call of its own (``--only synth --budget 480``); the smoke
   run runs it at the smoke size with the others.

The report begins with a summary (the GPU, rows/s, share of the bf16 encoder-GEMM rate, ratio to
sparsify, peak memory, streaming against in-memory, the CUDA tests' count), then every step's command,
time and output. It is rewritten after every step, so a check cut off midway leaves what it measured.

It fails loudly, never skips: without a CUDA GPU it exits with status 2 before running anything, and
it exits with status 1 when a step fails, a CUDA test is skipped or a figure is missing. The whole
check stops starting steps once ``--budget`` seconds are spent, and each step gets at most its own
timeout and what is left of the budget: the default budget lets a rerun fit in one device lease.

``--device cpu`` is the smoke mode: the same steps, commands and report at tiny sizes on the CPU
(the CUDA tests are collected, not run: they need a GPU), in about a minute; the test suite runs it.
``--dry-run`` prints the plan, its estimated time and the device-call timeout to use, and runs nothing.

Usage::

    python benchmarks/gpu_check.py --out gpu_report.md          # a CUDA GPU only; about 3 minutes
    python benchmarks/gpu_check.py --device cpu --out smoke.md   # the smoke mode, anywhere
    python benchmarks/gpu_check.py --dry-run                     # the plan, anywhere
    python benchmarks/gpu_check.py --only tests --timeout 200 --out rerun.md   # one step again, after a fix
    python benchmarks/gpu_check.py --only synth --budget 480 --out synth.md     # SynthSAEBench, its own call
"""

from __future__ import annotations

import argparse
import importlib.metadata
import importlib.util
import json
import math
import os
import platform
import re
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, NamedTuple

ROOT = Path(__file__).resolve().parents[1]

CALL_LIMIT_S = 600
"""The longest one command may run on a lent device."""
DEVICE_TIME_S = 900
"""A lent device's time for a whole piece of work, every start, run and idle wait counted."""
START_S = 150
"""What starting a device machine and carrying the tree there may take, counted in its time."""
BUDGET_S = 300
"""The whole check's default budget: one start and two full runs fit in ``DEVICE_TIME_S``."""
MIN_STEP_S = 10
"""A step is not started with less of the budget left than this."""
MIN_CUDA_TESTS = 5
"""Fewer CUDA-marked tests than this means the selection lost them (a renamed marker, a moved file)."""
REQUIRED_MODULES = ("torch", "skorch", "h5py", "pytest")
"""Without these no step can pass (``sparsify`` is needed by the speed step alone, which reports it)."""

SIZES = {
    "cuda": {"d": 1024, "latents": 32768, "k": 64, "batch": 4096, "batches": 32, "repeats": 3,
             "stream_rows": 200_000, "stream_width": 1024, "stream_repeats": 3,
             "synth_size": "16k", "synth_first": 2**20, "synth_most": 200_000_000, "synth_eval_rows": 50_000,
             "synth_time_s": 420},
    "cpu": {"d": 64, "latents": 512, "k": 8, "batch": 128, "batches": 4, "repeats": 1,
            "stream_rows": 2000, "stream_width": 64, "stream_repeats": 2,
            "synth_size": "smoke", "synth_first": 2048, "synth_most": 4096, "synth_eval_rows": 1024,
            "synth_time_s": 300},
}
"""The sizes of each device's run: the issue's on a GPU, tiny ones for the CPU smoke run.

The smoke run's synth limit is far above its seconds of work: it must reach both of its budgets on a loaded
machine too (its test checks both), and the step's timeout still ends it.
"""

SYNTH_BUDGET_S = 480
"""The synth step's timeout and its call's ``--budget``: one start and one such call fit in ``DEVICE_TIME_S``."""
SYNTH_TRAINERS = ("ours:batchtopk", "ours:matryoshka")
"""What the synth step trains (``bench_synth.py --curve``'s default)."""

REPORT_TITLE = "# GPU check"


class Step(NamedTuple):
    """One subprocess of the check.

    ``check(output)`` returns the problems a finished step shows beyond its exit status (a skipped
    CUDA test, a missing figure); ``summary(output)`` returns the step's lines of the report's
    summary. Both read the step's output and the figures it wrote. ``own_call``: too long for the
    default budget beside the others, so on a GPU it runs only when ``--only`` names it.
    """

    name: str
    title: str
    command: list[str]
    estimate_s: dict[str, int]
    timeout_s: int
    check: Callable[[str], list[str]]
    summary: Callable[[str], list[str]]
    own_call: bool = False


def _pytest_counts(output: str) -> dict[str, int]:
    """Pytest's closing counts (``passed``, ``skipped``, ``failed``, ``collected`` ...), from its last lines."""
    tail = "\n".join(output.strip().splitlines()[-3:])
    counts = {word: int(number) for number, word in re.findall(r"(\d+) (passed|skipped|failed|errors?|deselected)",
                                                                tail)}
    collected = re.search(r"(\d+)(?:/\d+)? tests? collected", tail)
    if collected:
        counts["collected"] = int(collected.group(1))
    return counts


def _read_json(path: Path) -> tuple[dict | None, str | None]:
    try:
        return json.loads(path.read_text(encoding="utf-8")), None
    except (OSError, ValueError) as error:
        return None, f"no figures in {path.name}: {error}"


def _ratio(value: float) -> str:
    """Two decimals, or two significant digits below 0.1: a small ratio (the CPU smoke run's) never prints as 0.00."""
    return f"{value:.2f}" if abs(value) >= 0.1 else f"{value:.2g}"


def tests_step(python: str, device: str) -> Step:
    """The CUDA-marked tests: run on a GPU; on the CPU collected, which proves they import and are selected."""
    command = [python, "-m", "pytest", "-m", "cuda", "-q", "--collect-only" if device == "cpu" else "-rs", "tests"]

    def check(output):
        counts = _pytest_counts(output)
        if device == "cpu":
            found = counts.get("collected", 0)
            return [] if found >= MIN_CUDA_TESTS else [f"{found} CUDA-marked tests collected, fewer than "
                                                        f"{MIN_CUDA_TESTS}"]
        problems = [f"{counts['skipped']} CUDA tests skipped on a GPU"] if counts.get("skipped") else []
        if counts.get("passed", 0) < MIN_CUDA_TESTS:
            problems.append(f"{counts.get('passed', 0)} CUDA tests passed, fewer than {MIN_CUDA_TESTS}")
        return problems

    def summary(output):
        counts = _pytest_counts(output)
        if device == "cpu":
            return [f"- CUDA-marked tests: {counts.get('collected', 0)} collected (the CPU smoke run collects "
                    "them: they need a GPU)"]
        found = ", ".join(f"{n} {word}" for word, n in counts.items() if word != "deselected")
        return [f"- CUDA-marked tests: {found or 'no counts in pytest output (see its section)'}"]

    title = "CUDA-marked tests" + (" (collected only: they need a GPU)" if device == "cpu" else "")
    return Step("tests", title, command, {"cuda": 45, "cpu": 10}, 70, check, summary)


def speed_step(python: str, device: str, figures: Path) -> Step:
    """``bench_speed.py`` with sparsify's step, at the device's sizes; its figures go to ``figures``."""
    size = SIZES[device]
    command = [python, "benchmarks/bench_speed.py", "--device", device, "--d", str(size["d"]),
               "--latents", str(size["latents"]), "--k", str(size["k"]), "--batch", str(size["batch"]),
               "--batches", str(size["batches"]), "--repeats", str(size["repeats"]),
               "--activations", "topk,batchtopk", "--sparsify", "--json", str(figures)]

    def check(output):
        report, problem = _read_json(figures)
        if problem:
            return [problem]
        problems = [f"{name}: {message}" for name, message in report["errors"].items()]
        if "sparsify_step" not in report["cases"] and not report["errors"]:
            problems.append("no sparsify_step case")
        problems += [f"{name}: {row['samples_per_s']} samples/s" for name, row in report["cases"].items()
                     if not (math.isfinite(row["samples_per_s"]) and row["samples_per_s"] > 0)]
        return problems

    def summary(output):
        report, problem = _read_json(figures)
        if problem:
            return [f"- speed: {problem}"]
        size = report["sizes"]
        memory = "peak CUDA memory above the start (MiB)" if device == "cuda" else "peak RSS growth (MiB)"
        lines = [f"- speed on {report['device_name']} (torch {report['torch']}): d {size['d']}, "
                 f"{size['n_latents']:,} latents, k {size['k']}, batch {size['batch']:,}, {size['rows']:,} rows "
                 f"a fit; sparsify's step in {report['sparsify_precision']}", "",
                 f"| case | rows/s | share of bf16 GEMM rate | x sparsify | {memory} |", "|---|---:|---:|---:|---:|"]
        for name, row in report["cases"].items():
            lines.append(f"| {name} | {row['samples_per_s']:,.0f} | {_ratio(row['share_of_gemm_bf16'])} | "
                         f"{_ratio(row['vs_sparsify'])} | {row['peak_mib']:,.1f} |")
        fit = report["cases"].get("fit[topk,amp]")
        if device == "cuda" and fit:
            lines += ["", f"Targets (issue 34) for fit[topk,amp]: share of the bf16 GEMM rate "
                      f"{fit['share_of_gemm_bf16']:.2f} (target >= 0.5), x sparsify {fit['vs_sparsify']:.2f} "
                      "(target >= 1.5)."]
        return lines + [""]

    title = (f"bench_speed at d={size['d']}, {size['latents']:,} latents, k={size['k']}, batch {size['batch']:,} "
             "(fp32 and bf16), against the GEMM, a dense SAE and sparsify")
    return Step("speed", title, command, {"cuda": 100, "cpu": 15}, 160, check, summary)


def streaming_step(python: str, device: str, figures: Path) -> Step:
    """``bench_streaming.py speed``: a fit from disk against the in-memory fit, at the device's sizes."""
    size = SIZES[device]
    command = [python, "benchmarks/bench_streaming.py", "speed", "--device", device,
               "--rows", str(size["stream_rows"]), "--width", str(size["stream_width"]),
               "--repeats", str(size["stream_repeats"]), "--json", str(figures)]

    def check(output):
        report, problem = _read_json(figures)
        if problem:
            return [problem]
        return [f"{name}: {rate} rows/s" for name, rate in report["rows_per_s"].items()
                if not (math.isfinite(rate) and rate > 0)]

    def summary(output):
        report, problem = _read_json(figures)
        if problem:
            return [f"- streaming: {problem}"]
        rates = report["rows_per_s"]
        return [f"- streaming ({report['rows']:,} rows x {report['width']}, float16 on disk, "
                f"{report['n_latents']:,} latents, batch {report['batch_size']}): in-memory "
                f"{rates['in-memory']:,.0f} rows/s, streaming {rates['streaming']:,.0f} rows/s, "
                f"streaming / in-memory {report['streaming_over_in_memory']:.2f}"]

    title = f"streaming against in-memory fit ({size['stream_rows']:,} rows x {size['stream_width']})"
    return Step("streaming", title, command, {"cuda": 40, "cpu": 8}, 70, check, summary)


def synth_step(python: str, device: str, figures: Path) -> Step:
    """``bench_synth.py --curve``: our BatchTopK and Matryoshka on SynthSAEBench-16k at the published setting
    (width 4,096, k 25), F1 at doubling budgets from 1M samples until the published F1, with the samples/s.

    Its own device call (``--only synth --budget SYNTH_BUDGET_S``): it needs more than the default budget
    leaves. The smoke run runs it at the smoke size with the others.
    """
    size = SIZES[device]
    command = [python, "benchmarks/bench_synth.py", "--curve", "--size", size["synth_size"], "--device", device,
               "--first-samples", str(size["synth_first"]), "--max-samples", str(size["synth_most"]),
               "--eval-rows", str(size["synth_eval_rows"]), "--time-limit", str(size["synth_time_s"]),
               "--json", str(figures)]

    def check(output):
        report, problem = _read_json(figures)
        if problem:
            return [problem]
        problems = [f"{name} not run" for name in SYNTH_TRAINERS if name not in report["trainers"]]
        for name, record in report["trainers"].items():
            rate = record["samples_per_s"]
            if not record["curve"]:
                problems.append(f"{name}: no budget scored")
            elif not (math.isfinite(rate) and rate > 0):
                problems.append(f"{name}: {rate} samples/s")
        return problems

    def summary(output):
        report, problem = _read_json(figures)
        if problem:
            return [f"- synth: {problem}"]
        lines = [f"- SynthSAEBench ({report['size']}: {report['features']:,} features in {report['dims']} dims, width "
                 f"{report['width']:,}, k {report['k']}) on {report['device_name']}: model built in "
                 f"{report['build_s']:.0f} s; {report['eval_rows']:,} evaluation rows; ours through partial_fit "
                 "(constant rate after the warmup)", "",
                 "| trainer | samples/s | published F1 | reached at (samples) | samples | F1 | MCC | uniqueness | "
                 "expl. var. | L0 | dead |", "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for name, record in report["trainers"].items():
            reached = f"{record['reached_at']:,}" if record["reached_at"] else f"not reached ({record['stopped']})"
            for point in record["curve"]:
                lines.append(f"| {name} | {point['samples'] / point['train_s']:,.0f} | {record['published_f1']} | "
                             f"{reached} | {point['samples']:,} | {point['f1']:.3f} | {point['mcc']:.3f} | "
                             f"{point['uniqueness']:.3f} | {point['explained_variance']:.3f} | {point['l0']:.1f} | "
                             f"{point['dead']} |")
        return lines + [""]

    title = (f"SynthSAEBench ({size['synth_size']}) budget curve of our BatchTopK and Matryoshka, to the published F1 "
             f"(at most {size['synth_most']:,} samples)")
    return Step("synth", title, command, {"cuda": 480, "cpu": 15}, SYNTH_BUDGET_S, check, summary, own_call=True)


def plan(python: str, device: str, figures: Path) -> list[Step]:
    """Every step of the check, in order; ``figures`` is the folder for the steps' JSON files.

    A step with ``own_call`` runs on a GPU only when named by ``--only`` (it takes a device call of its own);
    the CPU smoke run runs every step.
    """
    return [
        tests_step(python, device),
        speed_step(python, device, figures / "speed.json"),
        streaming_step(python, device, figures / "streaming.json"),
        synth_step(python, device, figures / "synth.json"),
    ]


def default_steps(steps: list[Step], device: str) -> list[Step]:
    """The steps a run without ``--only`` runs: on a GPU those that share the default budget, on the CPU all."""
    return [step for step in steps if device == "cpu" or not step.own_call]


def _environment() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    return env


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "not installed"


def _header(device: str) -> list[str]:
    import torch

    if device == "cuda":
        properties = torch.cuda.get_device_properties(0)
        machine = (f"{properties.name}, {properties.total_memory / 2**30:.0f} GiB, "
                   f"{properties.multi_processor_count} multiprocessors; CUDA {torch.version.cuda}")
        title = REPORT_TITLE
    else:
        machine = f"CPU {platform.processor() or platform.machine()}, {os.cpu_count()} cores"
        title = f"{REPORT_TITLE} (CPU smoke run: tiny sizes, the GPU run's code paths; no GPU figures)"
    return [title, "", f"{machine}; Python {platform.python_version()}, torch {torch.__version__}, skorch "
            f"{_version('skorch')}, sparsify {_version('eai-sparsify')}, on {time.strftime('%Y-%m-%d %H:%M')}", ""]


def _write(out: Path, header: list[str], summaries: list[str], sections: list[str], verdict: str) -> None:
    text = header + ["## Summary", "", *summaries, "", verdict, "", *sections]
    out.write_text("\n".join(text) + "\n", encoding="utf-8")


def run(out: Path, python: str, device: str, budget: float, only: set[str] | None = None,
        step_timeout: float | None = None) -> int:
    """Run the plan's steps (those named in ``only``, if given) and write the report to ``out``.

    Each step may run for its own timeout (``step_timeout`` instead, if given) or what is left of
    ``budget``, whichever is less.
    """
    header = _header(device)
    failed, sections, summaries = [], [], []
    deadline = time.monotonic() + budget
    with tempfile.TemporaryDirectory(prefix="gpu_check_") as folder:
        steps = plan(python, device, Path(folder))
        steps = default_steps(steps, device) if only is None else [step for step in steps if step.name in only]
        for step in steps:
            left = deadline - time.monotonic()
            if left < MIN_STEP_S:
                failed.append(step.title)
                sections += [f"## {step.title}", "", f"not run: the check's budget of {budget:.0f} s was spent", ""]
                continue
            timeout = min(step.timeout_s if step_timeout is None else step_timeout, left)
            start = time.perf_counter()
            try:
                result = subprocess.run(step.command, cwd=ROOT, env=_environment(), capture_output=True, text=True,
                                        timeout=timeout)
                status, output = f"exit {result.returncode}", result.stdout + result.stderr
            except subprocess.TimeoutExpired as error:
                status = f"timeout after {timeout:.0f} s"
                output = "".join(part.decode() if isinstance(part, bytes) else part
                                 for part in (error.stdout, error.stderr) if part)
            seconds = time.perf_counter() - start
            problems = ([] if status == "exit 0" else [status]) + step.check(output)
            if problems:
                failed.append(step.title)
            summaries += step.summary(output)
            outcome = f"{status}, {seconds:.0f} s" + (f"; FAILED: {'; '.join(problems)}" if problems else "")
            sections += [f"## {step.title}", "", f"`{shlex.join(step.command)}`: {outcome}", "", "```",
                         "\n".join(output.strip().splitlines()[-60:]), "```", ""]
            print(f"{step.title}: {outcome}", flush=True)
            _write(out, header, summaries, sections, "**Running.**")
        verdict = f"**FAILED: {', '.join(failed)}**" if failed else "**All steps passed.**"
        _write(out, header, summaries, sections, verdict)
    print(f"wrote {out}")
    return 1 if failed else 0


def print_plan(python: str, device: str, budget: float) -> None:
    every = plan(python, device, Path("$FIGURES"))
    steps = default_steps(every, device)
    for step in steps:
        print(f"{step.name}: {step.title}\n  {shlex.join(step.command)}\n"
              f"  about {step.estimate_s[device]} s, timeout {step.timeout_s} s")
    for step in every:
        if step not in steps:
            print(f"{step.name} (a device call of its own: gpu_check.py --only {step.name} --budget "
                  f"{step.timeout_s}, device call timeout_s={step.timeout_s + 60}): {step.title}\n"
                  f"  {shlex.join(step.command)}\n  about {step.estimate_s[device]} s, timeout {step.timeout_s} s")
    estimate = sum(step.estimate_s[device] for step in steps)
    print(f"estimated {estimate} s (about {math.ceil(estimate / 60)} min) on {device}; the check starts no step "
          f"after {budget:.0f} s, and the steps' timeouts add up to {sum(step.timeout_s for step in steps)} s")
    if device == "cuda":
        print(f"device call: timeout_s={int(budget) + 60} (the budget and a minute for the report and the "
              f"interpreter); a machine's start (up to {START_S} s) and two such calls fit in {DEVICE_TIME_S} s")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--device", choices=sorted(SIZES), default="cuda",
                        help="cuda: the GPU run (default); cpu: the same steps at tiny sizes on the CPU")
    parser.add_argument("--out", default="gpu_report.md", help="the Markdown report to write")
    parser.add_argument("--budget", type=float, default=BUDGET_S,
                        help=f"seconds the whole check may take; no step starts after it (default {BUDGET_S})")
    parser.add_argument("--only", default=None, help="comma-separated step names to run (default: all)")
    parser.add_argument("--timeout", type=float, default=None,
                        help="seconds allowed to each step (default: each step's own, which --dry-run prints)")
    parser.add_argument("--dry-run", action="store_true", help="print the plan and its estimated time, and exit")
    args = parser.parse_args(argv)
    if not 0 < args.budget <= CALL_LIMIT_S - 60:
        parser.error(f"--budget must be above 0 and at most {CALL_LIMIT_S - 60} s (one device call is limited "
                     f"to {CALL_LIMIT_S} s), got {args.budget}")
    names = [step.name for step in plan(sys.executable, args.device, Path("$FIGURES"))]
    only = None if args.only is None else set(args.only.split(","))
    if only is not None and not only <= set(names):
        parser.error(f"--only names unknown steps {sorted(only - set(names))}; the steps are {names}")
    if args.dry_run:
        print_plan(sys.executable, args.device, args.budget)
        return 0
    missing = [name for name in REQUIRED_MODULES if importlib.util.find_spec(name) is None]
    if missing:
        print(f"gpu_check: {', '.join(missing)} cannot be imported here, and every step needs them; install them "
              "(on a lent device, carry them as wheels: benchmarks/README.md, 'GPU figures').", file=sys.stderr)
        return 2
    import torch

    if args.device == "cuda" and not torch.cuda.is_available():
        print("gpu_check: no CUDA GPU is visible to PyTorch (torch.cuda.is_available() is False); this check "
              "runs only on one and does not skip (--device cpu is its smoke run).", file=sys.stderr)
        return 2
    out = Path(args.out)
    if out.exists() and not out.read_text(encoding="utf-8", errors="replace").startswith(REPORT_TITLE):
        print(f"gpu_check: {out} exists and is not a report of this check; it is left alone. Choose another "
              "--out.", file=sys.stderr)
        return 2
    return run(out, sys.executable, args.device, args.budget, only, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
