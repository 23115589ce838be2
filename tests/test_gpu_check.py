"""The parts of benchmarks/gpu_check.py that run without a GPU: its plan, and its refusal to skip."""

import importlib.util
from pathlib import Path

import pytest
import torch

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "gpu_check.py"


@pytest.fixture(scope="module")
def gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_dry_run_lists_the_cuda_tests_and_the_benchmarks(gpu_check, capsys):
    assert gpu_check.main(["--dry-run"]) == 0
    plan = capsys.readouterr().out
    assert "pytest -m cuda" in plan
    assert "bench_speed.py --device cuda --d 1024 --latents 32768 --k 64 --batch 4096" in plan
    assert "bench_streaming.py speed --device cuda" in plan
    for _, command in gpu_check.steps("python"):  # every script it runs is there
        scripts = [part for part in command if part.endswith(".py")]
        assert all((SCRIPT.parents[1] / script).is_file() for script in scripts)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the refusal where there is no GPU")
def test_without_a_gpu_it_refuses_loudly(gpu_check, capsys, tmp_path):
    assert gpu_check.main(["--out", str(tmp_path / "report.md")]) == 2
    assert "no CUDA GPU" in capsys.readouterr().err
    assert not (tmp_path / "report.md").exists()


def test_cuda_tests_exist_to_be_run(gpu_check):
    marked = Path(__file__).with_name("test_cuda.py").read_text(encoding="utf-8")
    assert "pytest.mark.cuda" in marked and marked.count("def test_") >= 5
