"""benchmarks/bench_synth.py at its smoke size: every trainer runs on one cached stream, and the cache is safe.

About 10 s of CPU: the synthetic model (512 features) is built once into a temporary cache, and each
trainer fits 8,192 rows. dictionary_learning's trainers run when ``dictionary-learning`` is installed
(``pip install --no-deps dictionary-learning``; it is not a test dependency).
"""

import csv
import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("sae_lens.synthetic")

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "bench_synth.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("bench_synth", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses resolve their (postponed) annotations through sys.modules
    try:
        spec.loader.exec_module(module)
        yield module
    finally:
        sys.modules.pop(spec.name, None)


def _trainers(bench):
    groups = ("ours", "saelens") + (("dl",) if importlib.util.find_spec("dictionary_learning") else ())
    return [name for name in bench.default_trainers() if name.split(":")[0] in groups]


def _rows(path):
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


def test_smoke_runs_every_trainer_on_one_cached_stream(bench, tmp_path, capsys):
    cache, out = tmp_path / "cache", tmp_path / "rows.csv"
    trainers = _trainers(bench)
    bench.main(["--smoke", "--cache", str(cache), "--out", str(out), "--trainers", *trainers])
    first = capsys.readouterr().out
    assert "building the synthetic model" in first and "drawing 8,192 training" in first
    rows = _rows(out)
    assert [row["trainer"] for row in rows] == trainers
    assert all(float(row["l0"]) > 0 for row in rows)  # every trainer produced codes that fire
    # A second run reloads the model and the rows instead of drawing new ones, and appends to the same file:
    # a seeded fit of ours on the same rows gives the same scores.
    bench.main(["--smoke", "--cache", str(cache), "--out", str(out), "--trainers", "ours:batchtopk"])
    second = capsys.readouterr().out
    assert "building" not in second and "drawing" not in second
    again = _rows(out)
    assert len(again) == len(rows) + 1
    before = next(row for row in rows if row["trainer"] == "ours:batchtopk")
    assert {key: again[-1][key] for key in bench.SCORES} == {key: before[key] for key in bench.SCORES}


def test_it_refuses_files_it_did_not_write(bench, tmp_path):
    foreign = tmp_path / "results.csv"
    foreign.write_text("name,value\na,1\n")
    with pytest.raises(SystemExit, match="not a bench_synth.py result file"):
        bench._append(foreign, [{}])
    assert foreign.read_text() == "name,value\na,1\n"
    size = bench.SIZES["smoke"]
    payload = {"kind": "model", "config": bench.model_config(size).to_dict()}
    occupied = bench._cache_dir(tmp_path, payload)
    occupied.mkdir()
    (occupied / "notes.txt").write_text("mine")
    with pytest.raises(SystemExit, match="not written by bench_synth.py"):
        bench.load_or_build_model(size, tmp_path)
    assert (occupied / "notes.txt").read_text() == "mine"
