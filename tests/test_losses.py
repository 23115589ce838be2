"""Losses that mean what they say: one objective per activation, the same in every split, and no module state.

Each split's ``*_loss`` in ``history_`` must be the objective recomputed from the same split's recorded terms:
``nmse`` (Matryoshka: the mean of ``nmse_level*`` and ``nmse``) plus the weighted sparsity term
(``l1_coef`` times ``l1``; JumpReLU: ``l0_coef`` times ``l0``). The training aids (AuxK, JumpReLU's pre-activation term) are differentiated in
training but are not part of any recorded loss.
"""

import copy
import pickle
import warnings

import numpy as np
import pytest
import torch

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_sparse_signals

L1_COEF = 0.05

CONFIGS = {
    "relu": dict(activation="relu"),
    "topk": dict(activation="topk"),
    "gumbel_topk": dict(activation="gumbel_topk", anneal_steps=0.5),
    "batchtopk": dict(activation="batchtopk"),
    "jumprelu": dict(activation="jumprelu"),
    "topk+matryoshka": dict(activation="topk", matryoshka=(0.25, 0.5)),
}


@pytest.fixture(scope="module")
def X():
    return make_sparse_signals(n_samples=600, n_features=16, n_atoms=48, n_active=3, random_state=0)[0]


def _fit(X, config, *, eval_sets=True, **params):
    # A short dead window and AuxK on, so that training batches carry a training aid the objective leaves out.
    defaults = dict(n_latents=48, k=4, l1_coef=L1_COEF, max_epochs=3, batch_size=64, aux_k="auto", dead_window=64,
                    aux_coef=0.5, device="cpu", random_state=0)
    if CONFIGS[config]["activation"] == "relu":
        defaults["aux_k"] = None  # ReLU has no term against dead latents
    if CONFIGS[config]["activation"] == "jumprelu":  # its own names: the L0 weight, and its term against dead latents
        defaults.update(l1_coef=None, l0_coef=L1_COEF, aux_coef="auto", pre_act_coef=0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        sae = SparseAutoencoderTransformer(**{**defaults, **CONFIGS[config], **params})
        return sae.fit(X[100:], eval_sets={"test": X[:100]} if eval_sets else None)


def _objective(row, split, config):
    levels = sorted(key for key in row if key.startswith(f"{split}_nmse_level"))
    reconstruction = np.mean([row[key] for key in levels] + [row[f"{split}_nmse"]])
    sparsity = row[f"{split}_l0"] if config == "jumprelu" else row[f"{split}_l1"]
    return reconstruction + L1_COEF * sparsity


@pytest.mark.parametrize("config", list(CONFIGS))
def test_every_split_records_its_objective_exactly(X, config):
    sae = _fit(X, config)
    if config == "topk+matryoshka":
        assert "valid_nmse_level1" in sae.history_[-1] and "test_nmse_level0" in sae.history_[-1]
    for row in sae.history_:
        for split in ("train", "valid", "test"):
            assert row[f"{split}_loss"] == pytest.approx(_objective(row, split, config), rel=1e-5, abs=1e-7), split
            # The sparsity term weighs: a loss that dropped it would not pass.
            assert L1_COEF * row[f"{split}_{'l0' if config == 'jumprelu' else 'l1'}"] > 1e-3 * row[f"{split}_loss"]


def test_the_training_aids_are_differentiated_but_not_recorded(X):
    """With AuxK on and dead latents in training, the gradient differs from the objective's; the loss does not."""
    from sklearn_sae._activations import TopK
    from sklearn_sae._model import SparseAutoencoder
    from sklearn_sae._training import SAELoss

    torch.manual_seed(0)
    model = SparseAutoencoder(16, 48, TopK(4), aux_k=8, dead_window=1).train()
    x = torch.from_numpy(X[:64])
    model(x)  # every latent that did not fire in this batch is now dead
    output = model(x)
    assert output.aux_residual_hat is not None
    terms = SAELoss(l1_coef=L1_COEF, aux_coef=0.5)(output, x)
    assert terms.total.item() > terms.objective.item()
    assert terms.objective.item() == pytest.approx((terms.nmse + L1_COEF * terms.l1).item(), rel=1e-6)


@pytest.mark.parametrize("config", list(CONFIGS))
def test_a_fitted_module_deep_copies_and_pickles(X, config):
    # No validation and no eval set: the last forward call of the fit is a training one.
    sae = _fit(X, config, validation_fraction=0.0, eval_sets=False)
    module = sae.net_.module_
    for candidate in (module, module.train()):
        copied = copy.deepcopy(candidate)
        restored = pickle.loads(pickle.dumps(candidate))
        for other in (copied, restored):
            for name, tensor in module.state_dict().items():
                torch.testing.assert_close(other.state_dict()[name], tensor)
    module.train()(torch.from_numpy(X[:32]))  # a training forward call leaves no graph on the module either
    copy.deepcopy(module)
    pickle.loads(pickle.dumps(sae))


def test_jumprelu_l0_term_is_the_same_in_training_and_evaluation(X):
    sae = _fit(X, "jumprelu")
    module = sae.net_.module_
    x = torch.from_numpy(X[:64])
    train_penalty = module.train()(x).l0_penalty
    assert train_penalty.requires_grad  # the thresholds learn from it
    with torch.no_grad():
        module.eval()
        output = module(x)
    assert output.l0_penalty.item() == pytest.approx((output.codes != 0).sum(dim=1).float().mean().item())
