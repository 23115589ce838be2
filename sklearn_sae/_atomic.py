"""Writing files and directories so that a reader never sees them half-written.

Everything the package writes to disk (saved models, exports, checkpoints, converted embeddings, codes
written block by block) goes through here: the content is written under a temporary name in the
destination's own directory (same file system, so the final rename is atomic), flushed to disk, and
only then renamed into place. An interrupted write leaves at most a temporary ``.tmp-*`` entry beside
the destination, never a damaged destination.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["atomic_directory", "atomic_file", "recover_replaced_directory", "TEMPORARY_PREFIX"]

TEMPORARY_PREFIX = ".tmp-"
"""Names of work in progress start with this, followed by the destination's name."""


def _default_mode(*, directory: bool) -> int:
    """The mode ``open`` or ``mkdir`` would give a new entry (0o666 or 0o777 less the umask).

    ``mkstemp`` and ``mkdtemp`` create private entries (0o600, 0o700); what the package writes is
    meant to be read by others as an ordinary file would be.
    """
    umask = os.umask(0)
    os.umask(umask)
    return (0o777 if directory else 0o666) & ~umask


def _fsync_directory(path: Path) -> None:
    """Persist a directory's entries (a rename is durable only once its directory is synced)."""
    if os.name != "posix":  # directories cannot be opened for fsync on Windows
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_tree(path: Path) -> None:
    for root, _, files in os.walk(path):
        for name in files:
            with open(Path(root) / name, "rb+") as handle:
                os.fsync(handle.fileno())
        _fsync_directory(Path(root))


@contextlib.contextmanager
def atomic_file(path, *, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success, move it onto ``path``.

    The caller writes the whole file at the yielded path (by name, so any
    library can write it). If the block raises, the temporary file is
    removed and ``path`` is left as it was. The new file keeps the mode of the
    file it replaces, or gets the one a plain ``open`` would give.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; its directory must exist.
    suffix : str, default=""
        Ending of the temporary name, for libraries that look at extensions.
    """
    path = Path(path)
    mode = path.stat().st_mode & 0o777 if path.exists() else _default_mode(directory=False)
    fd, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    temporary = Path(temporary)
    try:
        yield temporary
        os.chmod(temporary, mode)  # a library may have recreated the file: set the mode after writing
        with open(temporary, "rb+") as handle:
            os.fsync(handle.fileno())
        os.replace(temporary, path)
        _fsync_directory(path.parent)
    finally:
        temporary.unlink(missing_ok=True)


def _retired_prefix(path: Path) -> str:
    return f"{TEMPORARY_PREFIX}{path.name}-old-"


def recover_replaced_directory(path) -> bool:
    """Put back the previous ``path`` if a process died between the two renames of :func:`atomic_directory`.

    In that instant ``path`` does not exist and its previous content sits,
    complete, in a retired temporary directory beside it. Returns whether a
    directory was put back.
    """
    path = Path(path)
    if path.exists():
        return False
    for retired in sorted(path.parent.glob(f"{_retired_prefix(path)}*")):
        if (retired / path.name).is_dir():
            os.replace(retired / path.name, path)
            shutil.rmtree(retired, ignore_errors=True)
            return True
    return False


@contextlib.contextmanager
def atomic_directory(path):
    """Yield an empty temporary directory beside ``path``; on success, it becomes ``path``.

    An existing ``path`` is replaced only after the new content is complete
    and on disk: it is renamed aside, the new directory renamed into place,
    and the old one deleted. If the block raises, the temporary directory is
    removed and ``path`` is left as it was. A process killed between the two
    renames leaves the old content whole in a retired directory beside
    ``path``; :func:`recover_replaced_directory` puts it back.

    Parameters
    ----------
    path : str or os.PathLike
        The destination directory; its parent is created if needed. An
        existing ``path`` must be a directory.
    """
    path = Path(path)
    if path.exists() and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; give a directory path.")
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{path.name}-", dir=path.parent))
    try:
        yield temporary
        os.chmod(temporary, _default_mode(directory=True))
        for entry in temporary.rglob("*"):  # files written through tempfile would be private otherwise
            if entry.is_file() and entry.stat().st_mode & 0o777 == 0o600:
                os.chmod(entry, _default_mode(directory=False))
        _fsync_tree(temporary)
        if path.exists():
            retired = Path(tempfile.mkdtemp(prefix=_retired_prefix(path), dir=path.parent))
            os.replace(path, retired / path.name)
            os.replace(temporary, path)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            os.replace(temporary, path)
        _fsync_directory(path.parent)
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
