"""Smoke test of examples/compare_architectures.py on a small embeddings file."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from conftest import load_example  # noqa: E402

from sklearn_sae.datasets import make_sparse_signals, save_embeddings  # noqa: E402


def test_compare_architectures_smoke(tmp_path):
    X = make_sparse_signals(n_samples=300, n_features=16, n_atoms=24, n_active=3, random_state=0)[0]
    ids = [f"P{i:05d}" for i in range(len(X))]
    save_embeddings(tmp_path / "embeddings.h5", ids, X)
    split = np.array(["train"] * 200 + ["eval"] * 50 + ["test"] * 50)
    pd.DataFrame({"accession": ids, "location": "Cytoplasm", "split": split, "length": 100}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    out = tmp_path / "results"
    load_example("compare_architectures").main([
        "--data", str(tmp_path / "embeddings.h5"), "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
        "--n-latents", "32", "--k", "4", "--epochs", "2", "--device", "cpu",
    ])
    table = pd.read_csv(out / "architectures.csv")
    assert table["architecture"].tolist() == ["topk", "gumbel_topk", "batchtopk", "matryoshka", "relu", "jumprelu"]
    assert (table.loc[table["architecture"].isin(["topk", "matryoshka"]), "l0"] <= 4).all()
    assert table["fvu"].between(0, 2).all() and (out / "architectures.png").stat().st_size > 0
