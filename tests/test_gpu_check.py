"""benchmarks/gpu_check.py without a GPU: its CPU smoke run end to end, its plan, and its refusals.

The smoke run (``--device cpu``) runs every step of the GPU run through the same scripts at tiny
sizes, so a lent GPU is not where the check itself fails for the first time.
"""

import importlib.util
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def smoke(tmp_path_factory):
    """One smoke run in a subprocess, as a user starts it: its result, report and wall time."""
    out = tmp_path_factory.mktemp("smoke") / "report.md"
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    start = time.perf_counter()
    result = subprocess.run([sys.executable, str(SCRIPT), "--device", "cpu", "--out", str(out)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=400)
    seconds = time.perf_counter() - start
    return result, out.read_text(encoding="utf-8") if out.exists() else "", seconds


def _summary_rows(report):
    """``{case: [rows/s, share of the bf16 GEMM rate, x sparsify, peak memory]}`` from the summary's table."""
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    rows = {}
    for line in summary.splitlines():
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        if line.startswith("| ") and len(cells) == 5 and re.fullmatch(r"[-\d,.]+", cells[1]):
            rows[cells[0]] = [float(cell.replace(",", "")) for cell in cells[1:]]
    return rows


def test_smoke_run_passes_every_step_of_the_gpu_plan(gpu_check, smoke):
    result, report, seconds = smoke
    assert result.returncode == 0, result.stdout + result.stderr
    assert report.startswith(gpu_check.REPORT_TITLE) and "**All steps passed.**" in report
    for step in gpu_check.plan("python", "cpu", Path("figures")):
        section = report.split(f"## {step.title}\n", 1)
        assert len(section) == 2, f"no section for {step.name}"
        assert re.match(r"\n`[^`]+`: exit 0, \d+ s\n", section[1]), section[1][:300]
    print(f"smoke run: {seconds:.0f} s")


def test_smoke_report_gives_every_figure_the_gpu_run_reports(smoke):
    _, report, _ = smoke
    rows = _summary_rows(report)
    cases = {"gemm_bf16", "dense_ref", "sparsify_step", "fit[topk,fp32]", "fit[topk,amp]", "fit[batchtopk,amp]",
             "transform[topk,dense]", "transform[topk,csr]"}
    assert cases <= set(rows), sorted(rows)
    for case in cases:
        rate, share, vs_sparsify, peak = rows[case]
        assert rate > 0 and share > 0 and vs_sparsify > 0 and peak >= 0, (case, rows[case])
    streaming = re.search(r"in-memory ([\d,]+) rows/s, streaming ([\d,]+) rows/s, streaming / in-memory ([\d.]+)",
                          report)
    assert streaming and all(float(value.replace(",", "")) > 0 for value in streaming.groups())


def test_cuda_tests_exist_to_be_run(gpu_check, smoke):
    """The smoke run collects ``-m cuda`` with pytest: the GPU run has enough tests to run, from test_cuda.py."""
    _, report, _ = smoke
    collected = re.search(r"CUDA-marked tests: (\d+) collected", report)
    assert collected and int(collected.group(1)) >= gpu_check.MIN_CUDA_TESTS
    assert re.search(r"^tests/test_cuda\.py::test_\w+", report, flags=re.MULTILINE)


def test_smoke_runs_the_gpu_commands_at_tiny_sizes(gpu_check):
    gpu, cpu = (gpu_check.plan("python", device, Path("figures")) for device in ("cuda", "cpu"))
    assert [step.name for step in gpu] == [step.name for step in cpu]
    for on_gpu, on_cpu in zip(gpu[1:], cpu[1:]):  # the benchmarks: same script, same options, other values
        assert on_gpu.command[:3] == on_cpu.command[:3]
        assert [part for part in on_gpu.command if part.startswith("--")] == [
            part for part in on_cpu.command if part.startswith("--")]
        assert on_cpu.command[on_cpu.command.index("--device") + 1] == "cpu"
    # The CUDA tests: the same selection, collected instead of run.
    assert cpu[0].command == ["--collect-only" if part == "-rs" else part for part in gpu[0].command]


def test_the_plan_leaves_room_for_a_rerun_on_a_lent_device(gpu_check):
    steps = gpu_check.default_steps(gpu_check.plan("python", "cuda", Path("figures")), "cuda")
    assert sum(step.timeout_s for step in steps) <= gpu_check.BUDGET_S  # every step gets its whole timeout
    assert sum(step.estimate_s["cuda"] for step in steps) < gpu_check.BUDGET_S
    call = gpu_check.BUDGET_S + 60
    assert call <= gpu_check.CALL_LIMIT_S and gpu_check.START_S + 2 * call <= gpu_check.DEVICE_TIME_S


def test_dry_run_prints_the_gpu_plan_and_its_time(gpu_check, capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "pytest -m cuda" in plan
    assert "bench_speed.py --device cuda --d 1024 --latents 32768 --k 64 --batch 4096" in plan
    assert "--sparsify" in plan
    assert "bench_streaming.py speed --device cuda" in plan
    assert "bench_synth.py --curve --size 16k --device cuda" in plan and "--only synth --budget 480" in plan
    assert re.search(r"estimated \d+ s", plan) and f"timeout_s={gpu_check.BUDGET_S + 60}" in plan
    for step in gpu_check.plan("python", "cuda", Path("figures")):  # every script it runs is there
        scripts = [part for part in step.command if part.endswith(".py")]
        assert all((ROOT / script).is_file() for script in scripts)


def test_a_skipped_cuda_test_fails_the_gpu_run(gpu_check):
    step = gpu_check.tests_step("python", "cuda")
    assert step.check("....\n12 passed in 30.1s") == []
    assert any("skipped" in problem for problem in step.check("....s\n12 passed, 1 skipped in 30.1s"))
    assert step.check("3 passed in 2.0s")  # the selection lost tests
    assert step.summary("....s\n12 passed, 1 skipped in 30.1s") == ["- CUDA-marked tests: 12 passed, 1 skipped"]


def test_the_gpu_only_parts_of_the_report(gpu_check, monkeypatch, tmp_path):
    """What only a GPU run writes: the card in the header, CUDA memory and the issue's targets in the summary."""
    card = SimpleNamespace(name="NVIDIA H100 80GB HBM3", total_memory=80 * 2**30, multi_processor_count=132)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda index: card)
    header = gpu_check._header("cuda")
    assert header[0] == gpu_check.REPORT_TITLE and "NVIDIA H100 80GB HBM3, 80 GiB, 132 multiprocessors" in header[2]

    row = {"median_s": 1.0, "samples_per_s": 1e5, "share_of_gemm": 0.3, "share_of_gemm_bf16": 0.6,
           "vs_sparsify": 1.7, "peak_mib": 2048.0}
    figures = {"device_name": card.name, "torch": "2.11.0", "sparsify_precision": "bf16", "errors": {},
               "sizes": {"batch": 4096, "d": 1024, "n_latents": 32768, "k": 64, "rows": 131072, "repeats": 3},
               "cases": {"sparsify_step": {**row, "vs_sparsify": 1.0}, "fit[topk,amp]": row}}
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(figures), encoding="utf-8")
    step = gpu_check.speed_step("python", "cuda", path)
    summary = "\n".join(step.summary(""))
    assert step.check("") == [] and "peak CUDA memory above the start (MiB)" in summary
    assert "share of the bf16 GEMM rate 0.60 (target >= 0.5), x sparsify 1.70 (target >= 1.5)" in summary
    del figures["cases"]["sparsify_step"]
    path.write_text(json.dumps({**figures, "errors": {"sparsify_step": "not importable"}}), encoding="utf-8")
    assert step.check("") == ["sparsify_step: not importable"]


def test_a_small_ratio_is_not_printed_as_zero(gpu_check, tmp_path):
    """The CPU smoke run's shares of the GEMM rate are tiny but positive; its test reads them from the table."""
    row = {"median_s": 1.0, "samples_per_s": 1008.0, "share_of_gemm": 0.001, "share_of_gemm_bf16": 0.0031,
           "vs_sparsify": 0.05, "peak_mib": 0.0}
    figures = {"device_name": "cpu", "torch": "2.13.0", "sparsify_precision": "fp32", "errors": {},
               "sizes": {"batch": 128, "d": 64, "n_latents": 512, "k": 8, "rows": 512, "repeats": 1},
               "cases": {"fit[batchtopk,amp]": row,
                         "dense_ref": {**row, "share_of_gemm_bf16": 0.6, "vs_sparsify": 1.7}}}
    path = tmp_path / "speed.json"
    path.write_text(json.dumps(figures), encoding="utf-8")
    summary = "\n".join(gpu_check.speed_step("python", "cpu", path).summary(""))
    assert "| fit[batchtopk,amp] | 1,008 | 0.0031 | 0.05 | 0.0 |" in summary
    assert "| dense_ref | 1,008 | 0.60 | 1.70 | 0.0 |" in summary


def test_a_failed_or_cut_off_step_fails_the_check(gpu_check, monkeypatch, tmp_path):
    def command(code):
        return [sys.executable, "-c", code]

    def step(name, code, timeout_s=30):
        return gpu_check.Step(name, f"step {name}", command(code), {"cuda": 1, "cpu": 1}, timeout_s,
                              check=lambda output: [], summary=lambda output: [])

    monkeypatch.setattr(gpu_check, "plan", lambda python, device, figures: [
        step("fine", "print('fine')"), step("fails", "raise SystemExit(3)"),
        step("hangs", "import time; time.sleep(60)", timeout_s=1)])
    out = tmp_path / "report.md"
    assert gpu_check.run(out, sys.executable, "cpu", 60, None) == 1
    report = out.read_text(encoding="utf-8")
    assert "**FAILED: step fails, step hangs**" in report
    assert "exit 3" in report and "timeout after 1 s" in report


def test_the_budget_stops_later_steps(gpu_check, monkeypatch, tmp_path):
    slow = gpu_check.Step("slow", "step slow", [sys.executable, "-c", "import time; time.sleep(60)"],
                          {"cuda": 1, "cpu": 1}, 60, check=lambda output: [], summary=lambda output: [])
    after = gpu_check.Step("after", "step after", [sys.executable, "-c", "pass"], {"cuda": 1, "cpu": 1}, 60,
                           check=lambda output: [], summary=lambda output: [])
    monkeypatch.setattr(gpu_check, "plan", lambda python, device, figures: [slow, after])
    monkeypatch.setattr(gpu_check, "MIN_STEP_S", 0.5)
    out = tmp_path / "report.md"
    assert gpu_check.run(out, sys.executable, "cpu", 2, None) == 1  # the slow step is cut off at the budget
    report = out.read_text(encoding="utf-8")
    assert "timeout after 2 s" in report
    assert "## step after\n\nnot run: the check's budget of 2 s was spent" in report


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_without_a_gpu_it_refuses_loudly(gpu_check, capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "report.md")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_it_never_overwrites_a_file_it_did_not_write(gpu_check, capsys, tmp_path):
    notes = tmp_path / "notes.md"
    notes.write_text("# my notes\n", encoding="utf-8")
    assert gpu_check.main(["--device", "cpu", "--out", str(notes)]) == 2
    assert "not a report of this check" in capsys.readouterr().err
    assert notes.read_text(encoding="utf-8") == "# my notes\n"


def test_unknown_step_names_are_refused(gpu_check, capsys):
    with pytest.raises(SystemExit):
        gpu_check.main(["--only", "speed,typo", "--dry-run"])
    assert "unknown steps ['typo']" in capsys.readouterr().err


def test_timeout_replaces_every_steps_own(gpu_check, monkeypatch, tmp_path):
    slow = gpu_check.Step("slow", "step slow", [sys.executable, "-c", "import time; time.sleep(60)"],
                          {"cuda": 1, "cpu": 1}, 60, check=lambda output: [], summary=lambda output: [])
    monkeypatch.setattr(gpu_check, "plan", lambda python, device, figures: [slow])
    out = tmp_path / "report.md"
    assert gpu_check.run(out, sys.executable, "cpu", 60, step_timeout=1) == 1
    assert "timeout after 1 s" in out.read_text(encoding="utf-8")


def test_synth_step_takes_a_device_call_of_its_own(gpu_check):
    """SynthSAEBench's step does not fit the default budget: on a GPU it runs when --only names it (one start and
    its call fit a lease); the smoke run runs it with the others."""
    steps = gpu_check.plan("python", "cuda", Path("figures"))
    synth = next(step for step in steps if step.name == "synth")
    assert [step.name for step in gpu_check.default_steps(steps, "cuda")] == ["tests", "speed", "streaming"]
    cpu = gpu_check.plan("python", "cpu", Path("figures"))
    assert [step.name for step in gpu_check.default_steps(cpu, "cpu")] == [step.name for step in cpu]
    assert synth.timeout_s <= gpu_check.CALL_LIMIT_S - 60 and synth.estimate_s["cuda"] <= synth.timeout_s
    assert gpu_check.START_S + synth.timeout_s + 60 <= gpu_check.DEVICE_TIME_S
    command = synth.command  # the published setting: SynthSAEBench-16k; its curve ends before the step's timeout
    assert command[command.index("--size") + 1] == "16k"
    assert float(command[command.index("--time-limit") + 1]) < synth.timeout_s


def test_smoke_report_gives_the_synth_figures(smoke):
    """Both architectures, with samples/s and F1 at each scored budget, and whether the published F1 was reached."""
    _, report, _ = smoke
    summary = report.split("## Summary", 1)[1].split("\n## ", 1)[0]
    assert "- SynthSAEBench (smoke: 512 features in 64 dims, width 128, k 8) on CPU" in summary
    rows = [[cell.strip() for cell in line.strip("|").split("|")] for line in summary.splitlines()
            if line.startswith("| ours:")]
    assert [(row[0], row[4]) for row in rows] == [("ours:batchtopk", "2,048"), ("ours:batchtopk", "4,096"),
                                                 ("ours:matryoshka", "2,048"), ("ours:matryoshka", "4,096")]
    for row in rows:
        assert float(row[1].replace(",", "")) > 0 and 0 < float(row[5]) <= 1  # samples/s, F1
        assert row[2] in ("0.732", "0.879") and (row[3].startswith("not reached") or row[3].replace(",", "").isdigit())


def test_synth_summary_says_where_the_published_f1_was_reached(gpu_check, tmp_path):
    point = {"train_s": 4.0, "f1": 0.75, "mcc": 0.77, "uniqueness": 0.99, "explained_variance": 0.79, "l0": 25.0,
             "dead": 0}
    record = {"published_f1": 0.732, "reached_at": 8_388_608, "stopped": "reached", "samples_per_s": 2e6,
              "curve": [{**point, "samples": 8_388_608}]}
    figures = {"size": "16k", "features": 16384, "dims": 768, "width": 4096, "k": 25, "device_name": "NVIDIA H100",
               "build_s": 30.0, "eval_rows": 50000, "trainers": {"ours:batchtopk": record}}
    path = tmp_path / "synth.json"
    path.write_text(json.dumps(figures), encoding="utf-8")
    step = gpu_check.synth_step("python", "cuda", path)
    summary = "\n".join(step.summary(""))
    assert "| ours:batchtopk | 2,097,152 | 0.732 | 8,388,608 | 8,388,608 | 0.750 |" in summary
    assert step.check("") == ["ours:matryoshka not run"]
    figures["trainers"]["ours:matryoshka"] = {**record, "curve": []}
    path.write_text(json.dumps(figures), encoding="utf-8")
    assert step.check("") == ["ours:matryoshka: no budget scored"]
