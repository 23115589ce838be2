"""scikit-learn's estimator checks, including those check_estimator does not run by default."""

import pytest
from sklearn.utils.estimator_checks import (
    check_dataframe_column_names_consistency,
    check_get_feature_names_out_error,
    check_global_output_transform_pandas,
    check_param_validation,
    check_set_output_transform,
    check_set_output_transform_pandas,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
    parametrize_with_checks,
)

from sklearn_sae import SparseAutoencoderTransformer


def _small(**params):
    """Settings that keep each check to a fraction of a second on two CPU cores."""
    defaults = dict(n_latents=16, k=4, max_epochs=3, batch_size=32, device="cpu", random_state=0)
    return SparseAutoencoderTransformer(**{**defaults, **params})


ESTIMATORS = [
    _small(activation="relu"),
    _small(activation="topk"),
    _small(activation="gumbel_topk", anneal_steps=0.5),
    _small(activation="topk", sparse_output=True),
    _small(activation="gumbel_topk", tied=False, normalize=False, sparse_output=True),
    _small(activation="batchtopk", sparse_output=True),
    _small(activation="topk", matryoshka=(0.25, 0.5)),
    _small(activation="jumprelu"),
    _small(activation="jumprelu", tied=False, sparse_output=True),
    _small(activation="batchtopk", matryoshka=(0.25, 0.5)),
]


@parametrize_with_checks(ESTIMATORS)
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)


EXTRA_CHECKS = [
    check_param_validation,
    check_set_output_transform,
    check_set_output_transform_pandas,
    check_global_output_transform_pandas,
    check_dataframe_column_names_consistency,
    check_get_feature_names_out_error,
    check_transformer_get_feature_names_out,
    check_transformer_get_feature_names_out_pandas,
]


@pytest.mark.parametrize("estimator", ESTIMATORS, ids=repr)
@pytest.mark.parametrize("check", EXTRA_CHECKS, ids=lambda check: check.__name__)
def test_checks_not_run_by_check_estimator(estimator, check):
    check(type(estimator).__name__, estimator)
