"""sklearn_sae.interpret: latent statistics, label encoding, label associations and the held-out protocol.

Every statistic is checked against the scikit-learn or SciPy function that
defines it, on random codes with ties, in every input format.
"""

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.stats import false_discovery_control, fisher_exact, hypergeom
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score, precision_score, recall_score, roc_auc_score

from sklearn_sae.interpret import (
    LatentLabelMatcher,
    encode_labels,
    label_associations,
    latent_scale,
    latent_stats,
    split_signs,
    split_signs_names,
)

THRESHOLDS = (0.0, 0.15, 0.5, 0.6, 0.8)


def _random_codes(n_rows=300, n_latents=8, density=0.3, seed=0):
    """Non-negative codes rounded to one decimal (many ties), with a dead latent and a single-shot one."""
    rng = np.random.default_rng(seed)
    codes = np.round(rng.gamma(2.0, 0.5, size=(n_rows, n_latents)), 1) * (rng.random((n_rows, n_latents)) < density)
    codes[:, 1] = 0.0  # never fires
    codes[:, 2] = 0.0
    codes[7, 2] = 3.0  # fires once
    codes[:, 4] = codes[:, 4] * 10 + (codes[:, 4] > 0) * 5  # another scale
    return codes


def _random_classes(n_rows=300, seed=1):
    rng = np.random.default_rng(seed)
    classes = rng.choice(np.array(["cytoplasm", "membrane", "nucleus"], dtype=object), size=n_rows)
    classes[rng.random(n_rows) < 0.1] = None  # unannotated: negative for every class
    return classes


def _dense_prediction(column, scale, threshold):
    return column > 0 if threshold == 0 else column / scale > threshold


@pytest.fixture(scope="module")
def problem():
    codes = _random_codes()
    classes = _random_classes()
    return codes, classes, label_associations(sp.csr_matrix(codes), classes)


# --------------------------------------------------------------------------- exactness


def test_every_statistic_matches_scikit_learn_and_scipy(problem):
    codes, classes, table = problem
    n_rows = codes.shape[0]
    scale = latent_scale(codes)
    assert len(table) == codes.shape[1] * 3 * len(THRESHOLDS)
    assert list(table.columns[:13]) == [
        "latent", "label", "threshold", "n_pos", "n_active", "tp", "precision", "recall", "f1",
        "fold_enrichment", "auroc", "pvalue", "qvalue",
    ]  # fmt: skip
    for row in table.itertuples():
        y = classes == row.label
        z = codes[:, row.latent]
        predicted = _dense_prediction(z, scale[row.latent], row.threshold)
        assert (row.n_pos, row.n_active, row.tp) == (y.sum(), predicted.sum(), (y & predicted).sum())
        assert row.precision == pytest.approx(precision_score(y, predicted, zero_division=0), abs=1e-12)
        assert row.recall == pytest.approx(recall_score(y, predicted), abs=1e-12)
        assert row.f1 == pytest.approx(f1_score(y, predicted, zero_division=0), abs=1e-12)
        assert row.fold_enrichment == pytest.approx(row.precision / (y.sum() / n_rows), abs=1e-12)
        assert row.auroc == pytest.approx(roc_auc_score(y, z), abs=1e-12)
        contingency = [
            [row.tp, row.n_active - row.tp],
            [row.n_pos - row.tp, n_rows - row.n_active - row.n_pos + row.tp],
        ]
        assert row.pvalue == pytest.approx(fisher_exact(contingency, alternative="greater").pvalue, rel=1e-9)
    for _, family in table.groupby("threshold"):
        np.testing.assert_allclose(family["qvalue"], false_discovery_control(family["pvalue"]), rtol=1e-12)


def test_dead_latent_has_chance_auroc_and_zero_precision(problem):
    _, _, table = problem
    dead = table[table["latent"] == 1]
    assert (dead["auroc"] == 0.5).all() and (dead["n_active"] == 0).all()
    assert (dead["precision"] == 0).all() and (dead["pvalue"] == 1).all()


def test_pvalues_for_large_counts_match_scipy():
    # 120,000 rows: the regime where SciPy switches method; counts in the thousands.
    rng = np.random.default_rng(5)
    n_rows = 120_000
    labels = rng.random((n_rows, 2)) < [0.02, 0.3]
    active = np.column_stack(
        [
            (rng.random(n_rows) < 0.01) | (labels[:, 0] & (rng.random(n_rows) < 0.2)),
            rng.random(n_rows) < 0.2,
            labels[:, 1] & (rng.random(n_rows) < 0.1),
        ]
    )
    table = label_associations(sp.csc_matrix(active.astype(np.float32)), labels, thresholds=0.0)
    expected = hypergeom.sf(table["tp"] - 1, n_rows, table["n_pos"], table["n_active"])
    assert table["pvalue"].min() < 1e-100  # a strongly enriched pair is among them
    np.testing.assert_allclose(table["pvalue"], expected, rtol=1e-8)


def test_every_code_format_gives_the_identical_table(problem):
    codes, classes, reference = problem
    for converted in (
        codes,
        sp.csc_matrix(codes),
        sp.coo_matrix(codes),
        sp.csr_array(codes),
        sp.coo_array(codes),
        pd.DataFrame(codes),
    ):
        pd.testing.assert_frame_equal(label_associations(converted, classes), reference)


def test_explicit_zeros_and_duplicates_are_handled_and_the_input_is_left_alone():
    codes = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
    coo = sp.coo_matrix(
        (np.array([0.5, 0.5, 0.0, 2.0, 0.5, 1.0]), (np.array([0, 0, 0, 1, 2, 3]), np.array([1, 1, 0, 0, 1, 0]))),
        shape=(4, 2),
    )
    csc = coo.tocsc(copy=True)
    csc.data[csc.data == 0.5] = 0.0  # an explicit zero inside a CSC matrix too
    data_before = csc.data.copy()
    labels = ["a", "b", "a", "b"]
    pd.testing.assert_frame_equal(label_associations(coo, labels), label_associations(codes, labels))
    label_associations(csc, labels)
    np.testing.assert_array_equal(csc.data, data_before)


# --------------------------------------------------------------------------- labels


def test_multi_label_indicators_in_every_form_name_their_labels():
    codes = _random_codes(seed=3)
    rng = np.random.default_rng(4)
    dense = rng.random((codes.shape[0], 3)) < [0.2, 0.4, 0.1]
    names = ["kinase", "transmembrane", "signal peptide"]
    reference = label_associations(codes, dense)
    assert set(reference["label"]) == {0, 1, 2}
    for form in (dense.astype(int), sp.csr_matrix(dense), sp.coo_array(dense.astype(float))):
        pd.testing.assert_frame_equal(label_associations(codes, form), reference)
    named = label_associations(codes, pd.DataFrame(dense, columns=names))
    assert set(named["label"]) == set(names)
    renamed = reference.assign(label=[names[i] for i in reference["label"]])
    pd.testing.assert_frame_equal(named, renamed)
    as_ints = label_associations(codes, pd.DataFrame(dense.astype(np.int8), columns=names))
    pd.testing.assert_frame_equal(as_ints, named)


def test_encode_labels_one_vs_rest_with_missing_values():
    indicator, names = encode_labels(pd.Series(["b", None, "a", np.nan, "b", pd.NA, "c"]))
    assert sp.issparse(indicator) and indicator.format == "csc" and indicator.dtype == bool
    assert list(names) == ["a", "b", "c"]
    expected = np.zeros((7, 3), dtype=bool)
    expected[[2], 0] = expected[[0, 4], 1] = expected[[6], 2] = True
    np.testing.assert_array_equal(indicator.toarray(), expected)
    ordered = pd.Categorical(["lo", "hi", "mid", "hi"], categories=["lo", "mid", "hi", "unused"])
    assert list(encode_labels(ordered)[1]) == ["lo", "mid", "hi"]  # category order; unused left out
    assert list(encode_labels([2, "x", 2, "y"])[1]) == [2, "x", "y"]  # incomparable: order of appearance


def test_encode_labels_multi_label_forms():
    dense = np.array([[1, 0], [0, 1], [1, 1], [0, 0]])
    for form in (dense, dense.astype(bool), dense.astype(float), sp.csr_matrix(dense), sp.coo_array(dense)):
        indicator, names = encode_labels(form)
        np.testing.assert_array_equal(indicator.toarray(), dense.astype(bool))
        assert list(names) == [0, 1]
    frame = pd.DataFrame({"x": [True, False, True, False], "y": pd.array([0, 1, 1, 0], dtype="Int64")})
    indicator, names = encode_labels(frame)
    np.testing.assert_array_equal(indicator.toarray(), dense.astype(bool))
    assert list(names) == ["x", "y"]


# --------------------------------------------------------------------------- options


def test_top_n_keeps_the_best_latents_and_leaves_qvalues_unchanged(problem):
    codes, classes, full = problem
    top = label_associations(codes, classes, top_n=2)
    assert len(top) == 3 * len(THRESHOLDS) * 2
    keys = ["latent", "label", "threshold"]
    merged = top.merge(full, on=keys, suffixes=("", "_full"))
    assert len(merged) == len(top)
    np.testing.assert_array_equal(merged["qvalue"], merged["qvalue_full"])
    for (label, threshold), group in full.groupby(["label", "threshold"]):
        best = group.sort_values(["f1", "latent"], ascending=[False, True]).head(2)
        kept = top[(top["label"] == label) & (top["threshold"] == threshold)]
        assert sorted(kept["latent"]) == sorted(best["latent"])


def test_top_n_breaks_ties_towards_the_lower_latent():
    column = np.array([1.0, 0, 1, 0, 1, 0])
    codes = np.column_stack([column * 0.0 + [0, 1, 0, 0, 0, 0], column, column, column])  # latents 1-3 are equal
    table = label_associations(codes, column.astype(bool)[:, None], top_n=2, thresholds=0.0)
    assert list(table["latent"]) == [1, 2]


def test_sorting_and_sort_by(problem):
    codes, classes, full = problem
    assert full["f1"].is_monotonic_decreasing
    by_p = label_associations(codes, classes, sort_by="pvalue")
    assert by_p["pvalue"].is_monotonic_increasing
    unsorted = label_associations(codes, classes, sort=False)
    assert list(unsorted["threshold"].iloc[[0, -1]]) == [0.0, 0.8]
    assert unsorted["threshold"].is_monotonic_increasing
    keys = ["latent", "label", "threshold"]
    pd.testing.assert_frame_equal(
        unsorted.sort_values(keys).reset_index(drop=True), full.sort_values(keys).reset_index(drop=True)
    )


def test_min_support_drops_rare_labels():
    codes = _random_codes(seed=6)
    labels = np.zeros((codes.shape[0], 2), dtype=bool)
    labels[:4, 0] = True
    labels[::3, 1] = True
    table = label_associations(codes, pd.DataFrame(labels, columns=["rare", "common"]), min_support=5)
    assert set(table["label"]) == {"common"}
    assert len(table) == codes.shape[1] * len(THRESHOLDS)
    assert label_associations(codes, labels, min_support=1000).empty


def test_scale_from_another_split_moves_the_thresholds():
    codes = np.array([[1.0], [2.0], [3.0], [4.0], [0.0], [0.0]])
    labels = np.array([[0], [0], [1], [1], [0], [1]])
    own = label_associations(codes, labels, thresholds=0.5)
    assert own["n_active"].item() == 2  # 3 and 4 are above half of 4
    other = label_associations(codes, labels, thresholds=0.5, scale=[8.0])
    assert other["n_active"].item() == 0  # nothing above half of 8
    assert own["auroc"].item() == other["auroc"].item()


# --------------------------------------------------------------------------- latent statistics


def test_latent_stats_matches_a_dense_computation():
    codes = _random_codes(seed=7)
    for form in (codes, sp.coo_matrix(codes), sp.csr_array(codes.astype(np.float32))):
        stats = latent_stats(form)
        assert stats.index.name == "latent" and len(stats) == codes.shape[1]
        active = codes > 0
        np.testing.assert_array_equal(stats["n_active"], active.sum(axis=0))
        np.testing.assert_allclose(stats["density"], active.mean(axis=0))
        np.testing.assert_allclose(stats["max"], codes.max(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats["mean"], codes.mean(axis=0), rtol=1e-6)
        np.testing.assert_allclose(stats["std"], codes.std(axis=0), rtol=1e-5)
        with np.errstate(invalid="ignore"):
            expected = np.where(active, codes, 0).sum(axis=0) / active.sum(axis=0)
        np.testing.assert_allclose(stats["mean_active"], expected, rtol=1e-6)
        assert np.isnan(stats.loc[1, "mean_active"]) and stats.loc[2, "mean_active"] == 3.0


def test_latent_scale_is_the_maximum_and_one_for_dead_latents():
    codes = _random_codes(seed=8)
    scale = latent_scale(sp.csr_matrix(codes))
    expected = codes.max(axis=0)
    expected[1] = 1.0
    np.testing.assert_array_equal(scale, expected)


def test_split_signs_and_its_names():
    X = np.array([[1.5, -2.0], [-0.5, 0.0]])
    expected = np.array([[1.5, 0.0, 0.0, 2.0], [0.0, 0.0, 0.5, 0.0]])
    np.testing.assert_array_equal(split_signs(X), expected)
    np.testing.assert_array_equal(split_signs(sp.csr_matrix(X)).toarray(), expected)
    assert split_signs_names(2) == ["x0+", "x1+", "x0-", "x1-"]
    assert split_signs_names(["a", "b"]) == ["a+", "b+", "a-", "b-"]
    label_associations(split_signs(X), ["u", "v"])  # now accepted


# --------------------------------------------------------------------------- the held-out protocol


def _planted_split(seed):
    """Latent 3 marks label A (recall ~0.95, few false positives); label shuffled is random."""
    rng = np.random.default_rng(seed)
    n_rows, n_latents = 1500, 8
    codes = rng.gamma(2.0, 0.5, size=(n_rows, n_latents)) * (rng.random((n_rows, n_latents)) < 0.25)
    is_a = rng.random(n_rows) < 0.2
    codes[:, 3] = (is_a & (rng.random(n_rows) < 0.95)) * rng.uniform(1.0, 2.0, n_rows)
    codes[:, 3] += (~is_a & (rng.random(n_rows) < 0.02)) * rng.uniform(0.0, 0.1, n_rows)
    shuffled = rng.random(n_rows) < 0.3
    labels = pd.DataFrame({"A": is_a, "shuffled": shuffled})
    return sp.csr_matrix(codes), labels


def test_held_out_protocol_finds_the_planted_latent_and_not_the_random_label():
    fit_codes, fit_labels = _planted_split(10)
    test_codes, test_labels = _planted_split(11)
    matcher = LatentLabelMatcher().fit(fit_codes, fit_labels)
    assert list(matcher.label_names_) == ["A", "shuffled"]
    np.testing.assert_array_equal(matcher.scale_, latent_scale(fit_codes))
    assert matcher.matches_.loc["A", "latent"] == 3 and matcher.matches_.loc["A", "f1"] > 0.8
    result = matcher.evaluate(test_codes, test_labels)
    assert result.loc["A", "latent"] == 3 and result.loc["A", "f1"] > 0.8 and result.loc["A", "associated"]
    random = result.loc["shuffled"]
    density = random["n_active"] / test_codes.shape[0]
    base_rate = random["n_pos"] / test_codes.shape[0]
    chance_f1 = 2 * density * base_rate / (density + base_rate)  # F1 of an unrelated detector
    assert not random["associated"]
    assert abs(random["f1"] - chance_f1) < 0.06
    assert abs(random["auroc"] - 0.5) < 0.06


def test_evaluate_scores_with_the_fit_scale_like_scikit_learn():
    fit_codes, fit_labels = _planted_split(12)
    test_codes, test_labels = _planted_split(13)
    matcher = LatentLabelMatcher(thresholds=(0.0, 0.5)).fit(fit_codes, fit_labels)
    result = matcher.evaluate(test_codes, test_labels[["shuffled", "A"]])  # column order does not matter
    dense = test_codes.toarray()
    for label, row in result.iterrows():
        y = test_labels[label].to_numpy()
        z = dense[:, row["latent"]]
        predicted = _dense_prediction(z, matcher.scale_[row["latent"]], row["threshold"])
        assert row["f1"] == pytest.approx(f1_score(y, predicted), abs=1e-12)
        assert row["precision"] == pytest.approx(precision_score(y, predicted, zero_division=0), abs=1e-12)
        assert row["recall"] == pytest.approx(recall_score(y, predicted), abs=1e-12)
        assert row["auroc"] == pytest.approx(roc_auc_score(y, z), abs=1e-12)
        assert row["fit_f1"] == matcher.matches_.loc[label, "f1"]
    np.testing.assert_allclose(result["qvalue"], false_discovery_control(result["pvalue"]))


def test_best_match_ties_go_to_the_lowest_latent_then_the_lowest_threshold():
    y = np.array([1, 1, 0, 0, 1, 0], dtype=bool)
    column = y * 1.0
    codes = np.column_stack([np.zeros(6), column, column, column])
    matcher = LatentLabelMatcher().fit(codes, pd.DataFrame({"y": y}))
    assert matcher.matches_.loc["y", "latent"] == 1
    assert matcher.matches_.loc["y", "threshold"] == 0.0
    assert matcher.matches_.loc["y", "f1"] == 1.0


def test_matcher_categorical_labels_and_missing_classes():
    codes = _random_codes(seed=14)
    classes = _random_classes(seed=15)
    matcher = LatentLabelMatcher(min_support=5).fit(codes, classes)
    assert list(matcher.label_names_) == ["cytoplasm", "membrane", "nucleus"]
    fewer = np.where(classes == "nucleus", None, classes)
    with pytest.raises(ValueError, match=r"lack 1 label\(s\) seen at fit: \['nucleus'\]"):
        matcher.evaluate(codes, fewer)
    with pytest.raises(ValueError, match="has 3 latents but the matcher was fit on 8"):
        matcher.evaluate(codes[:, :3], classes)


# --------------------------------------------------------------------------- errors


CODES = np.array([[0.0, 1.0], [2.0, 0.0], [0.0, 0.5], [1.0, 0.0]])
LABELS = ["a", "b", "a", "b"]


@pytest.mark.parametrize(
    ("codes", "labels", "options", "error", "match"),
    [
        (CODES, LABELS[:3], {}, ValueError, "labels describe 3 proteins but codes has 4 rows"),
        (-CODES, LABELS, {}, ValueError, "non-negative.*split_signs"),
        (CODES * np.nan, LABELS, {}, ValueError, "NaN"),
        (sp.csr_matrix(np.where(CODES > 1, np.inf, CODES)), LABELS, {}, ValueError, "infinite"),
        (CODES[:, 0], LABELS, {}, ValueError, "2-D"),
        (CODES[None], LABELS, {}, ValueError, "2-D"),
        (CODES.astype(str), LABELS, {}, TypeError, "real numbers"),
        (CODES[:0], [], {}, ValueError, "no rows"),
        (CODES, ["a"] * 4, {}, ValueError, r"single class .*\['a'\]"),
        (CODES, np.array([[1, 0], [1, 1], [1, 0], [1, 1]]), {}, ValueError, r"single class .*\[0\]"),
        (CODES, [None] * 4, {}, ValueError, "only missing values"),
        (CODES, np.array([[1.0], [np.nan], [0.0], [0.0]]), {}, ValueError, "missing values"),
        (CODES, pd.DataFrame({"k": [1, None, 0, 0]}), {}, ValueError, "label 'k' has missing values"),
        (CODES, sp.csr_matrix(np.array([[1.0], [np.nan], [0], [0]])), {}, ValueError, "NaN in column 0"),
        (CODES, np.array([[1], [2], [0], [0]]), {}, ValueError, "only 0/1 .* found 2"),
        (CODES, sp.csr_matrix(np.array([[1], [0.5], [0], [0]])), {}, ValueError, "only 0 and 1"),
        (CODES, pd.DataFrame({"loc": ["x", "y", "x", "y"]}), {}, ValueError, "'loc' must hold only 0/1"),
        (CODES, pd.DataFrame([[1, 0], [0, 1], [1, 0], [0, 1]], columns=["d", "d"]), {}, ValueError, "duplicated"),
        (CODES, np.zeros((4, 1, 1)), {}, ValueError, "1-D .* or 2-D"),
        (CODES, np.zeros((4, 0)), {}, ValueError, "no label column"),
        (CODES, LABELS, {"scale": [1.0]}, ValueError, r"shape \(2,\)"),
        (CODES, LABELS, {"scale": [1.0, 0.0]}, ValueError, r"scale\[1\] = 0.0"),
        (CODES, LABELS, {"scale": [-1.0, 1.0]}, ValueError, "finite and positive"),
        (CODES, LABELS, {"scale": [np.inf, 1.0]}, ValueError, "finite and positive"),
        (CODES, LABELS, {"scale": [np.nan, 1.0]}, ValueError, "finite and positive"),
        (CODES, LABELS, {"thresholds": (0.0, 1.0)}, ValueError, r"\[0, 1\)"),
        (CODES, LABELS, {"thresholds": -0.1}, ValueError, r"\[0, 1\)"),
        (CODES, LABELS, {"thresholds": (0.5, 0.2)}, ValueError, "strictly increasing"),
        (CODES, LABELS, {"thresholds": (0.2, 0.2)}, ValueError, "strictly increasing"),
        (CODES, LABELS, {"thresholds": ()}, ValueError, "non-empty"),
        (CODES, LABELS, {"thresholds": "high"}, TypeError, "thresholds must be a number"),
        (CODES, LABELS, {"min_support": 0}, ValueError, "min_support must be at least 1"),
        (CODES, LABELS, {"min_support": 1.5}, TypeError, "min_support must be an int"),
        (CODES, LABELS, {"top_n": 0}, ValueError, "top_n must be at least 1"),
        (CODES, LABELS, {"sort_by": "nope"}, ValueError, "sort_by must be one of"),
    ],
)
def test_invalid_input_is_refused_with_a_clear_message(codes, labels, options, error, match):
    with pytest.raises(error, match=match):
        label_associations(codes, labels, **options)


def test_the_other_entry_points_refuse_invalid_input():
    with pytest.raises(ValueError, match="split_signs"):
        latent_stats(-CODES)
    with pytest.raises(ValueError, match="NaN"):
        latent_scale(sp.csr_matrix(CODES * np.nan))
    with pytest.raises(NotFittedError):
        LatentLabelMatcher().evaluate(CODES, LABELS)
    with pytest.raises(ValueError, match="associated_f1"):
        LatentLabelMatcher(associated_f1=1.5).fit(CODES, LABELS)
    with pytest.raises(ValueError, match="strictly increasing"):
        LatentLabelMatcher(thresholds=(0.5, 0.0)).fit(CODES, LABELS)
    with pytest.raises(ValueError, match="No label has at least min_support=10"):
        LatentLabelMatcher(min_support=10).fit(CODES, LABELS)
    with pytest.raises(ValueError, match="labels describe 3 proteins"):
        LatentLabelMatcher().fit(CODES, LABELS).evaluate(CODES, LABELS[:3])
    with pytest.raises(ValueError, match="2-D"):
        split_signs(np.zeros(3))
