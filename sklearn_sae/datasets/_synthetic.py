"""`make_sparse_signals`: synthetic rows built from known sparse features."""

from __future__ import annotations

import numbers

import numpy as np
from sklearn.utils import check_random_state


def make_sparse_signals(
    n_samples=2000,
    n_features=64,
    n_atoms=128,
    n_active=4,
    *,
    frequency_exponent=1.0,
    magnitude_range=(0.5, 2.0),
    noise=0.0,
    offset=0.0,
    n_outlier_features=0,
    outlier_scale=10.0,
    random_state=None,
):
    """Generate signals made of sparse non-negative combinations of known atoms.

    The generative model, row by row:

    1. ``dictionary``: ``n_atoms`` unit-norm atoms in ``n_features``
       dimensions, drawn uniformly on the sphere.
    2. Exactly ``n_active`` atoms are active in each row, drawn without
       replacement with probabilities proportional to
       ``(rank + 1) ** -frequency_exponent``: a power law, so a few atoms are
       common and many are rare, as features of real embeddings are.
    3. Each active atom gets a magnitude drawn log-uniformly from
       ``magnitude_range``; ``codes`` holds them, ``(n_samples, n_atoms)``.
    4. ``X = codes @ dictionary`` plus, optionally, Gaussian noise of standard
       deviation ``noise`` per entry, a shared offset vector of norm
       ``offset`` (a random direction), and ``n_outlier_features`` features
       whose values are all shifted by ``outlier_scale`` times the typical
       signal norm (protein language model embeddings have a few such
       dimensions).

    Parameters
    ----------
    n_samples : int, default=2000
        Number of rows.
    n_features : int, default=64
        Dimension of each row.
    n_atoms : int, default=128
        Number of true atoms (features).
    n_active : int, default=4
        Active atoms per row; must not exceed ``n_atoms``.
    frequency_exponent : float, default=1.0
        Exponent of the power law of atom frequencies; 0 makes all atoms
        equally frequent.
    magnitude_range : tuple of float, default=(0.5, 2.0)
        Positive ``(low, high)`` bounds of the magnitudes.
    noise : float, default=0.0
        Standard deviation of additive Gaussian noise.
    offset : float, default=0.0
        Norm of a vector added to every row.
    n_outlier_features : int, default=0
        Number of features shifted by a large constant.
    outlier_scale : float, default=10.0
        Size of that shift, in units of the mean norm of ``codes @ dictionary``.
    random_state : int, RandomState instance or None, default=None
        Seed for reproducible output.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The signals.
    dictionary : ndarray of shape (n_atoms, n_features)
        The true atoms, one per row, unit norm.
    codes : ndarray of shape (n_samples, n_atoms)
        The true non-negative codes, ``n_active`` non-zeros per row.

    Examples
    --------
    >>> from sklearn_sae.datasets import make_sparse_signals
    >>> X, dictionary, codes = make_sparse_signals(100, 16, 32, 3, random_state=0)
    >>> X.shape, dictionary.shape, codes.shape
    ((100, 16), (32, 16), (100, 32))
    >>> int((codes > 0).sum(axis=1).max())
    3
    """
    for name, value in [("n_samples", n_samples), ("n_features", n_features), ("n_atoms", n_atoms), ("n_active", n_active)]:
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}.")
    if n_active > n_atoms:
        raise ValueError(f"n_active={n_active} cannot exceed n_atoms={n_atoms}.")
    low, high = magnitude_range
    if not 0 < low <= high:
        raise ValueError(f"magnitude_range must be (low, high) with 0 < low <= high, got {magnitude_range!r}.")
    if not 0 <= n_outlier_features <= n_features:
        raise ValueError(f"n_outlier_features must be in [0, n_features], got {n_outlier_features!r}.")
    if noise < 0 or offset < 0:
        raise ValueError("noise and offset must be non-negative.")
    rng = check_random_state(random_state)

    dictionary = rng.normal(size=(n_atoms, n_features))
    dictionary /= np.linalg.norm(dictionary, axis=1, keepdims=True)

    # Sampling without replacement, proportional to the power law, all rows at
    # once: the top n_active of log-weights plus Gumbel noise (Gumbel-top-k trick).
    log_weights = -frequency_exponent * np.log(np.arange(1, n_atoms + 1))
    scores = log_weights + rng.gumbel(size=(n_samples, n_atoms))
    active = np.argpartition(-scores, n_active - 1, axis=1)[:, :n_active]
    magnitudes = np.exp(rng.uniform(np.log(low), np.log(high), size=(n_samples, n_active)))
    codes = np.zeros((n_samples, n_atoms))
    np.put_along_axis(codes, active, magnitudes, axis=1)

    X = codes @ dictionary
    signal_norm = np.linalg.norm(X, axis=1).mean()
    if noise:
        X += rng.normal(scale=noise, size=X.shape)
    if offset:
        direction = rng.normal(size=n_features)
        X += offset * direction / np.linalg.norm(direction)
    if n_outlier_features:
        outliers = rng.choice(n_features, size=n_outlier_features, replace=False)
        X[:, outliers] += outlier_scale * signal_norm * rng.choice([-1.0, 1.0], size=n_outlier_features)
    return X.astype(np.float32), dictionary, codes


