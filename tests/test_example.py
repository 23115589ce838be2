"""Smoke test of examples/compare_activations.py on a tiny embeddings file."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import load_example  # noqa: E402

from sklearn_sae.datasets import save_embeddings  # noqa: E402

OUTPUTS = ["history.csv", "metrics.csv", "metrics.md", "comparison.png", "training_curves.png"]
METRICS = ["loss", "nmse", "fvu", "l0", "dead_fraction"]
MODELS = ("relu", "relu_l0", "topk", "gumbel_topk")


@pytest.fixture(scope="module")
def example():
    return load_example("compare_activations")


@pytest.fixture
def embeddings_file(tmp_path):
    X = np.random.default_rng(0).normal(size=(60, 16)) + 0.5
    path = tmp_path / "per-protein.h5"
    save_embeddings(path, [f"P{i:05d}" for i in range(len(X))], X)  # UniProt layout, float16
    return path


def test_compare_activations_smoke(example, embeddings_file, tmp_path, capsys):
    out = tmp_path / "results"
    argv = ["--data", str(embeddings_file), "--out", str(out), "--epochs", "2", "--n-latents", "32",
            "--k", "4", "--batch-size", "16", "--anneal-steps", "5", "--device", "cpu"]
    assert example.main(argv) == 0

    for name in OUTPUTS:
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name

    metrics = pd.read_csv(out / "metrics.csv")
    assert list(metrics.columns) == ["model", "split", *METRICS]
    assert len(metrics) == 12
    assert set(zip(metrics["model"], metrics["split"])) == {
        (model, split) for model in MODELS for split in ("train", "val", "test")
    }
    assert np.isfinite(metrics[METRICS].to_numpy()).all()
    top_k = metrics["model"].isin(["topk", "gumbel_topk"])
    assert (metrics.loc[top_k, "l0"] <= 4).all()
    np.testing.assert_allclose(metrics.loc[top_k, "loss"], metrics.loc[top_k, "nmse"])

    history = pd.read_csv(out / "history.csv")
    assert list(history.columns) == ["model", "epoch", "split", *METRICS]
    assert len(history) == 4 * 3 * 2
    assert sorted(history["epoch"].unique()) == [1, 2]
    assert np.isfinite(history[METRICS].to_numpy()).all()

    markdown = (out / "metrics.md").read_text().splitlines()
    assert markdown[0] == "| model | split | " + " | ".join(METRICS) + " |"
    assert len(markdown) == 2 + 12
    printed = capsys.readouterr().out
    assert "| model | split |" in printed and str(out) in printed
    assert "l1_coef -> validation L0:" in printed
    assert "gumbel_topk schedule: temperature 1 -> 1e-08 over the first 5 of 6 training batches" in printed


def test_compare_activations_missing_data(example, tmp_path, capsys):
    missing = tmp_path / "nowhere.h5"
    with pytest.raises(SystemExit) as excinfo:
        example.main(["--data", str(missing), "--out", str(tmp_path / "out")])
    assert excinfo.value.code == 2
    message = capsys.readouterr().err
    assert str(missing) in message
    assert "scripts/build_scl2205.py" in message and "--data" in message
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("value, expected", [("10000", 10000), ("0.25", 0.25), ("1.0", 1.0), ("1", 1), ("1e-2", 0.01)])
def test_anneal_steps_argument_takes_batches_or_a_fraction(example, value, expected):
    parsed = example.step_count(value)
    assert parsed == expected and type(parsed) is type(expected)


@pytest.mark.parametrize("value", ["0", "1.5", "-3"])
def test_anneal_steps_argument_rejects_nonsense(example, value):
    import argparse

    with pytest.raises(argparse.ArgumentTypeError):
        example.step_count(value)
