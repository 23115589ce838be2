"""Smoke test of examples/choose_k.py on a small labelled embeddings file."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from conftest import load_example  # noqa: E402

from sklearn_sae.datasets import make_sparse_signals, save_embeddings  # noqa: E402


def test_choose_k_smoke(tmp_path, capsys):
    X, _, codes = make_sparse_signals(n_samples=300, n_features=16, n_atoms=8, n_active=2, random_state=0)
    ids = [f"P{i:05d}" for i in range(len(X))]
    save_embeddings(tmp_path / "embeddings.h5", ids, X)
    location = np.where(codes[:, 0] != 0, "Membrane", np.where(codes[:, 1] != 0, "Nucleus", "Cytoplasm"))
    pd.DataFrame({"accession": ids, "location": location, "split": "train", "length": 100}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    out = tmp_path / "results"
    load_example("choose_k").main([
        "--data", str(tmp_path / "embeddings.h5"), "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
        "--ks", "1", "4", "--epochs", "1", "--n-latents", "16", "--cv", "2", "--device", "cpu",
    ])
    table = pd.read_csv(out / "results.csv")
    assert table["k"].tolist() == [1, 4]
    assert (table["l0"] <= table["k"]).all()
    # Each protein holds two atoms and its label names one of them: one latent a row often drops it, four keep it.
    assert table["probe_f1"][1] > table["probe_f1"][0] + 0.05
    assert table["explained_variance"][1] > table["explained_variance"][0]
    assert (out / "choose_k.png").stat().st_size > 0
    chosen = table.loc[table["probe_f1"].idxmax()]
    assert f"chosen: {{'activation': '{chosen['activation']}', 'k': {chosen['k']}}}" in capsys.readouterr().out
