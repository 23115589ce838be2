"""What a GPU run must show, collected in one place: every test here is marked ``cuda`` and needs one.

On a machine without a CUDA GPU they are skipped; ``benchmarks/gpu_check.py`` runs them with
``-m cuda`` on a GPU and fails when any is skipped there.
"""

import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_sparse_signals

pytestmark = [
    pytest.mark.cuda,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=3000, n_features=64, n_atoms=128, n_active=4, random_state=0)[0]


def _sae(**params):
    defaults = dict(n_latents=256, k=8, max_epochs=3, device="cuda", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


def _fit(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return estimator.fit(X)


@pytest.mark.parametrize("activation", ["topk", "gumbel_topk", "batchtopk", "relu"])
@pytest.mark.parametrize("amp", [False, True])
def test_fit_transform_score_on_cuda(X, activation, amp):
    sae = _fit(_sae(activation=activation, amp=amp), X)
    assert sae.net_.module_.W_enc.device.type == "cuda"
    codes = sae.transform(X)
    assert codes.shape == (len(X), 256) and np.isfinite(codes).all()
    assert sae.score(X) > 0.3
    csr = sae.set_params(sparse_output=True).transform(X)
    assert sp.isspmatrix_csr(csr)
    np.testing.assert_allclose(csr.toarray(), codes, rtol=1e-5, atol=1e-6)


def test_cuda_quality_is_that_of_the_cpu(X):
    on_gpu = _fit(_sae(), X).score(X)
    on_cpu = _fit(_sae(device="cpu"), X).score(X)
    assert abs(on_gpu - on_cpu) < 0.02


def test_save_load_across_devices_and_resume_on_cuda(X, tmp_path):
    sae = _fit(_sae(checkpoint_dir=tmp_path / "ckpt"), X)
    sae.save(tmp_path / "model")
    on_cpu = SparseAutoencoderTransformer.load(tmp_path / "model", device="cpu")
    np.testing.assert_allclose(on_cpu.transform(X), sae.transform(X), rtol=1e-4, atol=1e-5)
    again = _fit(_sae(checkpoint_dir=tmp_path / "ckpt"), X)  # the finished checkpoint: nothing to train
    np.testing.assert_array_equal(again.transform(X), sae.transform(X))


def test_streaming_fit_with_pinned_read_ahead_on_cuda(X, tmp_path):
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("X", data=X.astype(np.float16), chunks=(64, 64))
    with h5py.File(tmp_path / "X.h5", "r") as f:
        sae = _fit(_sae(), f["X"])
        assert sae.score(f["X"]) > 0.3


def test_partial_fit_on_cuda(X):
    def scores_after_each_call(device):
        sae = _sae(lr=1e-3, device=device)
        return sae, [sae.partial_fit(block).score(X) for block in np.array_split(X, 3)]

    sae, on_gpu = scores_after_each_call("cuda")
    _, on_cpu = scores_after_each_call("cpu")  # on the CPU: 0.337, 0.367, 0.392
    assert sae.net_.module_.W_enc.device.type == "cuda" and sae.n_steps_ > 0
    assert on_gpu[0] < on_gpu[1] < on_gpu[2]  # each call goes on training the same model
    assert abs(on_gpu[-1] - on_cpu[-1]) < 0.02


def test_the_callers_cuda_rng_is_untouched(X):
    torch.cuda.manual_seed(123)
    before = torch.cuda.get_rng_state()
    _fit(_sae(activation="gumbel_topk", anneal_steps=0.5), X)
    assert torch.equal(torch.cuda.get_rng_state(), before)
