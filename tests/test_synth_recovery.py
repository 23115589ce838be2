"""Ground-truth recovery under the field's definitions: every number equals sae_lens's SynthSAEBench evaluation."""

import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.optimize import linear_sum_assignment

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.evaluate import core_metrics, ground_truth_recovery
from sklearn_sae.metrics import dictionary_recovery, recovery_scores

torch = pytest.importorskip("torch")
synthetic = pytest.importorskip("sae_lens.synthetic")

N_ROWS = 3000


class _FixedRows:
    """An activation generator that hands out rows drawn beforehand, so both evaluations see the same rows."""

    def __init__(self, feature_acts):
        self.feature_acts = feature_acts
        self.start = 0

    def sample(self, batch_size):
        rows = self.feature_acts[self.start : self.start + batch_size]
        self.start += batch_size
        return rows


class _SAELensView:
    """encode / decode / W_dec around the estimator, as ``eval_sae_on_synthetic_data`` calls them.

    ``decode`` must give the input's units, which ``reconstruct`` does for the rows last encoded (the
    estimator's per-row normalisation needs the row, not only the codes): the evaluation always decodes
    the codes it has just encoded.
    """

    def __init__(self, estimator):
        self.estimator = estimator
        self.W_dec = torch.from_numpy(np.array(estimator.components_))
        self._last = None

    def eval(self):
        return self

    def encode(self, x):
        self._last = x.numpy()
        codes = torch.from_numpy(np.asarray(self.estimator.transform(self._last)))
        self._codes = codes
        return codes

    def decode(self, codes):
        assert codes is self._codes, "decode is only defined for the codes of the rows last encoded"
        return torch.from_numpy(self.estimator.reconstruct(self._last))


def _hidden(model, feature_acts):
    with torch.no_grad():
        return model.feature_dict(feature_acts).numpy()


@pytest.fixture(scope="module")
def synthetic_case():
    """A small SynthSAEBench-style model (hierarchy, correlation, Zipfian firing) and a fitted SAE."""
    config = synthetic.SyntheticModelConfig(
        num_features=256,
        hidden_dim=48,
        firing_probability=synthetic.ZipfianFiringProbabilityConfig(exponent=0.5, max_prob=0.4, min_prob=5e-3),
        hierarchy=synthetic.HierarchyConfig(total_root_nodes=4, branching_factor=4, max_depth=2,
                                            mutually_exclusive_portion=1.0, compensate_probabilities=True,
                                            scale_children_by_parent=True),
        correlation=synthetic.LowRankCorrelationConfig(rank=4, correlation_scale=0.1),
        mean_firing_magnitudes=synthetic.LinearMagnitudeConfig(start=5.0, end=4.0),
        std_firing_magnitudes=synthetic.FoldedNormalMagnitudeConfig(mean=0.5, std=0.5),
        bias=0.5,
        seed=3,
    )
    with torch.random.fork_rng():
        model = synthetic.SyntheticModel(config)
        torch.manual_seed(0)
        train_acts = model.activation_generator.sample(8000)
        eval_acts = model.activation_generator.sample(N_ROWS)
    X_train = _hidden(model, train_acts)
    sae = SparseAutoencoderTransformer(n_latents=96, activation="batchtopk", k=6, max_epochs=4, batch_size=256,
                                       device="cpu", random_state=0).fit(X_train)
    return model, sae, eval_acts


def _sae_lens_evaluation(model, sae, eval_acts):
    return synthetic.eval_sae_on_synthetic_data(_SAELensView(sae), model.feature_dict, _FixedRows(eval_acts),
                                                num_samples=N_ROWS, batch_size=1000)


def test_every_number_equals_sae_lens_synthetic_evaluation(synthetic_case):
    model, sae, eval_acts = synthetic_case
    theirs = _sae_lens_evaluation(model, sae, eval_acts)
    X = _hidden(model, eval_acts)
    codes = sae.transform(X)
    true_atoms = model.feature_dict.feature_vectors.detach().numpy()
    ours = ground_truth_recovery(true_atoms, sae.components_, codes=codes, true_codes=eval_acts.numpy(),
                                 signed=False).attrs
    core = core_metrics(sae, X, codes=codes).iloc[0]
    pairs = {
        "mcc_hungarian_abs": theirs.mcc,
        "uniqueness": theirs.uniqueness,
        "latent_precision": theirs.classification.precision,
        "latent_recall": theirs.classification.recall,
        "latent_f1": theirs.classification.f1_score,
    }
    for name, value in pairs.items():
        assert ours[name] == pytest.approx(value, abs=1e-6), name
    assert core["explained_variance"] == pytest.approx(theirs.explained_variance, abs=1e-6)
    assert core["l0"] == pytest.approx(theirs.sae_l0, abs=1e-6)
    assert round((1 - core["alive"]) * sae.n_latents_) == theirs.dead_latents
    # Not a trivial agreement: the SAE is partway trained, so none of the scores sits at 0 or 1.
    assert all(0.05 < value < 0.99 for value in pairs.values()), pairs


def test_sparse_codes_and_true_activations_give_the_same_scores(synthetic_case):
    model, sae, eval_acts = synthetic_case
    X = _hidden(model, eval_acts)
    true_atoms = model.feature_dict.feature_vectors.detach().numpy()
    dense = ground_truth_recovery(true_atoms, sae.components_, codes=sae.transform(X), true_codes=eval_acts.numpy())
    sparse = ground_truth_recovery(true_atoms, sae.components_, codes=sp.csr_matrix(sae.transform(X)),
                                   true_codes=sp.csr_matrix(eval_acts.numpy()))
    assert dense.attrs == sparse.attrs


def test_per_latent_scores_by_hand():
    true_atoms = np.eye(3)
    learned = np.array([[1.0, 0.1, 0], [0, -1.0, 0], [0.9, 0, 0.1]])  # latents 0 and 2 both best match atom 0
    true_codes = np.array([[1.0, 0, 0], [1.0, 2.0, 0], [0, 2.0, 0], [0, 0, 0]])
    codes = np.array([[1.0, 0, 0], [0, 0, 1.0], [1.0, 1.0, 0], [0, 1.0, 1.0]])
    scores = recovery_scores(true_atoms, learned, codes=codes, true_codes=true_codes)
    assert scores.best_atom.tolist() == [0, 1, 0]
    # latent 0: fires rows 0, 2; atom 0 active rows 0, 1 -> precision 1/2, recall 1/2
    # latent 1: fires rows 2, 3; atom 1 active rows 1, 2 -> 1/2, 1/2; latent 2: fires rows 1, 3 -> 1/2, 1/2
    np.testing.assert_allclose(scores.latent_precision, [0.5, 0.5, 0.5])
    np.testing.assert_allclose(scores.latent_recall, [0.5, 0.5, 0.5])
    assert scores.summary["uniqueness"] == pytest.approx(2 / 3)
    assert scores.summary["latent_f1"] == pytest.approx(0.5)
    silent = recovery_scores(true_atoms, learned, codes=np.zeros((4, 3)), true_codes=true_codes)
    assert silent.summary["latent_f1"] == 0.0 and silent.summary["latent_precision"] == 0.0


def test_signed_and_absolute_matchings_are_named_apart():
    true_atoms = np.eye(2, 3)
    learned = -np.eye(2, 3)  # the right directions, pointing the other way
    signed = ground_truth_recovery(true_atoms, learned)
    absolute = ground_truth_recovery(true_atoms, learned, signed=False)
    # signed, the crossed pairs (cosine 0) beat the flipped ones (-1); absolute, the flipped ones are exact
    assert signed.attrs["mcc_hungarian_signed"] == 0.0 and "mcc_hungarian_abs" not in signed.attrs
    assert absolute.attrs["mcc_hungarian_abs"] == 1.0 and absolute["abs_cosine"].tolist() == [1.0, 1.0]
    assert signed.attrs["fraction_recovered_hungarian"] == 0.0
    assert absolute.attrs["fraction_recovered_hungarian"] == 1.0


def test_mcc_is_the_mean_over_matched_pairs_with_fewer_latents():
    """SynthSAEBench's dictionaries are narrower than the true one: the MCC averages the matched pairs."""
    rng = np.random.default_rng(0)
    true_atoms = rng.normal(size=(12, 8))
    learned = rng.normal(size=(5, 8))
    matches = ground_truth_recovery(true_atoms, learned, signed=False)
    unit = lambda a: a / np.linalg.norm(a, axis=1, keepdims=True)  # noqa: E731
    cosines = np.abs(unit(learned) @ unit(true_atoms).T)
    rows, columns = linear_sum_assignment(-cosines)
    assert matches.attrs["mcc_hungarian_abs"] == pytest.approx(cosines[rows, columns].mean())
    assert (matches["latent"] >= 0).sum() == 5 and matches["abs_cosine"].isna().sum() == 7


def test_codes_come_with_true_codes_and_match_the_widths():
    with pytest.raises(ValueError, match="give both"):
        ground_truth_recovery(np.eye(3), np.eye(3), codes=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one column per learned atom"):
        ground_truth_recovery(np.eye(3), np.eye(3), codes=np.zeros((2, 4)), true_codes=np.zeros((2, 3)))
    with pytest.raises(ValueError, match="one column per true atom"):
        ground_truth_recovery(np.eye(3), np.eye(3), codes=np.zeros((2, 3)), true_codes=np.zeros((2, 4)))
    with pytest.raises(ValueError, match="same rows"):
        ground_truth_recovery(np.eye(3), np.eye(3), codes=np.zeros((2, 3)), true_codes=np.zeros((3, 3)))


def test_greedy_dictionary_recovery_is_deprecated_and_unchanged():
    true = np.eye(3, 4)
    learned = np.array([[2.0, 0, 0, 0], [0, 1.0, 1.0, 0], [0, 0, 0, 1.0]])
    with pytest.warns(FutureWarning, match="recovery_scores"):
        mmcs, recovered = dictionary_recovery(true, learned)
    assert mmcs == pytest.approx((1 + np.sqrt(0.5) + np.sqrt(0.5)) / 3) and recovered == pytest.approx(1 / 3)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        recovery_scores(true, learned)  # the replacement does not warn
