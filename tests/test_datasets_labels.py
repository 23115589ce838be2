"""load_protein_labels: the shipped label and property files, and its errors."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from sklearn_sae.datasets import load_embeddings, load_protein_labels

DATA = Path(__file__).resolve().parents[1] / "data"
LABELS = DATA / "per-protein.labels.csv"
PROPERTIES = DATA / "per-protein.properties.csv"
CLASS_COLUMNS = ["length_class", "charge_class", "gravy_class", "stability_class", "tm_class"]
FLAG_COLUMNS = ["cys_rich", "pro_rich", "gly_rich", "signal_peptide"]


@pytest.fixture(scope="module")
def embedding_ids():
    ids, _ = load_embeddings(DATA / "per-protein.h5")
    return ids


@pytest.mark.parametrize("path", [LABELS, PROPERTIES], ids=["labels", "properties"])
def test_shipped_files_follow_the_embeddings(path, embedding_ids):
    # Both files are documented to be in the order load_embeddings returns the proteins.
    labels = load_protein_labels(path)
    assert labels.index.name == "accession"
    assert pd.api.types.is_string_dtype(labels.index)
    assert labels.index.tolist() == embedding_ids.tolist()
    assert load_protein_labels(path, ids=embedding_ids).index.tolist() == embedding_ids.tolist()


def test_labels_file_dtypes():
    labels = load_protein_labels(LABELS)
    assert list(labels.columns) == ["location", "split", "length"]
    assert isinstance(labels["location"].dtype, pd.CategoricalDtype)
    assert len(labels["location"].cat.categories) == 13
    assert labels["split"].cat.categories.tolist() == ["train", "eval", "test"]
    assert labels["split"].value_counts().to_dict() == {"train": 15183, "eval": 1260, "test": 2631}
    assert pd.api.types.is_integer_dtype(labels["length"])
    assert not labels.isna().any().any()


def test_properties_file_dtypes():
    properties = load_protein_labels(PROPERTIES)
    for name in CLASS_COLUMNS:
        assert isinstance(properties[name].dtype, pd.CategoricalDtype), name
        assert all(isinstance(value, str) for value in properties[name].cat.categories), name
    # tm_class looks numeric but is a class: its "2+" must survive, and the order is the documented one.
    assert properties["tm_class"].cat.categories.tolist() == ["0", "1", "2+"]
    assert properties["length_class"].cat.categories.tolist() == ["short", "medium", "long"]
    assert properties["tm_class"].value_counts().to_dict() == {"0": 13758, "1": 2887, "2+": 2429}
    for name in FLAG_COLUMNS:
        assert pd.api.types.is_integer_dtype(properties[name]), name
    assert pd.api.types.is_float_dtype(properties["gravy"])


def test_ids_reorder_the_rows(embedding_ids):
    rng = np.random.default_rng(0)
    wanted = list(rng.choice(embedding_ids, size=50, replace=False))
    everything = load_protein_labels(LABELS)
    picked = load_protein_labels(LABELS, ids=wanted)
    assert picked.index.tolist() == wanted
    pd.testing.assert_frame_equal(picked, everything.loc[wanted])
    assert picked["location"].cat.categories.tolist() == everything["location"].cat.categories.tolist()


def test_missing_ids_are_named(embedding_ids):
    absent = [f"NOPE{i}" for i in range(7)]
    message = re.escape("7 requested ids are not in") + ".*'NOPE0', 'NOPE1', 'NOPE2', 'NOPE3', 'NOPE4' and 2 more"
    with pytest.raises(ValueError, match=message):
        load_protein_labels(LABELS, ids=[embedding_ids[0], *absent])


def _write(tmp_path, text):
    path = tmp_path / "labels.csv"
    path.write_text(text)
    return path


def test_only_empty_fields_are_missing(tmp_path):
    path = _write(tmp_path, "accession,location,note\nNA,Nucleus,None\nP2,,NA\n")
    labels = load_protein_labels(path)
    assert labels.index.tolist() == ["NA", "P2"]
    assert labels["note"].tolist() == ["None", "NA"]
    assert labels["location"].isna().tolist() == [False, True]
    assert labels["location"].cat.categories.tolist() == ["Nucleus"]


def test_unknown_classes_follow_the_documented_ones(tmp_path):
    path = _write(tmp_path, "accession,tm_class,split\nP1,5,test\nP2,0,holdout\nP3,2+,train\n")
    labels = load_protein_labels(path)
    assert labels["tm_class"].cat.categories.tolist() == ["0", "1", "2+", "5"]
    assert labels["split"].cat.categories.tolist() == ["train", "eval", "test", "holdout"]
    assert labels["tm_class"].tolist() == ["5", "0", "2+"]


@pytest.mark.parametrize(
    "text, match",
    [
        ("id,location\nP1,Nucleus\n", "no 'accession' column"),
        ("accession,location\nP1,Nucleus\nP1,ER\n", "'P1' more than once"),
        ("accession,location\nP1,Nucleus\n,ER\n", "empty 'accession' on line 3"),
    ],
)
def test_invalid_files(tmp_path, text, match):
    with pytest.raises(ValueError, match=match):
        load_protein_labels(_write(tmp_path, text))


def test_invalid_ids_and_missing_file(tmp_path):
    path = _write(tmp_path, "accession,location\nP1,Nucleus\n")
    with pytest.raises(ValueError, match="must be unique"):
        load_protein_labels(path, ids=["P1", "P1"])
    with pytest.raises(ValueError, match="not a single str"):
        load_protein_labels(path, ids="P1")
    with pytest.raises(FileNotFoundError, match="nowhere.csv"):
        load_protein_labels(tmp_path / "nowhere.csv")
