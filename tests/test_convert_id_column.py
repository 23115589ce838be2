"""convert_embeddings and ``sklearn-sae convert --id-column``: a table's id column of any name is never a dimension."""

import numpy as np
import pandas as pd
import pytest

from sklearn_sae._cli import main
from sklearn_sae.datasets import convert_embeddings, load_embeddings, save_embeddings

X = np.arange(15, dtype=np.float32).reshape(5, 3) / 7


@pytest.fixture
def table(tmp_path):
    # Integer ids under a name no reader takes for an id column: read without id_column they are a dimension.
    path = tmp_path / "emb.csv"
    frame = pd.DataFrame(X, columns=["d0", "d1", "d2"])
    frame.insert(0, "locus", [101, 102, 103, 104, 105])
    frame.to_csv(path, index=False)
    return path


def test_convert_takes_the_named_id_column(tmp_path, table):
    dst = convert_embeddings(table, tmp_path / "emb.h5", dtype=np.float32, id_column="locus")
    ids, rows = load_embeddings(dst)
    assert list(ids) == ["101", "102", "103", "104", "105"]
    np.testing.assert_array_equal(rows, X)


def test_cli_convert_takes_the_named_id_column(tmp_path, table, capsys):
    assert main(["convert", str(table), str(tmp_path / "emb.h5"), "--dtype", "float32", "--id-column", "locus"]) == 0
    ids, rows = load_embeddings(tmp_path / "emb.h5")
    assert list(ids) == ["101", "102", "103", "104", "105"] and rows.shape == (5, 3)


def test_id_column_is_refused_where_it_cannot_apply(tmp_path, capsys):
    src = save_embeddings(tmp_path / "per-protein.h5", ["P1", "P2"], np.eye(2, dtype=np.float32))
    with pytest.raises(ValueError, match="id_column= applies to tables"):
        convert_embeddings(src, tmp_path / "out.h5", id_column="locus")
    assert not (tmp_path / "out.h5").exists()
    assert main(["convert", str(src), str(tmp_path / "out.h5"), "--residues", "--id-column", "locus"]) == 1
    assert "--id-column are not available with --residues" in capsys.readouterr().err
