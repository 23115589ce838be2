"""BatchTopK, JumpReLU and Matryoshka through everything the estimator does, and the sparse kernels behind them.

What each architecture computes is pinned in ``test_batchtopk.py``, ``test_jumprelu.py`` and
``test_matryoshka.py`` (BatchTopK's training budget and batch-independent inference, JumpReLU's
straight-through gradients and calibration to an L0, Matryoshka's loss and per-level FVU); their
SAELens and sparsify exports in ``test_interop.py``. Here every architecture goes through the same
paths as the seed's three: bit-identical reruns, CSR output, save/load/pickle, ``partial_fit``,
on-disk rows, checkpoints and resume, Pipeline and GridSearchCV; and the sparse kernels that BatchTopK
and Matryoshka training now take are checked against the dense evaluation of the same model.
"""

import pickle
import subprocess
import sys
import warnings
from pathlib import Path

import h5py
import numpy as np
import pytest
import scipy.sparse as sp
import torch
from sklearn.base import clone
from sklearn.model_selection import GridSearchCV, KFold
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

import sklearn_sae._training
from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._activations import BatchTopK, JumpReLU, TopK, dense_codes
from sklearn_sae._model import SparseAutoencoder, l1_penalty, nmse_loss
from sklearn_sae._sparse_ops import _batch_topk, prefix_decodes
from sklearn_sae.calibration import calibrate_l1_coef
from sklearn_sae.datasets import make_sparse_signals

ARCHITECTURES = {
    "batchtopk": dict(activation="batchtopk"),
    "jumprelu": dict(activation="jumprelu"),
    "matryoshka-topk": dict(activation="topk", matryoshka=(0.25, 0.5)),
    "matryoshka-batchtopk": dict(activation="batchtopk", matryoshka=(0.125, 0.5)),
}
PARAMS = dict(n_latents=32, k=4, batch_size=64, max_epochs=3, lr=1e-2, device="cpu", random_state=0)
BATCHES_PER_EPOCH = 6  # 360 training rows (validation_fraction=0.1) in batches of 64


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=400, n_features=12, n_atoms=24, n_active=3, random_state=0)[0]


def _sae(architecture, **params):
    return SparseAutoencoderTransformer(**{**PARAMS, **ARCHITECTURES[architecture], **params})


def _fit(estimator, X):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # dead latents of tiny fits
        return estimator.fit(X)


def _assert_same_model(a, b, X):
    state_a, state_b = a.net_.module_.state_dict(), b.net_.module_.state_dict()
    assert state_a.keys() == state_b.keys()
    for name, tensor in state_a.items():
        assert torch.equal(tensor, state_b[name]), name
    np.testing.assert_array_equal(a.transform(X), b.transform(X))


def _history(estimator):
    return [{key: value for key, value in epoch.items() if key != "dur"} for epoch in estimator.history_]


architectures = pytest.mark.parametrize("architecture", list(ARCHITECTURES))


# ------------------------------------------------------------------------- the estimator's paths


@architectures
def test_reruns_are_bit_identical_and_csr_equals_dense(X, architecture):
    first, second = _fit(_sae(architecture), X), _fit(_sae(architecture), X)
    _assert_same_model(first, second, X)
    assert _history(first) == _history(second)
    dense = first.transform(X)
    assert (dense != 0).any() and (dense == 0).any()
    codes = first.set_params(sparse_output=True).transform(X)
    assert sp.isspmatrix_csr(codes) and codes.has_sorted_indices
    assert codes.nnz == np.count_nonzero(dense)  # no explicit zeros
    np.testing.assert_array_equal(codes.toarray(), dense)


@architectures
def test_save_load_and_pickle_keep_every_tensor(X, tmp_path, architecture):
    sae = _fit(_sae(architecture), X)
    names = set(sae.net_.module_.state_dict())
    if sae.activation == "batchtopk":
        assert {"activation.threshold", "activation.n_updates"} <= names
    if sae.activation == "jumprelu":
        assert "activation.log_threshold" in names
    sae.save(tmp_path / "model")
    loaded = SparseAutoencoderTransformer.load(tmp_path / "model")
    assert (loaded.activation, loaded.matryoshka) == (sae.activation, sae.matryoshka and list(sae.matryoshka))
    _assert_same_model(loaded, sae, X)
    _assert_same_model(pickle.loads(pickle.dumps(sae)), sae, X)
    np.testing.assert_array_equal(loaded.reconstruct(X), sae.reconstruct(X))


@architectures
def test_partial_fit_and_on_disk_rows(X, tmp_path, architecture):
    incremental = _sae(architecture)
    scores = [incremental.partial_fit(block).score(X) for block in np.array_split(X, 3)]
    assert incremental.n_iter_ == 3 and incremental.n_samples_seen_ == len(X)
    assert scores[-1] > scores[0] + 0.05, scores  # the later calls kept training the same model
    if "matryoshka" in architecture:
        assert "train_fvu_level1" in incremental.history_[-1]
    with h5py.File(tmp_path / "X.h5", "w") as file:
        file.create_dataset("X", data=X, chunks=(50, X.shape[1]))
    with h5py.File(tmp_path / "X.h5", "r") as file:
        on_disk = _fit(_sae(architecture), file["X"])
        codes = on_disk.set_params(sparse_output=True).transform(file["X"])
    np.testing.assert_array_equal(codes.toarray(), on_disk.set_params(sparse_output=False).transform(X))
    assert len(on_disk.history_) == PARAMS["max_epochs"]


class Interrupted(Exception):
    """Raised in place of a training batch, as a crash in the middle of an epoch."""


def _interrupt_after(monkeypatch, n_batches):
    class InterruptedBatches(sklearn_sae._training.EpochIterator):
        seen = 0

        def __iter__(self):
            for batch in super().__iter__():
                if self.training:
                    if InterruptedBatches.seen == n_batches:
                        raise Interrupted
                    InterruptedBatches.seen += 1
                yield batch

    monkeypatch.setattr(sklearn_sae._training, "EpochIterator", InterruptedBatches)


@architectures
def test_an_interrupted_fit_resumes_bit_identical(X, tmp_path, monkeypatch, architecture):
    """BatchTopK's threshold and its count, JumpReLU's thresholds and Adam's state for them survive the checkpoint."""
    reference = _fit(_sae(architecture), X)
    with monkeypatch.context() as patch:
        _interrupt_after(patch, BATCHES_PER_EPOCH + 3)
        with pytest.raises(Interrupted):
            _fit(_sae(architecture, checkpoint_dir=tmp_path), X)
    resumed = _fit(_sae(architecture, checkpoint_dir=tmp_path), X)
    _assert_same_model(resumed, reference, X)
    assert _history(resumed) == _history(reference)


def test_pipeline_and_grid_search_over_the_architectures(X):
    pipeline = make_pipeline(StandardScaler(), SparseAutoencoderTransformer(**{**PARAMS, "max_epochs": 2}))
    grid = [
        {"sparseautoencodertransformer__activation": ["batchtopk", "jumprelu"]},
        {"sparseautoencodertransformer__matryoshka": [(0.25, 0.5)]},
    ]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        search = GridSearchCV(pipeline, grid, cv=2, error_score="raise").fit(X)
        # Each candidate's fold scores are those of its pipeline fitted by hand: the SAE's explained variance
        # on the scaled held-out rows, with the grid's architecture.
        for candidate, params in enumerate(search.cv_results_["params"]):
            for fold, (train, test) in enumerate(KFold(n_splits=2).split(X)):
                by_hand = clone(pipeline).set_params(**params).fit(X[train])
                module = by_hand[-1].net_.module_
                assert type(module.activation) is {"batchtopk": BatchTopK, "jumprelu": JumpReLU, "topk": TopK}[
                    by_hand[-1].activation]
                assert bool(module.prefixes) == (by_hand[-1].matryoshka is not None)
                score = by_hand.score(X[test])
                assert search.cv_results_[f"split{fold}_test_score"][candidate] == pytest.approx(score, rel=1e-6)
    assert len(set(search.cv_results_["mean_test_score"])) == 3  # three different models
    assert search.best_score_ == search.cv_results_["mean_test_score"].max()
    sae = search.best_estimator_[-1]
    best = {name.split("__")[1]: value for name, value in search.best_params_.items()}
    assert {name: sae.get_params()[name] for name in best} == best
    assert search.best_estimator_.transform(X[:5]).shape == (5, PARAMS["n_latents"])


def _fit_data_parallel(folder):
    """Run in each of two launched processes: data-parallel fits; write down the fitted tensors."""
    X = make_sparse_signals(n_samples=400, n_features=12, n_atoms=24, n_active=3, random_state=0)[0]
    for architecture in ("jumprelu", "matryoshka-batchtopk"):
        sae = _fit(_sae(architecture, distributed=True, max_epochs=2, batch_size=32), X)
        with open(folder / f"{architecture}-rank{torch.distributed.get_rank()}.pkl", "wb") as file:
            pickle.dump(sae.net_.module_.state_dict(), file)


def test_data_parallel_fits_end_with_the_same_model_everywhere(tmp_path):
    """JumpReLU's thresholds are parameters (their gradients averaged); BatchTopK's theta is averaged every step.

    As in ``test_distributed.py``: ``accelerate.debug_launcher`` forks two CPU processes, from a fresh interpreter.
    """
    pytest.importorskip("accelerate")
    code = (
        "import pathlib, sys\n"
        "sys.path.insert(0, sys.argv[1])\n"
        "from accelerate import debug_launcher\n"
        "import test_new_architectures as tests\n"
        "debug_launcher(tests._fit_data_parallel, args=(pathlib.Path(sys.argv[2]),), num_processes=2)\n"
    )
    command = [sys.executable, "-c", code, str(Path(__file__).parent), str(tmp_path)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, result.stderr[-4000:]
    for architecture in ("jumprelu", "matryoshka-batchtopk"):
        states = [pickle.loads((tmp_path / f"{architecture}-rank{rank}.pkl").read_bytes()) for rank in range(2)]
        for name, tensor in states[0].items():
            assert torch.equal(tensor, states[1][name]), (architecture, name)
    assert float(states[0]["activation.threshold"]) > 0


# ------------------------------------------------------------------------- what each architecture learns


def test_batchtopk_learns_its_threshold_every_training_batch(X):
    sae = _fit(_sae("batchtopk", validation_fraction=0.0, max_epochs=2), X)
    activation = sae.net_.module_.activation
    assert int(activation.n_updates) == 2 * 7  # 400 rows in batches of 64, two epochs
    theta = float(activation.threshold)
    assert theta > 0
    assert sae.history_[:, "train_l0"] == [4.0, 4.0]  # k a row on average, in every training batch
    _fit(sae.set_params(max_epochs=1, random_state=1), X)
    assert float(sae.net_.module_.activation.threshold) != theta  # a new fit learns its own


def test_batchtopk_threshold_is_the_weighted_mean_of_the_batch_minima():
    """An exponential moving average of rate 0.01 from 0, divided by the weight it has gathered."""
    activation = BatchTopK(k=2).train()
    minima = []
    for shift in range(6):  # a batch's kept activations, as the model's training forward reports them
        kept = (torch.rand(4, 10, generator=torch.Generator().manual_seed(shift)) + shift).flatten().topk(8).values
        activation.update_threshold_(kept)
        minima.append(float(kept.min()))
    weights = [0.99 ** (len(minima) - 1 - i) for i in range(len(minima))]
    expected = sum(w * m for w, m in zip(weights, minima)) / sum(weights)
    assert float(activation.threshold) == pytest.approx(expected, rel=1e-6)
    activation.update_threshold_(torch.zeros(8))  # nothing positive kept: theta and its count stay
    assert float(activation.threshold) == pytest.approx(expected, rel=1e-6) and int(activation.n_updates) == 6


def test_batchtopk_export_keeps_the_count_behind_its_threshold(X, tmp_path):
    import json

    sae = _fit(_sae("batchtopk", normalize=False), X)
    sae.export(tmp_path, "saelens")
    imported = SparseAutoencoderTransformer.load(tmp_path)
    for name in ("threshold", "n_updates"):
        assert torch.equal(getattr(imported.net_.module_.activation, name), getattr(sae.net_.module_.activation, name))
    record = json.loads((tmp_path / "sklearn_sae.json").read_text())
    del record["threshold_updates"]  # as an export of an earlier version wrote it: the average counts as settled
    (tmp_path / "sklearn_sae.json").write_text(json.dumps(record))
    assert int(SparseAutoencoderTransformer.load(tmp_path).net_.module_.activation.n_updates) == 10_000


def test_jumprelu_thresholds_are_learned(X):
    sae = _fit(_sae("jumprelu", l0_coef=1e-2, max_epochs=5), X)
    threshold = sae.net_.module_.activation.threshold.detach()
    assert not torch.allclose(threshold, torch.full_like(threshold, 0.05))  # moved from where they started
    assert (threshold > 0).all()


def test_calibration_is_for_the_activations_whose_l0_follows_from_the_weight(X):
    with pytest.raises(ValueError, match="activation='batchtopk' keeps k latents a row"):
        calibrate_l1_coef(_sae("batchtopk"), X, target_l0=4)


def test_a_matryoshka_prefix_may_be_smaller_than_k(X):
    sae = _fit(_sae("matryoshka-topk", matryoshka=(1 / 16, 0.5)), X)  # 2 latents, k = 4
    assert sae.net_.module_.prefixes == (2, 16)
    assert 0 < sae.history_[-1, "train_fvu_level0"] <= 1.0


@pytest.mark.parametrize(
    ("params", "message"),
    [
        (dict(matryoshka=("a", "b")), "something other than numbers"),
        (dict(matryoshka=(0.25, 0.25)), "increasing fractions"),
        (dict(matryoshka=(0.25, float("nan"))), "increasing fractions"),
        (dict(activation="jumprelu"), "not to activation='jumprelu'"),
    ],
)
def test_matryoshka_refusals_say_what_is_wrong(X, params, message):
    with pytest.raises(ValueError, match=message):
        _sae("matryoshka-topk", **params).fit(X)


# ------------------------------------------------------------------------- the sparse kernels


@pytest.mark.parametrize(("batch", "n_latents", "k"), [(8, 20, 3), (16, 256, 2), (64, 512, 8), (4, 5, 5), (3, 100, 1)])
def test_batch_topk_selection_is_the_batchs_top_k_times_batch(batch, n_latents, k):
    generator = torch.Generator().manual_seed(0)
    z = torch.randn(batch, n_latents, generator=generator)
    z[0] += 10  # one row takes most of the budget: the candidates must widen to hold it
    z[1] -= 100  # a row with nothing positive
    values, indices = _batch_topk(z, k)
    codes = torch.zeros_like(z).scatter(1, indices, values)
    flat = torch.relu(z).flatten()
    kept, positions = flat.topk(k * batch)
    expected = torch.zeros_like(flat).scatter(0, positions, kept).view_as(z)
    assert torch.equal(codes, expected)
    if int((expected[0] != 0).sum()) > 4 * k:  # more than the first candidates: they were widened
        assert values.shape[1] > 4 * k


def _model(activation, *, tied, prefixes=()):
    model = SparseAutoencoder(12, 40, activation, tied=tied, prefixes=prefixes)
    with torch.no_grad():  # biases the training would give, so that the ReLU on the kept values matters
        model.b_lat.normal_(0, 0.5, generator=torch.Generator().manual_seed(1))
        model.pre_bias.normal_(0, 0.3, generator=torch.Generator().manual_seed(2))
    return model


def _loss(output, x):
    levels = [nmse_loss(prefix, x) for prefix in output.prefix_x_hats or ()] + [nmse_loss(output.x_hat, x)]
    return torch.stack(levels).mean() + 0.1 * l1_penalty(output.codes, x)


def _dense_batch_topk(activation):
    """BatchTopK's training selection written densely: the ``k * batch`` largest ReLU'd pre-activations."""

    def forward(z_pre):
        flat = torch.relu(z_pre).flatten()
        kept, positions = flat.topk(activation.k * z_pre.shape[0], sorted=False)
        activation.update_threshold_(kept.detach())
        return torch.zeros_like(flat).scatter(0, positions, kept).view_as(z_pre)

    return forward


@pytest.mark.parametrize("tied", [True, False])
@pytest.mark.parametrize("prefixes", [(), (4, 10)], ids=["plain", "matryoshka"])
@pytest.mark.parametrize("make", [lambda: BatchTopK(3), lambda: TopK(3)], ids=["batchtopk", "topk"])
def test_sparse_training_path_agrees_with_the_dense_evaluation(make, tied, prefixes):
    torch.manual_seed(0)
    model = _model(make(), tied=tied, prefixes=prefixes).train()
    assert model.uses_sparse_path()
    dense = _model(make(), tied=tied, prefixes=prefixes).train()
    dense.uses_sparse_path = lambda: False
    if isinstance(dense.activation, BatchTopK):  # the module's forward is the inference rule: select densely here
        dense.activation.forward = _dense_batch_topk(dense.activation)
    dense.load_state_dict(model.state_dict())
    x = torch.randn(32, 12) * torch.linspace(0.1, 3, 32)[:, None] + 1
    params = list(model.parameters())
    output = model(x)
    grads = torch.autograd.grad(_loss(output, x), params)
    state = model.state_dict()
    dense_output = dense(x)
    dense_grads = torch.autograd.grad(_loss(dense_output, x), list(dense.parameters()))

    torch.testing.assert_close(dense_codes(output.codes, 40), dense_output.codes, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(output.x_hat, dense_output.x_hat, rtol=1e-5, atol=1e-5)
    assert len(output.prefix_x_hats or ()) == len(prefixes)
    for prefix, dense_prefix in zip(output.prefix_x_hats or (), dense_output.prefix_x_hats or ()):
        torch.testing.assert_close(prefix, dense_prefix, rtol=1e-5, atol=1e-5)
    for grad, dense_grad in zip(grads, dense_grads):
        torch.testing.assert_close(grad, dense_grad, rtol=1e-4, atol=1e-6)
    for name, tensor in dense.state_dict().items():  # theta, its count and the firing counters alike
        assert torch.equal(tensor, state[name]), name
    if isinstance(model.activation, BatchTopK):
        assert int((dense_codes(output.codes, 40) != 0).sum()) == 3 * 32
        assert float(model.activation.threshold) > 0


def test_which_path_the_new_architectures_take():
    assert _model(BatchTopK(3), tied=True).train().uses_sparse_path()
    assert not _model(BatchTopK(3), tied=True).eval().uses_sparse_path()  # the threshold, on dense blocks
    assert _model(TopK(3), tied=True, prefixes=(4, 10)).train().uses_sparse_path()
    assert not _model(JumpReLU(40), tied=True).train().uses_sparse_path()


def test_prefix_decodes_are_the_nested_prefixes_of_the_selection():
    generator = torch.Generator().manual_seed(0)
    W_dec = torch.randn(40, 6, generator=generator)
    indices = torch.stack([torch.randperm(40, generator=generator)[:5] for _ in range(9)])  # distinct in a row
    values = torch.rand(9, 5, generator=generator) * (torch.rand(9, 5, generator=generator) > 0.3)  # unkept: 0
    codes = torch.zeros(9, 40).scatter(1, indices, values)
    decodes = prefix_decodes(values, indices, W_dec, (3, 10, 25))
    for size, decode in zip((3, 10, 25), decodes):
        torch.testing.assert_close(decode, codes[:, :size] @ W_dec[:size], rtol=1e-5, atol=1e-6)
