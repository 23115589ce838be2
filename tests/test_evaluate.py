"""sklearn_sae.evaluate: exact against scikit-learn and SciPy, isolated scorers, GridSearchCV integration."""

import subprocess
import sys
import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.preprocessing import FunctionTransformer, StandardScaler

from sklearn_sae import SparseAutoencoderTransformer, evaluate
from sklearn_sae.datasets import make_sparse_signals
from sklearn_sae.evaluate import (
    core_metrics,
    feature_splitting,
    ground_truth_recovery,
    make_l0_budget_scorer,
    make_sparse_probing_scorer,
    sparse_probing,
)


def _labelled_codes():
    """Non-negative sparse codes where latent 3 marks class 1 and latents 5 and 6 together mark class 2."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    codes = rng.random((300, 12)) * (rng.random((300, 12)) < 0.3)
    codes[:, 3] = (y == 1) * (1 + rng.random(300))
    half = rng.random(300) < 0.5
    codes[:, 5] = (y == 2) * half * 2.0
    codes[:, 6] = (y == 2) * ~half * 2.0
    return codes, y


CODES, LABELS = _labelled_codes()


def _split(codes=CODES, y=LABELS, n_train=200):
    return codes[:n_train], y[:n_train], codes[n_train:], y[n_train:]


def _by_hand_ranking(train, positive):
    difference = np.abs(train[positive].mean(axis=0) - train[~positive].mean(axis=0))
    return np.argsort(-difference, kind="stable")


def _by_hand_probe(train, fit_labels, test, standardize):
    if standardize:
        scaler = StandardScaler().fit(train)
        train, test = scaler.transform(train), scaler.transform(test)
    return LogisticRegression(C=1.0, max_iter=1000).fit(train, fit_labels).predict(test)


def _quiet_fit(estimator, *args):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # two-epoch fits warn about dead latents
        return estimator.fit(*args)


# ----------------------------------------------------------------------------- sparse probing


@pytest.mark.parametrize("standardize", [True, False])
def test_sparse_probing_equals_scikit_learn_by_hand(standardize):
    train, y_train, test, y_test = _split()
    table = sparse_probing(train, y_train, test, y_test, ks=(1, 2, 5), standardize=standardize)
    assert list(table.columns) == ["representation", "class", "k", "accuracy", "f1", "n_train_positive",
                                   "n_test_positive", "features"]
    assert len(table) == 3 * 3 and (table["representation"] == "sae").all()
    for row in table.to_dict("records"):
        positive, test_positive = y_train == row["class"], y_test == row["class"]
        columns = _by_hand_ranking(train, positive)[: row["k"]]
        assert row["features"] == tuple(columns)
        predicted = _by_hand_probe(train[:, columns], positive, test[:, columns], standardize)
        assert row["accuracy"] == accuracy_score(test_positive, predicted)
        assert row["f1"] == f1_score(test_positive, predicted)
        assert (row["n_train_positive"], row["n_test_positive"]) == (positive.sum(), test_positive.sum())


@pytest.mark.parametrize("multiclass", [False, True])
def test_sparse_probing_of_csr_codes_is_that_of_dense_codes(multiclass):
    train, y_train, test, y_test = _split()
    X = CODES @ np.random.default_rng(1).normal(size=(12, 5))
    dense = sparse_probing(train, y_train, test, y_test, multiclass=multiclass, X_train=X[:200], X_test=X[200:])
    sparse = sparse_probing(sp.csr_matrix(train), y_train, sp.csr_matrix(test), y_test, multiclass=multiclass,
                            X_train=X[:200], X_test=X[200:])
    pd.testing.assert_frame_equal(dense, sparse)


def test_a_latent_that_is_the_label_is_chosen_first_and_probes_perfectly():
    table = sparse_probing(*_split(), ks=(1,))
    row = table[table["class"] == 1].iloc[0]
    assert row["features"] == (3,) and row["f1"] == 1.0 and row["accuracy"] == 1.0


def test_ties_in_the_ranking_go_to_the_lower_latent():
    rng = np.random.default_rng(0)
    y = np.tile([0, 1], 50)
    codes = np.column_stack([rng.random(100), y * 1.0, rng.random(100), y * 1.0, y * 1.0])  # 1, 3, 4 tie
    table = sparse_probing(codes[:60], y[:60], codes[60:], y[60:], ks=(1, 2, 3), classes=[1])
    assert table["features"].tolist() == [(1,), (1, 3), (1, 3, 4)]


def test_raw_references_are_the_same_protocol_on_raw_dimensions():
    X = CODES @ np.random.default_rng(1).normal(size=(12, 5))
    train, y_train, test, y_test = _split()
    table = sparse_probing(train, y_train, test, y_test, ks=(1, 2), X_train=X[:200], X_test=X[200:])
    assert table["representation"].value_counts().to_dict() == {"sae": 6, "raw_top_k": 6, "raw_full": 3}
    full = table[table["representation"] == "raw_full"]
    assert (full["k"] == 5).all() and (full["features"] == (0, 1, 2, 3, 4)).all()
    raw = table[table["representation"] == "raw_top_k"].reset_index(drop=True)
    own = sparse_probing(X[:200], y_train, X[200:], y_test, ks=(1, 2))
    pd.testing.assert_frame_equal(raw.drop(columns="representation"), own.drop(columns="representation"))
    for row in full.to_dict("records"):  # the full probe, by hand
        predicted = _by_hand_probe(X[:200], y_train == row["class"], X[200:], standardize=True)
        assert row["f1"] == f1_score(y_test == row["class"], predicted)


def test_ks_larger_than_the_columns_are_clipped():
    table = sparse_probing(*_split(), ks=(1, 12, 50), classes=[2])
    assert table["k"].tolist() == [1, 12, 50]
    assert [len(f) for f in table["features"]] == [1, 12, 12]
    assert table.loc[1, "f1"] == table.loc[2, "f1"]  # the same probe


def test_multiclass_is_one_multinomial_probe_on_the_union_of_the_top_latents():
    train, y_train, test, y_test = _split()
    table = sparse_probing(train, y_train, test, y_test, ks=(1, 2), multiclass=True, standardize=False)
    assert len(table) == 2 and table["class"].isna().all()
    for row in table.to_dict("records"):
        union = []
        for label in (0, 1, 2):
            union += [c for c in _by_hand_ranking(train, y_train == label)[: row["k"]] if c not in union]
        assert row["features"] == tuple(union)
        predicted = _by_hand_probe(train[:, union], y_train, test[:, union], standardize=False)
        assert row["accuracy"] == accuracy_score(y_test, predicted)
        assert row["f1"] == f1_score(y_test, predicted, average="macro")
        assert (row["n_train_positive"], row["n_test_positive"]) == (200, 100)


def test_classes_with_too_few_rows_are_skipped_by_name():
    train, y_train, test, y_test = _split()
    y_test = y_test.copy()
    y_test[y_test == 2] = 0
    y_test[0] = 2  # a single test positive
    with pytest.warns(UserWarning, match=r"skips 1 class.*\[2\]"):
        table = sparse_probing(train, y_train, test, y_test, ks=(1,))
    assert sorted(table["class"]) == [0, 1]
    assert len(sparse_probing(train, y_train, test, y_test, ks=(1,), min_class_size=1)) == 3


def test_feature_splitting_finds_the_concept_spread_over_two_latents():
    splitting = feature_splitting(sparse_probing(*_split(), ks=(1, 2, 5))).set_index("class")
    assert splitting.loc[2, "split"] and splitting.loc[2, "split_k"] == 2  # latents 5 and 6 together
    assert not splitting.loc[1, "split"]  # latent 3 alone is perfect


def test_feature_splitting_on_a_hand_made_table():
    table = pd.DataFrame({
        "representation": ["sae"] * 7 + ["raw_top_k"],
        "class": ["a", "a", "a", "b", "b", "b", "c", "a"],
        "k": [1, 2, 5, 1, 2, 5, 1, 1],
        "f1": [0.5, 0.52, 0.60, 0.7, 0.73, 0.72, 0.9, 0.0],
    })
    result = feature_splitting(table).set_index("class")
    assert result.loc["a", "split"] and result.loc["a", "split_k"] == 5  # the 2 -> 5 step, a gap
    assert result.loc["a", "gains"] == pytest.approx({2: 0.02, 5: 0.08})
    assert result.loc["b", "split"] and result.loc["b", "split_k"] == 2  # 0.03: at the threshold counts
    assert not result.loc["c", "split"] and pd.isna(result.loc["c", "split_k"]) and result.loc["c", "gains"] == {}
    assert not feature_splitting(table, threshold=0.1)["split"].any()
    multiclass = feature_splitting(pd.DataFrame({"representation": "sae", "class": None, "k": [1, 2],
                                                 "f1": [0.1, 0.5]}))
    assert len(multiclass) == 1 and multiclass.loc[0, "split_k"] == 2


# ----------------------------------------------------------------------------- ground truth


def test_ground_truth_recovery_is_the_hungarian_match():
    rng = np.random.default_rng(0)
    true_atoms = rng.normal(size=(6, 10))
    learned = rng.normal(size=(8, 10))
    matches = ground_truth_recovery(true_atoms, learned, threshold=0.5)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    cosines = unit(true_atoms) @ unit(learned).T
    rows, columns = linear_sum_assignment(-cosines)
    assert matches["atom"].tolist() == rows.tolist() and matches["latent"].tolist() == columns.tolist()
    np.testing.assert_allclose(matches["cosine"], cosines[rows, columns])
    assert matches.attrs["mcc_hungarian_signed"] == pytest.approx(cosines[rows, columns].mean())
    assert matches.attrs["fraction_recovered_hungarian"] == pytest.approx((cosines[rows, columns] >= 0.5).mean())


def test_permuted_noisy_atoms_are_recovered_and_flipped_ones_are_not():
    rng = np.random.default_rng(0)
    true_atoms = rng.normal(size=(20, 64))
    permutation = rng.permutation(20)
    learned = 3.0 * true_atoms[permutation] + 0.01 * rng.normal(size=(20, 64))  # scale does not matter
    matches = ground_truth_recovery(true_atoms, np.vstack([learned, rng.normal(size=(5, 64))]))
    assert matches.attrs["fraction_recovered_hungarian"] == 1.0 and matches.attrs["mcc_hungarian_signed"] > 0.99
    assert (permutation[matches["latent"]] == np.arange(20)).all()
    flipped = ground_truth_recovery(true_atoms, -true_atoms)
    assert flipped.attrs["fraction_recovered_hungarian"] == 0.0 and flipped.attrs["mcc_hungarian_signed"] < 0.5


def test_fewer_latents_than_atoms_leaves_some_unmatched():
    matches = ground_truth_recovery(np.eye(4), np.eye(4)[:2])
    assert matches["latent"].tolist() == [0, 1, -1, -1] and matches["cosine"].tolist()[:2] == [1, 1]
    assert matches["cosine"].isna().tolist() == [False, False, True, True]
    # the MCC averages the matched pairs (the field's definition); recovery counts every true atom
    assert matches.attrs["mcc_hungarian_signed"] == 1.0 and matches.attrs["fraction_recovered_hungarian"] == 0.5


# ----------------------------------------------------------------------------- core statistics


@pytest.fixture(scope="module")
def fitted_sae():
    X = make_sparse_signals(n_samples=400, n_features=16, n_atoms=24, n_active=3, random_state=0)[0]
    sae = SparseAutoencoderTransformer(n_latents=32, k=4, max_epochs=2, device="cpu", random_state=0)
    return _quiet_fit(sae, X), X


def test_core_metrics_of_a_fitted_sae(fitted_sae):
    sae, X = fitted_sae
    table = core_metrics(sae, X)
    codes = sae.transform(X)
    assert table.shape == (1, 7)
    assert table.loc[0, "explained_variance"] == pytest.approx(sae.score(X), abs=1e-6)
    assert table.loc[0, "l0"] == pytest.approx((codes != 0).sum(axis=1).mean())
    assert table.loc[0, "alive"] == pytest.approx((codes != 0).any(axis=0).mean())
    pd.testing.assert_frame_equal(table, core_metrics(sae, X, codes=codes))
    pd.testing.assert_frame_equal(table, core_metrics(sae, X, codes=sp.csr_matrix(codes)))


def test_core_metrics_of_pca_uses_its_inverse_transform():
    X = np.random.default_rng(0).normal(size=(100, 6)) @ np.random.default_rng(1).normal(size=(6, 6))
    pca = PCA(n_components=3).fit(X)
    table = core_metrics(pca, X).iloc[0]
    X_hat = pca.inverse_transform(pca.transform(X))
    expected = 1 - np.square(X_hat - X).sum() / np.square(X - X.mean(axis=0)).sum()
    assert table["explained_variance"] == pytest.approx(expected)
    assert table["l0"] == 3 and table["alive"] == 1


class _FixedModel:
    """A stand-in estimator: given codes, atoms and reconstructions."""

    def __init__(self, codes, components, X_hat):
        self.codes, self.components_, self.X_hat = codes, components, X_hat

    def transform(self, X):
        return self.codes

    def reconstruct(self, X):
        return self.X_hat


def _hand_made_codes():
    codes = np.zeros((200, 4))
    codes[:1, 0] = 1  # 0.5% of the rows
    codes[:10, 1] = 1  # 5%
    codes[:50, 2] = 1  # 25%; latent 3 never fires
    return codes


@pytest.mark.parametrize("as_csr", [False, True])
def test_core_metrics_on_hand_made_codes_and_atoms(as_csr):
    X = np.random.default_rng(0).normal(size=(200, 3)) + 5
    codes = _hand_made_codes()
    codes = sp.csr_matrix(codes) if as_csr else codes
    atoms = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 1.0]])
    table = core_metrics(_FixedModel(codes, atoms, 0.5 * X), X).iloc[0]
    assert table["alive"] == 0.75 and table["l0"] == pytest.approx(61 / 200)
    assert table["dense_1pct"] == 0.5 and table["dense_10pct"] == 0.25
    assert table["relative_reconstruction_bias"] == pytest.approx(0.5)  # x_hat = x / 2: shrinkage, below 1
    assert core_metrics(_FixedModel(codes, atoms, 2 * X), X).iloc[0]["relative_reconstruction_bias"] == 2
    # max |cos| per atom: 0, 1/sqrt2, 1/sqrt2, 1/sqrt2
    assert table["mean_max_cosine"] == pytest.approx(3 / 4 / np.sqrt(2))
    orthogonal = core_metrics(_FixedModel(codes, np.eye(4, 3), X), X).iloc[0]
    assert orthogonal["mean_max_cosine"] == pytest.approx(0.0) and orthogonal["explained_variance"] == 1.0
    assert orthogonal["relative_reconstruction_bias"] == 1.0


def test_csr_explicit_zeros_do_not_fire_and_the_codes_are_left_alone():
    codes = sp.csr_matrix(_hand_made_codes())
    codes.data[0] = 0.0  # latent 0's only entry, now an explicit zero
    before = (codes.data.copy(), codes.indices.copy(), codes.indptr.copy())
    X = np.random.default_rng(0).normal(size=(200, 3))
    table = core_metrics(_FixedModel(codes, np.eye(4, 3), X), X).iloc[0]
    assert table["alive"] == 0.5 and table["l0"] == pytest.approx(60 / 200)
    for kept, now in zip(before, (codes.data, codes.indices, codes.indptr)):
        np.testing.assert_array_equal(kept, now)


def test_mean_max_cosine_in_blocks_equals_the_full_matrix():
    atoms = np.random.default_rng(0).normal(size=(600, 8))  # more than two blocks of 256
    unit = atoms / np.linalg.norm(atoms, axis=1, keepdims=True)
    full = np.abs(unit @ unit.T)
    np.fill_diagonal(full, -1)
    assert evaluate._mean_max_cosine(atoms) == pytest.approx(full.max(axis=1).mean())
    assert np.isnan(evaluate._mean_max_cosine(atoms[:1]))


# ----------------------------------------------------------------------------- the probing scorer


class _IdentityEncoder:
    """A transformer whose codes are its rows: every value is unique, so a probe's rows can be traced back."""

    def transform(self, X):
        return np.asarray(X, dtype=np.float64)


def test_the_scorer_never_fits_on_a_row_it_scores(monkeypatch):
    rng = np.random.default_rng(0)
    y_all = np.repeat([0, 1, 2], 40)
    X_all = rng.random((120, 4)) + np.eye(4)[y_all] * 0.5  # informative, and every value distinct
    scored = rng.permutation(120)[:90]  # the rows of one outer fold: all the scorer may see
    X, y = X_all[scored], y_all[scored]
    row_of = {value: row for row in scored for value in X_all[row]}
    events = []

    def rows(features):
        return frozenset(row_of[value] for value in np.asarray(features)[:, 0])

    real_differences, real_fit, real_predict = (
        evaluate._class_mean_differences, LogisticRegression.fit, LogisticRegression.predict,
    )

    def recording_differences(features, labels, classes):
        events.append(("rank", rows(features)))
        return real_differences(features, labels, classes)

    def recording_fit(self, features, labels, *args, **kwargs):
        events.append(("fit", rows(features)))
        return real_fit(self, features, labels, *args, **kwargs)

    def recording_predict(self, features):
        events.append(("predict", rows(features)))
        return real_predict(self, features)

    monkeypatch.setattr(evaluate, "_class_mean_differences", recording_differences)
    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    monkeypatch.setattr(LogisticRegression, "predict", recording_predict)
    # standardize=False: the probe sees the codes' own values, which identify the rows
    score = make_sparse_probing_scorer(ks=(1, 2), n_splits=3, standardize=False)(_IdentityEncoder(), X, y)
    assert score > 0.4  # the planted classes are found (0.58; rows of noise score 0.09)
    splits = [i for i, (kind, _) in enumerate(events) if kind == "rank"]
    assert len(splits) == 3  # one ranking per inner split
    held_out = []
    for start, end in zip(splits, splits[1:] + [len(events)]):
        ranked = events[start][1]
        fits = [r for kind, r in events[start + 1 : end] if kind == "fit"]
        predictions = [r for kind, r in events[start + 1 : end] if kind == "predict"]
        assert len(fits) == len(predictions) == 3 * 2  # 3 classes x 2 ks
        assert all(fitted == ranked for fitted in fits)  # the probes fit on the ranked rows
        assert len(set(predictions)) == 1 and not predictions[0] & ranked  # and score on the others
        assert predictions[0] | ranked == set(scored)  # together, the scored fold's rows
        held_out.append(predictions[0])
    assert sum(len(part) for part in held_out) == 90 and set().union(*held_out) == set(scored)


def test_the_scorer_sees_only_the_rows_the_search_scores():
    seen = []

    def record(X):
        seen.append(frozenset(np.asarray(X)[:, 0].round(9)))
        return X

    rng = np.random.default_rng(0)
    y = np.repeat([0, 1], 30)
    X = rng.random((60, 3)) + np.eye(3)[y]
    folds = KFold(n_splits=2, shuffle=True, random_state=0)
    GridSearchCV(FunctionTransformer(record), {"validate": [False]}, cv=folds, refit=False,
                 scoring=make_sparse_probing_scorer(ks=(1,))).fit(X, y)
    assert seen == [frozenset(X[test, 0].round(9)) for _, test in folds.split(X)]


def test_the_scorer_averages_over_splits_then_aggregates_over_ks_then_classes(monkeypatch):
    values = {(0, 1): 0.2, (0, 2): 0.6, (1, 1): 0.8, (1, 2): 0.4}

    def fixed_rows(name, train, y_train, test, y_test, ks, classes, **kwargs):
        return [{"class": c, "k": k, "f1": values[(c, k)], "accuracy": 1.0} for c in classes for k in ks]

    monkeypatch.setattr(evaluate, "_probe_rows", fixed_rows)
    X, y = np.random.default_rng(0).random((30, 2)), np.repeat([0, 1], 15)
    assert make_sparse_probing_scorer(ks=(1, 2))(_IdentityEncoder(), X, y) == pytest.approx(0.5)
    assert make_sparse_probing_scorer(ks=(1, 2), k_aggregate="max")(_IdentityEncoder(), X, y) == pytest.approx(0.7)
    assert make_sparse_probing_scorer(ks=(1, 2), classes=[1])(_IdentityEncoder(), X, y) == pytest.approx(0.6)
    assert make_sparse_probing_scorer(ks=(1,), metric="accuracy")(_IdentityEncoder(), X, y) == 1.0


def test_the_scorer_needs_labels_and_classes_with_enough_rows():
    scorer = make_sparse_probing_scorer(n_splits=3)
    X = np.random.default_rng(0).random((10, 2))
    with pytest.raises(ValueError, match="needs labels"):
        scorer(_IdentityEncoder(), X, None)
    with pytest.warns(UserWarning, match="no class"):
        assert np.isnan(scorer(_IdentityEncoder(), X, np.arange(10)))  # every class a single row
    with pytest.warns(UserWarning, match="no class"):
        assert np.isnan(make_sparse_probing_scorer(min_class_size=6)(_IdentityEncoder(), X, np.repeat([0, 1], 5)))


def test_grid_search_with_the_scorer_and_multi_metric_refit():
    X, _, true_codes = make_sparse_signals(n_samples=240, n_features=12, n_atoms=6, n_active=2, random_state=0)
    y = np.asarray(true_codes[:, :3] != 0).argmax(axis=1)  # which atom among the first three fires, if any
    sae = SparseAutoencoderTransformer(n_latents=16, max_epochs=2, device="cpu", random_state=0)
    grid = {"k": [1, 4, 16]}
    probe = make_sparse_probing_scorer(ks=(1,))
    search = _quiet_fit(GridSearchCV(sae, grid, scoring=probe, cv=2), X, y)
    scoring = {"probe": probe, "ev": lambda est, X, y=None: est.score(X)}
    multi = _quiet_fit(GridSearchCV(sae, grid, scoring=scoring, refit="probe", cv=2), X, y)
    probe_scores, ev_scores = multi.cv_results_["mean_test_probe"], multi.cv_results_["mean_test_ev"]
    # The single-metric search scored with the probe (same folds, same deterministic fits), not with score().
    np.testing.assert_allclose(search.cv_results_["mean_test_score"], probe_scores, rtol=1e-12)
    # The two metrics prefer different k here (after two epochs explained variance 0.56, 0.72, 0.71 and the probe
    # 0.36, 0.34, 0.44), so the refit shows which one chose.
    assert ev_scores.argmax() != probe_scores.argmax()
    assert np.ptp(probe_scores) > 0.02  # the probe tells the candidates apart
    assert search.best_params_ == multi.best_params_ == {"k": grid["k"][probe_scores.argmax()]}
    assert multi.best_estimator_.k == multi.best_params_["k"]


# ----------------------------------------------------------------------------- the L0-budget scorer


def test_l0_budget_scorer_is_explained_variance_within_the_budget_and_below_minus_one_over_it():
    X = np.random.default_rng(0).normal(size=(50, 4)) @ np.random.default_rng(1).normal(size=(4, 4))
    pca = PCA(n_components=2).fit(X)  # 2 non-zero codes a row
    X_hat = pca.inverse_transform(pca.transform(X))
    explained = 1 - np.square(X_hat - X).sum() / np.square(X - X.mean(axis=0)).sum()
    assert make_l0_budget_scorer(2)(pca, X) == pytest.approx(explained)
    assert make_l0_budget_scorer(1)(pca, X) == pytest.approx(-2.0)  # 100% over budget
    assert make_l0_budget_scorer(1.5)(pca, X) == pytest.approx(-1 - 0.5 / 1.5)
    awful = _FixedModel(np.ones((50, 1)), np.ones((1, 4)), X + 100.0)  # admissible, but worse than -1
    assert make_l0_budget_scorer(1)(awful, X) == -1.0


def test_l0_budget_scorer_in_a_search_picks_the_best_model_within_the_budget():
    X = np.random.default_rng(0).normal(size=(120, 6))
    search = GridSearchCV(PCA(), {"n_components": [1, 2, 3, 5]}, scoring=make_l0_budget_scorer(3), cv=2).fit(X)
    assert search.best_params_ == {"n_components": 3}
    assert (search.cv_results_["mean_test_score"][-1] < -1) and search.cv_results_["rank_test_score"][-1] == 4


def test_l0_budget_scorer_of_a_fitted_sae_is_its_score(fitted_sae):
    sae, X = fitted_sae
    assert make_l0_budget_scorer(sae.k)(sae, X) == pytest.approx(sae.score(X), abs=1e-6)


# ----------------------------------------------------------------------------- bad inputs


@pytest.mark.parametrize("ks", [(), (0,), (2, 1), (1, 1), (1.5,), (True,), 3])
def test_bad_ks_are_refused(ks):
    with pytest.raises(ValueError, match="ks must"):
        make_sparse_probing_scorer(ks=ks)
    with pytest.raises(ValueError, match="ks must"):
        sparse_probing(*_split(), ks=ks)


@pytest.mark.parametrize("arguments, message", [
    ({"k_aggregate": "median"}, "k_aggregate"),
    ({"metric": "auc"}, "metric"),
    ({"n_splits": 1}, "n_splits"),
    ({"n_splits": 3, "min_class_size": 2}, "min_class_size"),
    ({"C": 0}, "C must"),
    ({"max_iter": 0}, "max_iter"),
])
def test_bad_scorer_parameters_are_refused(arguments, message):
    with pytest.raises(ValueError, match=message):
        make_sparse_probing_scorer(**arguments)


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="expected 2-D with 199 rows"):
        sparse_probing(CODES[:200], LABELS[:199], CODES[200:], LABELS[200:])
    with pytest.raises(ValueError, match="columns but codes_test"):
        sparse_probing(CODES[:200], LABELS[:200], CODES[200:, :5], LABELS[200:])
    with pytest.raises(ValueError, match="both X_train and X_test"):
        sparse_probing(*_split(), X_train=CODES[:200])
    with pytest.raises(ValueError, match="y_train must be 1-D"):
        sparse_probing(CODES[:200], LABELS[:200, None], CODES[200:], LABELS[200:])
    with pytest.raises(ValueError, match="min_class_size"):
        sparse_probing(*_split(), min_class_size=0)
    with pytest.raises(ValueError, match="same width"):
        ground_truth_recovery(np.eye(3), np.eye(4))
    with pytest.raises(ValueError, match="threshold"):
        ground_truth_recovery(np.eye(3), np.eye(3), threshold=2)
    with pytest.raises(ValueError, match="lacks the columns"):
        feature_splitting(pd.DataFrame({"class": [0], "k": [1]}))
    with pytest.raises(ValueError, match="one per row of X"):
        core_metrics(_FixedModel(np.zeros((3, 2)), np.eye(2), np.zeros((4, 2))), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="positive"):
        make_l0_budget_scorer(0)


def test_the_module_does_not_import_torch():
    code = "import sys, sklearn_sae.evaluate; assert 'torch' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
