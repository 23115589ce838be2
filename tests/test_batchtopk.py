"""BatchTopK: k * batch activations kept in training, one learned threshold at inference."""

import pickle
import warnings

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import BatchTopK, dense_codes
from sklearn_sae._model import SparseAutoencoder
from sklearn_sae.datasets import make_sparse_signals


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=800, n_features=16, n_atoms=32, n_active=3, random_state=0)[0]


def _fit(X, **params):
    defaults = dict(activation="batchtopk", n_latents=32, k=4, max_epochs=3, device="cpu", random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return SparseAutoencoderTransformer(**{**defaults, **params}).fit(X)


def _identity_model(k, n_latents=20):
    """A BatchTopK autoencoder whose pre-activations are its input rows (no normalisation, identity encoder)."""
    model = SparseAutoencoder(n_latents, n_latents, BatchTopK(k=k), normalize=False)
    with torch.no_grad():
        model.W_enc.copy_(torch.eye(n_latents))
        model.b_lat.zero_()
        model.pre_bias.zero_()
    return model


def _dense(output, n_latents=20):
    return dense_codes(output.codes, n_latents)


def test_training_keeps_k_times_batch_activations_anywhere_in_the_batch():
    model = _identity_model(k=3).train()
    z_pre = torch.randn(8, 20, generator=torch.Generator().manual_seed(0))
    z_pre[0] += 10  # one row takes most of the batch's budget
    codes = _dense(model(z_pre))
    assert int((codes != 0).sum()) == 3 * 8
    assert int((codes[0] != 0).sum()) > 3  # rows use more or fewer latents than k
    kept = torch.relu(z_pre).flatten().topk(24).values
    assert torch.allclose(codes.flatten().sort().values[-24:], kept.sort().values)
    threshold = float(model.activation.threshold)
    assert threshold == pytest.approx(float(kept.min()))  # first batch: its smallest kept value


def test_the_threshold_is_a_corrected_running_average_and_inference_uses_it():
    model = _identity_model(k=2, n_latents=10).train()
    first, second = torch.rand(4, 10) + 1, torch.rand(4, 10) + 2
    model(first)
    theta = float(model.activation.threshold)
    model(second)
    smallest = float(torch.relu(second).flatten().topk(8).values.min())
    # The moving average of rate 0.01 from 0, over the weight it has gathered: (0.99 * 0.01 * m1 + 0.01 * m2) / 0.0199.
    expected = (0.99 * 0.01 * theta + 0.01 * smallest) / (1 - 0.99**2)
    assert float(model.activation.threshold) == pytest.approx(expected, rel=1e-6)
    assert int(model.activation.n_updates) == 2
    activation = model.activation
    z_pre = torch.tensor([[0.5, theta, 5.0]])
    activation.threshold.fill_(1.0)
    expected_codes = [[0.0, theta if theta > 1 else 0.0, 5.0]]
    assert activation.eval()(z_pre).tolist() == expected_codes
    # The module's forward is the inference rule in either mode, and leaves the running average alone.
    assert activation.train()(z_pre).tolist() == expected_codes and int(activation.n_updates) == 2


def test_fit_has_mean_training_l0_k_and_codes_that_do_not_depend_on_the_batch(X):
    sae = _fit(X)
    assert np.allclose(sae.history_[:, "train_l0"], 4.0)
    assert float(sae.net_.module_.activation.threshold) > 0
    together = sae.transform(X)
    one_by_one = np.vstack([sae.transform(X[i : i + 1]) for i in range(20)])
    np.testing.assert_array_equal(one_by_one != 0, together[:20] != 0)
    np.testing.assert_allclose(one_by_one, together[:20], rtol=1e-5, atol=1e-6)


def test_csr_reruns_save_load_pickle_and_partial_fit(X, tmp_path):
    sae = _fit(X)
    np.testing.assert_array_equal(sae.transform(X), _fit(X).transform(X))  # bit-identical on the CPU
    sparse = sae.set_params(sparse_output=True).transform(X)
    assert sp.isspmatrix_csr(sparse)
    np.testing.assert_array_equal(sparse.toarray(), sae.set_params(sparse_output=False).transform(X))
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert float(loaded.net_.module_.activation.threshold) == float(sae.net_.module_.activation.threshold)
    np.testing.assert_array_equal(loaded.transform(X), sae.transform(X))
    np.testing.assert_array_equal(pickle.loads(pickle.dumps(sae)).transform(X), sae.transform(X))
    incremental = SparseAutoencoderTransformer(activation="batchtopk", n_latents=32, k=4, device="cpu",
                                               random_state=0, lr=1e-3)
    for block in np.array_split(X, 4):
        incremental.partial_fit(block)
    assert float(incremental.net_.module_.activation.threshold) > 0


def test_on_disk_fit_and_the_sparsify_refusal(X, tmp_path):
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f["X"] = X
    with h5py.File(tmp_path / "X.h5", "r") as f:
        sae = _fit(f["X"])
        assert sae.transform(f["X"]).shape == (800, 32)
    with pytest.raises(ValueError, match="batchtopk.*cannot be exported to sparsify"):
        sae.export(tmp_path / "sparsify", "sparsify", normalization="standardized")
