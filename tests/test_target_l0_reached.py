"""JumpReLU with ``target_l0`` ends every fit and ``partial_fit`` call on its target: the mean L0 of the fit's
validation rows (of the call's rows) is the target, whatever the balance of the quadratic pull and the
reconstruction error left."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.model_selection import GridSearchCV
from test_checkpoint import BATCHES_PER_EPOCH, Interrupted, _assert_same_fit, _count_training_batches, _data

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import JumpReLU, firing_ceiling
from sklearn_sae.datasets import make_sparse_signals

PARAMS = dict(activation="jumprelu", n_latents=64, batch_size=64, device="cpu", random_state=0)


def _l0(sae, X):
    return float((sae.transform(X) != 0).sum(axis=1).mean())


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=800, n_features=16, n_atoms=48, n_active=4, random_state=0)[0] + 2.0


def _quietly(call):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return call()


@pytest.mark.parametrize("target", [3, 8])
def test_calibration_puts_the_mean_l0_on_the_target_with_one_common_factor(target):
    generator = torch.Generator().manual_seed(0)
    z_pre = torch.randn(300, 40, generator=generator) * torch.linspace(0.5, 2.0, 40)
    activation = JumpReLU(40, threshold=0.3, target_l0=target)
    with torch.no_grad():
        activation.log_threshold.add_(torch.rand(40, generator=generator) / 50)
    before = activation.threshold.clone()
    # Blocks of uneven size: the running top-k must hold every ratio that decides the factor.
    factor = activation.calibrate_thresholds_(iter(z_pre.split(70)), len(z_pre))
    after = activation.eval()(z_pre)
    assert (after != 0).sum(dim=1).float().mean().item() == pytest.approx(target, abs=1 / len(z_pre))
    torch.testing.assert_close(activation.threshold / before, torch.full((40,), factor), rtol=1e-5, atol=0)


def test_calibration_without_enough_positive_pre_activations_fires_on_all_of_them():
    activation = JumpReLU(4, threshold=0.5, target_l0=3)
    z_pre = torch.tensor([[1.0, -1.0, -1.0, -1.0], [0.2, 0.8, -1.0, -1.0]])
    activation.calibrate_thresholds_([z_pre], 2)
    assert torch.equal(activation.eval()(z_pre) != 0, z_pre > 0)


def test_calibration_does_not_silence_a_latent_that_fires_on_the_training_rows():
    # Latent 0 fires on every row far above its threshold; latent 1 just above it, on two rows. Bringing the
    # mean L0 from 1.25 to 1 raises both thresholds by the same factor, which would silence latent 1.
    z_pre = torch.tensor([[2.0, 0.55], [2.0, 0.0], [2.0, 0.0], [2.0, 0.0]] * 2)
    free, kept = (JumpReLU(2, threshold=0.5, target_l0=1) for _ in range(2))
    free.calibrate_thresholds_([z_pre], len(z_pre))
    kept.calibrate_thresholds_([z_pre], len(z_pre), threshold_ceiling=firing_ceiling(z_pre, kept.threshold))
    assert (free.eval()(z_pre)[:, 1] != 0).sum() == 0
    assert (kept.eval()(z_pre)[:, 1] != 0).sum() == 2
    assert kept.threshold[0].item() == pytest.approx(free.threshold[0].item())


def test_a_partial_fit_call_ends_with_its_rows_at_the_target(X):
    sae = _quietly(lambda: SparseAutoencoderTransformer(**PARAMS, target_l0=6).partial_fit(X[:600]))
    # The call's 600 rows are all in its calibration sample: their mean L0 is the target, up to one entry.
    assert _l0(sae, X[:600]) == pytest.approx(6, abs=1 / 600)


def test_a_short_fit_lands_on_its_target_on_held_out_rows_and_keeps_it_through_save_and_load(X, tmp_path):
    # Five epochs leave the pull far from settled; the end of the fit still puts the L0 on the target.
    sae = _quietly(lambda: SparseAutoencoderTransformer(**PARAMS, target_l0=6, max_epochs=5).fit(X[:600]))
    assert _l0(sae, X[600:]) == pytest.approx(6, rel=0.05)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))


def test_the_same_seed_gives_the_same_calibrated_model(X):
    fits = [_quietly(lambda: SparseAutoencoderTransformer(**PARAMS, target_l0=6, max_epochs=3).fit(X[:600]))
            for _ in range(2)]
    assert torch.equal(fits[0].net_.module_.activation.threshold, fits[1].net_.module_.activation.threshold)


def test_grid_search_over_target_l0_fits_each_candidate_on_its_target(X):
    search = _quietly(lambda: GridSearchCV(
        SparseAutoencoderTransformer(**PARAMS, max_epochs=3), {"target_l0": [3, 8]}, cv=2, refit=False,
    ).fit(X[:600]))
    assert np.isfinite(search.cv_results_["mean_test_score"]).all()
    for target in (3, 8):
        # Half the rows held out for validation, on which the end of the fit measures the L0: 300 of them.
        sae = _quietly(lambda: SparseAutoencoderTransformer(
            **PARAMS, max_epochs=3, target_l0=target, validation_fraction=0.5).fit(X[:600]))
        assert _l0(sae, X[600:]) == pytest.approx(target, rel=0.1)


def test_a_resumed_fit_is_calibrated_once_as_the_uninterrupted_one(tmp_path, monkeypatch):
    params = dict(activation="jumprelu", target_l0=3, n_latents=16, batch_size=16, max_epochs=4,
                  validation_fraction=0.25, lr=3e-2, device="cpu", random_state=0)
    X = _data()
    reference = _quietly(lambda: SparseAutoencoderTransformer(**params).fit(X))
    counter = _count_training_batches(monkeypatch, fail_after=2 * BATCHES_PER_EPOCH + 3)
    with pytest.raises(Interrupted):
        _quietly(lambda: SparseAutoencoderTransformer(**params, checkpoint_dir=tmp_path).fit(X))
    counter["batches"] = 0
    resumed = _quietly(lambda: SparseAutoencoderTransformer(**params, checkpoint_dir=tmp_path).fit(X))
    _assert_same_fit(resumed, reference, X)
    # A finished checkpoint is given back and calibrated again, to the same thresholds.
    again = _quietly(lambda: SparseAutoencoderTransformer(**params, checkpoint_dir=tmp_path).fit(X))
    _assert_same_fit(again, reference, X)
