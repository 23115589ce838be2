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
    assert float(activation.l0_penalty.detach()) == 1.5  # one, then two latents above their threshold
    (codes.sum() + activation.l0_penalty).backward()
    assert z_pre.grad.tolist() == [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]  # straight through the kept entries
    # Within eps / 2 = 0.1 of theta: 0.45 and 0.55 (latent 0), 0.58 (latent 2). Per such entry, the codes give
    # -theta / eps = -2.5 and the L0 penalty (a mean over 2 rows) -1 / eps / 2 = -2.5; times theta (and the
    # speed-up of the scaled logarithm) for log_threshold.
    torch.testing.assert_close(activation.log_threshold.grad,
                               torch.tensor([-10.0, 0.0, -5.0]) * 0.5 * JumpReLU.THRESHOLD_SPEED)


def test_a_larger_penalty_gives_a_smaller_l0(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        l0 = [(_sae(l1_coef=c).fit(X).transform(X) != 0).sum(axis=1).mean() for c in (1e-3, 1e-2)]
    assert l0[0] > 2 * l0[1]


def test_calibration_reaches_the_requested_l0_within_ten_percent(X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        result = calibrate_l1_coef(_sae(), X[:1600], target_l0=8, X_val=X[1600:], bracket=(1e-4, 1e-2))
        fitted = _sae(l1_coef=result.l1_coef).fit(X[:1600])
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
