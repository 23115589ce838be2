"""The mark the package leaves on the HDF5 files it writes, and how a writer recognises a file it may replace.

Every HDF5 file the package writes (`save_embeddings`, `convert_embeddings`, `convert_residue_embeddings`,
`write_codes`) carries the root attribute :data:`MARK`, whose value says what the file holds. A writer
replaces an existing file only when it carries the mark (:func:`foreign_hdf5_content`), so a file another
program wrote, UniProt's ``per-protein.h5`` among them, is never overwritten.
"""

from __future__ import annotations

from pathlib import Path

import h5py

__all__ = ["MARK", "foreign_hdf5_content", "mark_written"]

MARK = "sklearn_sae"
"""The root attribute of a file the package wrote: ``"embeddings"``, ``"residue_embeddings"`` or ``"codes"``."""

_LEGACY_CODES_DATASETS = frozenset({"data", "indices", "indptr"})
"""The arrays `write_codes` wrote before files carried the mark; with the ``format="csr"`` and ``shape`` attributes
they are recognised as its output. Unmarked embeddings files have no such signature: they look like anyone's."""


def mark_written(f: h5py.File, content: str) -> None:
    """Mark the open file ``f``, being written, as the package's, holding ``content``."""
    f.attrs[MARK] = content


def foreign_hdf5_content(path: Path) -> str | None:
    """What makes the existing file ``path`` not the package's to replace; ``None`` when the package wrote it.

    The package's files carry :data:`MARK`; codes written before the mark
    existed are recognised by their layout (exactly the CSR arrays, and
    ``ids``, with the root attributes ``format="csr"`` and ``shape``).
    """
    try:
        if not h5py.is_hdf5(path):
            return "it is not an HDF5 file, so sklearn-sae did not write it"
        with h5py.File(path, "r") as f:
            if MARK in f.attrs or _is_legacy_codes(f):
                return None
    except OSError as error:  # unreadable, locked by another process
        return f"it cannot be read to tell whether sklearn-sae wrote it ({error})"
    return (
        f"it is an HDF5 file without the {MARK!r} attribute that sklearn-sae leaves on the files it writes "
        "(another program wrote it, or an older sklearn-sae)"
    )


def _is_legacy_codes(f: h5py.File) -> bool:
    names = set(f.keys())
    format_name = f.attrs.get("format")
    if isinstance(format_name, bytes):
        format_name = format_name.decode("utf-8", "replace")
    return (
        format_name == "csr"
        and "shape" in f.attrs
        and _LEGACY_CODES_DATASETS <= names <= _LEGACY_CODES_DATASETS | {"ids"}
    )
