"""Synthetic rows built from known sparse features: `make_sparse_signals`, and `make_hierarchical_signals`
with families of features, Zipfian and correlated firing."""

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




def make_hierarchical_signals(
    n_samples=4000,
    n_features=64,
    n_parents=32,
    children_per_parent=4,
    *,
    parent_l0=3.0,
    child_probability=0.5,
    frequency_exponent=1.0,
    correlation=0.3,
    child_similarity=0.5,
    magnitude_range=(0.5, 2.0),
    noise=0.0,
    random_state=None,
):
    """Generate signals from features with a hierarchy, Zipfian firing and correlated firing.

    A harder ground truth than :func:`make_sparse_signals`, after the
    synthetic benchmarks of the SAE literature (SynthSAEBench): concepts come
    in families, as protein labels do (a family inside a superfamily, a
    location inside a compartment). The generative model:

    1. **Atoms**: ``n_parents`` parent atoms, unit vectors drawn uniformly;
       each parent has ``children_per_parent`` child atoms at cosine
       ``child_similarity`` from it (the parent direction plus a random
       orthogonal one), so a child resembles its parent as a subtype does.
    2. **Parents fire** with Zipfian probabilities,
       ``p_i`` proportional to ``(i + 1) ** -frequency_exponent``, scaled so
       that a row has ``parent_l0`` active parents on average (capped at 1).
       Their firing is **correlated**: each row draws Gaussian scores with
       a one-factor correlation ``correlation`` between every pair of
       parents, and parent ``i`` fires where its score is above the
       ``1 - p_i`` quantile (a Gaussian copula, so each parent keeps its
       frequency).
    3. **Children fire only with their parent**: given an active parent,
       each of its children fires with probability ``child_probability``,
       independently; a child never fires without its parent.
    4. **Magnitudes** are drawn log-uniformly from ``magnitude_range`` for
       every active feature; ``X = codes @ atoms`` plus Gaussian noise of
       standard deviation ``noise`` per entry.

    Parameters
    ----------
    n_samples, n_features : int
    n_parents, children_per_parent : int
        The families: ``n_parents * (1 + children_per_parent)`` atoms in all.
    parent_l0 : float, default=3.0
        Mean active parents per row.
    child_probability : float, default=0.5
        Probability that a child fires when its parent does.
    frequency_exponent : float, default=1.0
        Zipf exponent of the parents' firing probabilities (0: all equal).
    correlation : float, default=0.3
        Correlation, in [0, 1), of the Gaussian scores behind the parents' firing.
    child_similarity : float, default=0.5
        Cosine between a child atom and its parent atom, in [0, 1).
    magnitude_range : tuple of float, default=(0.5, 2.0)
    noise : float, default=0.0
    random_state : int, RandomState instance or None, default=None

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), float32
    atoms : ndarray of shape (n_parents * (1 + children_per_parent), n_features)
        Unit-norm atoms: the parents first, then the children of parent 0,
        of parent 1, ...
    codes : ndarray of shape (n_samples, n_atoms)
        The magnitudes of the active features.
    parent : ndarray of shape (n_atoms,)
        For each atom, the index of its parent atom, or -1 for a parent.

    Examples
    --------
    >>> from sklearn_sae.datasets import make_hierarchical_signals
    >>> X, atoms, codes, parent = make_hierarchical_signals(n_samples=100, n_parents=4, random_state=0)
    >>> X.shape, atoms.shape, int((parent == -1).sum())
    ((100, 64), (20, 64), 4)
    >>> bool(((codes[:, parent[4:]] > 0) >= (codes[:, 4:] > 0)).all())  # no child without its parent
    True
    """
    from scipy.stats import norm

    for name, value in (("n_samples", n_samples), ("n_features", n_features), ("n_parents", n_parents)):
        if not isinstance(value, numbers.Integral) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")
    if not isinstance(children_per_parent, numbers.Integral) or children_per_parent < 0:
        raise ValueError(f"children_per_parent must be an int >= 0, got {children_per_parent!r}.")
    if children_per_parent and n_features < 2:
        raise ValueError(
            f"n_features={n_features}: a child atom leaves its parent's direction by an orthogonal one, which needs "
            "at least 2 features. Raise n_features or set children_per_parent=0."
        )
    for name, value, low, high in (("correlation", correlation, 0, 1), ("child_similarity", child_similarity, 0, 1)):
        if not low <= value < high:
            raise ValueError(f"{name} must be in [{low}, {high}), got {value!r}.")
    if not 0 <= child_probability <= 1:
        raise ValueError(f"child_probability must be in [0, 1], got {child_probability!r}.")
    if not 0 < parent_l0 <= n_parents:
        raise ValueError(f"parent_l0 must be in (0, n_parents={n_parents}], got {parent_l0!r}.")
    low, high = magnitude_range
    if not 0 < low <= high:
        raise ValueError(f"magnitude_range must be (low, high) with 0 < low <= high, got {magnitude_range!r}.")
    rng = check_random_state(random_state)

    parents = _unit(rng.standard_normal((n_parents, n_features)))
    directions = rng.standard_normal((n_parents, children_per_parent, n_features))
    directions -= np.einsum("pcf,pf->pc", directions, parents)[..., None] * parents[:, None, :]  # orthogonal part
    children = child_similarity * parents[:, None, :] + np.sqrt(1 - child_similarity**2) * _unit(directions)
    atoms = np.vstack([parents, children.reshape(-1, n_features)])
    parent = np.concatenate([np.full(n_parents, -1), np.repeat(np.arange(n_parents), children_per_parent)])

    weights = (np.arange(n_parents) + 1.0) ** -frequency_exponent
    probability = np.minimum(weights * parent_l0 / weights.sum(), 1.0)
    shared = rng.standard_normal((n_samples, 1))
    scores = np.sqrt(correlation) * shared + np.sqrt(1 - correlation) * rng.standard_normal((n_samples, n_parents))
    parent_active = scores > norm.ppf(1 - probability)
    child_active = parent_active[:, parent[n_parents:]] & (rng.random((n_samples, n_parents * children_per_parent))
                                                          < child_probability)
    active = np.hstack([parent_active, child_active])
    magnitudes = np.exp(rng.uniform(np.log(low), np.log(high), size=active.shape))
    codes = np.where(active, magnitudes, 0.0)
    X = codes @ atoms
    if noise:
        X = X + noise * rng.standard_normal(X.shape)
    return X.astype(np.float32), atoms, codes, parent


def _unit(vectors: np.ndarray) -> np.ndarray:
    return vectors / np.linalg.norm(vectors, axis=-1, keepdims=True)
