"""Export to and import from EleutherAI sparsify and SAELens (sklearn_sae._interop).

The libraries themselves load our exports and we compare their codes and reconstructions with the
estimator's. Tolerances: both libraries run the same float32 operations on the same weights, but not
always the same kernels (SAELens adds the encoder bias after the product, we fuse it with ``addmm``;
decoders sum in another order), so values may differ by a few float32 roundings: ``rtol=1e-5`` with
``atol=1e-6`` on values of order 1 covers that and nothing larger. Where the code path is the same
(our import of our export), results must be bit-identical.
"""

import copy
import json

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._interop import MARKER_FILE, load_foreign
from sklearn_sae._model import layer_norm_no_affine

N_FEATURES, N_LATENTS, K = 16, 48, 4
TOLERANCE = dict(rtol=1e-5, atol=1e-6)


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(0)
    # Rows of variance about 1, offset from zero, so that pre_bias and the normalisation matter.
    return (rng.normal(size=(300, N_FEATURES)) + rng.normal(size=N_FEATURES)).astype(np.float32)


_FITTED = {}


def fitted(X, **params):
    """A small fitted estimator, fitted once per parameter set for the whole module."""
    key = tuple(sorted(params.items()))
    if key not in _FITTED:
        settings = dict(n_latents=N_LATENTS, k=K, max_epochs=2, device="cpu", random_state=0) | params
        _FITTED[key] = SparseAutoencoderTransformer(**settings).fit(X)
    return _FITTED[key]


def standardized(X):
    """Rows standardised exactly as the model does (the input of a ``normalization="standardized"`` export)."""
    return layer_norm_no_affine(torch.from_numpy(X))[0]


MISSING = "{} is not installed; pip install sklearn-sae[interop] to test against it"


@pytest.fixture(scope="module")
def sparsify():
    return pytest.importorskip("sparsify", reason=MISSING.format("EleutherAI sparsify"))


@pytest.fixture(scope="module")
def sae_lens():
    return pytest.importorskip("sae_lens", reason=MISSING.format("SAELens"))


def sparsify_outputs(coder, x):
    """Dense codes and reconstruction of sparsify's ``encode`` / ``decode``."""
    with torch.no_grad():
        encoded = coder.encode(x)
        codes = torch.zeros(x.shape[0], coder.num_latents).scatter(1, encoded.top_indices, encoded.top_acts)
        return codes.numpy(), coder.decode(encoded.top_acts, encoded.top_indices).numpy()


def saelens_outputs(sae, x):
    with torch.no_grad():
        codes = sae.encode(x)
        return codes.numpy(), sae.decode(codes).numpy()


# ------------------------------------------------------------------ export, loaded by the libraries


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("activation", ["topk", "gumbel_topk"])
def test_sparsify_loads_export(sparsify, X, tmp_path, tied, activation):
    estimator = fitted(X, activation=activation, tied=tied, normalize=False)
    estimator.export(tmp_path, "sparsify", as_topk=activation == "gumbel_topk")
    coder = sparsify.SparseCoder.load_from_disk(tmp_path)
    assert (coder.num_latents, coder.cfg.k) == (N_LATENTS, K)
    codes, reconstruction = sparsify_outputs(coder, torch.from_numpy(X))
    np.testing.assert_allclose(codes, estimator.transform(X), **TOLERANCE)
    np.testing.assert_allclose(reconstruction, estimator.reconstruct(X), **TOLERANCE)


@pytest.mark.parametrize("activation", ["topk", "relu", "batchtopk", "jumprelu"])
def test_saelens_loads_export(sae_lens, X, tmp_path, activation):
    estimator = fitted(X, activation=activation, normalize=False)
    estimator.export(tmp_path, "saelens")
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    architectures = {"topk": "topk", "relu": "standard", "batchtopk": "jumprelu", "jumprelu": "jumprelu"}
    assert sae.cfg.architecture() == architectures[activation]
    codes, reconstruction = saelens_outputs(sae, torch.from_numpy(X))
    np.testing.assert_allclose(codes, estimator.transform(X), **TOLERANCE)
    np.testing.assert_allclose(reconstruction, estimator.reconstruct(X), **TOLERANCE)
    with torch.no_grad():
        np.testing.assert_allclose(sae(torch.from_numpy(X)).numpy(), estimator.reconstruct(X), **TOLERANCE)


@pytest.mark.parametrize("format", ["sparsify", "saelens"])
def test_standardized_export_is_exact_on_standardized_rows(request, X, tmp_path, format):
    estimator = fitted(X, normalize=True)
    estimator.export(tmp_path, format, normalization="standardized")
    if format == "sparsify":
        coder = request.getfixturevalue("sparsify").SparseCoder.load_from_disk(tmp_path)
        codes, decoded = sparsify_outputs(coder, standardized(X))
    else:
        sae = request.getfixturevalue("sae_lens").SAE.load_from_disk(tmp_path)
        codes, decoded = saelens_outputs(sae, standardized(X))
    ours = estimator.transform(X)
    np.testing.assert_allclose(codes, ours, **TOLERANCE)
    # With normalize=True, inverse_transform is the decoder output in the standardised space.
    np.testing.assert_allclose(decoded, estimator.inverse_transform(ours), **TOLERANCE)


def test_relu_as_topk_to_sparsify_gives_the_relu_codes(sparsify, X, tmp_path):
    estimator = fitted(X, activation="relu", normalize=False)
    estimator.export(tmp_path, "sparsify", as_topk=True)
    coder = sparsify.SparseCoder.load_from_disk(tmp_path)
    assert coder.cfg.k == N_LATENTS
    codes, reconstruction = sparsify_outputs(coder, torch.from_numpy(X))
    ours = estimator.transform(X)
    assert (ours == 0).any(), "the ReLU model should have zero codes, or the test shows nothing"
    np.testing.assert_allclose(codes, ours, **TOLERANCE)
    np.testing.assert_allclose(reconstruction, estimator.reconstruct(X), **TOLERANCE)


def test_saelens_layer_norm_export_is_within_documented_tolerance(sae_lens, X, tmp_path):
    """Rows of variance about 1: the eps difference is about 1e-5 relative (see the export docstring)."""
    estimator = fitted(X, activation="relu", normalize=True)
    estimator.export(tmp_path, "saelens", normalization="layer_norm")
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    assert sae.cfg.normalize_activations == "layer_norm"
    x = torch.from_numpy(X)
    with torch.no_grad():
        codes, reconstruction = sae.encode(x).numpy(), sae(x).numpy()
    ours, ours_reconstruction = estimator.transform(X), estimator.reconstruct(X)
    scale = np.abs(ours).max()
    # 1e-4, against the 1 - sqrt(15 / 16) = 3% the codes would be off by without folding the Bessel factor.
    assert np.abs(codes - ours).max() / scale < 1e-4
    spread = np.linalg.norm(X - X.mean(axis=1, keepdims=True), axis=1)
    assert (np.linalg.norm(reconstruction - ours_reconstruction, axis=1) / spread).max() < 1e-4


# ------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("params", "format", "options", "message"),
    [
        (dict(normalize=True), "sparsify", {}, "normalization='standardized'"),
        (dict(normalize=True), "saelens", {}, "normalization='layer_norm'"),
        (dict(normalize=True), "sparsify", dict(normalization="layer_norm"), "sparsify has no input normalisation"),
        (dict(normalize=False), "saelens", dict(normalization="standardized"), "Leave normalization=None"),
        (dict(activation="relu", normalize=False), "sparsify", {}, "as_topk=True"),
        (dict(activation="gumbel_topk", normalize=False), "sparsify", {}, "as_topk=True"),
        (dict(activation="gumbel_topk", normalize=False), "saelens", {}, "as_topk=True"),
        (dict(normalize=False), "safetensors", {}, "format='safetensors' is not supported"),
        (dict(normalize=True), "saelens", dict(normalization="exact"), "normalization='exact' is not understood"),
    ],
)
def test_inexact_export_is_refused(X, tmp_path, params, format, options, message):
    estimator = fitted(X, **params)
    with pytest.raises(ValueError, match=message.replace("(", r"\(")):
        estimator.export(tmp_path / "out", format, **options)
    assert not (tmp_path / "out").exists(), "a refused export must write nothing"


def test_export_follows_the_fitted_model_not_later_set_params(X, tmp_path):
    estimator = copy.deepcopy(fitted(X, normalize=False)).set_params(k=2, normalize=True, activation="relu")
    estimator.export(tmp_path, "sparsify")
    assert json.loads((tmp_path / "cfg.json").read_text())["k"] == K
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(tmp_path).transform(X), fitted(X, normalize=False).transform(X))


def test_export_needs_a_fitted_estimator(tmp_path):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        SparseAutoencoderTransformer().export(tmp_path, "sparsify")


# ------------------------------------------------------------------------- round trips


@pytest.mark.parametrize(
    ("params", "format", "options"),
    [
        (dict(normalize=False), "sparsify", {}),
        (dict(normalize=False, tied=False), "saelens", {}),
        (dict(normalize=True), "sparsify", dict(normalization="standardized")),
        (dict(normalize=True, tied=False), "saelens", dict(normalization="standardized")),
        (dict(activation="relu", normalize=False), "saelens", {}),
        (dict(activation="relu", normalize=False), "sparsify", dict(as_topk=True)),
        (dict(activation="gumbel_topk", normalize=False), "saelens", dict(as_topk=True)),
        (dict(activation="batchtopk", normalize=True), "saelens", dict(normalization="standardized")),
    ],
)
def test_round_trip_is_bit_identical(X, tmp_path, params, format, options):
    estimator = fitted(X, **params)
    estimator.export(tmp_path, format, **options)
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert isinstance(imported, SparseAutoencoderTransformer)
    assert imported.normalize == estimator.normalize
    assert imported.tied == estimator.tied
    assert imported.activation == ("topk" if estimator.activation == "gumbel_topk" else estimator.activation)
    np.testing.assert_array_equal(imported.transform(X), estimator.transform(X))
    np.testing.assert_array_equal(imported.reconstruct(X), estimator.reconstruct(X))
    np.testing.assert_array_equal(imported.components_, estimator.components_)


def test_import_without_the_record_keeps_the_foreign_model_as_it_is(X, tmp_path):
    """Without sklearn_sae.json the directory is a plain foreign model: no normalisation, untied."""
    estimator = fitted(X, normalize=True)
    estimator.export(tmp_path, "sparsify", normalization="standardized")
    (tmp_path / MARKER_FILE).unlink()
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert not imported.normalize and not imported.tied
    x_standardized = standardized(X).numpy()
    np.testing.assert_array_equal(imported.transform(x_standardized), estimator.transform(X))


# ------------------------------------------------------------------ import of native models


def randomize_(module):
    """Random values in every parameter, biases included (the libraries start them at zero)."""
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.5)


def test_import_native_sparsify_coder(sparsify, X, tmp_path):
    coder = sparsify.SparseCoder(N_FEATURES, sparsify.SparseCoderConfig(num_latents=N_LATENTS, k=K))
    randomize_(coder)
    coder.save_to_disk(tmp_path)
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert (imported.activation, imported.k, imported.n_latents_, imported.normalize) == ("topk", K, N_LATENTS, False)
    codes, reconstruction = sparsify_outputs(coder, torch.from_numpy(X))
    np.testing.assert_allclose(imported.transform(X), codes, **TOLERANCE)
    np.testing.assert_allclose(imported.reconstruct(X), reconstruction, **TOLERANCE)


@pytest.mark.parametrize("architecture", ["standard", "topk"])
def test_import_native_saelens_sae(sae_lens, X, tmp_path, architecture):
    if architecture == "topk":
        sae = sae_lens.TopKSAE(sae_lens.TopKSAEConfig(d_in=N_FEATURES, d_sae=N_LATENTS, k=K))
    else:
        sae = sae_lens.StandardSAE(sae_lens.StandardSAEConfig(d_in=N_FEATURES, d_sae=N_LATENTS))
    randomize_(sae)
    sae.save_model(tmp_path)
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert imported.activation == {"topk": "topk", "standard": "relu"}[architecture]
    codes, reconstruction = saelens_outputs(sae, torch.from_numpy(X))
    assert (codes > 0).any()
    np.testing.assert_allclose(imported.transform(X), codes, **TOLERANCE)
    np.testing.assert_allclose(imported.reconstruct(X), reconstruction, **TOLERANCE)


def edit_config(directory, **changes):
    path = directory / "cfg.json"
    config = json.loads(path.read_text())
    config.update(changes)
    path.write_text(json.dumps(config))


@pytest.mark.parametrize(
    ("format", "changes", "message"),
    [
        ("sparsify", dict(skip_connection=True), "skip connection"),
        ("sparsify", dict(transcode=True), "transcoder"),
        ("sparsify", dict(activation="groupmax"), "activation='groupmax'"),
        ("sparsify", dict(multi_topk=True), "Multi-TopK"),
        ("saelens", dict(architecture="gated"), "architecture 'gated'"),
        ("saelens", dict(normalize_activations="layer_norm"), "normalize_activations='layer_norm'"),
        ("saelens", dict(normalize_activations="expected_average_only_in"), "expected_average_only_in"),
        ("saelens", dict(apply_b_dec_to_input=False), "apply_b_dec_to_input=False"),
        ("saelens", dict(rescale_acts_by_decoder_norm=True), "rescale_acts_by_decoder_norm=True"),
    ],
)
def test_import_refuses_what_it_cannot_represent(X, tmp_path, format, changes, message):
    fitted(X, normalize=False).export(tmp_path, format)
    edit_config(tmp_path, **changes)
    with pytest.raises(ValueError, match=message):
        SparseAutoencoderTransformer.load(tmp_path)


def test_import_refuses_extra_tensors(X, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted(X, normalize=False).export(tmp_path, "sparsify")
    tensors = load_file(tmp_path / "sae.safetensors")
    tensors["W_skip"] = torch.zeros(N_FEATURES, N_FEATURES)
    save_file(tensors, tmp_path / "sae.safetensors")
    with pytest.raises(ValueError, match="W_skip"):
        SparseAutoencoderTransformer.load(tmp_path)


def test_import_refuses_float64_weights(X, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted(X, normalize=False).export(tmp_path, "saelens")
    tensors = {name: tensor.double() for name, tensor in load_file(tmp_path / "sae_weights.safetensors").items()}
    save_file(tensors, tmp_path / "sae_weights.safetensors")
    with pytest.raises(ValueError, match="float64"):
        SparseAutoencoderTransformer.load(tmp_path)


def test_import_upcasts_half_precision_weights_exactly(X, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted(X, normalize=False, tied=False).export(tmp_path, "saelens")
    path = tmp_path / "sae_weights.safetensors"
    halved = {name: tensor.to(torch.bfloat16) for name, tensor in load_file(path).items()}
    save_file(halved, path)
    imported = SparseAutoencoderTransformer.load(tmp_path)
    np.testing.assert_array_equal(imported.components_, halved["W_dec"].float().numpy())
    assert imported.components_.dtype == np.float32


def test_import_reports_damaged_files(X, tmp_path):
    fitted(X, normalize=False).export(tmp_path, "sparsify")
    (tmp_path / "sae.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(ValueError, match="not a readable safetensors file"):
        SparseAutoencoderTransformer.load(tmp_path)
    (tmp_path / "cfg.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        SparseAutoencoderTransformer.load(tmp_path)


def test_load_foreign_returns_none_for_other_directories(tmp_path):
    assert load_foreign(tmp_path) is None
    (tmp_path / "cfg.json").write_text("{}")
    assert load_foreign(tmp_path) is None
    # A pickle is never opened, whatever its name.
    (tmp_path / "model.pt").write_bytes(b"not read")
    assert load_foreign(tmp_path) is None


def test_load_of_a_directory_in_no_known_format_names_what_it_expected(tmp_path):
    (tmp_path / "cfg.json").write_text("{}")
    with pytest.raises(ValueError, match="sklearn_sae.json"):
        SparseAutoencoderTransformer.load(tmp_path)


def test_a_jumprelu_with_per_latent_thresholds_comes_back_as_jumprelu(X, tmp_path):
    from safetensors.torch import load_file, save_file

    fitted(X, activation="batchtopk", normalize=False).export(tmp_path, "saelens")
    tensors = load_file(tmp_path / "sae_weights.safetensors")
    tensors["threshold"] = torch.linspace(0.1, 1.0, N_LATENTS)
    save_file(tensors, tmp_path / "sae_weights.safetensors")
    assert SparseAutoencoderTransformer.load(tmp_path).activation == "jumprelu"
    tensors["threshold"][0] = 0.0
    save_file(tensors, tmp_path / "sae_weights.safetensors")
    with pytest.raises(ValueError, match="thresholds at or below 0"):
        SparseAutoencoderTransformer.load(tmp_path)


def test_batchtopk_is_refused_by_sparsify(X, tmp_path):
    with pytest.raises(ValueError, match="batchtopk' cannot be exported to sparsify"):
        fitted(X, activation="batchtopk", normalize=False).export(tmp_path, "sparsify")


# ------------------------------------------------- Matryoshka exports as its activation; the record keeps its levels

MATRYOSHKA = (0.25, 0.5)


@pytest.mark.parametrize("activation", ["topk", "batchtopk"])
def test_saelens_loads_a_matryoshka_export_as_its_activation(sae_lens, X, tmp_path, activation):
    estimator = fitted(X, activation=activation, matryoshka=MATRYOSHKA, normalize=False)
    estimator.export(tmp_path, "saelens")
    sae = sae_lens.SAE.load_from_disk(tmp_path)
    assert sae.cfg.architecture() == {"topk": "topk", "batchtopk": "jumprelu"}[activation]
    codes, reconstruction = saelens_outputs(sae, torch.from_numpy(X))
    np.testing.assert_allclose(codes, estimator.transform(X), **TOLERANCE)
    np.testing.assert_allclose(reconstruction, estimator.reconstruct(X), **TOLERANCE)
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert (imported.activation, list(imported.matryoshka)) == (activation, list(MATRYOSHKA))
    assert imported.net_.module_.prefixes == estimator.net_.module_.prefixes == (12, 24)
    np.testing.assert_array_equal(imported.transform(X), estimator.transform(X))


def test_sparsify_loads_a_topk_matryoshka_export(sparsify, X, tmp_path):
    estimator = fitted(X, matryoshka=MATRYOSHKA, normalize=False)
    estimator.export(tmp_path, "sparsify")
    coder = sparsify.SparseCoder.load_from_disk(tmp_path)
    codes, reconstruction = sparsify_outputs(coder, torch.from_numpy(X))
    np.testing.assert_allclose(codes, estimator.transform(X), **TOLERANCE)
    np.testing.assert_allclose(reconstruction, estimator.reconstruct(X), **TOLERANCE)
    assert list(SparseAutoencoderTransformer.load(tmp_path).matryoshka) == list(MATRYOSHKA)


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(activation="jumprelu"), "'jumprelu' cannot be exported to sparsify, whose coders are Top-K only"),
        (dict(activation="batchtopk", matryoshka=MATRYOSHKA), "'batchtopk' cannot be exported to sparsify"),
    ],
)
def test_sparsify_refuses_the_threshold_activations(X, tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        fitted(X, normalize=False, **params).export(tmp_path / "out", "sparsify")
    assert not (tmp_path / "out").exists()


def test_the_record_keeps_the_fitted_models_levels_not_later_set_params(X, tmp_path):
    estimator = copy.deepcopy(fitted(X, matryoshka=MATRYOSHKA, normalize=False)).set_params(matryoshka=(0.1,))
    estimator.export(tmp_path, "saelens")
    assert json.loads((tmp_path / MARKER_FILE).read_text())["matryoshka"] == [0.25, 0.5]  # 12 and 24 of 48 latents
    estimator.set_params(matryoshka=None).export(tmp_path, "saelens")
    assert json.loads((tmp_path / MARKER_FILE).read_text())["matryoshka"] == [0.25, 0.5]


def test_a_jumprelu_comes_back_from_saelens_with_the_same_codes(X, tmp_path):
    """Not bit for bit: a threshold is stored as its scaled logarithm, which float32 cannot always invert."""
    estimator = fitted(X, activation="jumprelu", normalize=True)
    estimator.export(tmp_path, "saelens", normalization="standardized")
    imported = SparseAutoencoderTransformer.load(tmp_path)
    assert (imported.activation, imported.normalize, imported.tied) == ("jumprelu", True, True)
    assert imported.lr_ is None  # SAELens's files do not record the rate it was trained at
    thresholds = [model.net_.module_.activation.threshold.detach() for model in (imported, estimator)]
    torch.testing.assert_close(thresholds[0], thresholds[1], rtol=1e-6, atol=0)
    np.testing.assert_allclose(imported.transform(X), estimator.transform(X), **TOLERANCE)
