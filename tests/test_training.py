"""Training-side behaviour: data-driven init, decoder maintenance, AuxK, dead-latent tracking."""

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import TopK, dense_codes
from sklearn_sae._model import SparseAutoencoder, auxk_loss, geometric_median, layer_norm_no_affine
from sklearn_sae._training import SAELoss


def _sae(**params):
    defaults = dict(n_latents=64, k=4, max_epochs=3, batch_size=64, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


def _offset_data(n=400, d=12, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.normal(size=(n, d)) + np.linspace(-3, 3, d)).astype(np.float32)


def test_geometric_median_minimises_summed_distance_and_resists_outliers():
    rng = np.random.default_rng(0)
    points = rng.normal(size=(200, 3))
    points[:10] += 1000.0  # outliers drag the mean, not the median
    median = geometric_median(torch.from_numpy(points)).numpy()

    def summed_distance(centre):
        return np.linalg.norm(points - centre, axis=1).sum()

    assert np.linalg.norm(median) < 0.5 < np.linalg.norm(points.mean(axis=0))
    for step in np.eye(3) * 1e-3:
        assert summed_distance(median) <= summed_distance(median + step)
        assert summed_distance(median) <= summed_distance(median - step)


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("method", ["mean", "geometric_median", "zeros"])
def test_init_pre_bias_uses_the_data_as_the_encoder_sees_it(method, normalize):
    x = torch.from_numpy(_offset_data())
    model = SparseAutoencoder(12, 32, TopK(2), normalize=normalize)
    model.init_pre_bias_(x, method=method)
    seen = layer_norm_no_affine(x)[0] if normalize else x
    expected = {"mean": seen.mean(0), "geometric_median": geometric_median(seen).float(), "zeros": torch.zeros(12)}
    np.testing.assert_allclose(model.pre_bias.detach().numpy(), expected[method].numpy(), rtol=1e-5, atol=1e-6)


@pytest.mark.filterwarnings("ignore:.*never fired:UserWarning")  # lr=1e-9 trains nothing: most latents stay dead
def test_fit_starts_pre_bias_at_the_data_median():
    X = _offset_data()
    # one tiny step barely moves pre_bias away from where it started
    sae = _sae(max_epochs=1, lr=1e-9, validation_fraction=0.0, normalize=False).fit(X)
    expected = geometric_median(torch.from_numpy(X)).numpy()
    np.testing.assert_allclose(sae.net_.module_.pre_bias.detach().numpy(), expected, atol=1e-4)
    sae_zeros = _sae(max_epochs=1, lr=1e-9, validation_fraction=0.0, pre_bias_init="zeros").fit(X)
    np.testing.assert_allclose(sae_zeros.net_.module_.pre_bias.detach().numpy(), 0.0, atol=1e-6)


def test_remove_parallel_decoder_grad_leaves_only_the_tangent_part():
    torch.manual_seed(0)
    model = SparseAutoencoder(8, 16, TopK(2), tied=False)
    model.W_dec.grad = torch.randn(16, 8)
    model.remove_parallel_decoder_grad_()
    radial = (model.W_dec.grad * model.W_dec).sum(dim=1)
    np.testing.assert_allclose(radial.detach().numpy(), 0.0, atol=1e-6)


@pytest.mark.parametrize("unit_norm_decoder", [True, False])
def test_untied_decoder_atoms_stay_unit_norm_when_asked(unit_norm_decoder):
    X = _offset_data()
    sae = _sae(tied=False, unit_norm_decoder=unit_norm_decoder, lr=1e-2).fit(X)
    norms = np.linalg.norm(sae.components_, axis=1)
    if unit_norm_decoder:
        np.testing.assert_allclose(norms, 1.0, rtol=1e-5)
    else:
        assert np.abs(norms - 1.0).max() > 1e-3  # free atoms drift


def test_tied_decoder_is_not_renormalised():
    X = _offset_data()
    sae = _sae(tied=True, unit_norm_decoder=True, lr=1e-2).fit(X)
    assert np.abs(np.linalg.norm(sae.components_, axis=1) - 1.0).max() > 1e-3


def test_rows_since_fired_counts_training_rows_and_resets_on_firing():
    model = SparseAutoencoder(4, 6, TopK(1), normalize=False, dead_window=5)
    with torch.no_grad():
        model.W_enc.copy_(torch.eye(6, 4))
    model.train()
    model(torch.tensor([[1.0, 0, 0, 0], [2.0, 0, 0, 0], [3.0, 0, 0, 0]]))  # only latent 0 fires
    assert model.rows_since_fired.tolist() == [0, 3, 3, 3, 3, 3]
    model(torch.tensor([[0, 1.0, 0, 0], [0, 2.0, 0, 0]]))  # latent 1 fires
    assert model.rows_since_fired.tolist() == [2, 0, 5, 5, 5, 5]
    assert model.dead_latents.tolist() == [False, False, True, True, True, True]
    model.eval()
    model(torch.ones(3, 4))  # inference does not count
    assert model.rows_since_fired.tolist() == [2, 0, 5, 5, 5, 5]


def test_auxk_reconstructs_the_residual_from_dead_latents_only():
    torch.manual_seed(0)
    model = SparseAutoencoder(6, 12, TopK(2), normalize=False, aux_k=3, dead_window=1).train()
    x = torch.randn(5, 6)
    first = model(x)
    assert first.aux_residual_hat is None  # nothing is dead before any row was seen
    output = model(x)
    dead = model.dead_latents.clone()
    assert dead.any() and output.aux_residual_hat is not None
    # the auxiliary path reaches only dead latents' weights
    loss = auxk_loss(output.aux_residual_hat, output.x_hat, x)
    grad = torch.autograd.grad(loss, model.W_enc)[0]
    assert grad[dead].abs().sum() > 0
    # the model only tracks firing in training; eval forward passes carry no aux term
    assert model.eval()(x).aux_residual_hat is None


def test_auxk_loss_matches_hand_computation():
    x = torch.tensor([[2.0, 0.0]])
    x_hat = torch.tensor([[1.0, 0.0]])  # residual (1, 0)
    residual_hat = torch.tensor([[0.5, 0.5]])  # error (-0.5, 0.5): squared 0.5, over ||residual||^2 = 1
    assert auxk_loss(residual_hat, x_hat, x).item() == pytest.approx(0.5)


def test_sae_loss_adds_auxk_only_with_its_coefficient():
    x = torch.tensor([[2.0, 0.0]])
    from sklearn_sae._model import SAEOutput

    output = SAEOutput(torch.tensor([[1.0, 0.0]]), torch.zeros(1, 3), torch.zeros(1, 3), torch.tensor([[0.5, 0.5]]))
    without = SAELoss(aux_coef=0.0)(output, x).total.item()
    with_aux = SAELoss(aux_coef=0.25)(output, x).total.item()
    assert with_aux == pytest.approx(without + 0.25 * 0.5)


def _fraction_revived(aux_k, aux_coef):
    """Train with half the latents shrunk so that Top-K never picks them; how many fire afterwards?

    256 steps: AuxK revives a dead latent by turning its (tied) atom towards the residual only, with no
    gradient into its code values or bias, so the shrunk rows need more steps than 4 epochs to win Top-K
    (12 epochs revived 91% of them, 16 epochs all, on this seed).
    """
    torch.manual_seed(0)
    x = torch.randn(1024, 16)
    model = SparseAutoencoder(16, 64, TopK(2), normalize=False, aux_k=aux_k, dead_window=64)
    with torch.no_grad():
        model.W_enc[32:] *= 0.01
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    loss_fn = SAELoss(aux_coef=aux_coef)
    model.train()
    for _ in range(16):
        for start in range(0, len(x), 64):
            batch = x[start : start + 64]
            loss = loss_fn(model(batch), batch).total
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    with torch.no_grad():
        codes = dense_codes(model.eval()(x).codes, 64)
    return (codes[:, 32:] != 0).any(dim=0).float().mean().item()


def test_auxk_revives_latents_that_topk_leaves_dead():
    assert _fraction_revived(aux_k=0, aux_coef=0.0) == 0.0
    assert _fraction_revived(aux_k=16, aux_coef=1 / 32) > 0.9


def test_aux_k_is_refused_for_relu():
    with pytest.raises(ValueError, match="aux_k applies to the top-k activations only"):
        _sae(activation="relu", aux_k=8).fit(_offset_data())
