"""The sparse Top-K SAE pass, pinned against a dense autograd evaluation of the same model."""

import pytest
import torch

from sklearn_sae._sparse_ops import _topk, topk_sae_encode, topk_sae_forward


def _parameters(n_features, n_latents, *, tied, dtype=torch.float32, seed=0):
    generator = torch.Generator().manual_seed(seed)

    def randn(*shape, std=1.0):
        return (torch.randn(*shape, generator=generator, dtype=dtype) * std).requires_grad_()

    W_enc = randn(n_latents, n_features, std=n_features**-0.5)
    W_dec = W_enc if tied else randn(n_latents, n_features, std=n_features**-0.5)
    # Non-trivial biases; b_lat's spread makes some kept pre-activations negative.
    return W_enc, randn(n_latents, std=0.5), W_dec, randn(n_features, std=0.3)


def _dense_forward(x_in, W_enc, b_lat, W_dec, pre_bias, k):
    """The model as the dense autograd path evaluates it: scatter the codes, decode with a GEMM."""
    z_pre = (x_in - pre_bias) @ W_enc.T + b_lat
    values, indices = z_pre.topk(k, dim=1)
    codes = torch.zeros_like(z_pre).scatter(1, indices, torch.relu(values))
    return codes @ W_dec + pre_bias, codes, z_pre


def _scatter(values, indices, n_latents):
    return values.new_zeros(values.shape[0], n_latents).scatter(1, indices, values)


def _loss(x_rec, codes, target):
    """NMSE against a target plus an L1 term, so that gradients reach both outputs."""
    nmse = ((x_rec - target).square().sum(1) / target.square().sum(1)).mean()
    return nmse + 1e-2 * codes.abs().sum(1).mean()


def _grads(loss, tensors):
    return torch.autograd.grad(loss, [t for t in tensors if t.requires_grad])


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize(
    ("batch", "n_features", "n_latents", "k"), [(24, 16, 48, 1), (24, 16, 48, 7), (12, 6, 10, 10), (24, 16, 256, 4)]
)
@pytest.mark.parametrize("x_requires_grad", [False, True])
def test_matches_dense_autograd(tied, batch, n_features, n_latents, k, x_requires_grad):
    W_enc, b_lat, W_dec, pre_bias = _parameters(n_features, n_latents, tied=tied)
    with torch.no_grad():
        b_lat -= 2.0
    generator = torch.Generator().manual_seed(1)
    # Rows from near pre_bias (every pre-activation negative) to large ones (many positive).
    x_in = torch.randn(batch, n_features, generator=generator) * torch.linspace(0, 3, batch)[:, None]
    x_in.requires_grad_(x_requires_grad)
    target = torch.randn(batch, n_features, generator=generator)
    params = [x_in, W_enc, b_lat, pre_bias] + ([] if tied else [W_dec])

    x_ref, codes_ref, z_pre = _dense_forward(x_in, W_enc, b_lat, W_dec, pre_bias, k)
    grads_ref = _grads(_loss(x_ref, codes_ref, target), params)
    x_rec, values, indices = topk_sae_forward(x_in, W_enc, b_lat, W_dec, pre_bias, k)
    codes = _scatter(values, indices, n_latents)
    grads = _grads(_loss(x_rec, codes, target), params)

    kept = z_pre.detach().topk(k, dim=1).values
    assert (kept < 0).any() and (kept > 0).any()  # ReLU on the kept values is exercised
    assert values.dtype == torch.float32 and indices.dtype == torch.int64 and (values >= 0).all()
    torch.testing.assert_close(codes, codes_ref, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(x_rec, x_ref, rtol=1e-4, atol=1e-5)
    assert len(grads) == len(grads_ref)
    for grad, grad_ref in zip(grads, grads_ref):
        torch.testing.assert_close(grad, grad_ref, rtol=1e-4, atol=1e-6)


@pytest.mark.parametrize(("n_latents", "k"), [(256, 4), (8192, 64), (32768, 8), (100, 3), (64, 64), (1024, 1)])
@pytest.mark.parametrize("ties", [False, True])
def test_topk_is_a_top_k(n_latents, k, ties):
    # The staged CPU selection (n_latents >= 16 k; nested for larger ratios) against torch.topk, ties included.
    generator = torch.Generator().manual_seed(0)
    z = torch.randint(0, 4, (8, n_latents), generator=generator).float() if ties else torch.randn(8, n_latents)
    values, indices = _topk(z, k)
    torch.testing.assert_close(values.sort(1).values, z.topk(k, dim=1).values.sort(1).values, rtol=0, atol=0)
    assert torch.equal(z.gather(1, indices), values)
    assert (indices.sort(1).values.diff(dim=1) > 0).all()  # k distinct latents


def test_gradient_is_zero_through_negative_kept_values():
    W_enc, b_lat, W_dec, pre_bias = _parameters(6, 10, tied=False)
    with torch.no_grad():
        b_lat[3] = -100.0  # latent 3 is always kept (k = n_latents) and always negative
    x_in = torch.randn(32, 6, generator=torch.Generator().manual_seed(1))
    x_rec, values, _ = topk_sae_forward(x_in, W_enc, b_lat, W_dec, pre_bias, 10)
    grad_enc, grad_b_lat, grad_dec = torch.autograd.grad((x_rec.square().sum() + values.sum()), [W_enc, b_lat, W_dec])
    assert grad_b_lat[3] == 0 and (grad_enc[3] == 0).all() and (grad_dec[3] == 0).all()
    ever_positive = ((x_in - pre_bias) @ W_enc.T + b_lat > 0).any(0)
    assert torch.equal(grad_b_lat != 0, ever_positive) and ever_positive.sum() >= 5


@pytest.mark.parametrize("tied", [True, False])
def test_gradcheck_float64(tied):
    W_enc, b_lat, W_dec, pre_bias = _parameters(5, 9, tied=tied, dtype=torch.float64)
    x_in = torch.randn(4, 5, dtype=torch.float64, requires_grad=True)

    def outputs(x_in, W_enc, b_lat, W_dec, pre_bias):
        x_rec, values, _ = topk_sae_forward(x_in, W_enc, b_lat, W_enc if tied else W_dec, pre_bias, 3)
        return x_rec, values

    assert torch.autograd.gradcheck(outputs, (x_in, W_enc, b_lat, W_dec, pre_bias))


def test_encode_matches_forward():
    W_enc, b_lat, W_dec, pre_bias = _parameters(16, 48, tied=False)
    x_in = torch.randn(24, 16)
    _, values, indices = topk_sae_forward(x_in, W_enc, b_lat, W_dec, pre_bias, 7)
    enc_values, enc_indices = topk_sae_encode(x_in, W_enc, b_lat, pre_bias, 7)
    assert not enc_values.requires_grad
    torch.testing.assert_close(_scatter(enc_values, enc_indices, 48), _scatter(values, indices, 48).detach())


def test_backward_is_deterministic():
    W_enc, b_lat, W_dec, pre_bias = _parameters(16, 48, tied=True)
    x_in = torch.randn(64, 16)
    runs = [
        _grads(topk_sae_forward(x_in, W_enc, b_lat, W_dec, pre_bias, 7)[0].square().sum(), [W_enc, b_lat, pre_bias])
        for _ in range(2)
    ]
    for first, second in zip(*runs):
        assert torch.equal(first, second)


@pytest.mark.parametrize("tied", [True, False])
def test_autocast_bfloat16_close_to_float32(tied):
    n_latents, k = 64, 8
    W_enc, b_lat, W_dec, pre_bias = _parameters(32, n_latents, tied=tied)
    params = [W_enc, b_lat, pre_bias] + ([] if tied else [W_dec])
    x_in, target = torch.randn(2, 128, 32, generator=torch.Generator().manual_seed(1)).unbind(0)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        enc_values, enc_indices = topk_sae_encode(x_in, W_enc, b_lat, pre_bias, k)
    codes_32 = _scatter(*topk_sae_encode(x_in, W_enc, b_lat, pre_bias, k), n_latents)
    codes_16 = _scatter(enc_values, enc_indices, n_latents)
    # bf16 rounding of the GEMM may swap near-tied latents; compare the rows where it did not.
    same = ((codes_16 > 0) == (codes_32 > 0)).all(1)
    assert enc_values.dtype == torch.float32 and same.float().mean() > 0.9

    def run():
        x_rec, values, indices = topk_sae_forward(x_in, W_enc, b_lat, W_dec, pre_bias, k)
        loss = _loss(x_rec[same], values[same], target[same])
        return x_rec[same], _scatter(values, indices, n_latents)[same], _grads(loss, params)

    x_32, codes_32, grads_32 = run()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        x_16, codes_16, grads_16 = run()
    assert x_16.dtype == codes_16.dtype == torch.float32
    assert all(grad.dtype == torch.float32 for grad in grads_16)
    for bf16, fp32 in [(x_16, x_32), (codes_16, codes_32), *zip(grads_16, grads_32)]:
        assert ((bf16 - fp32).norm() / fp32.norm()).item() < 2e-2
