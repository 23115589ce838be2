"""Atomic writes: a destination is either the old content or the complete new one."""

import pytest

from sklearn_sae._atomic import TEMPORARY_PREFIX, atomic_directory, atomic_file

OURS = dict(foreign=lambda path: None, writer="test")
"""A writer that recognises whatever is there as its own: these tests are about atomicity, not ownership."""


def test_atomic_file_replaces_only_on_success(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    with pytest.raises(RuntimeError):
        with atomic_file(target, **OURS) as temporary:
            temporary.write_text("half")
            raise RuntimeError("interrupted")
    assert target.read_text() == "old"
    with atomic_file(target, **OURS) as temporary:
        temporary.write_text("new")
    assert target.read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["out.txt"]


def test_atomic_directory_replaces_only_on_success(tmp_path):
    target = tmp_path / "model"
    with atomic_directory(target, **OURS) as temporary:
        (temporary / "a.json").write_text("1")
    assert (target / "a.json").read_text() == "1"
    with pytest.raises(RuntimeError):
        with atomic_directory(target, **OURS) as temporary:
            (temporary / "b.json").write_text("2")
            raise RuntimeError("interrupted")
    assert sorted(p.name for p in target.iterdir()) == ["a.json"]
    with atomic_directory(target, **OURS) as temporary:
        (temporary / "b.json").write_text("2")
    assert sorted(p.name for p in target.iterdir()) == ["b.json"]
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(TEMPORARY_PREFIX)]


def test_atomic_directory_refuses_a_file(tmp_path):
    target = tmp_path / "model"
    target.write_text("not a directory")
    with pytest.raises(ValueError, match="not a directory"):
        with atomic_directory(target, **OURS):
            pass


def test_a_replacement_killed_between_its_renames_can_be_recovered(tmp_path, monkeypatch):
    import os

    from sklearn_sae import _atomic
    from sklearn_sae._atomic import recover_replaced_directory

    target = tmp_path / "model"
    with atomic_directory(target, **OURS) as temporary:
        (temporary / "a.json").write_text("old")
    real_replace = os.replace
    calls = []

    def die_on_second_rename(src, dst):
        calls.append(src)
        if len(calls) == 2:
            raise KeyboardInterrupt  # the process dies after retiring the old directory
        real_replace(src, dst)

    monkeypatch.setattr(_atomic.os, "replace", die_on_second_rename)
    with pytest.raises(KeyboardInterrupt):
        with atomic_directory(target, **OURS) as temporary:
            (temporary / "a.json").write_text("new")
    monkeypatch.setattr(_atomic.os, "replace", real_replace)
    assert not target.exists()
    assert recover_replaced_directory(target)
    assert (target / "a.json").read_text() == "old"
    assert not recover_replaced_directory(target)


def test_written_entries_get_ordinary_modes_and_keep_a_replaced_files_mode(tmp_path):
    import os

    umask = os.umask(0o022)
    try:
        new_file = tmp_path / "new.txt"
        with atomic_file(new_file, **OURS) as temporary:
            temporary.write_text("x")
        assert new_file.stat().st_mode & 0o777 == 0o644
        new_file.chmod(0o640)
        with atomic_file(new_file, **OURS) as temporary:
            temporary.write_text("y")
        assert new_file.stat().st_mode & 0o777 == 0o640
        directory = tmp_path / "model"
        with atomic_directory(directory, **OURS) as temporary:
            with atomic_file(temporary / "weights.bin", **OURS) as inner:
                inner.write_bytes(b"w")
        assert directory.stat().st_mode & 0o777 == 0o755
        assert (directory / "weights.bin").stat().st_mode & 0o777 == 0o644
    finally:
        os.umask(umask)
