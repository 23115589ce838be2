"""Smoke test of examples/compare_architectures.py on a small embeddings file."""

import matplotlib

matplotlib.use("Agg")

import warnings  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import load_example  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer  # noqa: E402
from sklearn_sae.datasets import load_embeddings, make_sparse_signals, save_embeddings  # noqa: E402


def test_compare_architectures_smoke(tmp_path):
    X = make_sparse_signals(n_samples=300, n_features=16, n_atoms=24, n_active=3, random_state=0)[0]
    ids = [f"P{i:05d}" for i in range(len(X))]
    save_embeddings(tmp_path / "embeddings.h5", ids, X)
    split = np.array(["train"] * 200 + ["eval"] * 50 + ["test"] * 50)
    pd.DataFrame({"accession": ids, "location": "Cytoplasm", "split": split, "length": 100}).to_csv(
        tmp_path / "labels.csv", index=False
    )
    out = tmp_path / "results"
    example = load_example("compare_architectures")
    example.main([
        "--data", str(tmp_path / "embeddings.h5"), "--labels", str(tmp_path / "labels.csv"), "--out", str(out),
        "--n-latents", "32", "--k", "4", "--epochs", "2", "--device", "cpu",
    ])
    table = pd.read_csv(out / "architectures.csv")
    assert table["architecture"].tolist() == ["topk", "gumbel_topk", "batchtopk", "matryoshka", "relu", "jumprelu"]
    assert (table.loc[table["architecture"].isin(["topk", "matryoshka"]), "l0"] <= 4).all()
    assert (out / "architectures.png").stat().st_size > 0
    # The FVU written is that of each model on the test rows: refit the ones that need no calibration.
    _, X_read = load_embeddings(tmp_path / "embeddings.h5")
    fvu = table.set_index("architecture")["fvu"]
    for name, params in example.architectures(example.parse_args(["--k", "4"])).items():
        if name in ("relu", "jumprelu"):
            continue
        sae = SparseAutoencoderTransformer(n_latents=32, max_epochs=2, random_state=0, device="cpu", **params)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sae.fit(X_read[split == "train"])
        assert fvu[name] == pytest.approx(1 - sae.score(X_read[split == "test"]), rel=1e-6), name
    assert (fvu < 0.6).all()  # every architecture explains most of the variance of these signals
