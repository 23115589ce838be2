"""All-zero rows in the measures: left out of the row ratios, as in the training loss, never NaN."""

import numpy as np
import pytest
import torch

from sklearn_sae import metrics
from sklearn_sae._model import nmse_loss


def test_nmse_leaves_out_all_zero_rows_as_the_training_loss_does():
    X = np.array([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])
    X_hat = np.array([[3.0, 3.0], [5.0, 5.0], [0.0, 0.0]])
    with pytest.warns(UserWarning, match="1 of the 3 rows of X are all zero"):
        value = metrics.nmse(X, X_hat)
    assert value == pytest.approx((1 / 25 + 1) / 2)
    assert value == pytest.approx(nmse_loss(torch.tensor(X_hat), torch.tensor(X)).item())


@pytest.mark.parametrize("X_hat, expected", [(np.zeros((3, 2)), 0.0), (np.ones((3, 2)), np.inf)])
def test_nmse_of_only_zero_rows_is_a_number_not_nan(X_hat, expected):
    with pytest.warns(UserWarning, match="3 of the 3 rows of X are all zero"):
        assert metrics.nmse(np.zeros((3, 2)), X_hat) == expected


def test_nmse_of_rows_that_are_not_zero_does_not_warn():
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert metrics.nmse(np.ones((2, 2)), np.zeros((2, 2))) == 1.0
