"""Defaults that come from the data (lr, max_epochs, n_latents, aux_k, dead_window), the repaired AuxK
term, and the warning a fit gives when it ends with many dead latents."""

import math
import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import TopK, TopKSelection
from sklearn_sae._defaults import (
    LATENTS_PER_FEATURE,
    LR_SCALE,
    MIN_FIRINGS_PER_LATENT,
    MIN_RATE_N_LATENTS,
    MIN_TRAINING_EPOCHS,
    MIN_TRAINING_STEPS,
    REFERENCE_BATCH_SIZE,
    REFERENCE_N_LATENTS,
    SOFT_START_LR_SCALE,
    default_aux_k,
    default_dead_window,
    default_lr,
    encoder_input_spread,
    default_max_epochs,
    default_n_latents,
    resolve_lr,
)
from sklearn_sae._model import SparseAutoencoder, auxk_loss, layer_norm_no_affine
from sklearn_sae._params import model_spec, training_settings
from sklearn_sae._rows import InMemoryRows
from sklearn_sae._training import PRE_BIAS_SAMPLE_ROWS, SAENet, SingleProcess, train_net
from sklearn_sae._transformer import _warn_if_unhealthy
from sklearn_sae.datasets import make_sparse_signals

# ---------------------------------------------------------------------------------------------------------------
# The pure rules of _defaults


@pytest.mark.parametrize(
    "n_features, k, n_train, expected",
    [
        (24, 32, 540, 96),  # 540 x 32 // 128 = 135 >= 4 x 24: rows are plentiful
        (256, 32, 100_000, 1024),  # a large set: 4 x n_features
        (24, 4, 540, 16),  # the cap: 540 x 4 // 128
        (512, 32, 540, 135),  # a wide, small set: 540 x 32 // 128, far below 4 x 512
        (1900, 32, 2016, 504),  # UniRep-like: 2,016 x 32 // 128
        (3, 32, 540, 32),  # 4 x 3 = 12 < k: the k floor
        (24, 8, 18, 8),  # the cap (18 x 8 // 128 = 1) is below k: the k floor again
        (24, 4, None, 96),  # rows unknown (partial_fit): no cap
    ],
)
def test_default_n_latents_for_top_k_codes(n_features, k, n_train, expected):
    assert default_n_latents(n_features, k=k, n_train=n_train, capped=True) == expected


@pytest.mark.parametrize("n_train", [None, 1, 18, 540, 10**6])
def test_default_n_latents_for_relu_codes_ignores_the_rows_and_k(n_train):
    assert default_n_latents(24, k=32, n_train=n_train, capped=False) == 96


@pytest.mark.parametrize("n_features", [1, 7, 24, 512])
@pytest.mark.parametrize("k", [1, 8, 32])
@pytest.mark.parametrize("n_train", [1, 100, 5_000, 10**6])
def test_default_n_latents_is_between_k_and_four_per_feature_and_leaves_each_latent_its_firings(n_features, k, n_train):
    n_latents = default_n_latents(n_features, k=k, n_train=n_train, capped=True)
    assert n_latents >= k
    assert n_latents <= max(LATENTS_PER_FEATURE * n_features, k)
    if n_latents > k:  # not held up by the k floor: each latent fires on >= 64 training rows an epoch on average
        assert n_train * k / n_latents >= MIN_FIRINGS_PER_LATENT


@pytest.mark.parametrize(
    "n_features, spread, expected",
    [(1, 1.0, 0.12), (16, 1.0, 0.03), (256, 0.5, 0.00375), (1900, 1.0, 2.753e-3), (256, 3.0, 0.0075)],
)
def test_default_lr_values(n_features, spread, expected):
    assert default_lr(n_features, spread) == pytest.approx(expected, rel=1e-3)


@pytest.mark.parametrize("n_features", [4, 64, 256, 1900])
def test_default_lr_falls_as_one_over_the_square_root_of_the_width(n_features):
    assert default_lr(4 * n_features) == pytest.approx(default_lr(n_features) / 2, rel=1e-12)
    assert default_lr(n_features + 1) < default_lr(n_features)
    assert default_lr(n_features) * math.sqrt(n_features) == pytest.approx(LR_SCALE, rel=1e-12)


def test_a_soft_start_resolves_five_thirds_of_the_hard_top_k_rate_on_the_same_rows():
    X = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32) + 1.0
    # 1,024 latents: the reference size, where plain Top-K's rate is not raised for a small dictionary
    params = dict(n_latents=1024, k=4, batch_size=20, max_epochs=20, device="cpu", random_state=0)
    hard = SparseAutoencoderTransformer(k_start=None, **params).fit(X)
    assert not hard.net_.module_.activation.has_schedule
    for soft_params in (dict(activation="gumbel_topk"), dict(k_start="auto"), dict(k_start=8)):
        soft = SparseAutoencoderTransformer(**soft_params, **params).fit(X)
        assert soft.lr_ == pytest.approx(hard.lr_ * SOFT_START_LR_SCALE / LR_SCALE, rel=1e-9), soft_params
    # partial_fit resolves it the same way on its first call's rows (10 batches; the narrowing takes 5 of them)
    assert SparseAutoencoderTransformer(**params, warmup_steps=5).partial_fit(X).lr_ == pytest.approx(
        SparseAutoencoderTransformer(**params, k_start=None).partial_fit(X).lr_ * SOFT_START_LR_SCALE / LR_SCALE,
        rel=1e-9)


def test_a_top_k_fit_too_short_to_narrow_keeps_the_hard_rate():
    X = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32) + 1.0
    params = dict(n_latents=32, k=4, max_epochs=1, device="cpu", random_state=0)  # 1 batch: no warmup to narrow in
    auto = SparseAutoencoderTransformer(**params).fit(X)
    assert not auto.net_.module_.activation.has_schedule
    assert auto.lr_ == SparseAutoencoderTransformer(k_start=None, **params).fit(X).lr_


@pytest.mark.parametrize("batch_size, factor", [(32, math.sqrt(1 / 8)), (64, 0.5), (256, 1.0), (4096, 1.0)])
def test_default_lr_falls_as_the_square_root_of_a_batch_below_the_reference(batch_size, factor):
    assert REFERENCE_BATCH_SIZE == 256
    assert default_lr(256, 0.5, batch_size=batch_size) == pytest.approx(factor * default_lr(256, 0.5), rel=1e-12)


@pytest.mark.parametrize("n_latents, factor", [
    (4096, 1.0), (1024, 1.0), (256, 2.0), (504, math.sqrt(1024 / 504)), (128, math.sqrt(8)), (16, math.sqrt(8)),
])
def test_default_lr_rises_as_the_square_root_of_a_dictionary_below_the_reference(n_latents, factor):
    assert (REFERENCE_N_LATENTS, MIN_RATE_N_LATENTS) == (1024, 128)
    rate = default_lr(256, 0.5, n_latents=n_latents)
    assert rate == pytest.approx(factor * default_lr(256, 0.5), rel=1e-12)
    assert default_lr(256, 0.5, batch_size=64, n_latents=n_latents) == pytest.approx(rate / 2, rel=1e-12)


@pytest.mark.parametrize("params, factor", [
    (dict(activation="topk", k_start=None), 2.0),
    (dict(activation="topk", k_start=16), 2.0),
    (dict(activation="topk", matryoshka=[0.25, 0.5]), 1.0),
    (dict(activation="gumbel_topk"), 1.0),
    (dict(activation="batchtopk"), 1.0),
    (dict(activation="jumprelu"), 1.0),
    (dict(activation="relu"), 1.0),
])
def test_fit_and_partial_fit_raise_the_rate_of_a_small_top_k_dictionary_only(params, factor):
    X = np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32) + 1.0
    params = dict(**params, k=4, max_epochs=1, device="cpu", random_state=0)
    for method in ("fit", "partial_fit"):
        small = getattr(SparseAutoencoderTransformer(n_latents=256, **params), method)(X).lr_
        large = getattr(SparseAutoencoderTransformer(n_latents=2048, **params), method)(X).lr_
        # sqrt(1024 / 256) for plain Top-K; 2048 latents, and every other activation, keep the reference rate
        assert small == pytest.approx(factor * large, rel=1e-9), (params, method)


def test_fit_and_partial_fit_resolve_the_rate_of_their_batch_size():
    X = np.random.default_rng(0).normal(size=(200, 16)).astype(np.float32) + 1.0
    params = dict(n_latents=32, k=4, k_start=None, max_epochs=1, device="cpu", random_state=0)
    reference = SparseAutoencoderTransformer(**params).fit(X).lr_  # batch_size=256 sets it, whatever the rows
    small = SparseAutoencoderTransformer(**params, batch_size=45).fit(X).lr_
    assert small == pytest.approx(reference * math.sqrt(45 / 256), rel=1e-9)
    assert SparseAutoencoderTransformer(**params, batch_size=45).partial_fit(X).lr_ == pytest.approx(
        SparseAutoencoderTransformer(**params, batch_size=256).partial_fit(X).lr_ * math.sqrt(45 / 256), rel=1e-9)


@pytest.mark.parametrize("soft_start, scale", [(False, LR_SCALE), (True, SOFT_START_LR_SCALE)])
def test_a_soft_start_alone_takes_the_higher_scale(soft_start, scale):
    assert SOFT_START_LR_SCALE / LR_SCALE == pytest.approx(5 / 3)
    assert default_lr(256, 0.5, soft_start=soft_start) == pytest.approx(scale * 0.5 / 16, rel=1e-12)


@pytest.mark.parametrize("spread", [0.01, 0.14, 0.5, 1.0])
def test_default_lr_is_proportional_to_the_spread_up_to_one(spread):
    assert default_lr(256, spread) == pytest.approx(spread * default_lr(256, 1.0), rel=1e-12)
    assert default_lr(256, 10 * spread) == pytest.approx(min(10 * spread, 1.0) * default_lr(256, 1.0), rel=1e-12)


def test_encoder_input_spread_of_rows_without_a_common_direction_is_one():
    X = np.random.default_rng(0).normal(size=(20_000, 64))
    assert encoder_input_spread(X, normalize=True) == pytest.approx(1.0, abs=0.01)
    assert encoder_input_spread(3.0 * X, normalize=False) == pytest.approx(3.0, rel=0.01)


@pytest.mark.parametrize("gamma", [0.5, 2.0, 8.0])
def test_encoder_input_spread_falls_with_a_common_direction(gamma):
    """Rows ``gamma * u + noise`` (unit ``u`` orthogonal to the row-mean direction): spread 1 / sqrt(1 + gamma^2)."""
    rng = np.random.default_rng(1)
    n_features = 256
    u = rng.normal(size=n_features)
    u -= u.mean()
    u *= np.sqrt(n_features) / np.linalg.norm(u)  # per-dimension RMS 1, like the noise
    X = gamma * u + rng.normal(size=(20_000, n_features))
    assert encoder_input_spread(X, normalize=True) == pytest.approx(1 / np.sqrt(1 + gamma**2), rel=0.03)
    # unstandardised rows keep their own scale: the noise's per-dimension RMS of 1
    assert encoder_input_spread(X, normalize=False) == pytest.approx(1.0, rel=0.02)


@pytest.mark.parametrize(
    "batches_per_epoch, expected",
    [(0, 3000), (1, 3000), (3, 1000), (8, 375), (299, 11), (300, 10), (301, 10), (5_000, 10)],
)
def test_default_max_epochs_values(batches_per_epoch, expected):
    assert default_max_epochs(batches_per_epoch) == expected


@pytest.mark.parametrize("batches_per_epoch", [1, 2, 3, 7, 8, 64, 199, 200, 201, 333, 1999, 2000, 2001, 10**5])
def test_default_max_epochs_gives_at_least_3000_steps_and_10_epochs_and_no_more_than_needed(batches_per_epoch):
    epochs = default_max_epochs(batches_per_epoch)
    assert epochs >= MIN_TRAINING_EPOCHS and epochs * batches_per_epoch >= MIN_TRAINING_STEPS
    # the least such number: one epoch fewer would miss one of the two floors
    assert epochs == MIN_TRAINING_EPOCHS or (epochs - 1) * batches_per_epoch < MIN_TRAINING_STEPS


@pytest.mark.parametrize("k, n_latents, expected", [(32, 2048, 256), (3, 128, 24), (32, 100, 100), (4, 16, 16)])
def test_default_aux_k_is_eight_per_k_and_at_most_the_latents(k, n_latents, expected):
    assert default_aux_k(k, n_latents) == expected


@pytest.mark.parametrize(
    "k, n_latents, expected", [(32, 2048, 1280), (32, 270, 169), (3, 128, 854), (4, 16, 80), (32, 1, 1), (64, 1, 1)]
)
def test_default_dead_window_is_twenty_firing_intervals_and_at_least_one_row(k, n_latents, expected):
    assert default_dead_window(k, n_latents) == expected


# ---------------------------------------------------------------------------------------------------------------
# auxk_loss: best non-negative scale, residual as a fixed target


def _auxk_inputs(seed=0, rows=5, features=7):
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(rows, features, generator=generator)
    x_hat = x + 0.3 * torch.randn(rows, features, generator=generator)
    residual_hat = torch.randn(rows, features, generator=generator)
    return residual_hat, x_hat, x


@pytest.mark.parametrize("factor", [1e-3, 0.5, 3.0, 1e3])
def test_auxk_loss_is_invariant_to_a_positive_scale_of_the_reconstruction(factor):
    residual_hat, x_hat, x = _auxk_inputs()
    reference = auxk_loss(residual_hat, x_hat, x)
    assert 0.0 < reference.item() < 1.0  # an informative value, neither perfect nor clamped
    assert auxk_loss(factor * residual_hat, x_hat, x).item() == pytest.approx(reference.item(), rel=1e-5)


def test_auxk_loss_fits_each_row_with_its_own_scale():
    residual_hat, x_hat, x = _auxk_inputs()
    row_factors = torch.tensor([[0.1], [1.0], [7.0], [0.01], [40.0]])
    assert auxk_loss(row_factors * residual_hat, x_hat, x).item() == pytest.approx(
        auxk_loss(residual_hat, x_hat, x).item(), rel=1e-5
    )


@pytest.mark.parametrize("factor", [1e-3, 1.0, 2.5])
def test_auxk_loss_is_one_for_an_anti_aligned_reconstruction(factor):
    # the best scale would be negative; clamped to 0 the reconstruction explains nothing of the residual
    _, x_hat, x = _auxk_inputs()
    assert auxk_loss(-factor * (x - x_hat), x_hat, x).item() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("factor", [1e-3, 0.4, 1.0, 25.0])
def test_auxk_loss_is_zero_for_a_positive_multiple_of_the_residual(factor):
    _, x_hat, x = _auxk_inputs()
    assert auxk_loss(factor * (x - x_hat), x_hat, x).item() == pytest.approx(0.0, abs=1e-6)


def test_auxk_loss_sends_gradients_only_into_the_reconstruction():
    residual_hat, x_hat, x = (tensor.clone().requires_grad_(True) for tensor in _auxk_inputs())
    auxk_loss(residual_hat, x_hat, x).backward()
    assert x.grad is None and x_hat.grad is None  # the residual x - x_hat is a fixed target
    assert residual_hat.grad is not None and residual_hat.grad.abs().sum() > 0
    # with the best scale s held fixed: d/dr_hat ||s r_hat - r||^2 / ||r||^2, averaged over the rows
    with torch.no_grad():
        residual = x - x_hat
        fit = (residual_hat * residual).sum(1, keepdim=True)
        scale = (fit / residual_hat.square().sum(1, keepdim=True)).clamp_min(0)
        expected = 2 * scale * (scale * residual_hat - residual) / residual.square().sum(1, keepdim=True) / len(x)
    torch.testing.assert_close(residual_hat.grad, expected, rtol=1e-4, atol=1e-6)


# ---------------------------------------------------------------------------------------------------------------
# AuxK inside the model: the sparse Top-K path, dead latents only, no gradient to codes, biases or inputs


def _model_with_dead_latents(*, tied, dead, n_features=12, n_latents=40, k=2, aux_k=8, seed=0):
    torch.manual_seed(seed)
    model = SparseAutoencoder(n_features, n_latents, TopK(k), normalize=True, tied=tied, aux_k=aux_k)
    with torch.no_grad():  # non-zero biases, so that a gradient into them would show
        model.pre_bias.normal_()
        model.b_lat.normal_(std=0.1)
        model.rows_since_fired[dead] = 10**9  # far past the dead window
    return model.train()


def test_training_forward_with_every_latent_dead_runs_auxk_on_the_sparse_path():
    model = _model_with_dead_latents(tied=True, dead=slice(None))
    assert model.dead_latents.all() and model.uses_sparse_path()
    x = torch.randn(16, 12)
    output = model(x)
    assert output.pre_activations is None and isinstance(output.codes, TopKSelection)  # the sparse path
    assert output.aux_residual_hat is not None and output.aux_residual_hat.shape == x.shape
    assert output.aux_residual_hat.abs().sum() > 0


def test_training_forward_with_no_dead_latent_has_no_auxk_term():
    model = _model_with_dead_latents(tied=True, dead=[])
    assert not model.dead_latents.any()
    assert model(torch.randn(16, 12)).aux_residual_hat is None


def test_auxk_reconstruction_on_the_sparse_path_is_the_top_dead_latents_decoded():
    model = _model_with_dead_latents(tied=False, dead=slice(20, None), aux_k=3)
    x = torch.randn(16, 12) * 2 + 1
    output = model(x)
    # the formula, written out: the aux_k largest dead pre-activations, ReLU, decoded, in input units
    with torch.no_grad():
        x_norm, _, sigma = layer_norm_no_affine(x)
        z_dead = (x_norm - model.pre_bias) @ model.W_enc[20:].T + model.b_lat[20:]
        values, positions = z_dead.topk(3, dim=1)
        codes = torch.zeros_like(z_dead).scatter(1, positions, values.relu())
        expected = codes @ model.W_dec[20:] * sigma
    torch.testing.assert_close(output.aux_residual_hat.detach(), expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("first_dead", [0, 20], ids=["all dead", "half dead"])
@pytest.mark.parametrize("tied", [True, False])
def test_auxk_gradient_reaches_only_the_dead_latents_atoms(tied, first_dead):
    dead = torch.zeros(40, dtype=torch.bool)
    dead[first_dead:] = True
    model = _model_with_dead_latents(tied=tied, dead=dead)
    x = torch.randn(16, 12)
    output = model(x)
    assert model.uses_sparse_path() and output.aux_residual_hat is not None
    auxk_loss(output.aux_residual_hat, output.x_hat, x).backward()
    # code values are detached (dead latents learn only through their atoms), and so is the input
    assert model.b_lat.grad is None or not model.b_lat.grad.any()
    assert model.pre_bias.grad is None or not model.pre_bias.grad.any()
    atoms_grad = model.W_enc.grad if tied else model.W_dec.grad
    assert atoms_grad is not None
    assert not atoms_grad[~dead].any()  # live latents get nothing from AuxK
    assert atoms_grad[dead].abs().sum(dim=1).gt(0).sum() >= 3  # several dead atoms turn towards the residual
    if not tied:  # untied, the encoder is not an atom: no AuxK gradient at all
        assert model.W_enc.grad is None or not model.W_enc.grad.any()


# ---------------------------------------------------------------------------------------------------------------
# The dead-latent warning and the per-epoch dead fraction


def _tiny_fit_with_many_dead_latents(**params):
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    defaults = dict(n_latents=512, k=4, aux_k=None, lr=1e-2, max_epochs=2, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params}), X


@pytest.mark.filterwarnings("ignore:36 training rows for 512 latents:UserWarning")
def test_a_fit_that_leaves_many_latents_dead_warns():
    sae, X = _tiny_fit_with_many_dead_latents()
    with pytest.warns(UserWarning, match="never fired") as record:
        sae.fit(X)
    dead = sae.history_[-1, "train_dead_fraction"]
    assert dead > 0.5  # 36 training rows x k=4 can fire at most 144 of the 512 latents
    [warning] = [warning for warning in record if "never fired" in str(warning.message)]
    assert warning.filename == __file__  # it points at fit's caller, not into the package
    message = str(warning.message)
    assert f"{dead:.1%} of the 512 latents never fired" in message
    for advice in ("lr='auto'", "aux_k='auto'", "max_epochs='auto'", "n_latents=None"):
        assert advice in message


def test_the_dead_latent_advice_for_relu_is_its_l1_penalty_not_auxk():
    sae = SparseAutoencoderTransformer(activation="relu", n_latents=16, max_epochs=1, device="cpu", random_state=0)
    sae.fit(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    sae.net_.history.record("train_dead_fraction", 0.5)  # ReLU latents rarely die on a fit this small: say they did
    with pytest.warns(UserWarning, match="never fired") as record:
        _warn_if_unhealthy(sae.net_, len(sae.net_.history) - 1)
    [message] = [str(warning.message) for warning in record]
    assert "lower l1_coef" in message
    assert "aux_k" not in message  # AuxK is off for ReLU: advice to keep it would be wrong


def test_history_has_each_epochs_fraction_of_latents_that_never_fired_in_training(monkeypatch):
    from sklearn_sae._activations import dense_codes
    from sklearn_sae._training import EpochMetrics

    fired_by_epoch = []  # which latents the codes of each epoch's training batches used, counted here
    begin_epoch, end_batch = EpochMetrics.on_epoch_begin, EpochMetrics.on_batch_end

    def on_epoch_begin(self, net, **kwargs):
        begin_epoch(self, net, **kwargs)
        fired_by_epoch.append(torch.zeros(64, dtype=torch.bool))

    def on_batch_end(self, net, batch=None, training=False, y_pred=None, **kwargs):
        end_batch(self, net, batch=batch, training=training, y_pred=y_pred, **kwargs)
        if training:
            fired_by_epoch[-1] |= (dense_codes(y_pred.codes, 64) != 0).any(dim=0)

    monkeypatch.setattr(EpochMetrics, "on_epoch_begin", on_epoch_begin)
    monkeypatch.setattr(EpochMetrics, "on_batch_end", on_batch_end)
    sae, X = _tiny_fit_with_many_dead_latents(n_latents=64, max_epochs=5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae.fit(X)
    dead = np.asarray(sae.history_[:, "train_dead_fraction"], dtype=float)
    assert dead.shape == (5,) == (sae.n_iter_,)
    expected = [1.0 - fired.double().mean().item() for fired in fired_by_epoch]
    assert 0 < min(expected) and len(set(expected)) > 1  # some dead latents, and not the same ones every epoch
    np.testing.assert_allclose(dead, expected, rtol=0, atol=1e-12)


# ---------------------------------------------------------------------------------------------------------------
# lr="auto" on rows that do not vary, and in data-parallel fits


def test_lr_auto_on_rows_that_do_not_vary_assumes_spread_one_and_warns():
    X = np.tile(np.random.default_rng(0).normal(size=(1, 8)), (40, 1)).astype(np.float32)
    sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=1, device="cpu", random_state=0)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sae.fit(X)
    [warning] = [warning for warning in record if "have none (spread" in str(warning.message)]
    assert warning.filename == __file__  # it points at fit's caller
    assert "these 36 rows have none" in str(warning.message)  # the 36 training rows: the 4 held out are not measured
    # a spread of 0 would have given lr=0: a model that never trains
    assert sae.net_.lr == pytest.approx(default_lr(8, 1.0, n_latents=16))


def test_lr_auto_of_rows_that_vary_does_not_warn_about_them():
    X = np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32)
    with warnings.catch_warnings(record=True) as record:
        warnings.simplefilter("always")
        sae = SparseAutoencoderTransformer(n_latents=16, k=2, max_epochs=1, validation_fraction=0.0, device="cpu",
                                           random_state=0).fit(X)  # every row trains, so every row is measured
    assert not [warning for warning in record if "have none (spread" in str(warning.message)]
    assert sae.net_.lr == pytest.approx(default_lr(8, encoder_input_spread(X, normalize=True), n_latents=16))


class _NotTrained(SAENet):
    def fit(self, X, y=None, **fit_params):
        return self


class _PlaysProcessOne(SingleProcess):
    """One process acting as a data-parallel one: process 0's seed, its own share of the steps; nothing trained."""

    net_class = _NotTrained

    def __init__(self, steps_per_epoch, shared_seed):
        super().__init__("cpu")
        self.shared_seed, self.steps = shared_seed, steps_per_epoch

    def agree_seed(self, seed):
        return self.shared_seed

    def steps_per_epoch(self, units):
        return self.steps


@pytest.mark.parametrize("steps_per_epoch", [2, 8, 1000])
def test_a_data_parallel_net_resolves_auto_values_from_its_own_steps_and_the_shared_seed(steps_per_epoch):
    # 5,000 rows: more than the 4,096 the spread is measured on, so the sample (and lr) depends on the seed,
    # which must be process 0's in every process.
    X = (np.random.default_rng(0).normal(size=(5_000, 12)) + np.linspace(0, 3, 12)).astype(np.float32)
    params = SparseAutoencoderTransformer(n_latents=24, k=4, device="cpu").get_params()
    rows = InMemoryRows(torch.from_numpy(X))

    def train(own_seed):
        return train_net(
            model_spec(params, 12, 24), rows, training_settings(params), seed=own_seed,
            strategy=_PlaysProcessOne(steps_per_epoch, shared_seed=7),
        )

    net = train(own_seed=123)
    # at least 3,000 of this process's optimiser steps, not 3,000 batches of which it takes its share
    assert net.max_epochs == default_max_epochs(steps_per_epoch)
    assert net.max_epochs * steps_per_epoch >= MIN_TRAINING_STEPS
    def auto_lr(seed):
        train_rows, _ = rows.split(0.1, seed)  # the held-out rows are not measured
        sample = train_rows.sample(PRE_BIAS_SAMPLE_ROWS, seed).numpy()
        # the default Top-K narrows from k_start; the default batch of 256 keeps the reference rate
        return resolve_lr("auto", sample, normalize=True, soft_start=True, batch_size=256, n_latents=24)

    assert net.lr == auto_lr(7)
    assert net.lr != auto_lr(123)
    assert train(own_seed=456).lr == net.lr


# ---------------------------------------------------------------------------------------------------------------
# A default fit on a wide, small, off-centre set: the case the constants of before got wrong

WIDE = dict(n_samples=600, n_features=512, n_atoms=256, n_active=8)


@pytest.fixture(scope="module")
def wide_set():
    X, _, _ = make_sparse_signals(**WIDE, offset=30.0, n_outlier_features=4, outlier_scale=10.0, random_state=0)
    return X


def _fit_recording_warnings(sae, X):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sae.fit(X)
    return sae, [str(warning.message) for warning in caught]


def _alive_fraction(sae, X):
    """Fraction of the latents that are non-zero on at least one of the rows it was fitted on."""
    return float((sae.transform(X) != 0).any(axis=0).mean())


@pytest.fixture(scope="module")
def wide_default_fit(wide_set):
    """Only the device and the seed set: every default resolved from the data (~15 s on one CPU core)."""
    return _fit_recording_warnings(SparseAutoencoderTransformer(device="cpu", random_state=0), wide_set)


def test_a_default_fit_resolves_its_auto_settings_from_the_data(wide_default_fit, wide_set):
    sae, _ = wide_default_fit
    # 600 rows, 60 held out: 540 training rows in 3 batches of at most 256
    assert sae.get_params()["lr"] == sae.get_params()["max_epochs"] == sae.get_params()["aux_k"] == "auto"
    assert sae.n_latents_ == 540 * 32 // 128 == 135  # capped: 4 x 512 would leave each latent ~8 firings an epoch
    # At most 3,000 steps (1,000 epochs). After the 50 epochs of the warmup (150 steps), 10 epochs without a fall
    # of the validation loss by tol (0.5%) start the decay of the rate over a fifth of the steps so far, which ends
    # the fit.
    assert sae.net_.max_epochs == math.ceil(3000 / 3) == 1000
    threshold, misses, plateau = math.inf, 0, None
    for epoch, loss in enumerate(sae.history_[50:, "valid_loss"], start=51):
        threshold, misses = (loss * (1 - 5e-3), 0) if loss < threshold else (threshold, misses + 1)
        if misses == 10:
            plateau = epoch
            break
    decay_start = 3 * plateau
    assert sae.n_iter_ == math.ceil((decay_start + round(0.2 * decay_start)) / 3) < 1000
    seed = int(np.random.RandomState(0).randint(np.iinfo(np.int32).max))  # the fit's seed, from random_state=0
    train_rows, _ = InMemoryRows(torch.from_numpy(wide_set)).split(0.1, seed)
    # fewer than 4,096 training rows: all of them are the sample (the held-out rows are not measured)
    spread = encoder_input_spread(wide_set[train_rows.indices], normalize=True)
    assert 0 < spread < 1
    # Top-K narrows from k_start=128 over the 5% warmup (150 batches), a soft start: the rate's scale is 0.2,
    # raised for a top-k dictionary of 135 latents by sqrt(1024 / 135).
    assert (sae.net_.module_.activation.k_start, sae.net_.module_.activation.anneal_steps) == (128, 150)
    assert sae.lr_ == sae.net_.lr == pytest.approx(0.2 * spread * math.sqrt(1024 / 135) / math.sqrt(512), rel=1e-6)
    assert sae.net_.module_.aux_k == min(8 * 32, 135) and sae.net_.module_.dead_window == math.ceil(20 * 135 / 32)


def test_a_default_fit_on_a_wide_small_off_centre_set_keeps_90_percent_of_latents_alive(wide_default_fit, wide_set):
    sae, _ = wide_default_fit
    assert _alive_fraction(sae, wide_set) >= 0.9  # measured: 1.0 (135 of 135)
    assert sae.history_[-1, "train_dead_fraction"] <= 0.1


def test_a_healthy_default_fit_does_not_warn_about_dead_latents(wide_default_fit):
    _, messages = wide_default_fit
    assert not [message for message in messages if "never fired" in message or "dead latents" in message]
    assert not [message for message in messages if "training rows for" in message]  # sized to its rows


def test_the_previous_defaults_keep_fewer_latents_alive_on_the_same_set(wide_default_fit, wide_set):
    default_alive = _alive_fraction(wide_default_fit[0], wide_set)
    previous, messages = _fit_recording_warnings(
        SparseAutoencoderTransformer(
            n_latents=4 * 512, lr=1e-2, max_epochs=20, aux_k=None, device="cpu", random_state=0
        ),
        wide_set,
    )
    previous_alive = _alive_fraction(previous, wide_set)
    # measured (seeds 0, 1, 2): 98.1%, 97.8%, 97.8% of 2,048 against 100% of 270 with the defaults
    assert previous_alive < default_alive, (previous_alive, default_alive)
    assert any("540 training rows for 2048 latents" in message for message in messages)


def test_the_dead_latent_advice_for_jumprelu_is_its_pre_activation_term_and_penalty():
    sae = SparseAutoencoderTransformer(activation="jumprelu", n_latents=16, max_epochs=1, device="cpu", random_state=0)
    sae.fit(np.random.default_rng(0).normal(size=(40, 8)).astype(np.float32))
    sae.net_.history.record("train_dead_fraction", 0.5)
    with pytest.warns(UserWarning, match="never fired") as record:
        _warn_if_unhealthy(sae.net_, len(sae.net_.history) - 1)
    [message] = [str(warning.message) for warning in record]
    assert "pre-activation term" in message and "lower l0_coef" in message
    assert "AuxK" not in message
