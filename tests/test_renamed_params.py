"""A name means one thing for every activation: JumpReLU's L0 weight is l0_coef and its term against dead latents
pre_act_coef; the former uses of l1_coef, aux_k and aux_coef keep working with a FutureWarning, and files saved
with them load."""

import json
import warnings

import numpy as np
import pytest
from sklearn.model_selection import GridSearchCV

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.calibration import calibrate_l1_coef
from sklearn_sae.datasets import make_sparse_signals

X = make_sparse_signals(n_samples=500, n_features=16, n_atoms=48, n_active=3, random_state=0)[0]


def _jumprelu(**params):
    return SparseAutoencoderTransformer(**{"activation": "jumprelu", "n_latents": 32, "k": 4, "max_epochs": 2,
                                           "random_state": 0, "device": "cpu", **params})


def _fit_quietly(sae, rows=X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return sae.fit(rows)


@pytest.mark.parametrize("old, new", [
    (dict(l1_coef=1e-2), dict(l0_coef=1e-2)),
    (dict(aux_k=None), dict(pre_act_coef=None)),
    (dict(aux_coef=0.02), dict(pre_act_coef=0.02)),
    (dict(l1_coef=1e-2, aux_coef=0.02), dict(l0_coef=1e-2, pre_act_coef=0.02)),
])
def test_the_former_jumprelu_names_warn_and_train_the_same_model(old, new):
    with pytest.warns(FutureWarning, match="stops working in 0.4") as record:
        former = _fit_quietly(_jumprelu(**old))
    assert all(name in str(record[0].message) for name in new)
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        current = _fit_quietly(_jumprelu(**new))
    np.testing.assert_array_equal(former.transform(X), current.transform(X))
    assert former.history_[-1, "train_loss"] == current.history_[-1, "train_loss"]


@pytest.mark.parametrize("both", [
    dict(l1_coef=1e-2, l0_coef=1e-3), dict(aux_k=None, pre_act_coef=0.01), dict(aux_coef=0.02, pre_act_coef=0.01),
])
def test_the_former_and_the_new_name_together_are_refused(both):
    with pytest.raises(ValueError, match="Pass .* only"):
        _fit_quietly(_jumprelu(**both))


@pytest.mark.parametrize("activation", ["topk", "relu", "batchtopk", "gumbel_topk"])
@pytest.mark.parametrize("jumprelu_only", [dict(l0_coef=1e-3), dict(target_l0=4), dict(pre_act_coef=0.01)])
def test_jumprelu_parameters_are_refused_for_the_other_activations(activation, jumprelu_only):
    sae = SparseAutoencoderTransformer(activation=activation, n_latents=32, k=4, max_epochs=1, device="cpu",
                                       **jumprelu_only)
    with pytest.raises(ValueError, match="apply to activation='jumprelu' only"):
        sae.fit(X)


def test_l1_coef_and_aux_k_keep_their_meaning_for_the_other_activations():
    with warnings.catch_warnings():
        warnings.simplefilter("error", FutureWarning)
        _fit_quietly(SparseAutoencoderTransformer(activation="relu", l1_coef=1e-2, n_latents=32, max_epochs=1,
                                                  device="cpu"))
        _fit_quietly(SparseAutoencoderTransformer(activation="topk", aux_k=None, aux_coef=0.1, n_latents=32, k=4,
                                                  max_epochs=1, device="cpu"))


def test_a_jumprelu_file_saved_with_the_former_names_loads_silently(tmp_path):
    sae = _fit_quietly(_jumprelu(l0_coef=1e-2, pre_act_coef=None))
    sae.save(tmp_path / "model")
    config_path = tmp_path / "model" / "sklearn_sae.json"
    config = json.loads(config_path.read_text())
    for name in ("l0_coef", "target_l0", "pre_act_coef", "whiten"):  # as a file of the previous version has them
        del config["params"][name]
    config["params"].update(l1_coef=1e-2, aux_k=None)
    config_path.write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    assert loaded.get_params()["l1_coef"] == 1e-2  # what the file says; a refit reads it as l0_coef, warning


def test_calibration_sets_l0_coef_for_jumprelu_and_says_so():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        found = calibrate_l1_coef(_jumprelu(), X, target_l0=6, max_fits=3)
    assert found.parameter == "l0_coef"
    assert found.estimator.get_params()["l0_coef"] == found.coef and found.estimator.get_params()["l1_coef"] is None
    with pytest.warns(FutureWarning, match="renamed coef"):
        assert found.l1_coef == found.coef


def test_calibration_widens_its_bracket_downwards_when_the_target_needs_a_smaller_weight():
    # measured: l1_coef 0.01 -> L0 16.1, 0.1 -> 12.0, 1 -> 0.16, 10 -> 0.004
    template = SparseAutoencoderTransformer(32, activation="relu", max_epochs=10, batch_size=32, random_state=0,
                                            device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        found = calibrate_l1_coef(template, X, target_l0=12, bracket=(1.0, 10.0), rtol=0.1, max_fits=6)
    assert min(coef for coef, _ in found.trials) < 1.0  # below the bracket it was given
    assert abs(found.l0 - 12) <= 0.1 * 12


def test_calibration_warns_when_it_ends_away_from_the_target():
    template = SparseAutoencoderTransformer(32, activation="relu", max_epochs=2, random_state=0, device="cpu")
    with pytest.warns(UserWarning, match="not within rtol"):
        calibrate_l1_coef(template, X, target_l0=12, bracket=(1e-4, 1.0), rtol=0.0, max_fits=2)


def test_a_calibration_target_above_the_dictionary_is_refused():
    with pytest.raises(ValueError, match="above n_latents=32"):
        calibrate_l1_coef(_jumprelu(), X, target_l0=40)


def test_target_l0_sets_the_jumprelu_objective_and_is_searchable():
    sae = _fit_quietly(_jumprelu(target_l0=6, l0_coef=0.05, max_epochs=3))
    assert sae.net_.module_.activation.target_l0 == 6
    for row in sae.history_:
        for split in ("train", "valid"):
            # loss = NMSE + l0_coef * mean over rows of 2 / T * (L0_row - T) ** 2
            assert row[f"{split}_loss"] == pytest.approx(row[f"{split}_nmse"] + 0.05 * row[f"{split}_sparsity"],
                                                         rel=1e-5)
    search = GridSearchCV(_jumprelu(max_epochs=1), {"target_l0": [3, 8]}, cv=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search.fit(X)
    assert {params["target_l0"] for params in search.cv_results_["params"]} == {3, 8}
    assert search.best_estimator_.net_.module_.activation.target_l0 == search.best_params_["target_l0"]


def test_target_l0_sizes_the_default_dictionary_in_place_of_k():
    rows = make_sparse_signals(n_samples=2000, n_features=64, n_atoms=128, n_active=4, random_state=0)[0]
    sae = SparseAutoencoderTransformer(activation="jumprelu", target_l0=8, max_epochs=1, random_state=0,
                                       device="cpu")
    _fit_quietly(sae, rows)
    assert sae.n_latents_ == 1800 * 8 // 128  # n_train * expected L0 // 128, with target_l0 as the L0
