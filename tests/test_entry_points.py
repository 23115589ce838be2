"""What an ordinary call must not lose: a failed refit keeps the model, divergence is an error, every input path
refuses the values fit refuses."""

import tempfile
import warnings

import numpy as np
import pandas as pd
import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_hierarchical_signals

X = np.random.default_rng(0).normal(size=(300, 16)).astype(np.float32)


def _sae(**params):
    return SparseAutoencoderTransformer(**{"n_latents": 32, "k": 4, "max_epochs": 2, "random_state": 0,
                                           "device": "cpu", **params})


def _quiet_fit(sae, rows=X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return sae.fit(rows)


@pytest.mark.parametrize("bad_refit", [
    lambda sae: sae.set_params(k=64).fit(X[:, :8]),  # refused after the rows were validated
    lambda sae: sae.fit(pd.DataFrame(X[:, :8], columns=[f"c{i}" for i in range(8)]), eval_sets={"train": X}),
    lambda sae: sae.set_params(validation_fraction=0.99).fit(X[:1 + 1]),
])
def test_a_refit_that_is_refused_keeps_the_model_fitted_before(bad_refit):
    sae = _quiet_fit(_sae())
    codes = sae.transform(X)
    with pytest.raises(ValueError):
        bad_refit(sae)
    sae.set_params(k=4, validation_fraction=0.1)
    assert sae.n_features_in_ == 16 and not hasattr(sae, "feature_names_in_")
    np.testing.assert_array_equal(sae.transform(X), codes)


def test_a_first_partial_fit_that_is_refused_leaves_the_estimator_unfitted():
    sae = _sae(k=64)  # k above n_latents: refused once the rows are known
    with pytest.raises(ValueError, match="k=64"):
        sae.partial_fit(X)
    assert not hasattr(sae, "n_features_in_") and not hasattr(sae, "net_")


def test_a_diverged_fit_is_an_error_and_keeps_the_previous_model():
    sae = _quiet_fit(_sae())
    codes = sae.transform(X)
    with pytest.raises(ValueError, match="Training diverged") as error:
        _quiet_fit(sae.set_params(lr=1e6, max_epochs=3))
    assert "nan" in str(error.value)  # the epochs' losses are in the message
    np.testing.assert_array_equal(sae.transform(X), codes)


def test_a_diverged_first_fit_leaves_nothing_fitted():
    sae = _sae(lr=1e6, max_epochs=3)
    with pytest.raises(ValueError, match="Training diverged"):
        _quiet_fit(sae)
    assert not hasattr(sae, "net_")


@pytest.mark.parametrize("layout", ["memmap", "h5py"])
def test_an_on_disk_fit_refuses_values_too_large_for_float32_as_in_memory_fit_does(tmp_path, layout):
    import h5py

    Y = X.copy()
    Y[5, 3] = 1e20
    with pytest.raises(ValueError, match="magnitude"):
        _sae().fit(Y)
    if layout == "memmap":
        np.save(tmp_path / "x.npy", Y)
        with pytest.raises(ValueError, match="Row 5 of the input holds a value of magnitude"):
            _sae().fit(np.load(tmp_path / "x.npy", mmap_mode="r"))
    else:
        with h5py.File(tmp_path / "x.h5", "w") as f:
            f["X"] = Y
        with h5py.File(tmp_path / "x.h5", "r") as f, pytest.raises(ValueError, match="Row 5 of the input"):
            _sae().fit(f["X"])


def test_save_after_a_fit_seeded_by_a_random_state_instance_does_not_claim_it_changed():
    sae = _quiet_fit(_sae(random_state=np.random.RandomState(0)))
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sae.save(tempfile.mkdtemp() + "/model")
    messages = [str(w.message) for w in record]
    assert not [m for m in messages if "set_params changed" in m]
    assert [m for m in messages if "is not an int and cannot be saved" in m]


def test_hierarchical_signals_refuse_a_width_children_cannot_live_in():
    with pytest.raises(ValueError, match="at least 2 features"):
        make_hierarchical_signals(n_samples=10, n_features=1, n_parents=4, random_state=0)
    X1, atoms, _, _ = make_hierarchical_signals(n_samples=10, n_features=1, n_parents=4, children_per_parent=0,
                                                random_state=0)
    assert np.isfinite(X1).all() and np.isfinite(atoms).all()


def test_conversion_keeps_the_ids_load_embeddings_reads(tmp_path):
    import h5py

    from sklearn_sae.datasets import convert_embeddings, load_embeddings

    with h5py.File(tmp_path / "hashed.h5", "w") as f:  # ProtTrans / bio_embeddings: datasets named by a hash
        for name, original in [("9f3c", "sp|P1|A"), ("a7d2", "sp|P2|B")]:
            f.create_dataset(name, data=np.ones(4, np.float32)).attrs["original_id"] = original
    ids, _ = load_embeddings(tmp_path / "hashed.h5")
    converted_ids, _ = load_embeddings(convert_embeddings(tmp_path / "hashed.h5", tmp_path / "matrix.h5"))
    assert list(ids) == ["sp|P1|A", "sp|P2|B"] and list(converted_ids) == list(ids)


def test_residue_embeddings_refuse_an_integer_dtype_as_the_other_readers_do(tmp_path):
    import h5py

    from sklearn_sae.datasets import load_embeddings, load_residue_embeddings

    with h5py.File(tmp_path / "residues.h5", "w") as f:
        f.create_dataset("P1", data=np.array([[0.7, -0.4], [1.9, 0.2]], dtype=np.float32))
    with pytest.raises(ValueError, match="floating point dtype"):
        load_residue_embeddings(tmp_path / "residues.h5", dtype=np.int16)
    with pytest.raises(ValueError, match="floating point dtype"):
        load_embeddings(tmp_path / "residues.h5", dtype=np.int16)
    assert load_residue_embeddings(tmp_path / "residues.h5")[1][0, 0] == np.float32(0.7)


def test_the_l0_budget_scorer_and_core_metrics_score_a_pipeline_as_its_sae(tmp_path):
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import StandardScaler

    from sklearn_sae.evaluate import core_metrics, make_l0_budget_scorer

    rows = (np.random.default_rng(0).normal(size=(300, 16)) * 0.05 + 1.0).astype(np.float32)
    pipe = _quiet_fit(Pipeline([("sae", _sae(max_epochs=3))]), rows)
    sae = pipe.named_steps["sae"]
    scorer = make_l0_budget_scorer(8)
    assert scorer(pipe, rows) == pytest.approx(scorer(sae, rows)) == pytest.approx(sae.score(rows), abs=1e-5)
    assert core_metrics(pipe, rows).equals(core_metrics(sae, rows))
    scaled = _quiet_fit(Pipeline([("scale", StandardScaler()), ("sae", _sae(max_epochs=3))]), rows)
    inner = scaled[:-1].transform(rows).astype(np.float32)
    assert scorer(scaled, rows) == pytest.approx(scaled.named_steps["sae"].score(inner), abs=1e-5)


def test_sparse_probing_leaves_out_rows_without_a_label():
    from sklearn_sae.evaluate import make_sparse_probing_scorer, sparse_probing

    rng = np.random.default_rng(0)
    labels = rng.choice(["Nucleus", "Membrane"], 120)
    codes = np.column_stack([rng.random(120), (labels == "Nucleus") * 3.0, rng.random(120)])
    y = pd.Series(labels, dtype=object)
    y[:6] = np.nan  # missing annotations, as an empty field of a labels table gives
    with pytest.warns(UserWarning, match="6 of the 80 rows of y_train have no label"):
        table = sparse_probing(codes[:80], y[:80], codes[80:], y[80:], ks=(1,))
    complete = sparse_probing(codes[6:80], labels[6:80], codes[80:], labels[80:], ks=(1,))
    pd.testing.assert_frame_equal(table.reset_index(drop=True), complete.reset_index(drop=True))

    class Identity:
        def transform(self, X):
            return X

    with pytest.warns(UserWarning, match="have no label"):
        score = make_sparse_probing_scorer(ks=(1,), n_splits=2)(Identity(), codes, y)
    assert score > 0.9
