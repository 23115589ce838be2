"""Writing files and directories so that a reader never sees them half-written, and no one loses a file.

Everything the package writes to disk (saved models, exports, checkpoints, embeddings, converted
embeddings, codes, the atlas) goes through here: the content is written under a temporary name in the
destination's own directory (same file system, so the final rename is atomic), flushed to disk, and
only then renamed into place. An interrupted write leaves at most a temporary ``.tmp-*`` entry beside
the destination, never a damaged destination.

One rule decides what a write may replace: a destination that does not exist, an empty directory or
file, or what the package itself wrote there. Anything else is refused with a ``ValueError`` that names the
path, what is there, and what to do, before any work is done and again just before the rename.
Each writer says how it recognises its own output (a marker file, an HDF5 attribute, the atlas'
``generator`` tag) through the ``foreign`` argument of :func:`atomic_file` and
:func:`atomic_directory`; :func:`check_replaceable` applies the rule. A directory that holds the
package's files plus any other entry is refused as a whole: replacing it would delete that entry.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path
from typing import Callable, Optional

__all__ = [
    "TEMPORARY_PREFIX",
    "atomic_directory",
    "atomic_file",
    "check_replaceable",
    "recover_replaced_directory",
    "unexpected_entries",
]

TEMPORARY_PREFIX = ".tmp-"
"""Names of work in progress start with this, followed by the destination's name."""

Foreign = Callable[[Path], Optional[str]]
"""A writer's recogniser: given an existing destination, ``None`` when it is all the package's own output,
else a few words saying what is there that the package did not write (``"it holds notes.txt"``)."""

_LISTED_ENTRIES = 5
"""Entries a refusal names before it counts the rest."""


def check_replaceable(path, foreign: Foreign, *, writer: str, directory: bool) -> Path:
    """Refuse, with a ``ValueError``, to replace anything at ``path`` that the package did not write.

    ``path`` may be written when it does not exist, when it is an empty
    directory (``directory=True``) or an empty file (``directory=False``;
    ``tempfile.NamedTemporaryFile`` and ``touch`` make those), or when
    ``foreign(path)`` recognises it as what the package wrote there
    (returns ``None``). A directory is the package's only when every entry
    in it is: one holding the package's files and anything else is refused,
    since replacing the directory would delete that entry. A symbolic link
    is followed: what it points to is checked and written.

    Parameters
    ----------
    path : str or os.PathLike
        The destination.
    foreign : callable
        The writer's recogniser (see :data:`Foreign`); called only on an
        existing destination of the right kind.
    writer : str
        The call that writes, as the user wrote it (``"save()"``), for the
        message.
    directory : bool
        Whether the destination is a directory (else a file).

    Returns
    -------
    path : pathlib.Path
        The destination to write: absolute, a symbolic link resolved.

    Raises
    ------
    ValueError
        When ``path`` holds something the package did not write, or an
        entry of the other kind (a file where a directory goes or the
        reverse); the message names the path, what is there, and what to do.
    """
    path = Path(os.path.abspath(path))  # "." and "sub/.." name their directory, so the renames can move it
    if path.is_symlink():
        path = path.resolve()
    if not path.exists():
        return path
    if directory and not path.is_dir():
        raise ValueError(f"{path} exists and is not a directory; {writer} writes a directory. Give a directory path.")
    if not directory and path.is_dir():
        raise ValueError(f"{path} is a directory; {writer} writes a file. Give the path of the file to write.")
    if directory and not any(path.iterdir()) or not directory and path.stat().st_size == 0:
        return path  # nothing there to lose
    reason = foreign(path)
    if reason is not None:
        kind, empty = ("directory", " or an empty directory") if directory else ("file", "")
        raise ValueError(
            f"{writer}: refusing to replace the {kind} {path}: {reason}. sklearn-sae replaces only what it wrote "
            f"itself, so that no file of yours is lost. Give a new path{empty}, or move {path} away (or delete it) "
            "first."
        )
    return path


def unexpected_entries(directory: Path, expected, *, writer: str) -> str | None:
    """``None`` when every entry of ``directory`` is named in ``expected``, else a sentence naming the others.

    The directory recognisers of the writers build on it: a directory holds
    exactly what the package writes there when it holds no other entry.
    """
    others = sorted(entry.name for entry in Path(directory).iterdir() if entry.name not in set(expected))
    if not others:
        return None
    listed = ", ".join(others[:_LISTED_ENTRIES])
    if len(others) > _LISTED_ENTRIES:
        listed += f" and {len(others) - _LISTED_ENTRIES} more"
    return f"it holds {listed}, which {writer} does not write"


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
def atomic_file(path, *, foreign: Foreign, writer: str, suffix: str = ""):
    """Yield a temporary path beside ``path``; on success, move it onto ``path``.

    The caller writes the whole file at the yielded path (by name, so any
    library can write it). If the block raises, the temporary file is
    removed and ``path`` is left as it was. The new file keeps the mode of the
    file it replaces, or gets the one a plain ``open`` would give. An
    existing ``path`` is replaced only if the package wrote it
    (:func:`check_replaceable`, before the block runs and again before the
    rename); a symbolic link is written through.

    Parameters
    ----------
    path : str or os.PathLike
        The destination; its directory must exist.
    foreign : callable
        How the writer recognises a file it wrote (see :data:`Foreign`).
    writer : str
        The public call that writes, named in a refusal.
    suffix : str, default=""
        Ending of the temporary name, for libraries that look at extensions.
    """
    path = check_replaceable(path, foreign, writer=writer, directory=False)
    fd, temporary = tempfile.mkstemp(prefix=f"{TEMPORARY_PREFIX}{path.name}-", suffix=suffix, dir=path.parent)
    os.close(fd)
    temporary = Path(temporary)
    try:
        yield temporary
        # Another process may have put a file there while this one was written.
        check_replaceable(path, foreign, writer=writer, directory=False)
        mode = path.stat().st_mode & 0o777 if path.exists() else _default_mode(directory=False)
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
def atomic_directory(path, *, foreign: Foreign, writer: str):
    """Yield an empty temporary directory beside ``path``; on success, it becomes ``path``.

    An existing ``path`` is replaced only if it is empty or the package
    wrote all of it (:func:`check_replaceable`, before the block runs and
    again before the renames), and only after the new content is complete
    and on disk: it is renamed aside, the new directory renamed into place
    (with the mode of the one it replaces), and the old one deleted. If the
    block raises, the temporary directory is removed and ``path`` is left as
    it was. A process killed between the two renames leaves the old content
    whole in a retired directory beside ``path``;
    :func:`recover_replaced_directory` puts it back, as the next write to
    ``path`` does first.

    Parameters
    ----------
    path : str or os.PathLike
        The destination directory; its parent is created if needed. An
        existing ``path`` must be a directory.
    foreign : callable
        How the writer recognises a directory it wrote (see :data:`Foreign`).
    writer : str
        The public call that writes, named in a refusal.
    """
    # A write killed between its two renames left the previous content aside: put it back, so that it is
    # checked and replaced like any earlier output rather than left behind as a hidden copy.
    recover_replaced_directory(path)
    path = check_replaceable(path, foreign, writer=writer, directory=True)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(prefix=f"{TEMPORARY_PREFIX}{path.name}-", dir=path.parent))
    try:
        yield temporary
        check_replaceable(path, foreign, writer=writer, directory=True)
        # A directory kept private (0o700) stays private when it is rewritten.
        os.chmod(temporary, path.stat().st_mode & 0o777 if path.exists() else _default_mode(directory=True))
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
