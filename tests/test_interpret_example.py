"""Smoke test of examples/interpret_latents.py on a tiny synthetic dataset."""

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from conftest import load_example  # noqa: E402

from sklearn_sae.datasets import save_embeddings  # noqa: E402

REPRESENTATIONS = {"sae", "untrained_sae", "pca", "raw"}
REFERENCE = "all_positive"
HELDOUT_COLUMNS = [
    "representation", "label_set", "label", "n_pos_eval", "n_pos_test", "feature", "feature_index", "threshold",
    "eval_f1", "test_precision", "test_recall", "test_f1", "test_auroc", "associated", "beats_all_positive",
]
# 3 locations, 3 length classes, 2 tm classes (its "2+" never occurs) and the positive class of 1 flag.
LABELS = [
    "location=Membrane", "location=Nucleus", "location=Secreted",
    "length_class=short", "length_class=medium", "length_class=long",
    "tm_class=0", "tm_class=1", "cys_rich=1",
]


@pytest.fixture(scope="module")
def example():
    return load_example("interpret_latents")


@pytest.fixture
def dataset(tmp_path):
    """90 proteins whose embeddings carry their location, with every class in every split."""
    rng = np.random.default_rng(0)
    n, d = 90, 12
    ids = [f"P{i:05d}" for i in range(n)]
    location = np.array(["Membrane", "Nucleus", "Secreted"])[np.arange(n) % 3]
    split = np.array(["train"] * 6 + ["eval"] * 2 + ["test"] * 2)[np.arange(n) // 3 % 10]
    X = rng.normal(size=(n, d)) + 3.0 * (location[:, None] == np.array(["Membrane", "Nucleus", "Secreted"]))[
        :, [0, 1, 2] * (d // 3)]
    save_embeddings(tmp_path / "emb.h5", ids, X)
    # The files list the proteins in another order than the embeddings: the example must align them.
    order = rng.permutation(n)
    labels = pd.DataFrame({"accession": ids, "location": location, "split": split, "length": 100 + np.arange(n)})
    labels.iloc[order].to_csv(tmp_path / "labels.csv", index=False)
    properties = pd.DataFrame({
        "accession": ids,
        "gravy": rng.normal(size=n).round(3),
        "length_class": np.array(["short", "medium", "long"])[np.arange(n) // 2 % 3],
        "tm_class": np.where(location == "Membrane", "1", "0"),
        "cys_rich": (np.arange(n) % 5 == 0).astype(int),
    })
    properties.iloc[order].to_csv(tmp_path / "properties.csv", index=False)
    return tmp_path


def test_interpret_latents_smoke(example, dataset, capsys):
    out = dataset / "results"
    argv = ["--data", str(dataset / "emb.h5"), "--labels", str(dataset / "labels.csv"),
            "--properties", str(dataset / "properties.csv"), "--out", str(out),
            "--n-latents", "24", "--k", "3", "--epochs", "2", "--device", "cpu", "--n-cards", "2"]
    assert example.main(argv) == 0

    heldout = pd.read_csv(out / "heldout.csv")
    assert list(heldout.columns) == HELDOUT_COLUMNS
    assert len(heldout) == (len(REPRESENTATIONS) + 1) * len(LABELS)
    assert set(heldout["representation"]) == REPRESENTATIONS | {REFERENCE}
    for _, rows in heldout.groupby("representation"):
        assert rows["label"].tolist() == LABELS
    features = heldout[heldout["representation"] != REFERENCE]
    widths = {"sae": 24, "untrained_sae": 24, "pca": 2 * 12, "raw": 2 * 12}
    assert (features["feature_index"].between(0, features["representation"].map(widths) - 1)).all()
    assert features.loc[features["representation"] == "raw", "feature"].str.fullmatch(r"x\d+[+-]").all()
    scores = features[["eval_f1", "test_precision", "test_recall", "test_f1", "test_auroc", "threshold"]]
    assert ((scores >= 0) & (scores <= 1)).all().all()
    assert (heldout["n_pos_test"] > 0).all()

    # The reference calls every protein positive: recall 1, precision the label's frequency on test (18 proteins).
    reference = heldout[heldout["representation"] == REFERENCE].set_index("label")
    assert (reference["test_recall"] == 1).all() and (reference["test_auroc"] == 0.5).all()
    np.testing.assert_allclose(reference["test_precision"], reference["n_pos_test"] / 18, rtol=1e-3)
    np.testing.assert_allclose(reference["test_f1"], 2 * reference["n_pos_test"] / (reference["n_pos_test"] + 18),
                               rtol=1e-3)
    assert not reference["beats_all_positive"].any()
    free_f1 = features["label"].map(reference["test_f1"])
    assert (features["beats_all_positive"] == (features["test_f1"] > free_f1)).all()
    # The location is written into the embeddings, so a raw dimension finds it on test.
    raw_location = heldout[(heldout["representation"] == "raw") & (heldout["label_set"] == "location")]
    assert raw_location["test_auroc"].min() > 0.9

    summary = (out / "summary.md").read_text()
    for name in REPRESENTATIONS | {REFERENCE}:
        assert f"| {name} |" in summary
    assert "| location |" in summary and "| properties |" in summary and "| all |" in summary
    for name in ("heldout_f1.png", "atlas.html"):
        assert (out / name).stat().st_size > 0, name
    cards = sorted(out.glob("card_*.png"))
    assert len(cards) == 2
    assert {int(card.stem.split("_")[1]) for card in cards} <= set(
        heldout.loc[heldout["representation"] == "sae", "feature_index"])
    assert "<html" in (out / "atlas.html").read_text()[:500].lower()
    assert "Untrained SAE: initial weights" in capsys.readouterr().out


def test_labels_absent_from_a_split_are_left_out(example, dataset, capsys):
    labels = pd.read_csv(dataset / "labels.csv")
    test_secreted = (labels["location"] == "Secreted") & (labels["split"] == "test")
    labels.loc[test_secreted, "split"] = "train"
    labels.to_csv(dataset / "labels.csv", index=False)
    out = dataset / "results"
    argv = ["--data", str(dataset / "emb.h5"), "--labels", str(dataset / "labels.csv"),
            "--properties", str(dataset / "properties.csv"), "--out", str(out),
            "--n-latents", "24", "--k", "3", "--epochs", "1", "--device", "cpu", "--n-cards", "0"]
    assert example.main(argv) == 0
    assert "Left out 1 label(s) absent from the eval or test split: location=Secreted" in capsys.readouterr().out
    heldout = pd.read_csv(out / "heldout.csv")
    assert "location=Secreted" not in set(heldout["label"])
    assert not list(out.glob("card_*.png"))


def test_a_rerun_replaces_its_own_cards_and_nothing_else(example, dataset):
    out = dataset / "results"
    out.mkdir()
    (out / "card_7.png").write_bytes(b"a file of the user's, named like a card")
    (out / "card_998.png").write_bytes(b"a card of an earlier run")
    (out / "cards.txt").write_text("card_998.png\n")
    argv = ["--data", str(dataset / "emb.h5"), "--labels", str(dataset / "labels.csv"),
            "--properties", str(dataset / "properties.csv"), "--out", str(out),
            "--n-latents", "24", "--k", "3", "--epochs", "1", "--device", "cpu", "--n-cards", "1"]
    assert example.main(argv) == 0
    assert (out / "card_7.png").read_bytes() == b"a file of the user's, named like a card"
    assert not (out / "card_998.png").exists()
    listed = (out / "cards.txt").read_text().split()
    assert len(listed) == 1 and (out / listed[0]).stat().st_size > 0


def test_missing_file_is_a_usage_error(example, dataset, capsys):
    missing = dataset / "nowhere.csv"
    with pytest.raises(SystemExit) as excinfo:
        example.main(["--data", str(dataset / "emb.h5"), "--labels", str(missing),
                      "--properties", str(dataset / "properties.csv"), "--out", str(dataset / "out")])
    assert excinfo.value.code == 2
    message = capsys.readouterr().err
    assert str(missing) in message and "--labels" in message and "data/README.md" in message
    assert not (dataset / "out").exists()
