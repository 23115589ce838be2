"""Every write path replaces only what the package wrote there and refuses anything else (issue 30, item 1).

For each path: (a) a destination holding a file of the user's is refused with a message that names the
path and the file, and the file is byte-identical afterwards; (b) the package's own earlier output there
(older versions' included, where they can be told apart) is replaced; (c) a new destination is written.
"""

import json
import os
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._atomic import TEMPORARY_PREFIX
from sklearn_sae._checkpoint import CHECKPOINT_FILES, CHECKPOINT_NAME, TrainingCheckpoint
from sklearn_sae._cli import main
from sklearn_sae.datasets import (
    convert_embeddings,
    convert_residue_embeddings,
    load_codes,
    load_embeddings,
    load_residue_embeddings,
    save_embeddings,
    write_codes,
)
from sklearn_sae.datasets._written import MARK
from sklearn_sae.interpret import write_atlas

N_ROWS, N_FEATURES = 64, 8
USER_BYTES = b"the user's own notes\n"
FIT = dict(n_latents=16, k=4, max_epochs=2, batch_size=16, normalize=False, device="cpu", random_state=0)


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(0).normal(size=(N_ROWS, N_FEATURES)).astype(np.float32)


@pytest.fixture(scope="module")
def ids():
    return [f"P{index:05d}" for index in range(N_ROWS)]


@pytest.fixture(scope="module")
def sae(X):
    return SparseAutoencoderTransformer(**FIT).fit(X)


def _refused(call, path, *names):
    """Run ``call``, which must refuse to write over ``path``; the message names the path and ``names``."""
    with pytest.raises(ValueError, match="refusing to replace") as error:
        call()
    message = str(error.value)
    assert str(path) in message and "move" in message, message
    for name in names:
        assert name in message, message
    return message


def _user_file(path):
    path.write_bytes(USER_BYTES)
    return path


def _no_leftovers(folder):
    assert not [entry.name for entry in Path(folder).iterdir() if entry.name.startswith(TEMPORARY_PREFIX)]


def _user_hdf5(path):
    """An HDF5 file another program wrote, in the layout UniProt distributes (one dataset per protein)."""
    with h5py.File(path, "w") as f:
        f["Q00001"] = np.arange(N_FEATURES, dtype=np.float16)
    return path.read_bytes()


# ----------------------------------------------------------------------------- save and export


@pytest.mark.parametrize("write", ["save", "export"])
def test_model_directory_with_a_user_file_is_refused_and_kept(sae, tmp_path, write):
    folder = tmp_path / "results"
    folder.mkdir()
    notes = _user_file(folder / "notes.txt")
    call = (lambda: sae.save(folder)) if write == "save" else (lambda: sae.export(folder, "saelens"))
    _refused(call, folder, "notes.txt")
    assert notes.read_bytes() == USER_BYTES and sorted(os.listdir(folder)) == ["notes.txt"]
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("earlier", ["save", "sparsify", "saelens"])
@pytest.mark.parametrize("write", ["save", "export"])
def test_package_directory_with_a_user_file_added_is_refused_and_kept(sae, tmp_path, write, earlier):
    folder = tmp_path / "model"
    sae.save(folder) if earlier == "save" else sae.export(folder, earlier)
    before = {entry.name: entry.read_bytes() for entry in folder.iterdir()}
    notes = _user_file(folder / "notes.txt")
    call = (lambda: sae.save(folder)) if write == "save" else (lambda: sae.export(folder, "saelens"))
    _refused(call, folder, "notes.txt")
    assert notes.read_bytes() == USER_BYTES
    assert {entry.name: entry.read_bytes() for entry in folder.iterdir() if entry.name != "notes.txt"} == before


@pytest.mark.parametrize("earlier", ["save", "sparsify", "saelens"])
@pytest.mark.parametrize("write", ["save", "sparsify", "saelens"])
def test_package_directory_is_replaced(sae, X, tmp_path, write, earlier):
    folder = tmp_path / "model"
    sae.save(folder) if earlier == "save" else sae.export(folder, earlier)
    sae.save(folder) if write == "save" else sae.export(folder, write)
    expected = {"save": {"model.safetensors"}, "sparsify": {"cfg.json", "sae.safetensors"},
                "saelens": {"cfg.json", "sae_weights.safetensors"}}[write]
    assert set(os.listdir(folder)) == expected | {"sklearn_sae.json"}
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(folder).transform(X), sae.transform(X))
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("earlier", ["save", "sparsify", "saelens"])
def test_directory_of_an_older_version_without_a_format_field_is_replaced(sae, X, tmp_path, earlier):
    folder = tmp_path / "model"
    sae.save(folder) if earlier == "save" else sae.export(folder, earlier)
    record = folder / "sklearn_sae.json"
    record.write_text(json.dumps({key: value for key, value in json.loads(record.read_text()).items()
                                  if key != "format"}))  # as written before configs named their format
    sae.save(folder)
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(folder).transform(X), sae.transform(X))


@pytest.mark.parametrize("record", [b"not json", b'{"format": "somebody-else"}', b"[1, 2]"])
def test_a_sklearn_sae_json_the_package_did_not_write_is_refused(sae, tmp_path, record):
    folder = tmp_path / "model"
    folder.mkdir()
    (folder / "sklearn_sae.json").write_bytes(record)
    _refused(lambda: sae.save(folder), folder, "sklearn_sae.json")
    assert (folder / "sklearn_sae.json").read_bytes() == record


@pytest.mark.parametrize("write", ["save", "export"])
def test_model_directory_new_or_empty_is_written(sae, X, tmp_path, write):
    for folder in (tmp_path / "new" / "model", tmp_path / "empty"):
        if folder.name == "empty":
            folder.mkdir()
        sae.save(folder) if write == "save" else sae.export(folder, "sparsify")
        np.testing.assert_array_equal(SparseAutoencoderTransformer.load(folder).transform(X), sae.transform(X))


def test_a_file_where_a_model_directory_goes_is_refused(sae, tmp_path):
    path = _user_file(tmp_path / "model")
    with pytest.raises(ValueError, match="not a directory"):
        sae.save(path)
    assert path.read_bytes() == USER_BYTES


def test_rewritten_model_directory_keeps_its_mode(sae, tmp_path):
    folder = tmp_path / "model"
    sae.save(folder)
    folder.chmod(0o700)  # kept private by its owner
    sae.save(folder)
    assert folder.stat().st_mode & 0o777 == 0o700


def test_the_current_directory_is_refused_with_the_users_files_and_written_when_empty(sae, X, tmp_path, monkeypatch):
    work = tmp_path / "work"
    work.mkdir()
    notes = _user_file(work / "notes.txt")
    monkeypatch.chdir(work)
    _refused(lambda: sae.export(".", "saelens"), work, "notes.txt")
    assert os.listdir(work) == ["notes.txt"] and notes.read_bytes() == USER_BYTES
    (tmp_path / "empty").mkdir()
    monkeypatch.chdir(tmp_path / "empty")
    sae.export(".", "saelens")
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(tmp_path / "empty").transform(X), sae.transform(X))


def test_a_symlink_to_a_model_directory_is_written_through(sae, X, tmp_path):
    target, link = tmp_path / "models" / "v1", tmp_path / "current"
    sae.export(target, "sparsify")
    link.symlink_to(target, target_is_directory=True)
    sae.save(link)
    assert link.is_symlink() and (target / "model.safetensors").is_file()


def test_a_save_killed_between_its_renames_leaves_nothing_behind_once_saved_again(sae, X, tmp_path, monkeypatch):
    import sklearn_sae._atomic

    folder = tmp_path / "model"
    sae.save(folder)
    rename = os.replace
    calls = []

    def die_on_second_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed with the old model renamed aside and the new one not yet in place
        rename(src, dst)

    with monkeypatch.context() as patch:
        patch.setattr(sklearn_sae._atomic.os, "replace", die_on_second_rename)
        with pytest.raises(KeyboardInterrupt):
            sae.save(folder)
    assert not folder.exists()
    sae.save(folder)
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(folder).transform(X), sae.transform(X))
    assert os.listdir(tmp_path) == ["model"]


# ----------------------------------------------------------------------------- checkpoints


class _Stop(Exception):
    """Ends a fit right after its first checkpoint, as a killed process would."""


def _checkpoint_after_one_epoch(X, folder, monkeypatch):
    write = TrainingCheckpoint.on_epoch_end

    def write_then_stop(self, net, **kwargs):
        write(self, net, **kwargs)
        raise _Stop

    with monkeypatch.context() as patch:
        patch.setattr(TrainingCheckpoint, "on_epoch_end", write_then_stop)
        with pytest.raises(_Stop):
            SparseAutoencoderTransformer(**FIT, checkpoint_dir=folder).fit(X)
    return folder / CHECKPOINT_NAME


def test_checkpoint_with_a_user_file_added_is_refused_and_kept(X, tmp_path, monkeypatch):
    latest = _checkpoint_after_one_epoch(X, tmp_path / "run", monkeypatch)
    notes = _user_file(latest / "notes.txt")
    _refused(lambda: SparseAutoencoderTransformer(**FIT, checkpoint_dir=tmp_path / "run").fit(X), latest, "notes.txt")
    assert notes.read_bytes() == USER_BYTES
    assert json.loads((latest / "checkpoint.json").read_text())["epochs_done"] == 1


def test_a_latest_directory_of_the_user_is_refused_and_kept(X, tmp_path):
    latest = tmp_path / "run" / CHECKPOINT_NAME
    latest.mkdir(parents=True)
    notes = _user_file(latest / "notes.txt")
    _refused(lambda: SparseAutoencoderTransformer(**FIT, checkpoint_dir=tmp_path / "run").fit(X), latest, "checkpoint")
    assert notes.read_bytes() == USER_BYTES and os.listdir(latest) == ["notes.txt"]


def test_checkpoint_of_an_earlier_run_is_replaced_and_the_users_files_beside_it_kept(X, tmp_path, monkeypatch):
    run = tmp_path / "run"
    run.mkdir()
    notes = _user_file(run / "notes.txt")
    latest = _checkpoint_after_one_epoch(X, run, monkeypatch)
    SparseAutoencoderTransformer(**FIT, checkpoint_dir=run).fit(X)  # resumes, then writes epoch 2 over epoch 1
    assert json.loads((latest / "checkpoint.json").read_text())["epochs_done"] == FIT["max_epochs"]
    assert set(os.listdir(latest)) == set(CHECKPOINT_FILES)
    assert notes.read_bytes() == USER_BYTES and sorted(os.listdir(run)) == [CHECKPOINT_NAME, "notes.txt"]


def test_checkpoint_in_a_new_or_empty_latest_directory(X, tmp_path):
    (tmp_path / "empty" / CHECKPOINT_NAME).mkdir(parents=True)
    for run in (tmp_path / "new", tmp_path / "empty"):
        SparseAutoencoderTransformer(**FIT, checkpoint_dir=run).fit(X)
        assert set(os.listdir(run / CHECKPOINT_NAME)) == set(CHECKPOINT_FILES)


# ----------------------------------------------------------------------------- HDF5 files


def _write_codes(sae, X, ids):
    return lambda path: write_codes(path, sae, X, ids=ids)


def _save_embeddings(sae, X, ids):
    return lambda path: save_embeddings(path, ids, X, layout="matrix")


def _convert(sae, X, ids, tmp_path):
    src = save_embeddings(tmp_path / "src.h5", ids, X)
    return lambda path: convert_embeddings(src, path)


def _convert_residues(sae, X, ids, tmp_path):
    src = tmp_path / "residues.h5"
    with h5py.File(src, "w") as f:
        for index, name in enumerate(ids[:4]):
            f[name] = X[index * 3 : index * 3 + 3]
    return lambda path: convert_residue_embeddings(src, path)


HDF5_WRITERS = {
    "write_codes": lambda sae, X, ids, tmp_path: _write_codes(sae, X, ids),
    "save_embeddings": lambda sae, X, ids, tmp_path: _save_embeddings(sae, X, ids),
    "convert_embeddings": _convert,
    "convert_residue_embeddings": _convert_residues,
}


def _readable(name, path):
    """Read back what ``name`` wrote at ``path``, as a check that it is whole."""
    if name == "write_codes":
        return load_codes(path)[1].shape
    if name == "convert_residue_embeddings":
        return load_residue_embeddings(path)[1].shape
    return load_embeddings(path)[1].shape


@pytest.mark.parametrize("name", HDF5_WRITERS)
@pytest.mark.parametrize("kind", ["text", "hdf5"])
def test_hdf5_destination_of_the_user_is_refused_and_kept(sae, X, ids, tmp_path, name, kind):
    write = HDF5_WRITERS[name](sae, X, ids, tmp_path)
    path = tmp_path / "out.h5"
    before = _user_file(path).read_bytes() if kind == "text" else _user_hdf5(path)
    message = _refused(lambda: write(path), path)
    assert ("not an HDF5 file" if kind == "text" else f"without the {MARK!r} attribute") in message
    assert path.read_bytes() == before
    _no_leftovers(tmp_path)


@pytest.mark.parametrize("earlier", HDF5_WRITERS)
@pytest.mark.parametrize("name", HDF5_WRITERS)
def test_hdf5_file_the_package_wrote_is_replaced(sae, X, ids, tmp_path, name, earlier):
    path = tmp_path / "out.h5"
    HDF5_WRITERS[earlier](sae, X, ids, tmp_path)(path)
    HDF5_WRITERS[name](sae, X, ids, tmp_path)(path)
    assert _readable(name, path)[0] > 0
    _no_leftovers(tmp_path)


def test_codes_of_an_older_version_without_the_mark_are_replaced(sae, X, ids, tmp_path):
    path = write_codes(tmp_path / "codes.h5", sae, X)
    with h5py.File(path, "a") as f:
        del f.attrs[MARK]  # as written before the mark existed: format="csr", shape, the CSR arrays
    write_codes(path, sae, X, ids=ids)
    assert list(load_codes(path)[0]) == ids


def test_unmarked_embeddings_are_refused_even_in_the_package_layout(X, ids, tmp_path):
    path = save_embeddings(tmp_path / "emb.h5", ids, X, layout="matrix")
    with h5py.File(path, "a") as f:
        del f.attrs[MARK]  # indistinguishable from anyone's matrix file
    before = path.read_bytes()
    _refused(lambda: save_embeddings(path, ids, X), path)
    assert path.read_bytes() == before


@pytest.mark.parametrize("name", HDF5_WRITERS)
def test_hdf5_new_or_empty_destination_is_written(sae, X, ids, tmp_path, name):
    write = HDF5_WRITERS[name](sae, X, ids, tmp_path)
    empty = tmp_path / "empty.h5"
    empty.touch()  # as tempfile.NamedTemporaryFile leaves it: nothing to lose
    for path in (tmp_path / "new.h5", empty):
        write(path)
        assert _readable(name, path)[0] > 0
        with h5py.File(path) as f:
            assert MARK in f.attrs


def test_convert_in_place_replaces_a_package_file_but_not_a_download(X, ids, tmp_path):
    package = save_embeddings(tmp_path / "mine.h5", ids, X)
    convert_embeddings(package, package, dtype=np.float32)  # rechunk in place
    assert load_embeddings(package)[1].shape == X.shape
    download = tmp_path / "per-protein.h5"
    before = _user_hdf5(download)
    _refused(lambda: convert_embeddings(download, download), download)
    assert download.read_bytes() == before


def test_a_symlink_to_a_package_file_is_written_through(sae, X, ids, tmp_path):
    target = write_codes(tmp_path / "codes-v1.h5", sae, X)
    link = tmp_path / "codes.h5"
    link.symlink_to(target)
    write_codes(link, sae, X, ids=ids)
    assert link.is_symlink() and list(load_codes(target)[0]) == ids


def test_cli_convert_refuses_a_user_file_in_one_line(X, ids, tmp_path, capsys):
    src = save_embeddings(tmp_path / "src.h5", ids, X)
    dst = _user_file(tmp_path / "out.h5")
    assert main(["convert", str(src), str(dst), "-q"]) == 1
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and "refusing to replace" in error and str(dst) in error
    assert dst.read_bytes() == USER_BYTES
    assert main(["convert", str(src), str(tmp_path / "new.h5"), "-q"]) == 0
    assert main(["convert", str(src), str(tmp_path / "new.h5"), "-q", "--dtype", "float32"]) == 0  # its own output
    assert load_embeddings(tmp_path / "new.h5")[1].dtype == np.float32


# ----------------------------------------------------------------------------- the atlas


def test_atlas_over_a_user_html_file_is_refused_and_kept(tmp_path):
    path = tmp_path / "index.html"
    path.write_bytes(b"<!DOCTYPE html><html><head><title>My lab page</title></head></html>")
    before = path.read_bytes()
    _refused(lambda: write_atlas(path, sp.csr_matrix(np.eye(3))), path, "not an atlas")
    assert path.read_bytes() == before
    _no_leftovers(tmp_path)


def test_atlas_replaces_an_atlas_and_writes_new_or_empty_files(tmp_path):
    path = write_atlas(tmp_path / "atlas.html", sp.csr_matrix(np.eye(3)), title="first")
    write_atlas(path, sp.csr_matrix(np.eye(3)), title="second")
    assert "<title>second</title>" in path.read_text(encoding="utf-8")
    empty = tmp_path / "empty.html"
    empty.touch()
    write_atlas(empty, sp.csr_matrix(np.eye(3)))
    assert empty.stat().st_size > 0
