"""whiten=True: statistics from training rows, the fitted model reads raw rows, and save, load and the exports to
SAELens and sparsify give the fitted model's codes."""

import warnings

import numpy as np
import pytest
import torch
from sklearn.covariance import ledoit_wolf_shrinkage

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._model import layer_norm_no_affine
from sklearn_sae._rows import InMemoryRows

N_FEATURES = 16
RNG = np.random.default_rng(0)
# Anisotropic rows: the variance of the directions spans four orders of magnitude, with an offset.
MIXING = RNG.normal(size=(N_FEATURES, N_FEATURES)) * np.logspace(0, -2, N_FEATURES)[:, None]
X = (RNG.normal(size=(800, N_FEATURES)) @ MIXING + 0.3).astype(np.float32)
ACTIVATIONS = ["topk", "batchtopk", "relu", "jumprelu", "gumbel_topk"]


def _fit(X=X, **params):
    settings = dict(k=4, n_latents=32, max_epochs=3, whiten=True, random_state=0, device="cpu") | params
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dead latents of a three-epoch fit are not the point
        return SparseAutoencoderTransformer(**settings).fit(X)


def _codes_close(a, b):
    """Codes equal up to float32 rounding of another order of operations (codes here are at most ~5)."""
    assert float(np.abs(b).max()) < 10
    np.testing.assert_allclose(a, b, rtol=0, atol=1e-5)


@pytest.mark.parametrize("normalize", [True, False])
def test_the_whitened_training_rows_have_identity_covariance_but_for_the_damped_directions(normalize):
    sae = _fit(validation_fraction=0.0, normalize=normalize)
    module = sae.net_.module_
    with torch.no_grad():
        whitened = module.preprocess(torch.from_numpy(X))[0].double()
    rows = layer_norm_no_affine(torch.from_numpy(X))[0] if normalize else torch.from_numpy(X)
    eigenvalues, eigenvectors = torch.linalg.eigh(torch.cov(rows.double().T))
    eigenvalues = eigenvalues.clamp_min(0)
    # Ledoit-Wolf's shrinkage towards the mean eigenvalue (scikit-learn's estimate of its weight), plus eps, a
    # thousandth of the mean eigenvalue, damp the directions of least variance (and the one direction that
    # per-row standardisation leaves without any)
    weight = ledoit_wolf_shrinkage((rows - rows.mean(dim=0)).double().numpy(), assume_centered=True)
    kept = eigenvalues / ((1 - weight) * eigenvalues + (weight + 1e-3) * eigenvalues.mean())
    expected = (eigenvectors * kept) @ eigenvectors.T
    np.testing.assert_allclose(torch.cov(whitened.T).numpy(), expected.numpy(), atol=1e-4)
    assert bool((kept[-N_FEATURES // 4:] > 0.9).all())  # the directions of most variance have unit variance
    assert float(kept[0]) < 0.1  # and those far below the sampling noise are damped, not blown up
    np.testing.assert_allclose(whitened.mean(dim=0).numpy(), 0, atol=1e-4)


def test_fewer_rows_than_dimensions_do_not_blow_up_held_out_rows():
    # 40 rows in 64 dimensions: the sample covariance is singular. Unshrunk, its empty directions (eigenvalue 0,
    # plus eps) would scale a held-out row's component there ~30-fold; shrunk, whitened held-out rows keep about
    # the size of whitened training rows.
    rng = np.random.default_rng(1)
    rows = (rng.normal(size=(80, 64)) * np.logspace(0, -1, 64)).astype(np.float32)
    sae = _fit(rows[:40], k=4, n_latents=16, validation_fraction=0.0, max_epochs=1)
    with torch.no_grad():
        seen, held_out = (sae.net_.module_.preprocess(torch.from_numpy(part))[0].norm(dim=1).mean()
                          for part in (rows[:40], rows[40:]))
    assert float(held_out) < 1.5 * float(seen)


def test_the_statistics_come_from_the_training_rows_only():
    sae = _fit(validation_fraction=0.25)
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))  # the fit's seed, from random_state=0
    train, valid = InMemoryRows(torch.from_numpy(X)).split(0.25, seed)
    train_rows = train.X[torch.from_numpy(train.indices)]
    mean = layer_norm_no_affine(train_rows)[0].double().mean(dim=0)
    np.testing.assert_allclose(sae.net_.module_.whitening_mean.double().numpy(), mean.numpy(), atol=1e-6)
    everything = layer_norm_no_affine(torch.from_numpy(X))[0].double().mean(dim=0)
    assert not np.allclose(mean.numpy(), everything.numpy(), atol=1e-6)  # the held-out rows would have moved it


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_save_and_load_give_the_fitted_codes(tmp_path, activation, tied):
    sae = _fit(activation=activation, tied=tied)
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert loaded.whiten is True
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("activation", ["topk", "relu", "batchtopk", "jumprelu"])
def test_saelens_loads_the_export_with_the_whitening_folded_in(tmp_path, activation, normalize):
    sae_lens = pytest.importorskip("sae_lens")
    sae = _fit(activation=activation, normalize=normalize)
    sae.export(tmp_path, "saelens", normalization="standardized" if normalize else None)
    exported = sae_lens.SAE.load_from_disk(tmp_path)
    rows = layer_norm_no_affine(torch.from_numpy(X))[0] if normalize else torch.from_numpy(X)
    with torch.no_grad():
        codes = exported.encode(rows).numpy()
        decoded = exported.decode(exported.encode(rows)).numpy()
    ours = sae.transform(X)
    _codes_close(codes, ours)
    np.testing.assert_allclose(decoded, sae.inverse_transform(ours), rtol=1e-4, atol=1e-5)
    _codes_close(SparseAutoencoderTransformer.load(tmp_path).transform(X), ours)


@pytest.mark.parametrize("tied", [True, False])
def test_sparsify_loads_the_export_with_the_whitening_folded_in(tmp_path, tied):
    sparsify = pytest.importorskip("sparsify")
    sae = _fit(tied=tied, normalize=False, unit_norm_decoder=True)
    sae.export(tmp_path, "sparsify")
    coder = sparsify.SparseCoder.load_from_disk(tmp_path)
    with torch.no_grad():
        encoded = coder.encode(torch.from_numpy(X))
        codes = torch.zeros(len(X), coder.num_latents).scatter(1, encoded.top_indices, encoded.top_acts).numpy()
    _codes_close(codes, sae.transform(X))
    assert coder.cfg.normalize_decoder is False  # the folded atoms are not of unit norm
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert imported.tied is False and imported.whiten is False  # the same codes, from plain weights
    _codes_close(imported.transform(X), sae.transform(X))


def test_components_are_the_atoms_in_the_standardised_space():
    sae = _fit(tied=False)
    module = sae.net_.module_
    expected = (module.W_dec @ module.unwhitening_matrix).detach().numpy()
    np.testing.assert_allclose(sae.components_, expected, rtol=1e-6)
    # each code's contribution to inverse_transform is its atom
    codes = np.zeros((1, sae.n_latents_), dtype=np.float32)
    codes[0, 3] = 1.0
    zero = sae.inverse_transform(np.zeros_like(codes))
    np.testing.assert_allclose(sae.inverse_transform(codes) - zero, sae.components_[3:4], rtol=1e-4, atol=1e-5)


def test_inverse_transform_keeps_its_contract_under_whitening():
    sae = _fit()
    decoded = sae.inverse_transform(sae.transform(X))
    mean, scale = X.mean(axis=1, keepdims=True), np.sqrt(X.var(axis=1, keepdims=True) + 1e-5)
    np.testing.assert_allclose(decoded * scale + mean, sae.reconstruct(X), rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("activation", ["relu", "jumprelu", "topk"])
def test_each_loss_is_its_recorded_terms_in_the_whitened_space(activation):
    coefficient = {"relu": dict(l1_coef=1e-3), "jumprelu": dict(l0_coef=1e-3), "topk": {}}[activation]
    sae = _fit(activation=activation, **coefficient)
    last = sae.history_[-1]
    sparsity = last["valid_l0"] if activation == "jumprelu" else last["valid_l1"]
    coefficient = 1e-3 if activation != "topk" else 0.0
    assert last["valid_loss"] == pytest.approx(last["valid_nmse"] + coefficient * sparsity, rel=1e-5)
    # the NMSE is measured on whitened rows, the FVU on the rows themselves (as score)
    assert last["valid_nmse"] != pytest.approx(last["valid_fvu"], rel=0.05)


def test_partial_fit_whitens_with_the_first_calls_rows_and_keeps_it():
    sae = SparseAutoencoderTransformer(k=4, n_latents=32, whiten=True, random_state=0, device="cpu")
    sae.partial_fit(X[:400])
    matrix = sae.net_.module_.whitening_matrix.clone()
    assert not torch.equal(matrix, torch.eye(N_FEATURES))
    sae.partial_fit(X[400:])
    assert torch.equal(sae.net_.module_.whitening_matrix, matrix)


def test_an_on_disk_fit_whitens_too(tmp_path):
    import h5py

    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(64, N_FEATURES))
    with h5py.File(tmp_path / "x.h5", "r") as f:
        sae = _fit(f["X"])
        codes = sae.transform(f["X"])
    assert not torch.equal(sae.net_.module_.whitening_matrix, torch.eye(N_FEATURES))
    np.testing.assert_array_equal(codes, sae.transform(X))


def test_whitening_helps_reconstruct_the_low_variance_directions():
    """What whitening is for: the objective weighs every direction of the data alike."""
    plain, white = _fit(whiten=False, max_epochs=20), _fit(max_epochs=20)
    with torch.no_grad():
        basis = torch.linalg.svd(torch.from_numpy(layer_norm_no_affine(torch.from_numpy(X))[0].numpy()))[2]
    weak = basis[-6:].T.numpy()  # the six directions of least variance

    def weak_error(sae):
        error = (sae.reconstruct(X) - X) / np.sqrt(X.var(axis=1, keepdims=True) + 1e-5)
        signal = layer_norm_no_affine(torch.from_numpy(X))[0].numpy()
        return float(np.square(error @ weak).sum() / np.square((signal - signal.mean(0)) @ weak).sum())

    assert weak_error(white) < weak_error(plain)
