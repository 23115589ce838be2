"""load_embeddings on the files other tools write: ESM's .pt files, bio_embeddings HDF5, arrays and tables.

Fixtures are written here exactly as each tool writes them (ESM: ``torch.save`` of extract.py's dict;
bio_embeddings: one dataset per sequence named by its MD5, the FASTA id in ``original_id``).
"""

import hashlib

import h5py
import numpy as np
import pandas as pd
import pytest
import torch

from sklearn_sae.datasets import load_embeddings

IDS = ["sp|P12345|ABC_HUMAN", "tr|Q9XYZ1|Q9XYZ1_ECOLI", "seq with spaces/and:colons", "protéine_β"]


@pytest.fixture
def vectors():
    return np.random.default_rng(0).normal(size=(len(IDS), 8)).astype(np.float32)


def _write_esm(folder, vectors, *, layers=(33,), per_token=False):
    """One file per sequence, as facebookresearch/esm scripts/extract.py writes them."""
    folder.mkdir()
    for index, (label, vector) in enumerate(zip(IDS, vectors)):
        tensor = torch.from_numpy(vector)
        result = {"label": label, "mean_representations": {layer: tensor - (layers[-1] - layer) for layer in layers}}
        if per_token:
            result["representations"] = {layer: tensor.repeat(5, 1) for layer in layers}
        torch.save(result, folder / f"{index}.pt")
    return folder


def test_esm_directory_is_read_with_its_labels(tmp_path, vectors):
    folder = _write_esm(tmp_path / "esm", vectors, per_token=True)
    ids, X = load_embeddings(folder)
    assert ids.tolist() == IDS  # files 0.pt ... 3.pt in order
    np.testing.assert_array_equal(X, vectors)
    ids, X = load_embeddings(folder, ids=[IDS[2], IDS[0]], dtype=np.float16)
    assert ids.tolist() == [IDS[2], IDS[0]] and X.dtype == np.float16
    np.testing.assert_array_equal(X, vectors[[2, 0]].astype(np.float16))


def test_esm_layers_are_chosen_or_named(tmp_path, vectors):
    folder = _write_esm(tmp_path / "esm", vectors, layers=(6, 12))
    with pytest.raises(ValueError, match=r"holds layers \[6, 12\]; choose one with layer="):
        load_embeddings(folder)
    np.testing.assert_array_equal(load_embeddings(folder, layer=6)[1], vectors - np.float32(6))
    with pytest.raises(ValueError, match=r"has no layer 33; it holds layers \[6, 12\]"):
        load_embeddings(folder, layer=33)
    with pytest.raises(ValueError, match="no 'bos_representations'"):
        load_embeddings(folder, layer=6, representation="bos_representations")


class _NotData:
    def __reduce__(self):
        return (print, ("this must never run",))


@pytest.mark.parametrize("content", [torch.zeros(3), {"mean_representations": {33: torch.zeros(3)}}, _NotData()],
                         ids=["a tensor", "no label", "an object to unpickle"])
def test_a_pt_file_that_is_not_an_esm_dict_is_refused_without_unpickling(tmp_path, content, capsys):
    path = tmp_path / "x.pt"
    torch.save(content, path)
    with pytest.raises(ValueError, match="ESM"):
        load_embeddings(path)
    assert "must never run" not in capsys.readouterr().out


def test_bio_embeddings_hdf5_comes_back_under_the_fasta_ids(tmp_path, vectors):
    path = tmp_path / "reduced_embeddings_file.h5"
    with h5py.File(path, "w") as f:
        for label, vector in zip(IDS, vectors):
            dataset = f.create_dataset(hashlib.md5(label.encode()).hexdigest(), data=vector.astype(np.float16))
            dataset.attrs["original_id"] = label
    ids, X = load_embeddings(path, ids=IDS)
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(X, vectors.astype(np.float16).astype(np.float32))
    with pytest.raises(ValueError, match="not in"):
        load_embeddings(path, ids=["missing"])


def test_npy_with_its_ids_file(tmp_path, vectors):
    np.save(tmp_path / "emb.npy", vectors)
    with pytest.raises(ValueError, match=r"emb\.ids\.txt"):
        load_embeddings(tmp_path / "emb.npy")
    (tmp_path / "emb.ids.txt").write_text("\n".join(IDS) + "\n", encoding="utf-8")
    ids, X = load_embeddings(tmp_path / "emb.npy")
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(X, vectors)


def test_npz_and_tables(tmp_path, vectors):
    np.savez(tmp_path / "emb.npz", ids=np.array(IDS), embeddings=vectors)
    np.testing.assert_array_equal(load_embeddings(tmp_path / "emb.npz")[1], vectors)
    table = pd.DataFrame(vectors, columns=[f"d{i}" for i in range(8)])
    table.insert(0, "accession", IDS)
    table.to_csv(tmp_path / "emb.csv", index=False)
    ids, X = load_embeddings(tmp_path / "emb.csv")
    assert ids.tolist() == IDS
    np.testing.assert_allclose(X, vectors, rtol=1e-6)
    pd.DataFrame({"id": IDS, "embedding": list(vectors.astype(np.float64))}).to_parquet(tmp_path / "emb.parquet")
    ids, X = load_embeddings(tmp_path / "emb.parquet")
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(X, vectors)


def test_duplicate_ids_and_bad_values_are_refused(tmp_path, vectors):
    np.savez(tmp_path / "dup.npz", ids=np.array([IDS[0]] * len(IDS)), embeddings=vectors)
    with pytest.raises(ValueError, match="duplicate|more than once|repeated"):
        load_embeddings(tmp_path / "dup.npz")
    bad = vectors.copy()
    bad[1, 3] = np.nan
    np.savez(tmp_path / "nan.npz", ids=np.array(IDS), embeddings=bad)
    with pytest.raises(ValueError, match="NaN"):
        load_embeddings(tmp_path / "nan.npz")


def test_unknown_formats_and_missing_paths(tmp_path):
    (tmp_path / "emb.txt").write_text("x")
    with pytest.raises(ValueError, match="Cannot tell the format"):
        load_embeddings(tmp_path / "emb.txt")
    with pytest.raises(FileNotFoundError):
        load_embeddings(tmp_path / "missing.npz")
    with pytest.raises(ValueError, match="layer= applies to ESM"):
        np.savez(tmp_path / "emb.npz", ids=np.array(["a"]), embeddings=np.zeros((1, 2)))
        load_embeddings(tmp_path / "emb.npz", layer=3)


# ----------------------------------------------------------------------------- per-residue


def _residue_blocks(lengths=(3, 1, 4), width=5):
    rng = np.random.default_rng(1)
    return [rng.normal(size=(length, width)).astype(np.float32) for length in lengths]


def test_per_residue_hdf5_as_rows_with_offsets(tmp_path):
    from sklearn_sae.datasets import load_residue_embeddings

    blocks = _residue_blocks()
    path = tmp_path / "per-residue.h5"
    with h5py.File(path, "w") as f:  # UniProt's per-residue.h5: one (length, d) dataset per accession
        for label, block in zip(["A1", "B2", "C3"], blocks):
            f.create_dataset(label, data=block.astype(np.float16))
    ids, X, offsets = load_residue_embeddings(path)
    assert ids.tolist() == ["A1", "B2", "C3"] and offsets.tolist() == [0, 3, 4, 8]
    np.testing.assert_array_equal(X, np.vstack(blocks).astype(np.float16).astype(np.float32))
    with h5py.File(path, "a") as f:
        f.create_dataset("D4", data=np.zeros(5))
    with pytest.raises(ValueError, match="'D4'.*not a \\(length, d\\) matrix"):
        load_residue_embeddings(path)


def test_per_residue_esm_files(tmp_path, vectors):
    from sklearn_sae.datasets import load_residue_embeddings

    folder = _write_esm(tmp_path / "esm", vectors, per_token=True)
    ids, X, offsets = load_residue_embeddings(folder)
    assert ids.tolist() == IDS and offsets.tolist() == [0, 5, 10, 15, 20]
    np.testing.assert_array_equal(X[5:10], np.repeat(vectors[1:2], 5, axis=0))
    no_tokens = _write_esm(tmp_path / "mean-only", vectors)
    with pytest.raises(ValueError, match="--include per_tok"):
        load_residue_embeddings(no_tokens)


@pytest.mark.parametrize("method", ["mean", "max"])
def test_pooling_residues_keeps_codes_sparse(method):
    import scipy.sparse as sp

    from sklearn_sae.datasets import pool_residues

    codes = np.abs(np.random.default_rng(0).normal(size=(8, 6))) * (np.random.default_rng(1).random((8, 6)) < 0.3)
    offsets = [0, 3, 4, 8]
    expected = np.vstack([getattr(codes[a:b], method)(axis=0) for a, b in zip(offsets[:-1], offsets[1:])])
    np.testing.assert_allclose(pool_residues(codes, offsets, method=method), expected)
    pooled = pool_residues(sp.csr_matrix(codes), offsets, method=method)
    assert sp.isspmatrix_csr(pooled)
    np.testing.assert_allclose(pooled.toarray(), expected)
    with pytest.raises(ValueError, match="offsets must rise"):
        pool_residues(codes, [0, 3, 3, 8])


# ----------------------------------------------------------------------------- conversion


def test_residues_convert_to_a_matrix_an_on_disk_fit_trains_on(tmp_path):
    from sklearn_sae import SparseAutoencoderTransformer
    from sklearn_sae.datasets import convert_residue_embeddings, load_residue_embeddings, pool_residues

    blocks = _residue_blocks(lengths=(30, 12, 41, 25), width=6)
    src = tmp_path / "per-residue.h5"
    with h5py.File(src, "w") as f:
        for index, block in enumerate(blocks):
            dataset = f.create_dataset(hashlib.md5(str(index).encode()).hexdigest(), data=block)
            dataset.attrs["original_id"] = IDS[index]
    dst = convert_residue_embeddings(src, tmp_path / "residues.h5", dtype=np.float32, chunk_rows=16)
    ids, X, offsets = load_residue_embeddings(dst)
    expected_ids, expected_X, expected_offsets = load_residue_embeddings(src)
    assert ids.tolist() == expected_ids.tolist() and sorted(ids) == sorted(IDS)
    np.testing.assert_array_equal(X, expected_X)
    np.testing.assert_array_equal(offsets, expected_offsets)
    with h5py.File(dst, "r") as f:  # a residue-level SAE trains on the rows without loading them
        assert f["embeddings"].chunks == (16, 6)
        sae = SparseAutoencoderTransformer(n_latents=8, k=2, max_epochs=2, device="cpu", random_state=0,
                                           sparse_output=True).fit(f["embeddings"])
        codes = sae.transform(f["embeddings"])
    assert pool_residues(codes, offsets, method="max").shape == (4, 8)


def test_convert_reads_every_format_and_the_command_line_lists_them(tmp_path, vectors, capsys):
    from sklearn_sae._cli import main
    from sklearn_sae.datasets import convert_embeddings

    folder = _write_esm(tmp_path / "esm", vectors, layers=(6, 12), per_token=True)
    with pytest.raises(ValueError, match="choose one with layer="):
        convert_embeddings(folder, tmp_path / "esm.h5")
    ids, X = load_embeddings(convert_embeddings(folder, tmp_path / "esm.h5", layer=12, dtype=np.float32))
    assert ids.tolist() == IDS
    np.testing.assert_array_equal(X, vectors)
    assert main(["convert", "--layer", "6", "--residues", "--dtype", "float32", str(folder),
                 str(tmp_path / "esm-residues.h5"), "-q"]) == 0
    from sklearn_sae.datasets import load_residue_embeddings

    _, residues, offsets = load_residue_embeddings(tmp_path / "esm-residues.h5")
    assert offsets.tolist() == [0, 5, 10, 15, 20] and residues.shape == (20, 8)
    np.savez(tmp_path / "emb.npz", ids=np.array(IDS), embeddings=vectors)
    assert main(["convert", str(tmp_path / "emb.npz"), str(tmp_path / "npz.h5"), "-q"]) == 0
    np.testing.assert_array_equal(load_embeddings(tmp_path / "npz.h5")[1], vectors.astype(np.float16))
    with pytest.raises(SystemExit):
        main(["convert", "--help"])
    help_text = capsys.readouterr().out
    for name in ("ESM", ".npy", ".npz", "CSV", "Parquet", "bio_embeddings", "--residues", "--layer"):
        assert name in help_text
