"""Tests of scripts/build_protein_properties.py and the CSV it shipped.

The shipped table is checked against ``per-protein.labels.csv`` and against
its own binning rules; the script's pure functions are checked on sequences
whose values were worked out by hand. Neither needs ``p-scldata``; the few
tests that need Biopython skip without it.
"""

import importlib.util
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "build_protein_properties.py"
PROPERTIES = ROOT / "data" / "per-protein.properties.csv"
LABELS = ROOT / "data" / "per-protein.labels.csv"


def _load_script():
    spec = importlib.util.spec_from_file_location("build_protein_properties", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bpp = _load_script()

# A hydrophilic spacer: mean Kyte-Doolittle value about -3.3.
LOOP = "DEKRSN" * 10


@pytest.fixture(scope="module")
def properties():
    # Class columns are strings ("0", "1", "2+" included); flags stay ints.
    dtype = {column: str for column in bpp.CLASS_COLUMNS if column.endswith("_class")}
    return pd.read_csv(PROPERTIES, dtype=dtype, keep_default_na=False, na_values=[""])


@pytest.fixture(scope="module")
def labels():
    return pd.read_csv(LABELS)


# --------------------------------------------------------------------------
# The shipped CSV
# --------------------------------------------------------------------------


def test_one_row_per_labelled_protein_in_the_same_order(properties, labels):
    assert properties["accession"].tolist() == labels["accession"].tolist()


def test_columns_are_the_documented_ones(properties):
    assert properties.columns.tolist() == bpp.output_columns()


def test_length_agrees_with_labels(properties, labels):
    np.testing.assert_array_equal(properties["length"], labels["length"])


def test_no_missing_values(properties):
    assert not properties.isna().any().any()


@pytest.mark.parametrize("column", bpp.CLASS_COLUMNS)
def test_every_class_has_reasonable_support(properties, column):
    counts = properties[column].value_counts()
    assert len(counts) >= 2
    # The rarest class of any column holds about 10% of the proteins.
    assert counts.min() >= 0.05 * len(properties)


def test_value_ranges(properties):
    fractions = properties[[f"frac_{name}" for name in bpp.RESIDUE_CLASSES] + ["aromaticity"]]
    assert ((fractions >= 0) & (fractions <= 1)).all().all()
    assert properties["isoelectric_point"].between(0, 14).all()
    assert properties["gravy"].between(-4.5, 4.5).all()
    # Average residue masses lie between Gly (57 Da) and Trp (186 Da).
    ratio = properties["molecular_weight"] / properties["length"]
    assert ratio.between(57, 187).all()
    assert (properties["tm_segments"] <= properties["kd_segments"]).all()
    assert (properties["kd_segments"] - properties["tm_segments"] <= properties["signal_peptide"]).all()


def test_fixed_rule_classes_follow_their_values(properties):
    expected_tm = [bpp.tm_class(n) for n in properties["tm_segments"]]
    assert properties["tm_class"].tolist() == expected_tm
    expected_charge = [bpp.charge_class(pi) for pi in properties["isoelectric_point"]]
    assert properties["charge_class"].tolist() == expected_charge
    unstable = properties["instability_index"] > bpp.INSTABILITY_CUTOFF
    assert (properties["stability_class"] == np.where(unstable, "unstable", "stable")).all()


@pytest.mark.parametrize(("value_column", "class_column", "names"), bpp.TERTILE_CLASSES)
def test_quantile_classes_are_ordered_bins(properties, value_column, class_column, names):
    values = properties.groupby(class_column)[value_column]
    highs, lows = values.max(), values.min()
    for lower, upper in itertools.pairwise(names):
        assert highs[lower] <= lows[upper]
    shares = properties[class_column].value_counts(normalize=True)
    assert shares.between(0.3, 0.37).all()


@pytest.mark.parametrize(("value_column", "flag_column"), bpp.RICH_FLAGS)
def test_rich_flags_mark_the_top_decile(properties, value_column, flag_column):
    flagged = properties[flag_column] == 1
    assert properties.loc[flagged, value_column].min() > properties.loc[~flagged, value_column].max()
    assert 0.05 <= flagged.mean() <= 0.1


def test_membrane_proteins_have_most_predicted_helices(properties, labels):
    # The biological sanity check of the hydropathy scan: SCL2205's
    # membrane proteins should carry far more predicted TM segments.
    mean_tm = properties["tm_segments"].groupby(labels["location"]).mean()
    assert mean_tm["Membrane"] > 5 * max(mean_tm["Secreted"], mean_tm["Cytoplasm"], mean_tm["Nucleus"])
    signal = properties["signal_peptide"].groupby(labels["location"]).mean()
    assert signal["Secreted"] > 5 * max(signal["Cytoplasm"], signal["Nucleus"])


def test_file_is_small():
    assert PROPERTIES.stat().st_size < 4 * 2**20


# --------------------------------------------------------------------------
# Per-sequence functions, against hand calculations
# --------------------------------------------------------------------------


def test_clean_sequence_drops_non_standard_letters():
    assert bpp.clean_sequence("mAXUBZC") == ("MAC", 4)


def test_residue_fractions():
    fractions = bpp.residue_fractions("CCPGDKLA")
    assert fractions == {
        "frac_cys": 2 / 8,
        "frac_pro": 1 / 8,
        "frac_gly": 1 / 8,
        "frac_charged": 2 / 8,
        "frac_hydrophobic": 2 / 8,
    }


def test_gravy_and_aromaticity():
    # (1.8 + 2.5 - 3.5 - 3.9) / 4
    assert bpp.gravy("ACDK") == pytest.approx(-0.775)
    assert bpp.aromaticity("FWYAAAAA") == pytest.approx(3 / 8)


def test_net_charge_at_ph_7():
    # GKDG: N-terminus (pK 7.5) and Lys (10.0) against the C-terminus (3.55)
    # and Asp (4.05): 0.759747 + 0.999001 - 0.999645 - 0.998879.
    assert bpp.net_charge("GKDG", 7.0) == pytest.approx(-0.239776, abs=1e-5)


def test_net_charge_uses_terminal_specific_pks():
    # An N-terminal Ala has pK 7.59 instead of 7.5: 1 / (1 + 10**-0.59).
    assert bpp.net_charge("AG", 7.0) - bpp.net_charge("GG", 7.0) == pytest.approx(0.795520 - 0.759747, abs=1e-5)


def test_isoelectric_point():
    # With the C-terminus fully charged, GGKGG is neutral halfway between the
    # pKs of its N-terminus (7.5) and of Lys (10.0).
    assert bpp.isoelectric_point("GGKGG") == pytest.approx(8.75, abs=1e-3)
    # No pK floor: pure Asp focuses below Asp's own pK.
    assert bpp.isoelectric_point("DDDD") < 4.05
    for sequence in ("GKDG", "ACDEFGHIKLMNPQRSTVWY", "RRRR"):
        assert bpp.net_charge(sequence, bpp.isoelectric_point(sequence)) == pytest.approx(0, abs=1e-3)


def test_hydropathy_profile_is_the_window_mean():
    profile = bpp.hydropathy_profile("ILKA", 2)
    np.testing.assert_allclose(profile, [(4.5 + 3.8) / 2, (3.8 - 3.9) / 2, (-3.9 + 1.8) / 2])
    assert bpp.hydropathy_profile("ILK", 19).size == 0


def test_poly_leu_stretch_is_one_tm_segment():
    sequence = LOOP + "L" * 25 + LOOP
    (segment,) = bpp.transmembrane_segments(sequence)
    # Every window holding at least 14 Leu clears the 1.6 threshold.
    assert segment == (60 + 14 - 19, 85 - 14 + 19)


def test_two_stretches_are_two_segments_and_a_loop_none():
    sequence = LOOP + "L" * 22 + LOOP + "IVLFAVLIVLAVIFLVAVL" + LOOP
    assert len(bpp.transmembrane_segments(sequence)) == 2
    assert bpp.transmembrane_segments(LOOP * 3) == []
    assert bpp.transmembrane_segments("L" * 18) == []


def test_signal_peptide_heuristic():
    # The signal peptide of human preproinsulin, then a hydrophilic body.
    assert bpp.has_signal_peptide("MALWMRLLPLLALLALWGPDPAAA" + LOOP)
    assert not bpp.has_signal_peptide("M" + LOOP)
    # A hydrophobic stretch far from the N-terminus is no signal peptide.
    assert not bpp.has_signal_peptide("M" + LOOP + "L" * 20)
    assert not bpp.has_signal_peptide("MLLL")


def test_signal_peptide_core_is_not_a_tm_segment():
    assert bpp.count_tm_segments([(3, 30), (80, 105)], True) == 1
    assert bpp.count_tm_segments([(3, 30), (80, 105)], False) == 2
    # A first segment reaching past the signal peptide region still counts.
    assert bpp.count_tm_segments([(10, 45)], True) == 1
    assert bpp.count_tm_segments([], True) == 0


def test_sequence_properties_of_a_type_i_membrane_protein():
    # Signal peptide, a hydrophilic ectodomain, one Leu helix, a tail.
    sequence = "MKKLLLLLLLLLLLLLLSAQA" + LOOP + "L" * 22 + LOOP
    values = bpp.sequence_properties(sequence)
    assert values["length"] == len(sequence)
    assert values["signal_peptide"] == 1
    assert values["kd_segments"] == 2
    assert values["tm_segments"] == 1


def test_class_rules():
    assert [bpp.tm_class(n) for n in (0, 1, 2, 7)] == ["0", "1", "2+", "2+"]
    assert [bpp.charge_class(pi) for pi in (4.0, 6.5, 7.0, 7.5, 9.0)] == [
        "acidic",
        "neutral",
        "neutral",
        "neutral",
        "basic",
    ]


def test_quantile_classes_put_ties_in_the_lower_bin():
    classes, cuts = bpp.quantile_classes([1, 2, 3, 4, 5, 6, 7, 8, 9], ("low", "mid", "high"))
    assert classes.tolist() == ["low"] * 3 + ["mid"] * 3 + ["high"] * 3
    np.testing.assert_allclose(cuts, [11 / 3, 19 / 3])
    classes, _ = bpp.quantile_classes([1, 1, 1, 1, 2, 3], ("low", "high"))
    assert classes.tolist() == ["low"] * 4 + ["high"] * 2


def test_top_fraction_flag():
    flags, cut = bpp.top_fraction_flag(np.arange(1, 11))
    assert flags.tolist() == [0] * 9 + [1]
    assert cut == pytest.approx(9.1)


def test_align_to_labels_orders_and_checks(tmp_path):
    path = tmp_path / "labels.csv"
    pd.DataFrame({"accession": ["B", "A"], "length": [2, 3]}).to_csv(path, index=False)
    assert bpp.align_to_labels(["A", "B"], ["MKL", "MK"], path) == (["B", "A"], ["MK", "MKL"])
    with pytest.raises(ValueError, match="no sequence"):
        bpp.align_to_labels(["A"], ["MKL"], path)
    with pytest.raises(ValueError, match="lengths differ"):
        bpp.align_to_labels(["A", "B"], ["MKL", "MKLV"], path)


# --------------------------------------------------------------------------
# Biopython
# --------------------------------------------------------------------------


def _protparam():
    return pytest.importorskip(
        "Bio.SeqUtils.ProtParam", reason="biopython is only needed to rebuild the CSV (the [data] extra)"
    )


def test_biopython_properties():
    _protparam()
    values = bpp.biopython_properties("GG")
    # Two Gly (75.07 Da each) joined by one peptide bond (-18.02 Da).
    assert values["molecular_weight"] == pytest.approx(2 * 75.0666 - 18.0153, abs=0.01)
    assert set(values) == {"molecular_weight", "instability_index"}


@pytest.mark.parametrize("sequence", ["PETER", "INGAR", "GKDG", "ACDEFGHIKLMNPQRSTVWY", "MALWMRLLPLLALLALWGPDPAAA"])
def test_own_values_agree_with_biopython(sequence):
    protein = _protparam().ProteinAnalysis(sequence)
    assert bpp.net_charge(sequence, 7.0) == pytest.approx(protein.charge_at_pH(7.0), abs=1e-9)
    assert bpp.isoelectric_point(sequence) == pytest.approx(protein.isoelectric_point(), abs=1e-3)
    assert bpp.gravy(sequence) == pytest.approx(protein.gravy(), abs=1e-12)
    assert bpp.aromaticity(sequence) == pytest.approx(protein.aromaticity(), abs=1e-12)
