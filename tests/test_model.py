"""The model's maths, pinned against direct evaluations of the formulas in DESIGN.md."""

import numpy as np
import pytest
import torch

from sklearn_sae._activations import GumbelTopK, ReLU, TopK, TopKSelection, dense_codes, make_activation
from sklearn_sae._model import SparseAutoencoder, l1_penalty, layer_norm_no_affine, nmse_loss
from sklearn_sae._training import WarmupCosine


def _random_model(activation, *, normalize, tied, n_features=12, n_latents=40, seed=0):
    torch.manual_seed(seed)
    model = SparseAutoencoder(n_features, n_latents, activation, normalize=normalize, tied=tied)
    with torch.no_grad():  # non-zero biases, so that every term of the formula is exercised
        model.pre_bias.normal_()
        model.b_lat.normal_(std=0.1)
    return model


def _direct_forward(model, x, codes_fn):
    """The formula of DESIGN.md, written out in NumPy float64."""
    x = x.double().numpy()
    if model.normalize:
        mu = x.mean(axis=1, keepdims=True)
        sigma = np.sqrt(x.var(axis=1, keepdims=True) + 1e-5)
        x_norm = (x - mu) / sigma
    else:
        mu, sigma, x_norm = 0.0, 1.0, x
    W_enc = model.W_enc.detach().double().numpy()
    W_dec = W_enc if model.tied else model.W_dec.detach().double().numpy()
    pre_bias = model.pre_bias.detach().double().numpy()
    z_pre = (x_norm - pre_bias) @ W_enc.T + model.b_lat.detach().double().numpy()
    h = codes_fn(z_pre)
    return (h @ W_dec + pre_bias) * sigma + mu, h


def _numpy_topk(z_pre, k):
    h = np.zeros_like(z_pre)
    top = np.argsort(-z_pre, axis=1)[:, :k]
    np.put_along_axis(h, top, np.maximum(np.take_along_axis(z_pre, top, axis=1), 0), axis=1)
    return h


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("activation", ["relu", "topk"])
def test_forward_matches_formula(activation, normalize, tied):
    k = 5
    module = ReLU() if activation == "relu" else TopK(k)
    codes_fn = (lambda z: np.maximum(z, 0)) if activation == "relu" else (lambda z: _numpy_topk(z, k))
    model = _random_model(module, normalize=normalize, tied=tied)
    x = torch.randn(7, 12) * 3 + 1
    expected_x_hat, expected_codes = _direct_forward(model, x, codes_fn)
    output = model(x)
    codes = dense_codes(output.codes, 40)
    np.testing.assert_allclose(codes.detach().numpy(), expected_codes, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(output.x_hat.detach().numpy(), expected_x_hat, rtol=1e-4, atol=1e-4)


def test_layer_norm_no_affine_standardises_and_inverts():
    x = torch.randn(5, 9) * 4 + 2
    x_norm, mu, sigma = layer_norm_no_affine(x)
    np.testing.assert_allclose(x_norm.mean(dim=1).numpy(), 0, atol=1e-6)
    np.testing.assert_allclose(x_norm.var(dim=1, unbiased=False).numpy(), 1, atol=1e-4)
    np.testing.assert_allclose((x_norm * sigma + mu).numpy(), x.numpy(), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("tied", [True, False])
def test_init_kaiming_encoder_and_unit_norm_atoms(tied):
    torch.manual_seed(0)
    n_features = 64
    model = SparseAutoencoder(n_features, 256, TopK(4), tied=tied)
    np.testing.assert_allclose(model.decoder_weight.norm(dim=1).detach().numpy(), 1.0, rtol=1e-5)
    assert torch.all(model.pre_bias == 0) and torch.all(model.b_lat == 0)
    if not tied:
        # Kaiming-uniform with ReLU gain: U(-b, b), b = sqrt(6 / fan_in); variance b^2 / 3 = 2 / fan_in.
        bound = np.sqrt(6 / n_features)
        assert model.W_enc.abs().max() <= bound
        assert model.W_enc.var().item() == pytest.approx(2 / n_features, rel=0.05)
        # the decoder starts aligned with the encoder
        cosine = torch.nn.functional.cosine_similarity(model.W_enc, model.W_dec, dim=1)
        np.testing.assert_allclose(cosine.detach().numpy(), 1.0, rtol=1e-5)
    else:
        assert model.W_dec is None
        assert model.decoder_weight is model.W_enc


def test_topk_keeps_the_k_largest_and_relus_them():
    z_pre = torch.randn(50, 30)
    z_pre[0] = -torch.arange(30.0)  # a row whose kept values are mostly negative
    codes = TopK(6)(z_pre)
    assert ((codes != 0).sum(dim=1) <= 6).all()
    assert (codes >= 0).all()
    expected = _numpy_topk(z_pre.numpy(), 6)
    np.testing.assert_array_equal(codes.numpy(), expected)
    assert (codes[0] != 0).sum() == 0  # 0 is the largest and relu(0) = 0


def test_topk_gradient_reaches_kept_entries_only():
    z_pre = torch.randn(4, 20, requires_grad=True)
    TopK(3)(z_pre).sum().backward()
    kept = TopK(3)(z_pre.detach()) > 0
    np.testing.assert_array_equal(z_pre.grad.numpy(), kept.float().numpy())


def test_gumbel_topk_eval_mode_equals_topk():
    z_pre = torch.randn(16, 40)
    gumbel = GumbelTopK(5).eval()
    np.testing.assert_array_equal(gumbel(z_pre).numpy(), TopK(5)(z_pre).numpy())
    assert int(gumbel.n_steps) == 0  # eval calls do not anneal


def test_gumbel_topk_anneals_linearly_and_reaches_tau_end_at_the_last_annealing_batch():
    gumbel = GumbelTopK(3, tau_start=1.0, tau_end=1e-8, anneal_steps=10).train()
    z_pre = torch.randn(2, 10)
    taus, annealed = [], []
    for _ in range(15):
        taus.append(gumbel.tau)
        annealed.append(gumbel.annealed)
        gumbel(z_pre)
    # Ten annealing calls: the first at tau_start, the tenth (index 9) at exactly tau_end.
    np.testing.assert_allclose(taus[:10], np.linspace(1.0, 1e-8, 10), rtol=1e-6, atol=1e-12)
    assert taus[8] > 1e-8 and taus[9:] == [1e-8] * 6
    assert annealed == [False] * 9 + [True] * 6
    assert gumbel.tau == 1e-8 and int(gumbel.n_steps) == 15
    assert [gumbel.temperature_at(step) for step in (0, 9, 100)] == [1.0, 1e-8, 1e-8]


def test_gumbel_topk_with_one_annealing_step_starts_at_tau_end():
    gumbel = GumbelTopK(3, tau_start=1.0, tau_end=1e-8, anneal_steps=1).train()
    assert gumbel.tau == 1e-8 and gumbel.annealed and gumbel.is_hard


def test_gumbel_topk_training_forward_is_k_sparse_and_hard_once_annealed():
    torch.manual_seed(0)
    gumbel = GumbelTopK(4, anneal_steps=2).train()
    z_pre = torch.randn(64, 32)
    early = gumbel(z_pre)  # tau = 1: noisy selection
    assert ((early != 0).sum(dim=1) <= 4).all()
    late = gumbel(z_pre)  # tau = tau_end: the noise cannot change the order
    np.testing.assert_array_equal(late.detach().numpy(), TopK(4)(z_pre).numpy())
    assert not torch.equal(early, late)


def test_gumbel_topk_soft_gradient_reaches_unselected_latents_early():
    torch.manual_seed(0)
    z_pre = torch.rand(8, 32, requires_grad=True)  # all positive, so only the selection decides
    codes = GumbelTopK(4, tau_start=1.0, anneal_steps=1000).train()(z_pre)
    codes.sum().backward()
    unselected = codes.detach() == 0
    assert (z_pre.grad[unselected] != 0).any()


def test_gumbel_topk_positive_candidates_never_spend_a_slot_on_a_negative_latent():
    torch.manual_seed(0)
    z_pre = torch.randn(256, 32)
    positive = GumbelTopK(4, tau_start=1.0, anneal_steps=1000, candidates="positive").train()
    seed_formula = GumbelTopK(4, tau_start=1.0, anneal_steps=1000, candidates="all").train()
    kept = positive(z_pre) != 0
    assert (kept.sum(dim=1) == 4).all()  # every row has at least 4 positive pre-activations here
    # The seed's formula hands some of the k slots to negative pre-activations, which output 0.
    assert (seed_formula(z_pre) != 0).sum(dim=1).float().mean() < 3.5


def test_gumbel_topk_positive_candidates_with_fewer_than_k_positives_keep_them_all():
    z_pre = torch.tensor([[2.0, -1.0, 0.5, -3.0, -0.2, -0.1], [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0]], requires_grad=True)
    codes = GumbelTopK(3, anneal_steps=100, candidates="positive").train()(z_pre)
    np.testing.assert_array_equal(codes.detach().numpy(), torch.relu(z_pre).detach().numpy())
    codes.sum().backward()
    assert torch.isfinite(z_pre.grad).all()


def test_gumbel_topk_rejects_unknown_candidates():
    with pytest.raises(ValueError, match="candidates='some'"):
        GumbelTopK(3, candidates="some")


def test_gumbel_topk_with_k_equal_n_latents_keeps_everything():
    z_pre = torch.randn(3, 5)
    np.testing.assert_array_equal(GumbelTopK(5).train()(z_pre).detach().numpy(), torch.relu(z_pre).numpy())


def test_nmse_and_l1_match_hand_computation():
    x = torch.tensor([[3.0, 4.0], [1.0, 0.0]])
    x_hat = torch.tensor([[3.0, 3.0], [0.0, 0.0]])
    codes = torch.tensor([[1.0, 0.0, 2.0], [0.0, 0.5, 0.0]])
    # row 1: 1 / 25, row 2: 1 / 1
    assert nmse_loss(x_hat, x).item() == pytest.approx((1 / 25 + 1) / 2)
    # row 1: 3 / 5, row 2: 0.5 / 1
    assert l1_penalty(codes, x).item() == pytest.approx((3 / 5 + 0.5) / 2)


def test_an_all_zero_row_is_left_out_of_the_losses():
    x = torch.tensor([[3.0, 4.0], [0.0, 0.0]])
    x_hat = torch.tensor([[3.0, 3.0], [1.0, 1.0]])
    codes = torch.tensor([[1.0, 2.0], [5.0, 5.0]])
    assert nmse_loss(x_hat, x).item() == pytest.approx(1 / 25)  # the zero row's ratio is undefined
    assert l1_penalty(codes, x).item() == pytest.approx(3 / 5)
    assert nmse_loss(torch.ones(1, 4), torch.zeros(1, 4)).item() == 0.0


def test_warmup_cosine_schedule():
    schedule = WarmupCosine(warmup_steps=4, total_steps=14)
    assert [schedule(step) for step in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert schedule(4) == 1.0
    assert schedule(9) == pytest.approx(0.5)
    assert schedule(14) == pytest.approx(0.0)
    assert WarmupCosine(0, 10)(0) == 1.0


def test_make_activation_rejects_unknown_names():
    with pytest.raises(ValueError, match="Unknown activation 'softmax'"):
        make_activation("softmax", k=1, tau_start=1, tau_end=1e-8, anneal_steps=1)


def _dense_evaluation(model, x):
    """The model's function evaluated densely: scatter the top-k codes, decode with a GEMM."""
    x_norm, mu, sigma = model.preprocess(x)
    codes = TopK.forward(model.activation, model.encode_pre(x_norm))
    return model.decode(codes) * sigma + mu, codes


def _annealed_gumbel(k):
    gumbel = GumbelTopK(k, anneal_steps=3)
    gumbel.n_steps.fill_(3)
    return gumbel


@pytest.mark.parametrize("normalize", [True, False])
@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("make", [TopK, _annealed_gumbel], ids=["topk", "gumbel_topk-annealed"])
@pytest.mark.parametrize("l1_coef", [0.0, 0.1])
def test_sparse_path_agrees_with_dense_evaluation(make, tied, normalize, l1_coef):
    from sklearn_sae._model import l1_penalty

    model = _random_model(make(5), normalize=normalize, tied=tied).train()
    assert model.uses_sparse_path()
    x = torch.randn(32, 12) * 3 + 1
    params = list(model.parameters())

    output = model(x)
    assert isinstance(output.codes, TopKSelection) and output.pre_activations is None
    loss = nmse_loss(output.x_hat, x) + l1_coef * l1_penalty(output.codes, x)
    grads = torch.autograd.grad(loss, params)

    x_hat_dense, codes_dense = _dense_evaluation(model, x)
    loss_dense = nmse_loss(x_hat_dense, x) + l1_coef * l1_penalty(codes_dense, x)
    grads_dense = torch.autograd.grad(loss_dense, params)

    torch.testing.assert_close(output.x_hat, x_hat_dense, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(dense_codes(output.codes, 40), codes_dense, rtol=1e-4, atol=1e-5)
    for grad, grad_dense in zip(grads, grads_dense):
        torch.testing.assert_close(grad, grad_dense, rtol=1e-4, atol=1e-6)


def test_which_forward_path_is_taken():
    def model(activation, **kwargs):
        return SparseAutoencoder(6, 16, activation, **kwargs)

    assert model(TopK(2)).train().uses_sparse_path()
    assert not model(ReLU()).train().uses_sparse_path()
    gumbel = model(GumbelTopK(2, anneal_steps=3))
    assert not gumbel.train().uses_sparse_path()  # noisy selection needs the dense soft mask
    assert gumbel.eval().uses_sparse_path()
    gumbel.train()
    gumbel(torch.randn(3, 6))
    assert not gumbel.uses_sparse_path()  # the second of three annealing calls is still noisy
    gumbel(torch.randn(3, 6))
    assert gumbel.uses_sparse_path() and int(gumbel.activation.n_steps) == 2  # the third runs at tau_end
    gumbel(torch.randn(3, 6))  # the sparse path still advances the schedule
    assert int(gumbel.activation.n_steps) == 3
    warm = model(GumbelTopK(2, anneal_steps=1, tau_end=0.1))
    warm.train()(torch.randn(3, 6))
    assert not warm.uses_sparse_path()  # tau_end too warm for the noise to vanish
    assert model(TopK(2), aux_k=4).train().uses_sparse_path()  # AuxK encodes the dead latents on its own
