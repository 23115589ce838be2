"""Read, write and split protein embedding datasets.

Two HDF5 layouts are understood:

``"uniprot"``
    The layout of UniProt's ``per-protein.h5`` files: one root-level dataset
    per protein, named by its accession, each a 1-D vector of shape ``(d,)``.
``"matrix"``
    A root-level ``embeddings`` dataset of shape ``(n, d)`` beside an ``ids``
    dataset of ``n`` strings; row ``i`` of ``embeddings`` belongs to
    ``ids[i]``. `convert_embeddings` turns the first into the second.

Codes too large for memory are written block by block to HDF5 as the
arrays of a CSR matrix by `write_codes` and read back by `load_codes`.

One private module per concern: ``_layouts`` (reading both HDF5 layouts),
``_formats`` (ESM ``.pt``, NumPy and table files; per-residue embeddings),
``_id_columns`` (which column of a table holds the ids: never a dimension),
``_saving`` (writing and converting), ``_codes`` (codes on disk),
``_splits``, ``_synthetic`` (data with known features), ``_labels``
(per-protein label tables) and ``_checks`` (what they share). Block reads
and the block size are the package's own (:mod:`sklearn_sae._blocks`).
"""

from ._codes import load_codes, write_codes
from ._formats import convert_residue_embeddings, load_residue_embeddings, pool_residues
from ._labels import load_protein_labels
from ._layouts import load_embeddings
from ._saving import convert_embeddings, save_embeddings
from ._splits import train_val_test_split
from ._synthetic import make_hierarchical_signals, make_sparse_signals

__all__ = [
    "load_embeddings",
    "load_residue_embeddings",
    "convert_residue_embeddings",
    "pool_residues",
    "load_protein_labels",
    "save_embeddings",
    "convert_embeddings",
    "write_codes",
    "load_codes",
    "train_val_test_split",
    "make_sparse_signals",
    "make_hierarchical_signals",
]
