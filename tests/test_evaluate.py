"""sklearn_sae.evaluate: exact against scikit-learn and SciPy, isolated scorers, GridSearchCV integration."""

import warnings

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment
from sklearn.decomposition import PCA
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score
from sklearn.model_selection import GridSearchCV
from sklearn.preprocessing import StandardScaler

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


@pytest.fixture(scope="module")
def labelled_codes():
    """Non-negative sparse codes where latent 3 marks class 1 and latents 5 and 6 together mark class 2."""
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, size=300)
    codes = rng.random((300, 12)) * (rng.random((300, 12)) < 0.3)
    codes[:, 3] = (y == 1) * (1 + rng.random(300))
    half = rng.random(300) < 0.5
    codes[:, 5] = (y == 2) * half * 2.0
    codes[:, 6] = (y == 2) * ~half * 2.0
    return codes, y


def _split(codes, y, n_train=200):
    return codes[:n_train], y[:n_train], codes[n_train:], y[n_train:]


@pytest.mark.parametrize("standardize", [True, False])
def test_sparse_probing_equals_scikit_learn_by_hand(labelled_codes, standardize):
    codes, y = labelled_codes
    train, y_train, test, y_test = _split(codes, y)
    table = sparse_probing(train, y_train, test, y_test, ks=(1, 2, 5), standardize=standardize)
    assert len(table) == 3 * 3
    for row in table.itertuples():
        positive = y_train == row[2]  # "class"
        difference = np.abs(train[positive].mean(axis=0) - train[~positive].mean(axis=0))
        columns = np.argsort(-difference, kind="stable")[: row.k]
        assert row.features == tuple(columns)
        features_train, features_test = train[:, columns], test[:, columns]
        if standardize:
            scaler = StandardScaler().fit(features_train)
            features_train, features_test = scaler.transform(features_train), scaler.transform(features_test)
        model = LogisticRegression(C=1.0, max_iter=1000).fit(features_train, positive)
        predicted = model.predict(features_test)
        assert row.accuracy == accuracy_score(y_test == row[2], predicted)
        assert row.f1 == f1_score(y_test == row[2], predicted)


def test_sparse_probing_of_csr_codes_is_that_of_dense_codes(labelled_codes):
    codes, y = labelled_codes
    train, y_train, test, y_test = _split(codes, y)
    dense = sparse_probing(train, y_train, test, y_test)
    sparse = sparse_probing(sp.csr_matrix(train), y_train, sp.csr_matrix(test), y_test)
    pd.testing.assert_frame_equal(dense[["class", "k", "features"]], sparse[["class", "k", "features"]])
    np.testing.assert_allclose(dense[["accuracy", "f1"]], sparse[["accuracy", "f1"]], atol=1e-12)


def test_standardizing_makes_the_probe_blind_to_units(labelled_codes):
    codes, y = labelled_codes
    train, y_train, test, y_test = _split(codes, y)
    natural = sparse_probing(train, y_train, test, y_test)
    tiny = sparse_probing(train * 1e-3, y_train, test * 1e-3, y_test)  # embeddings of variance ~1e-7
    np.testing.assert_allclose(natural["f1"], tiny["f1"], atol=1e-9)
    unscaled = sparse_probing(train * 1e-3, y_train, test * 1e-3, y_test, standardize=False)
    assert unscaled["f1"].mean() < natural["f1"].mean()  # the L2 penalty swamps features this small


def test_a_latent_that_is_the_label_is_chosen_first_and_probes_perfectly(labelled_codes):
    codes, y = labelled_codes
    table = sparse_probing(*_split(codes, y), ks=(1,))
    row = table[table["class"] == 1].iloc[0]
    assert row["features"] == (3,) and row["f1"] == 1.0


def test_raw_references_are_the_same_protocol_on_raw_dimensions(labelled_codes):
    codes, y = labelled_codes
    X = codes @ np.random.default_rng(1).normal(size=(12, 5))
    train, y_train, test, y_test = _split(codes, y)
    table = sparse_probing(train, y_train, test, y_test, ks=(1, 2), X_train=X[:200], X_test=X[200:])
    assert set(table["representation"]) == {"sae", "raw_top_k", "raw_full"}
    full = table[table["representation"] == "raw_full"]
    assert (full["k"] == 5).all() and (full["features"] == (0, 1, 2, 3, 4)).all() and len(full) == 3
    raw = table[(table["representation"] == "raw_top_k") & (table["class"] == 0) & (table["k"] == 1)].iloc[0]
    own = sparse_probing(X[:200], y_train, X[200:], y_test, ks=(1,))
    assert raw["features"] == own[own["class"] == 0].iloc[0]["features"]


def test_feature_splitting_finds_the_concept_spread_over_two_latents(labelled_codes):
    codes, y = labelled_codes
    splitting = feature_splitting(sparse_probing(*_split(codes, y), ks=(1, 2, 5))).set_index("class")
    assert splitting.loc[2, "split"] and splitting.loc[2, "split_k"] == 2  # latents 5 and 6 together
    assert not splitting.loc[1, "split"]  # latent 3 alone is perfect


def test_feature_splitting_on_a_hand_made_table():
    table = pd.DataFrame({
        "representation": ["sae"] * 6 + ["raw_top_k"],
        "class": ["a", "a", "a", "b", "b", "b", "a"],
        "k": [1, 2, 5, 1, 2, 5, 1],
        "f1": [0.5, 0.52, 0.60, 0.7, 0.71, 0.72, 0.0],
    })
    result = feature_splitting(table).set_index("class")
    assert result.loc["a", "split"] and result.loc["a", "split_k"] == 5
    assert result.loc["a", "gains"] == pytest.approx({2: 0.02, 5: 0.08})
    assert not result.loc["b", "split"] and pd.isna(result.loc["b", "split_k"])


def test_ground_truth_recovery_is_the_hungarian_match():
    rng = np.random.default_rng(0)
    true_atoms = rng.normal(size=(6, 10))
    learned = rng.normal(size=(8, 10))
    matches = ground_truth_recovery(true_atoms, learned)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    cosines = unit(true_atoms) @ unit(learned).T
    rows, columns = linear_sum_assignment(-cosines)
    assert matches["latent"].tolist() == columns.tolist()
    assert matches.attrs["mcc"] == pytest.approx(cosines[rows, columns].mean())


def test_permuted_noisy_atoms_are_recovered_and_flipped_ones_are_not():
    rng = np.random.default_rng(0)
    true_atoms = rng.normal(size=(20, 64))
    learned = true_atoms[rng.permutation(20)] + 0.01 * rng.normal(size=(20, 64))
    matches = ground_truth_recovery(true_atoms, np.vstack([learned, rng.normal(size=(5, 64))]))
    assert matches.attrs["fraction_recovered"] == 1.0 and matches.attrs["mcc"] > 0.99
    flipped = ground_truth_recovery(true_atoms, -true_atoms)
    assert flipped.attrs["fraction_recovered"] == 0.0


def test_fewer_latents_than_atoms_leaves_some_unmatched():
    matches = ground_truth_recovery(np.eye(4), np.eye(4)[:2])
    assert sorted(matches["latent"]) == [-1, -1, 0, 1]
    assert matches.attrs["mcc"] == 0.5 and matches.attrs["fraction_recovered"] == 0.5


def test_core_metrics_of_a_fitted_sae():
    X = make_sparse_signals(n_samples=400, n_features=16, n_atoms=24, n_active=3, random_state=0)[0]
    sae = SparseAutoencoderTransformer(n_latents=32, k=4, max_epochs=2, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae.fit(X)
    table = core_metrics(sae, X)
    codes = sae.transform(X)
    assert table.loc[0, "explained_variance"] == pytest.approx(sae.score(X), abs=1e-6)
    assert table.loc[0, "l0"] == pytest.approx((codes != 0).sum(axis=1).mean())
    assert table.loc[0, "alive"] == pytest.approx((codes != 0).any(axis=0).mean())
    sparse = core_metrics(sae, X, codes=sp.csr_matrix(codes))
    pd.testing.assert_frame_equal(table, sparse)


class _FixedModel:
    """A stand-in estimator: given codes, atoms and reconstructions."""

    def __init__(self, codes, components, X_hat):
        self.codes, self.components_, self.X_hat = codes, components, X_hat

    def transform(self, X):
        return self.codes

    def reconstruct(self, X):
        return self.X_hat


def test_core_metrics_on_hand_made_codes_and_atoms():
    X = np.random.default_rng(0).normal(size=(200, 3)) + 5
    codes = np.zeros((200, 4))
    codes[:1, 0] = 1  # 0.5% of the rows
    codes[:10, 1] = 1  # 5%
    codes[:50, 2] = 1  # 25%; latent 3 never fires
    atoms = np.array([[1.0, 0, 0], [0, 1.0, 0], [0, 0, 1.0], [0, 1.0, 1.0]])
    table = core_metrics(_FixedModel(codes, atoms, 0.5 * X), X).iloc[0]
    assert table["alive"] == 0.75
    assert table["dense_1pct"] == 0.5 and table["dense_10pct"] == 0.25
    assert table["relative_reconstruction_bias"] == pytest.approx(2.0)  # x_hat = x / 2: scale up by 2
    # max |cos| per atom: 0, 1/sqrt2, 1/sqrt2, 1/sqrt2
    assert table["mean_max_cosine"] == pytest.approx(3 / 4 / np.sqrt(2))
    orthogonal = core_metrics(_FixedModel(codes, np.eye(4, 3), X), X).iloc[0]
    assert orthogonal["mean_max_cosine"] == pytest.approx(0.0) and orthogonal["explained_variance"] == 1.0


class _RecordingEncoder:
    """A transformer whose codes carry each row's id, so that a probe's rows can be traced."""

    n_latents_ = 3

    def transform(self, X):
        X = np.asarray(X)
        return np.column_stack([X[:, 0], X[:, 1], np.zeros(len(X))])


def test_the_scorer_never_fits_on_a_row_it_scores(monkeypatch):
    rng = np.random.default_rng(0)
    y = np.repeat([0, 1, 2], 30)
    row_ids = rng.permutation(90).astype(float) + 1000  # ids in column 0, far from the labels
    X = np.column_stack([row_ids, y + rng.random(90)])
    ranked, fitted, scored = [], [], []
    real_differences, real_fit, real_predict = (
        evaluate._class_mean_differences, LogisticRegression.fit, LogisticRegression.predict,
    )

    def recording_differences(features, labels, classes):
        ranked.append(set(np.asarray(features)[:, 0]))
        return real_differences(features, labels, classes)

    def recording_fit(self, features, labels):
        fitted.append(len(features))
        return real_fit(self, features, labels)

    def recording_predict(self, features):
        scored.append(len(features))
        return real_predict(self, features)

    monkeypatch.setattr(evaluate, "_class_mean_differences", recording_differences)
    monkeypatch.setattr(LogisticRegression, "fit", recording_fit)
    monkeypatch.setattr(LogisticRegression, "predict", recording_predict)
    scorer = make_sparse_probing_scorer(ks=(1, 2), n_splits=3)
    score = scorer(_RecordingEncoder(), X, y)
    assert 0 <= score <= 1
    assert len(ranked) == 3  # one ranking per inner split, on its training part only
    folds = []
    for ranking_rows in ranked:
        held_out = set(row_ids) - ranking_rows
        assert len(ranking_rows) == 60 and len(held_out) == 30
        folds.append(held_out)
    assert set().union(*folds) == set(row_ids)  # every row scored once, and never with a ranking it shaped
    assert set(fitted) == {60} and set(scored) == {30}  # probes fitted on the 60 ranked rows, scored on the 30


def test_the_scorer_needs_labels_and_classes_with_enough_rows():
    scorer = make_sparse_probing_scorer(n_splits=3)
    X = np.random.default_rng(0).random((10, 2))
    with pytest.raises(ValueError, match="needs labels"):
        scorer(_RecordingEncoder(), X, None)
    with pytest.warns(UserWarning, match="no class"):
        assert np.isnan(scorer(_RecordingEncoder(), X, np.arange(10)))  # every class a single row


@pytest.mark.parametrize("ks", [(), (0,), (2, 1), (1, 1), (1.5,)])
def test_bad_ks_are_refused(ks):
    with pytest.raises(ValueError, match="ks must"):
        make_sparse_probing_scorer(ks=ks)


def test_mismatched_inputs_are_refused(labelled_codes):
    codes, y = labelled_codes
    with pytest.raises(ValueError, match="expected 199 rows"):
        sparse_probing(codes[:200], y[:199], codes[200:], y[200:])
    with pytest.raises(ValueError, match="both X_train and X_test"):
        sparse_probing(*_split(codes, y), X_train=codes[:200])
    with pytest.raises(ValueError, match="same width"):
        ground_truth_recovery(np.eye(3), np.eye(4))


def test_grid_search_with_the_scorer_and_multi_metric_refit():
    X, _, true_codes = make_sparse_signals(n_samples=240, n_features=12, n_atoms=6, n_active=2, random_state=0)
    y = np.asarray(true_codes[:, :3] != 0).argmax(axis=1)  # a label from which atom among the first three fires
    sae = SparseAutoencoderTransformer(n_latents=16, max_epochs=2, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = GridSearchCV(sae, {"k": [1, 4]}, scoring=make_sparse_probing_scorer(ks=(1, 2)), cv=2).fit(X, y)
        assert search.best_params_["k"] in (1, 4) and np.isfinite(search.cv_results_["mean_test_score"]).all()
        scoring = {"probe": make_sparse_probing_scorer(ks=(1,)), "ev": lambda est, X, y=None: est.score(X)}
        multi = GridSearchCV(sae, {"k": [1, 4]}, scoring=scoring, refit="probe", cv=2).fit(X, y)
    assert "mean_test_ev" in multi.cv_results_ and multi.best_params_["k"] in (1, 4)


def test_l0_budget_scorer_ranks_models_over_budget_below_every_admissible_one():
    X = np.random.default_rng(0).normal(size=(50, 4))
    dense = PCA(n_components=4).fit(X)
    dense.score = lambda X: 0.9  # noqa: E731
    within, over = make_l0_budget_scorer(max_l0=4), make_l0_budget_scorer(max_l0=2)
    assert within(dense, X) == 0.9
    assert over(dense, X) == pytest.approx(-(1 + (4 - 2) / 2))
    with pytest.raises(ValueError, match="positive"):
        make_l0_budget_scorer(0)
