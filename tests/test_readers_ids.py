"""No reader turns an index or an id column into an embedding dimension, and pool_residues takes what users pass.

Each table is written the way pandas or NumPy writes it by default, then read back: the vectors must come back
exactly (no extra leading dimension, no lost protein) under the right ids.
"""

import warnings

import h5py
import numpy as np
import pandas as pd
import pytest

from sklearn_sae.datasets import load_embeddings, load_protein_labels, pool_residues

IDS = ["P12345", "Q9XYZ1", "A0A024", "O15552", "P69905"]
DIMS = [f"d{i}" for i in range(4)]


@pytest.fixture
def vectors():
    return np.random.default_rng(0).normal(size=(len(IDS), len(DIMS)))


def _frame(vectors, **id_columns):
    table = pd.DataFrame(vectors, columns=DIMS)
    for position, (name, values) in enumerate(id_columns.items()):
        table.insert(position, name, values)
    return table


def _assert_read(path, vectors, ids=IDS, **kwargs):
    read_ids, X = load_embeddings(path, dtype=np.float64, **kwargs)
    assert read_ids.tolist() == list(ids)
    np.testing.assert_allclose(X, vectors, rtol=1e-12)


def test_the_index_to_csv_writes_by_default_is_never_a_dimension(tmp_path, vectors):
    _frame(vectors, id=IDS).to_csv(tmp_path / "emb.csv")  # header ",id,d0,...": the row numbers come first
    _assert_read(tmp_path / "emb.csv", vectors)
    _frame(vectors, protein=IDS).to_csv(tmp_path / "protein.csv")
    _assert_read(tmp_path / "protein.csv", vectors)


def test_an_index_of_ids_is_read_as_text(tmp_path, vectors):
    ids = ["007", "010", "3", "42", "0042"]  # numbers with leading zeros: ids, never integers
    pd.DataFrame(vectors, index=ids, columns=DIMS).to_csv(tmp_path / "emb.csv")
    _assert_read(tmp_path / "emb.csv", vectors, ids=ids)


@pytest.mark.parametrize("name", ["protein", "Entry", "uniprot_id", "Sequence ID"])
def test_an_id_column_is_recognised_by_its_name_wherever_it_is(tmp_path, vectors, name):
    table = pd.DataFrame(vectors, columns=DIMS)
    table.insert(2, name, IDS)
    table.to_csv(tmp_path / "emb.csv", index=False)
    _assert_read(tmp_path / "emb.csv", vectors)


def test_a_text_id_column_in_the_middle_holds_the_ids(tmp_path, vectors):
    table = pd.DataFrame(vectors, columns=DIMS)
    table.insert(3, "fasta_header", IDS)
    table.to_csv(tmp_path / "emb.csv", index=False)
    _assert_read(tmp_path / "emb.csv", vectors)


def test_an_integer_id_column_after_the_index_is_not_a_dimension(tmp_path, vectors):
    keys = [1001, 17, 23, 5, 999]
    _frame(vectors, key=keys).to_csv(tmp_path / "emb.csv")  # ",key,d0,...": the index, then integer ids
    _assert_read(tmp_path / "emb.csv", vectors, ids=[str(key) for key in keys])


def test_a_table_without_ids_keeps_every_dimension(tmp_path, vectors):
    pd.DataFrame(vectors, columns=DIMS).to_csv(tmp_path / "emb.csv", index=False)
    _assert_read(tmp_path / "emb.csv", vectors, ids=[str(row) for row in range(len(IDS))])


def test_a_table_without_a_header_line_loses_no_protein(tmp_path, vectors):
    _frame(vectors, id=IDS).to_csv(tmp_path / "emb.csv", index=False, header=False)
    _assert_read(tmp_path / "emb.csv", vectors)


def test_tsv_tables_follow_the_same_rule(tmp_path, vectors):
    _frame(vectors, accession=IDS).to_csv(tmp_path / "emb.tsv", sep="\t")
    _assert_read(tmp_path / "emb.tsv", vectors)


def test_the_index_parquet_stores_holds_the_ids_or_is_left_out(tmp_path, vectors):
    pd.DataFrame(vectors, index=IDS, columns=DIMS).to_parquet(tmp_path / "indexed.parquet")
    _assert_read(tmp_path / "indexed.parquet", vectors)
    pd.DataFrame(vectors, index=pd.Index(IDS, name="accession"), columns=DIMS).to_parquet(tmp_path / "named.parquet")
    _assert_read(tmp_path / "named.parquet", vectors)
    # A filtered frame keeps integer labels that Parquet stores; with an id column they are left out.
    doubled = pd.concat([_frame(vectors, id=IDS), _frame(vectors + 1, id=[name + "_2" for name in IDS])])
    doubled.iloc[::2].to_parquet(tmp_path / "filtered.parquet")
    _assert_read(tmp_path / "filtered.parquet", np.vstack([vectors, vectors + 1])[::2],
                 ids=(IDS + [name + "_2" for name in IDS])[::2])


def test_two_possible_id_columns_ask_for_id_column(tmp_path, vectors):
    _frame(vectors, accession=IDS, name=[f"GENE{i}" for i in range(len(IDS))]).to_csv(tmp_path / "emb.csv")
    with pytest.raises(ValueError, match=r"'accession', 'name' could each hold the protein ids; pass id_column="):
        load_embeddings(tmp_path / "emb.csv")
    _assert_read(tmp_path / "emb.csv", vectors, id_column="accession")  # the other is left out, not a value
    with pytest.raises(ValueError, match=r"has no column 'gene' for id_column=; its columns are 'Unnamed: 0'"):
        load_embeddings(tmp_path / "emb.csv", id_column="gene")


def test_id_column_names_an_integer_or_index_column(tmp_path, vectors):
    keys = [1001, 17, 23, 5, 999]
    table = pd.DataFrame(vectors, columns=DIMS)
    table.insert(0, "accession", IDS)
    table.insert(1, "key", keys)
    table.to_csv(tmp_path / "emb.csv", index=False)
    _assert_read(tmp_path / "emb.csv", vectors, ids=[str(key) for key in keys], id_column="key")
    pd.DataFrame(vectors, index=IDS, columns=DIMS).to_csv(tmp_path / "indexed.csv")
    _assert_read(tmp_path / "indexed.csv", vectors, id_column="Unnamed: 0")
    with pytest.raises(ValueError, match="id_column= applies to tables"):
        load_embeddings(_matrix_file(tmp_path, vectors), id_column="ids")


def test_a_missing_id_is_refused(tmp_path, vectors):
    _frame(vectors, id=IDS[:2] + [None] + IDS[3:]).to_csv(tmp_path / "emb.csv", index=False)
    with pytest.raises(ValueError, match="row 2 has no id in column 'id'"):
        load_embeddings(tmp_path / "emb.csv")


def test_npz_ids_are_found_by_name_and_never_unpickled(tmp_path, vectors):
    np.savez(tmp_path / "named.npz", accession=np.array(IDS), X=vectors)
    _assert_read(tmp_path / "named.npz", vectors)
    np.savez(tmp_path / "numbered.npz", ids=np.arange(len(IDS)) + 100, embeddings=vectors)
    _assert_read(tmp_path / "numbered.npz", vectors, ids=[str(i + 100) for i in range(len(IDS))])
    np.savez(tmp_path / "chosen.npz", keys=np.array(IDS), embeddings=vectors)
    _assert_read(tmp_path / "chosen.npz", vectors, id_column="keys")
    np.savez(tmp_path / "objects.npz", ids=pd.Series(IDS, dtype=object).to_numpy(), embeddings=vectors)
    with pytest.raises(ValueError, match=r"'ids' holds Python objects .* never unpickled; save them as strings"):
        load_embeddings(tmp_path / "objects.npz")


def _matrix_file(folder, X):
    path = folder / "matrix.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("embeddings", data=X)
        f.create_dataset("ids", data=IDS, dtype=h5py.string_dtype())
    return path


@pytest.mark.parametrize("fmt", ["npy", "npz", "hdf5"])
def test_row_numbers_saved_as_the_first_column_of_an_array_are_flagged(tmp_path, vectors, fmt):
    with_index = np.column_stack([np.arange(len(IDS)), vectors])
    if fmt == "npy":
        np.save(tmp_path / "emb.npy", with_index)
        (tmp_path / "emb.ids.txt").write_text("\n".join(IDS) + "\n")
        path = tmp_path / "emb.npy"
    elif fmt == "npz":
        np.savez(tmp_path / "emb.npz", ids=np.array(IDS), embeddings=with_index)
        path = tmp_path / "emb.npz"
    else:
        path = _matrix_file(tmp_path, with_index)
    with pytest.warns(UserWarning, match="first embedding dimension holds the row numbers 0 to 4"):
        _, X = load_embeddings(path, dtype=np.float64)
    np.testing.assert_array_equal(X, with_index)  # flagged, never altered: it may be data
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        load_embeddings(path, ids=IDS[::-1])  # a selection of rows is not checked: its order is the caller's


def test_label_tables_leave_the_written_index_out(tmp_path):
    labels = pd.DataFrame({"accession": IDS, "location": ["Nucleus"] * 5, "length": [50, 60, 70, 80, 90]})
    labels.to_csv(tmp_path / "labels.csv")
    read = load_protein_labels(tmp_path / "labels.csv")
    assert list(read.columns) == ["location", "length"]
    assert read.index.tolist() == IDS


# ----------------------------------------------------------------------------- pool_residues


def test_pool_residues_takes_a_list_of_per_protein_arrays():
    import scipy.sparse as sp

    rng = np.random.default_rng(0)
    proteins = [np.abs(rng.normal(size=(length, 3))) for length in (4, 1, 7)]
    offsets = [0, 4, 5, 12]
    for method in ("mean", "max"):
        expected = np.vstack([getattr(block, method)(axis=0) for block in proteins])
        np.testing.assert_allclose(pool_residues(proteins, method=method), expected)
        np.testing.assert_allclose(pool_residues(proteins, offsets, method=method), expected)
        pooled = pool_residues([sp.csr_matrix(block) for block in proteins], method=method)
        assert sp.isspmatrix_csr(pooled)
        np.testing.assert_allclose(pooled.toarray(), expected)
    np.testing.assert_allclose(pool_residues(np.vstack(proteins).tolist(), offsets),
                               np.vstack([block.mean(axis=0) for block in proteins]))
    with pytest.raises(ValueError, match="offsets do not match the lengths"):
        pool_residues(proteins, [0, 3, 5, 12])
    with pytest.raises(ValueError, match="different widths"):
        pool_residues([np.ones((2, 3)), np.ones((2, 4))])
    with pytest.raises(ValueError, match="offsets are needed"):
        pool_residues(np.ones((4, 3)))


@pytest.mark.parametrize("as_list", [False, True])
def test_pool_residues_sums_float16_in_float64(as_list):
    # 4,000 residues of 30.0: a float16 running sum overflows (max 65504); of 0.1, it stalls where 0.1 is
    # below half a float16 step.
    residues = np.empty((4000, 2), dtype=np.float16)
    residues[:, 0], residues[:, 1] = 30.0, 0.1
    pooled = pool_residues([residues] if as_list else residues, None if as_list else [0, 4000])
    assert pooled.dtype == np.float32
    np.testing.assert_allclose(pooled, [[30.0, float(np.float16(0.1))]], rtol=1e-6)
