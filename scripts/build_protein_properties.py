"""Build ``data/per-protein.properties.csv``: sequence-derived labels per protein.

The subcellular location is the only label that ``per-protein.labels.csv``
carries. This script adds protein-level properties computed from the SCL2205
sequences alone, as numbers and as categorical classes, so that SAE latents
can be tested against more than one kind of label:

- length, molecular weight, net charge at pH 7, isoelectric point, GRAVY,
  aromaticity, instability index;
- fractions of residue classes (Cys, Pro, Gly, charged, hydrophobic);
- transmembrane segments predicted by a Kyte-Doolittle hydropathy scan and
  an N-terminal signal peptide flag from a hydrophobicity heuristic;
- classes binned from those values (see :data:`CLASS_COLUMNS` and
  ``data/README.md`` for the rules).

Molecular weight and instability index come from Biopython's
``Bio.SeqUtils.ProtParam``; everything else is computed here so that it can
be tested without Biopython. Rows follow ``per-protein.labels.csv`` exactly.

The sequences come from ``p-scldata`` through ``build_scl2205.load_scl2205``;
install it and Biopython with ``pip install -e '.[data]'``. No network is
used, and the output is the same byte for byte on every run.

Usage::

    python scripts/build_protein_properties.py --out data/per-protein.properties.csv
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

STANDARD_RESIDUES = frozenset("ACDEFGHIKLMNPQRSTVWY")

# Kyte & Doolittle (1982), J. Mol. Biol. 157:105-132, Table 2.
KYTE_DOOLITTLE = {
    "A": 1.8, "R": -4.5, "N": -3.5, "D": -3.5, "C": 2.5,
    "Q": -3.5, "E": -3.5, "G": -0.4, "H": -3.2, "I": 4.5,
    "L": 3.8, "K": -3.9, "M": 1.9, "F": 2.8, "P": -1.6,
    "S": -0.8, "T": -0.7, "W": -0.9, "Y": -1.3, "V": 4.2,
}  # fmt: skip

# pK values of Bjellqvist et al. (1993, 1994), the set ExPASy ProtParam and
# Biopython use, so the charges and pIs here agree with those tools.
POSITIVE_PK = {"K": 10.0, "R": 12.0, "H": 5.98}
NEGATIVE_PK = {"D": 4.05, "E": 4.45, "C": 9.0, "Y": 10.0}
N_TERMINUS_PK = 7.5
C_TERMINUS_PK = 3.55
# The terminal groups' pK shifts with the residue that carries them.
N_TERMINUS_PK_BY_RESIDUE = {"A": 7.59, "M": 7.0, "S": 6.93, "P": 8.36, "T": 6.82, "V": 7.44, "E": 7.7}
C_TERMINUS_PK_BY_RESIDUE = {"D": 4.55, "E": 4.75}

# Residue classes whose fractions are reported. "hydrophobic" is the
# aliphatic and aromatic apolar set; Cys and Tyr are left out because their
# side chains are often exposed and their Kyte-Doolittle values disagree.
RESIDUE_CLASSES = {
    "cys": "C",
    "pro": "P",
    "gly": "G",
    "charged": "DEKR",
    "hydrophobic": "AVILMFW",
}

# The classic transmembrane scan of Kyte & Doolittle (1982): a 19-residue
# window whose mean hydropathy reaches 1.6 marks a membrane-spanning segment.
TM_WINDOW = 19
TM_THRESHOLD = 1.6

# Signal peptide heuristic: a hydrophobic core (h-region) of SP_WINDOW
# residues with mean hydropathy >= SP_THRESHOLD starting within the first
# SP_MAX_START residues after the initiator Met. See has_signal_peptide.
SP_WINDOW = 10
SP_THRESHOLD = 1.8
SP_MAX_START = 22
# A hydropathy segment that ends within this many N-terminal residues of a
# protein flagged with a signal peptide is that signal peptide's h-region,
# not a transmembrane helix: the scan cannot tell them apart by itself.
SP_REGION = 35

# Guruprasad et al. (1990): an instability index above 40 predicts a protein
# that is unstable in vitro.
INSTABILITY_CUTOFF = 40.0

# pI bounds of the "neutral" charge class.
NEUTRAL_PI = (6.5, 7.5)

# Fraction of proteins flagged as rich in a residue (the top decile).
RICH_QUANTILE = 0.9

# Quantile-binned classes: (value column, class column, class names low to high).
TERTILE_CLASSES = [
    ("length", "length_class", ("short", "medium", "long")),
    ("gravy", "gravy_class", ("hydrophilic", "intermediate", "hydrophobic")),
]
RICH_FLAGS = [("frac_cys", "cys_rich"), ("frac_pro", "pro_rich"), ("frac_gly", "gly_rich")]

# Every categorical label column of the output.
CLASS_COLUMNS = [
    "length_class",
    "charge_class",
    "gravy_class",
    "stability_class",
    "cys_rich",
    "pro_rich",
    "gly_rich",
    "tm_class",
    "signal_peptide",
]

# Decimals kept per numeric column: enough to rank proteins, small on disk.
DECIMALS = {
    "molecular_weight": 0,
    "net_charge": 2,
    "isoelectric_point": 2,
    "gravy": 3,
    "aromaticity": 3,
    "instability_index": 1,
    **{f"frac_{name}": 3 for name in RESIDUE_CLASSES},
}


# --------------------------------------------------------------------------
# Per-sequence values (pure Python, no Biopython)
# --------------------------------------------------------------------------


def clean_sequence(sequence):
    """Drop every letter that is not one of the 20 standard residues.

    Parameters
    ----------
    sequence : str
        A protein sequence in one-letter code.

    Returns
    -------
    clean : str
        The upper-cased sequence without ``X``, ``U``, ``B``, ``Z``, ``O``
        or any other non-standard letter.
    n_removed : int
        How many letters were dropped.
    """
    sequence = sequence.upper()
    clean = "".join(residue for residue in sequence if residue in STANDARD_RESIDUES)
    return clean, len(sequence) - len(clean)


def residue_fractions(sequence):
    """Fraction of the sequence in each class of :data:`RESIDUE_CLASSES`.

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.

    Returns
    -------
    dict
        ``{"frac_cys": ..., "frac_pro": ..., ...}``.
    """
    n = len(sequence)
    return {
        f"frac_{name}": sum(sequence.count(residue) for residue in residues) / n
        for name, residues in RESIDUE_CLASSES.items()
    }


def gravy(sequence):
    """Grand average of hydropathy: the mean Kyte-Doolittle value.

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.

    Returns
    -------
    float
    """
    return sum(KYTE_DOOLITTLE[residue] for residue in sequence) / len(sequence)


def aromaticity(sequence):
    """Fraction of aromatic residues, Phe + Trp + Tyr (Lobry & Gautier, 1994).

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.

    Returns
    -------
    float
    """
    return sum(sequence.count(residue) for residue in "FWY") / len(sequence)


def _ionisable_groups(sequence):
    """Return ``(positive, negative)`` lists of ``(count, pK)`` for ``sequence``."""
    n_pk = N_TERMINUS_PK_BY_RESIDUE.get(sequence[0], N_TERMINUS_PK)
    c_pk = C_TERMINUS_PK_BY_RESIDUE.get(sequence[-1], C_TERMINUS_PK)
    positive = [(1, n_pk)] + [(sequence.count(aa), pk) for aa, pk in POSITIVE_PK.items()]
    negative = [(1, c_pk)] + [(sequence.count(aa), pk) for aa, pk in NEGATIVE_PK.items()]
    return positive, negative


def _charge(positive, negative, ph):
    # Henderson-Hasselbalch: a basic group is protonated (charged) with
    # probability 1 / (1 + 10**(pH - pK)), an acidic group deprotonated with
    # probability 1 / (1 + 10**(pK - pH)).
    plus = sum(count / (1.0 + 10.0 ** (ph - pk)) for count, pk in positive)
    minus = sum(count / (1.0 + 10.0 ** (pk - ph)) for count, pk in negative)
    return plus - minus


def net_charge(sequence, ph=7.0):
    """Net charge of a polypeptide at ``ph`` from the Bjellqvist pK set.

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.
    ph : float, default=7.0

    Returns
    -------
    float
        Sum of the partial charges of the termini and of the side chains of
        Lys, Arg, His (positive) and Asp, Glu, Cys, Tyr (negative).
    """
    return _charge(*_ionisable_groups(sequence), ph)


def isoelectric_point(sequence, tol=1e-4):
    """The pH at which :func:`net_charge` is zero, found by bisection.

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.
    tol : float, default=1e-4
        Width of the final pH bracket.

    Returns
    -------
    float
    """
    positive, negative = _ionisable_groups(sequence)
    # The charge falls monotonically with pH and changes sign between 0 and
    # 14 for any sequence (both termini are always there).
    low, high = 0.0, 14.0
    while high - low > tol:
        mid = (low + high) / 2
        if _charge(positive, negative, mid) > 0:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def hydropathy_profile(sequence, window):
    """Mean Kyte-Doolittle hydropathy of every window of ``window`` residues.

    Parameters
    ----------
    sequence : str
        A cleaned protein sequence.
    window : int

    Returns
    -------
    ndarray of shape (max(len(sequence) - window + 1, 0),)
        Entry ``i`` is the mean over residues ``i`` to ``i + window - 1``.
    """
    values = np.array([KYTE_DOOLITTLE[residue] for residue in sequence], dtype=float)
    if len(values) < window:
        return np.empty(0)
    sums = np.convolve(values, np.ones(window), mode="valid")
    return sums / window


def transmembrane_segments(sequence, window=TM_WINDOW, threshold=TM_THRESHOLD):
    """Hydropathy-based transmembrane segments (Kyte & Doolittle, 1982).

    Every window whose mean hydropathy is at least ``threshold`` is taken as
    membrane-spanning; windows that overlap are merged into one segment.

    Parameters
    ----------
    sequence : str
        A cleaned protein sequence.
    window : int, default=19
    threshold : float, default=1.6

    Returns
    -------
    list of (int, int)
        0-based ``(start, stop)`` residue spans, ``stop`` exclusive, in
        sequence order.
    """
    starts = np.flatnonzero(hydropathy_profile(sequence, window) >= threshold)
    segments = []
    for start in starts.tolist():
        if segments and start < segments[-1][1]:
            # This window shares residues with the current segment: extend it.
            segments[-1][1] = start + window
        else:
            segments.append([start, start + window])
    return [tuple(segment) for segment in segments]


def has_signal_peptide(
    sequence,
    window=SP_WINDOW,
    threshold=SP_THRESHOLD,
    max_start=SP_MAX_START,
):
    """Heuristic: does the sequence start with a signal-peptide-like stretch?

    Secretory signal peptides carry a hydrophobic core (the h-region, about
    7-15 residues) close to the N-terminus (von Heijne, 1985). This flags a
    sequence when a window of ``window`` residues starting at residue 2 to
    ``max_start + 1`` (after the initiator Met) has a mean Kyte-Doolittle
    hydropathy of at least ``threshold``. It does not look for a cleavage
    site, so N-terminal transmembrane anchors and mitochondrial or plastid
    transit peptides with a hydrophobic stretch are flagged too.

    Parameters
    ----------
    sequence : str
        A cleaned protein sequence.
    window : int, default=10
    threshold : float, default=1.8
    max_start : int, default=22

    Returns
    -------
    bool
    """
    head = sequence[1 : 1 + max_start + window - 1]
    profile = hydropathy_profile(head, window)
    return bool(profile.size) and float(profile.max()) >= threshold


def count_tm_segments(segments, signal_peptide, region=SP_REGION):
    """Number of transmembrane segments once a signal peptide's core is discounted.

    Parameters
    ----------
    segments : list of (int, int)
        Output of :func:`transmembrane_segments`.
    signal_peptide : bool
        Output of :func:`has_signal_peptide` for the same sequence.
    region : int, default=35
        A first segment that stops within the first ``region`` residues is
        taken as the signal peptide's hydrophobic core when
        ``signal_peptide`` is true.

    Returns
    -------
    int
    """
    if signal_peptide and segments and segments[0][1] <= region:
        return len(segments) - 1
    return len(segments)


def tm_class(n_segments):
    """Class of a protein by its number of predicted TM segments: "0", "1" or "2+"."""
    return str(n_segments) if n_segments < 2 else "2+"


def charge_class(pi, neutral=NEUTRAL_PI):
    """Class of a protein by its isoelectric point: acidic, neutral or basic.

    Parameters
    ----------
    pi : float
        Isoelectric point.
    neutral : (float, float), default=(6.5, 7.5)
        Closed pI interval called neutral.

    Returns
    -------
    str
    """
    if pi < neutral[0]:
        return "acidic"
    if pi > neutral[1]:
        return "basic"
    return "neutral"


def sequence_properties(sequence):
    """Every per-sequence value that needs no Biopython and no other protein.

    Parameters
    ----------
    sequence : str
        A protein sequence in one-letter code, as in SCL2205 (it may hold
        non-standard letters; they are dropped before computing).

    Returns
    -------
    dict
        ``length`` (of the raw sequence), ``n_nonstandard``, ``net_charge``,
        ``isoelectric_point``, ``gravy``, ``aromaticity``, the residue class
        fractions, ``kd_segments`` (every segment of the hydropathy scan),
        ``tm_segments`` (those left once a signal peptide's core is
        discounted, see :func:`count_tm_segments`) and ``signal_peptide``
        (0 or 1).
    """
    clean, n_removed = clean_sequence(sequence)
    segments = transmembrane_segments(clean)
    signal_peptide = has_signal_peptide(clean)
    return {
        "length": len(sequence),
        "n_nonstandard": n_removed,
        "net_charge": net_charge(clean, 7.0),
        "isoelectric_point": isoelectric_point(clean),
        "gravy": gravy(clean),
        "aromaticity": aromaticity(clean),
        **residue_fractions(clean),
        "kd_segments": len(segments),
        "tm_segments": count_tm_segments(segments, signal_peptide),
        "signal_peptide": int(signal_peptide),
    }


def biopython_properties(sequence):
    """Molecular weight (Da, average masses) and instability index via Biopython.

    Parameters
    ----------
    sequence : str
        A cleaned, non-empty protein sequence.

    Returns
    -------
    dict
        ``molecular_weight`` and ``instability_index``.
    """
    from Bio.SeqUtils.ProtParam import ProteinAnalysis

    analysis = ProteinAnalysis(sequence)
    return {
        "molecular_weight": analysis.molecular_weight(),
        "instability_index": analysis.instability_index(),
    }


# --------------------------------------------------------------------------
# Classes that depend on the whole set
# --------------------------------------------------------------------------


def quantile_classes(values, names):
    """Bin ``values`` into ``len(names)`` equal-frequency classes.

    Parameters
    ----------
    values : array-like of shape (n,)
    names : sequence of str
        Class names from the lowest to the highest bin.

    Returns
    -------
    classes : ndarray of shape (n,), dtype=object
    cuts : ndarray of shape (len(names) - 1,)
        Upper bounds of every bin but the last; a value equal to a cut goes
        to the lower bin.
    """
    values = np.asarray(values, dtype=float)
    cuts = np.quantile(values, np.arange(1, len(names)) / len(names))
    return np.asarray(names, dtype=object)[np.searchsorted(cuts, values, side="left")], cuts


def top_fraction_flag(values, quantile=RICH_QUANTILE):
    """Flag (0 or 1) the values strictly above the ``quantile`` quantile.

    Parameters
    ----------
    values : array-like of shape (n,)
    quantile : float, default=0.9

    Returns
    -------
    flags : ndarray of shape (n,), dtype=int
    cut : float
    """
    values = np.asarray(values, dtype=float)
    cut = float(np.quantile(values, quantile))
    return (values > cut).astype(int), cut


def add_classes(table):
    """Add the categorical label columns to ``table`` and return the rules used.

    Parameters
    ----------
    table : pandas.DataFrame
        The numeric columns of :func:`property_table`.

    Returns
    -------
    table : pandas.DataFrame
        A copy with the :data:`CLASS_COLUMNS` added.
    rules : dict
        Class column -> the cut values it was binned with.
    """
    table = table.copy()
    rules = {}
    for value_column, class_column, names in TERTILE_CLASSES:
        table[class_column], cuts = quantile_classes(table[value_column], names)
        rules[class_column] = cuts.tolist()
    table["charge_class"] = [charge_class(pi) for pi in table["isoelectric_point"]]
    rules["charge_class"] = list(NEUTRAL_PI)
    table["stability_class"] = np.where(table["instability_index"] > INSTABILITY_CUTOFF, "unstable", "stable")
    rules["stability_class"] = [INSTABILITY_CUTOFF]
    for value_column, flag_column in RICH_FLAGS:
        table[flag_column], cut = top_fraction_flag(table[value_column])
        rules[flag_column] = [cut]
    table["tm_class"] = [tm_class(n) for n in table["tm_segments"]]
    rules["tm_class"] = [1, 2]
    return table, rules


# --------------------------------------------------------------------------
# The whole table
# --------------------------------------------------------------------------


def property_table(accessions, sequences):
    """Numeric properties of every protein, one row each, in the order given.

    Parameters
    ----------
    accessions : sequence of str
    sequences : sequence of str

    Returns
    -------
    pandas.DataFrame
    """
    rows = []
    for sequence in sequences:
        row = sequence_properties(sequence)
        row.update(biopython_properties(clean_sequence(sequence)[0]))
        rows.append(row)
    table = pd.DataFrame(rows)
    table.insert(0, "accession", list(accessions))
    return table


def output_columns():
    """Column order of the CSV: key, numeric values, then the class labels."""
    numeric = [
        "length",
        "molecular_weight",
        "net_charge",
        "isoelectric_point",
        "gravy",
        "aromaticity",
        "instability_index",
        *[f"frac_{name}" for name in RESIDUE_CLASSES],
        "kd_segments",
        "tm_segments",
        "n_nonstandard",
    ]
    return ["accession", *numeric, *CLASS_COLUMNS]


def align_to_labels(accessions, sequences, labels_path):
    """Order the sequences like ``labels_path`` and check that they match it.

    Parameters
    ----------
    accessions, sequences : sequence of str
        SCL2205 as read from ``p-scldata``.
    labels_path : path-like
        ``per-protein.labels.csv``.

    Returns
    -------
    accessions, sequences : list of str
        In the labels file's order.

    Raises
    ------
    ValueError
        If a protein of the labels file has no sequence, or its length
        differs from the one recorded there.
    """
    labels = pd.read_csv(labels_path, usecols=["accession", "length"])
    sequence_of = dict(zip(accessions, sequences))
    missing = [acc for acc in labels["accession"] if acc not in sequence_of]
    if missing:
        raise ValueError(f"{len(missing)} proteins of {labels_path} have no sequence, e.g. {missing[:5]}")
    ordered = [sequence_of[acc] for acc in labels["accession"]]
    wrong = [acc for acc, seq, n in zip(labels["accession"], ordered, labels["length"]) if len(seq) != n]
    if wrong:
        raise ValueError(f"{len(wrong)} sequence lengths differ from {labels_path}, e.g. {wrong[:5]}")
    return labels["accession"].tolist(), ordered


def round_values(table):
    """Round the numeric columns to :data:`DECIMALS` places.

    The classes are binned from the rounded values, so that the documented
    rules reproduce them exactly from the shipped numbers.
    """
    table = table.round(DECIMALS)
    for column, decimals in DECIMALS.items():
        if decimals == 0:
            table[column] = table[column].astype(int)
    return table


def write_table(table, out):
    """Write the :func:`output_columns` of ``table`` to ``out`` (CSV, Unix newlines)."""
    out.parent.mkdir(parents=True, exist_ok=True)
    table[output_columns()].to_csv(out, index=False, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)


def _load_sequences():
    # build_scl2205 sits beside this script; reuse its reader so that both
    # files see SCL2205 the same way.
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from build_scl2205 import load_scl2205

    accessions, sequences, _, _ = load_scl2205()
    return accessions, sequences


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("data/per-protein.properties.csv"))
    parser.add_argument("--labels", type=Path, default=Path("data/per-protein.labels.csv"))
    args = parser.parse_args(argv)

    started = time.perf_counter()
    accessions, sequences = align_to_labels(*_load_sequences(), args.labels)
    table, rules = add_classes(round_values(property_table(accessions, sequences)))
    write_table(table, args.out)
    for column, cuts in rules.items():
        print(f"{column}: cuts {', '.join(f'{cut:g}' for cut in cuts)}")
    print(f"wrote {len(table)} proteins to {args.out} in {time.perf_counter() - started:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
