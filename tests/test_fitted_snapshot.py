"""A fitted model is one snapshot: set_params after a fit changes nothing the model computes, saves or exports
until the next fit, and every entry point that trains checks its rows as fit does."""

import json
import warnings

import numpy as np
import pytest

from sklearn_sae import SparseAutoencoderTransformer

RNG = np.random.default_rng(0)
X = RNG.normal(size=(300, 16)).astype(np.float32)


def _fit(**params):
    defaults = dict(k=4, n_latents=32, max_epochs=2, random_state=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dead latents of a two-epoch fit are not the point here
        return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


@pytest.mark.parametrize("changed", [{"k": 2}, {"normalize": False}, {"k": 2, "normalize": False}, {"tied": False}])
def test_save_writes_the_fitted_model_after_set_params(tmp_path, changed):
    sae = _fit()
    codes = sae.transform(X)
    sae.set_params(**changed)
    with pytest.warns(UserWarning, match="save\\(\\) writes the fitted model") as record:
        sae.save(tmp_path / "model")
    assert all(name in str(record[0].message) for name in changed)
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(X), codes)
    assert loaded.get_params()["k"] == 4 and loaded.get_params()["normalize"] is True


def test_save_takes_the_current_output_parameters_without_a_warning(tmp_path):
    sae = _fit()
    sae.set_params(sparse_output=True, verbose=0, device="cpu")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sae.save(tmp_path / "model")
    assert SparseAutoencoderTransformer.load(tmp_path / "model").sparse_output is True


def test_transform_keeps_the_fitted_precision_after_set_params_amp():
    sae = _fit()
    codes = sae.transform(X)
    sae.set_params(amp=True)  # bfloat16 matrix products would change the codes
    np.testing.assert_array_equal(sae.transform(X), codes)


def test_export_records_the_fitted_unit_norm_decoder(tmp_path):
    sae = _fit(tied=False, unit_norm_decoder=True, normalize=False)
    sae.set_params(unit_norm_decoder=False)
    sae.export(tmp_path / "coder", "sparsify")
    assert json.loads((tmp_path / "coder" / "cfg.json").read_text())["normalize_decoder"] is True


def test_partial_fit_after_fit_continues_the_fitted_model_when_its_shape_parameters_changed():
    sae = _fit()
    sae.set_params(tied=False, k=8)
    with pytest.warns(UserWarning, match="partial_fit continues the fitted model") as record:
        sae.partial_fit(X)
    message = str(record[0].message)
    assert "tied=True (now False)" in message and "k=4 (now 8)" in message
    assert sae.net_.module_.tied and sae.net_.module_.activation.k == 4
    assert int((sae.transform(X) != 0).sum(axis=1).max()) <= 4


def test_partial_fit_run_warns_when_parameters_other_than_lr_changed_and_saves_what_it_trains(tmp_path):
    sae = SparseAutoencoderTransformer(k=4, n_latents=32, random_state=0, device="cpu", lr=1e-3)
    sae.partial_fit(X)
    sae.set_params(lr=5e-4)  # lr may change between calls: no warning
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        sae.partial_fit(X)
    sae.set_params(k=2)
    with pytest.warns(UserWarning, match="partial_fit continues the run"):
        sae.partial_fit(X)
    with pytest.warns(UserWarning, match="k=4 \\(now 2\\)"):
        sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    assert loaded.lr == 5e-4  # the rate the run last trained at


def test_partial_fit_refuses_rows_fit_refuses():
    huge = X * 1e18  # float32 sums of these rows overflow
    with pytest.raises(ValueError, match="magnitude"):
        SparseAutoencoderTransformer(k=4, n_latents=32, max_epochs=1, device="cpu").fit(huge)
    sae = SparseAutoencoderTransformer(k=4, n_latents=32, device="cpu")
    with pytest.raises(ValueError, match="magnitude"):
        sae.partial_fit(huge)
    assert not hasattr(sae, "net_")
    sae.partial_fit(X)
    with pytest.raises(ValueError, match="magnitude"):
        sae.partial_fit(huge)


def test_a_default_dictionary_too_small_to_be_sparse_warns_and_names_what_to_change():
    rows = RNG.normal(size=(120, 16)).astype(np.float32)
    with pytest.warns(UserWarning, match="hardly sparse") as record:
        sae = SparseAutoencoderTransformer(max_epochs=1, device="cpu", random_state=0).fit(rows)
    message = next(str(w.message) for w in record if "hardly sparse" in str(w.message))
    assert f"gave {sae.n_latents_} latents" in message and "Lower k" in message and "n_latents" in message
    assert sae.n_latents_ < 2 * sae.k


def test_a_default_dictionary_with_room_to_be_sparse_does_not_warn():
    rows = RNG.normal(size=(2000, 16)).astype(np.float32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        SparseAutoencoderTransformer(k=4, max_epochs=1, device="cpu", random_state=0).fit(rows)
    assert not [w for w in record if "hardly sparse" in str(w.message)]


def test_an_explicit_k_start_without_warmup_is_refused():
    sae = SparseAutoencoderTransformer(k=4, k_start=8, warmup_steps=0, n_latents=32, max_epochs=1, device="cpu")
    with pytest.raises(ValueError, match="warmup_steps=0"):
        sae.fit(X)


def test_the_dead_latent_warning_reads_the_epoch_early_stopping_kept():
    from sklearn_sae._transformer import _restored_epoch, _warn_if_unhealthy

    sae = _fit(max_epochs=40, n_iter_no_change=2, lr=3e-2)
    history = sae.net_.history
    kept = _restored_epoch(sae.net_)
    assert kept < len(history) - 1, "the fit was meant to stop after its best epoch"
    losses = history[:, "valid_loss"]
    assert history[kept, "valid_loss"] == min(losses)
    history[kept]["train_dead_fraction"] = 0.5
    history[-1]["train_dead_fraction"] = 0.0
    with pytest.warns(UserWarning, match=f"in epoch {history[kept, 'epoch']}, whose weights were kept"):
        _warn_if_unhealthy(sae.net_, kept)
