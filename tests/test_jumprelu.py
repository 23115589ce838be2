"""JumpReLU: per-latent learned thresholds, straight-through gradients, an L0 penalty, calibration to an L0."""

import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import JumpReLU
from sklearn_sae.calibration import calibrate_l1_coef
from sklearn_sae.datasets import make_sparse_signals


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=2000, n_features=32, n_atoms=64, n_active=4, random_state=0)[0]


def _sae(**params):
    defaults = dict(activation="jumprelu", n_latents=64, max_epochs=100, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


def test_the_thresholds_get_the_kernel_gradients():
    activation = JumpReLU(3, threshold=0.5, bandwidth=0.2).train()
    z_pre = torch.tensor([[0.45, 0.9, 0.1], [0.55, 0.2, 0.58]], requires_grad=True)
    codes = activation(z_pre)
    torch.testing.assert_close(codes, torch.tensor([[0.0, 0.9, 0.0], [0.55, 0.0, 0.58]]))
    l0_penalty = activation.l0_penalty(z_pre)
    assert float(l0_penalty.detach()) == 1.5  # one, then two latents above their threshold
    (codes.sum() + l0_penalty).backward()
    assert z_pre.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]  # straight through the kept entries
    # Within eps / 2 = 0.1 of theta: 0.45 and 0.55 (latent 0), 0.58 (latent 2). Per such entry, the codes give
    # -theta / eps = -2.5 and the L0 penalty (a mean over 2 rows) -1 / eps / 2 = -2.5; times theta (and the
    # speed-up of the scaled logarithm) for log_threshold.
    torch.testing.assert_close(activation.log_threshold.grad,
                               torch.tensor([-10.0, 0.0, -5.0]) * 0.5 * JumpReLU.THRESHOLD_SPEED)


def test_a_larger_penalty_gives_a_smaller_l0(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        l0 = [(_sae(l0_coef=c).fit(X).transform(X) != 0).sum(axis=1).mean() for c in (1e-3, 1e-2)]
    assert l0[0] > 2 * l0[1]


def test_calibration_reaches_the_requested_l0_within_ten_percent(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = calibrate_l1_coef(_sae(), X[:1600], target_l0=8, X_val=X[1600:], bracket=(1e-4, 1e-2))
        fitted = _sae(l0_coef=result.coef).fit(X[:1600])
    l0 = (fitted.transform(X[1600:]) != 0).sum(axis=1).mean()
    assert abs(l0 - 8) <= 0.1 * 8, (result, l0)


def test_save_load_and_saelens_round_trip(X, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = _sae(max_epochs=5, normalize=False).fit(X)
    sae.save(tmp_path / "model")
    np.testing.assert_array_equal(SparseAutoencoderTransformer.load(tmp_path / "model").transform(X), sae.transform(X))
    sae.export(tmp_path / "saelens", "saelens")
    imported = SparseAutoencoderTransformer.load(tmp_path / "saelens")
    assert imported.activation == "jumprelu"
    np.testing.assert_allclose(imported.transform(X), sae.transform(X), rtol=1e-6, atol=1e-6)
    with pytest.raises(ValueError, match="sparsify"):
        sae.export(tmp_path / "sparsify", "sparsify")


def test_the_pre_activation_term_pulls_dead_latents_and_their_thresholds_together():
    from sklearn_sae._model import SparseAutoencoder

    model = SparseAutoencoder(3, 4, JumpReLU(4, threshold=0.5), normalize=False, aux_k=4, dead_window=10).train()
    with torch.no_grad():
        model.W_enc.copy_(torch.eye(4, 3))
        model.W_enc[3] = torch.tensor([0.0, 0.0, 2.0])  # latent 3's atom has norm 2
    model.rows_since_fired.copy_(torch.tensor([10, 0, 10, 10]))  # latents 0, 2 and 3 are dead
    x = torch.tensor([[0.2, 0.9, 0.1], [0.7, 0.0, 0.6]])
    output = model(x)
    # Shortfalls relu(0.5 - z): latent 0 (z = 0.2, 0.7): 0.3, 0; latent 2 (0.1, 0.6): 0.4, 0;
    # latent 3 (z = 0.2, 1.2): 0.3 times its atom's norm 2, 0. Summed per row, averaged over rows.
    torch.testing.assert_close(output.pre_act_penalty, torch.tensor((0.3 + 0.4 + 0.6) / 2))
    output.pre_act_penalty.backward()
    assert model.b_lat.grad[1] == 0 and (model.b_lat.grad[[0, 2, 3]] < 0).all()  # a step raises the dead ones
    assert (model.activation.log_threshold.grad[[0, 2, 3]] > 0).all()  # and lowers their thresholds
    assert model.pre_bias.grad is None or not model.pre_bias.grad.any()
    assert model.W_enc.grad is None or not model.W_enc.grad.any()  # tied atoms are not dragged to the mean row
    assert output.aux_residual_hat is None  # JumpReLU does not take AuxK's term


def test_the_pre_activation_term_keeps_a_strongly_penalised_dictionary_alive(X):
    def dead_fraction(pre_act_coef):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)
            sae = _sae(l0_coef=1e-2, pre_act_coef=pre_act_coef).fit(X[:1600])
        return float((sae.transform(X[1600:]) == 0).all(axis=0).mean())

    assert dead_fraction(None) >= 0.05  # 11% of 64 without it: the thresholds outran the rare latents
    assert dead_fraction("auto") == 0.0


@pytest.mark.parametrize("pre_act_coef, expected", [("auto", 0.003), (0.5, 0.5), (None, 0.0)])
def test_pre_act_coef_is_the_pre_activation_weight(pre_act_coef, expected):
    from sklearn_sae._params import training_settings

    settings = training_settings(_sae(pre_act_coef=pre_act_coef).get_params())
    assert settings.pre_act_coef == expected
    assert settings.aux_coef == 0.0  # AuxK is the top-k activations' term


def test_an_integer_aux_k_is_refused_with_the_alternative(X):
    with pytest.raises(ValueError, match="leave aux_k='auto' for activation='jumprelu'"):
        _sae(aux_k=16).fit(X)
