"""Do the estimator's defaults keep every dictionary alive, on any embeddings? Defaults over many embedding sets.

Issue "dictionaries that stay alive on any embeddings": a default that suits
the shipped 256-dimensional NEAR rows may leave most latents dead on
embeddings of another width, spectrum or offset. This script fits, on each
embedding set and over several seeds:

``previous``
    The defaults before the change, spelled out in :data:`PREVIOUS_DEFAULTS`.
``default``
    ``SparseAutoencoderTransformer()``, the new defaults, untouched.
``gumbel``
    The new defaults with ``activation="gumbel_topk"``.
``relu``
    The new defaults with ``activation="relu"`` (its default ``l1_coef``;
    ``--vary l1_coef=...`` tries another).
``sweep``
    The grid :data:`SWEEP_GRID` (learning rate x latents per feature, the
    rest at the new defaults), seed 0 only unless ``--sweep-seeds``: the best
    held-out FVU each set can reach, against which the defaults are judged.

The sets (:data:`SETS`): the shipped proteins (all, and a 2,000-row subset),
the UniRep embeddings ``scripts/build_unirep.py`` builds (skipped when not
built), and synthetic protein-LM-like rows (:func:`protein_like`) of widths
1,024 to 2,560 with a large common offset and a few outlier dimensions, as
ESM-2 and ProtT5 embeddings have. Each set is split once (seed 0, whatever
the fit seed): half fitted and half held out up to 5,000 rows, as the issue's
protocol (4,480 rows, 2,240 fitted), 80% / 20% above.

Every fit is appended to ``OUT/fits.csv`` as it finishes; a rerun skips the
fits already there (same set, config and seed), so a long run can be stopped
and resumed. At the end ``OUT/summary.md`` gets, per set and config, the mean
and [min, max] over seeds of the dead fractions, held-out FVU and L0 and the
fit time, the FVU relative to the best sweep point and to ``previous``, and a
verdict against the issue's targets (:data:`TARGETS`).

Usage::

    PYTHONPATH=. python benchmarks/bench_defaults.py                 # everything: many CPU hours
    PYTHONPATH=. python benchmarks/bench_defaults.py --sets near256-2k unirep1900 --configs previous default
    PYTHONPATH=. python benchmarks/bench_defaults.py --sweep-seeds 0 1 2 --configs sweep
    PYTHONPATH=. python benchmarks/bench_defaults.py --quick --sets near256-2k synth1024-2k --seeds 0 --configs default
    PYTHONPATH=. python benchmarks/bench_defaults.py --out merged --summarise-only   # fits.csv of several runs
"""

from __future__ import annotations

import argparse
import itertools
import json
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import scipy.sparse as sp

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._defaults import K_START_PER_K
from sklearn_sae.datasets import load_embeddings, make_sparse_signals
from sklearn_sae.metrics import dead_fraction

REPO_ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- configurations (edit here)

PREVIOUS_DEFAULTS = dict(
    # The estimator's defaults before the change, every parameter spelled out, so that "previous" stays
    # the same model however the new defaults move. A callable value is given the number of features.
    n_latents=lambda n_features: 4 * n_features,
    activation="topk",
    k=32,
    k_start=None,  # Top-K kept k latents a row from the first batch
    l1_coef=None,
    normalize=True,
    tied=True,
    pre_bias_init="geometric_median",
    unit_norm_decoder=True,
    aux_k=None,  # must mean "AuxK off"; run_fit checks the fitted module and records it if not
    aux_coef=1 / 32,
    dead_window=10_000,
    tau_start=1.0,
    tau_end=1e-8,
    anneal_steps=0.005,
    gumbel_candidates="positive",
    lr=1e-2,
    batch_size=256,
    max_epochs=20,  # must mean "20 epochs"; run_fit records it if n_iter_ says otherwise
    warmup_steps=0.05,
    grad_clip=1.0,
    validation_fraction=0.1,
    n_iter_no_change=None,
    amp=False,
)

NEW_DEFAULT_CHANGES = {"default": {}, "gumbel": dict(activation="gumbel_topk"), "relu": dict(activation="relu")}
"""The configs judged against the targets: the new defaults, with these parameters changed. ``relu`` is ReLU at its
default ``l1_coef``; its L0 is whatever the penalty leaves, so read its FVU beside its ``l0_held``."""

SWEEP_GRID = {"lr": (1e-3, 3e-3, 1e-2), "latents_per_feature": (2, 4)}
"""Sweep points: every learning rate with every ``n_latents = latents_per_feature * n_features``."""

SWEEP_K_START = K_START_PER_K * 32
"""The sweep's Top-K starts as the defaults' does, from ``4 * k`` latents a row (k=32, the default)."""

TARGETS = dict(dead_fit=0.02, dead_held=0.05, fvu_vs_best_sweep=1.05, fvu_vs_previous=1.02)
"""Worst seed's dead fractions at most these; mean FVU at most these multiples of the best sweep point's
and of ``previous``'s."""

FIXED_FIT_PARAMS = dict(device="cpu", verbose=0)
"""Given to every fit, with ``random_state`` set to the seed."""

SPLIT_SEED = 0
SMALL_SET_ROWS = 5_000
"""Sets of at most this many rows are split half fitted / half held out, larger ones 80% / 20%."""

QUICK_ROWS = 600
SYNTH_CHUNK_ROWS = 10_000
STATS_BLOCK_ROWS = 8_192

FIT_COLUMNS = [
    "set", "config", "seed", "n_fit", "n_held", "n_features", "n_latents_", "n_iter_",
    "lr_used", "aux_k_used", "dead_window_used",
    "dead_fit", "dead_held", "fvu_held", "l0_held", "fit_s", "warnings", "error", "params",
]


# ---------------------------------------------------------------- synthetic embeddings

def protein_like(n_samples, n_features, *, seed, mean_ratio=4.0, n_outliers=4, outlier_scale=8.0, decay=1.0,
                 n_active=16, noise_frac=0.3):
    """Synthetic rows shaped like protein language model embeddings.

    Sparse non-negative signals (:func:`sklearn_sae.datasets.make_sparse_signals`,
    ``2 * n_features`` atoms, ``n_active`` per row) are seen through an
    anisotropic linear map ``Q diag(s) Q^T`` (``Q`` a random orthogonal
    matrix, ``s_i = i ** (-decay / 2)``, so the variance falls as
    ``i ** -decay`` along ``Q``'s columns) and scaled to a mean per-dimension
    standard deviation of 1. Dense Gaussian noise through the same map, with
    a mean per-dimension standard deviation of ``noise_frac``, is added; then
    a common mean vector of norm ``mean_ratio`` times the norm of the
    per-dimension standard deviations (a random direction); then
    ``n_outliers`` dimensions get a very large offset of random sign, as a
    few dimensions of ESM-2 and ProtT5 embeddings have.

    Rows are built in chunks of :data:`SYNTH_CHUNK_ROWS`, sharing the map and
    the atoms, so that 200,000 rows never need the dense ``(n, 2d)`` codes at
    once; every scale (signal, noise, offset, outliers) is taken over all
    rows, not one chunk.

    Parameters
    ----------
    n_samples, n_features : int
        Shape of the output.
    seed : int
        Seeds everything: the map, the atoms, the codes, the noise, the
        offset and the outliers.
    mean_ratio : float, default=4.0
        Norm of the common mean vector over the norm of the per-dimension
        standard deviations (before the outliers).
    n_outliers : int, default=4
        Number of dimensions with a large offset.
    outlier_scale : float, default=8.0
        Size of that offset, in units of ``mean(|X|) * sqrt(n_features) / 8``;
        the outlier dimensions' own variation is also tripled.
    decay : float, default=1.0
        Exponent of the variance spectrum of the map; 2 puts 90% of the
        variance in about five directions.
    n_active : int, default=16
        Active atoms per row.
    noise_frac : float, default=0.3
        Mean per-dimension standard deviation of the noise, relative to the
        signal's.

    Returns
    -------
    X : ndarray of shape (n_samples, n_features), dtype float32
        The rows.
    """
    rng = np.random.default_rng(seed)
    d = n_features
    # Haar-distributed orthogonal matrix: QR of a Gaussian matrix, R's diagonal signs moved into Q.
    q, r = np.linalg.qr(rng.standard_normal((d, d)))
    q *= np.sign(np.diag(r))
    scales = np.arange(1, d + 1, dtype=np.float64) ** (-decay / 2)
    mapping = (q * scales) @ q.T
    direction = rng.standard_normal(d)
    direction /= np.linalg.norm(direction)
    outliers = rng.choice(d, size=min(n_outliers, d), replace=False)
    outlier_signs = rng.choice([-1.0, 1.0], size=len(outliers))
    chunks = [slice(start, min(start + SYNTH_CHUNK_ROWS, n_samples))
              for start in range(0, n_samples, SYNTH_CHUNK_ROWS)]
    chunk_seeds = rng.integers(np.iinfo(np.int32).max, size=len(chunks))

    # Pass 1: the mapped signal, unscaled, and its per-dimension moments over all rows.
    X = np.empty((n_samples, d), dtype=np.float32)
    mapped_atoms, total, total_sq = None, np.zeros(d), np.zeros(d)
    for rows, chunk_seed in zip(chunks, chunk_seeds):
        _, atoms, codes = make_sparse_signals(rows.stop - rows.start, d, 2 * d, n_active,
                                              random_state=int(chunk_seed))
        if mapped_atoms is None:  # the first chunk's atoms serve every chunk: one distribution, not a mixture
            mapped_atoms = atoms @ mapping
        # codes @ (atoms @ mapping) with the codes sparse: n_active products per row instead of 2d.
        signal = sp.csr_matrix(codes) @ mapped_atoms
        total += signal.sum(axis=0)
        total_sq += np.square(signal).sum(axis=0)
        X[rows] = signal
    signal_var = np.maximum(total_sq / n_samples - np.square(total / n_samples), 0.0)
    signal_scale = np.sqrt(signal_var).mean()
    signal_var /= signal_scale**2

    # White noise through the map has per-dimension variance diag(Q s^2 Q^T): known without drawing it.
    noise_var_unit = np.square(q * scales).sum(axis=1)
    noise_scale = noise_frac / np.sqrt(noise_var_unit).mean()
    mean_vector = mean_ratio * np.sqrt((signal_var + noise_scale**2 * noise_var_unit).sum()) * direction

    # Pass 2: scale, noise and offset; mean(|X|) over all rows sizes the outliers.
    total_abs = 0.0
    for rows in chunks:
        noise = rng.standard_normal((rows.stop - rows.start, d)) @ mapping * noise_scale
        block = X[rows].astype(np.float64) / signal_scale + noise + mean_vector
        total_abs += np.abs(block).sum()
        X[rows] = block
    offset = outlier_scale * total_abs / X.size * np.sqrt(d) / 8 * outlier_signs
    for column, shift in zip(outliers, offset):
        X[:, column] = X[:, column].astype(np.float64) * 3 + shift
    return X


# ---------------------------------------------------------------- embedding sets

def split(X, *, max_rows=None):
    """Fitted and held-out rows of one set, by a permutation that depends on nothing but :data:`SPLIT_SEED`.

    Parameters
    ----------
    X : ndarray of shape (n_samples, n_features)
        The set's rows.
    max_rows : int, default=None
        Keep only this many rows (of the permutation) before splitting.

    Returns
    -------
    X_fit, X_held : ndarray, dtype float32
        Half and half up to :data:`SMALL_SET_ROWS` rows, 80% and 20% above.
    """
    fit, held = split_indices(len(X), max_rows=max_rows)
    return np.ascontiguousarray(X[fit], dtype=np.float32), np.ascontiguousarray(X[held], dtype=np.float32)


def split_indices(n_rows, *, max_rows=None):
    """The row numbers :func:`split` fits and holds out, for data (labels) that must follow the rows."""
    order = np.random.default_rng(SPLIT_SEED).permutation(n_rows)[:max_rows]
    n_fit = len(order) // 2 if len(order) <= SMALL_SET_ROWS else int(0.8 * len(order))
    return order[:n_fit], order[n_fit:]


def _load_file(path):
    """The embedding matrix of an HDF5 file; ``FileNotFoundError`` (a skipped set) when it is not there."""
    if not path.exists():
        raise FileNotFoundError(f"{path.relative_to(REPO_ROOT)} not found")
    return load_embeddings(path)[1]


def near256_all(max_rows=None):
    """The shipped NEAR proteins, ``data/per-protein.h5`` (19,074 x 256)."""
    return split(_load_file(REPO_ROOT / "data" / "per-protein.h5"), max_rows=max_rows)


def near256_2k(max_rows=None):
    """A fixed 2,000-protein subset of the shipped proteins: the same embeddings, few rows."""
    X = _load_file(REPO_ROOT / "data" / "per-protein.h5")
    subset = np.sort(np.random.default_rng(0).choice(len(X), size=2000, replace=False))
    return split(X[subset], max_rows=max_rows)


def _unirep(n_features, n_rows=None):
    def load(max_rows=None):
        rows = n_rows if max_rows is None else min(max_rows, n_rows or max_rows)
        return split(_load_file(REPO_ROOT / "build" / f"unirep-{n_features}.h5"), max_rows=rows)

    load.__doc__ = (f"UniRep {n_features}-dimensional embeddings of {n_rows or 4480:,} proteins "
                    "(scripts/build_unirep.py).")
    return load


def _synthetic(n_samples, n_features, **shape):
    def load(max_rows=None):
        # Only the rows kept are generated: the rows are independent, so fewer is the same distribution.
        n = n_samples if max_rows is None else min(n_samples, max_rows)
        return split(protein_like(n, n_features, seed=0, **shape))

    load.__doc__ = f"{n_samples:,} x {n_features} rows of protein_like({shape or ''})."
    return load


SETS = {
    "near256-all": near256_all,
    "near256-2k": near256_2k,
    "unirep256": _unirep(256),
    "unirep1900": _unirep(1900),
    "unirep1900-1k": _unirep(1900, 2240),  # 1,120 fitted: the small set of the training-length target
    "synth1024-2k": _synthetic(2_000, 1024),
    "synth1280-2k": _synthetic(2_000, 1280),
    "synth2560-2k": _synthetic(2_000, 2560),
    "synth1024-200k": _synthetic(200_000, 1024),
    "synth1900-steep-4k": _synthetic(4_480, 1900, decay=2.0, mean_ratio=10.0, noise_frac=0.05),
}
"""Set name -> function of ``max_rows`` returning ``(X_fit, X_held)``."""


def data_stats(*arrays):
    """Offset and effective dimension of a set's rows, accumulated block by block.

    Parameters
    ----------
    *arrays : ndarray of shape (n_i, n_features)
        The set's rows, in any number of arrays.

    Returns
    -------
    gamma : float
        ``||mean row|| / ||per-dimension standard deviation||``: how far the
        rows sit from the origin relative to their spread.
    n_dirs_90 : int
        Principal directions holding 90% of the variance of the rows after
        per-row standardisation (what the estimator sees with ``normalize=True``).
    """
    d = arrays[0].shape[1]
    n, total, total_sq, z_total, z_gram = 0, np.zeros(d), np.zeros(d), np.zeros(d), np.zeros((d, d))
    for X in arrays:
        for start in range(0, len(X), STATS_BLOCK_ROWS):
            block = X[start:start + STATS_BLOCK_ROWS].astype(np.float64)
            total += block.sum(axis=0)
            total_sq += np.square(block).sum(axis=0)
            z = block - block.mean(axis=1, keepdims=True)
            z /= np.maximum(z.std(axis=1, keepdims=True), 1e-12)
            z_total += z.sum(axis=0)
            z_gram += z.T @ z
            n += len(block)
    mean = total / n
    gamma = np.linalg.norm(mean) / np.sqrt(np.maximum(total_sq / n - np.square(mean), 0.0).sum())
    z_mean = z_total / n
    spectrum = np.linalg.eigvalsh(z_gram / n - np.outer(z_mean, z_mean))[::-1]
    n_dirs_90 = int(np.searchsorted(np.cumsum(spectrum) / spectrum.sum(), 0.9) + 1)
    return float(gamma), n_dirs_90


# ---------------------------------------------------------------- fits

def resolve(params, n_features):
    """``params`` with its callable values (functions of the number of features) evaluated."""
    return {name: value(n_features) if callable(value) else value for name, value in params.items()}


def sweep_name(lr, latents_per_feature):
    """The config name of one sweep point, as it appears in ``fits.csv`` and the summary."""
    return f"sweep[lr={lr:g},n_latents={latents_per_feature}d]"


def variant_name(config, vary):
    """The name of config ``config`` with the parameters ``vary`` changed: ``default[dead_window=8192]``."""
    return config + "".join(f"[{name}={json.dumps(value)}]" for name, value in vary.items())


def base_config(name):
    """The config a (possibly varied) config name starts from: ``default[dead_window=8192]`` -> ``default``."""
    return name.split("[", 1)[0]


def parse_vary(items):
    """``["dead_window=8192", 'aux_k=null']`` -> ``{"dead_window": 8192, "aux_k": None}`` (values are JSON)."""
    vary = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name:
            raise SystemExit(f"--vary takes PARAM=JSON, got {item!r}")
        try:
            vary[name] = json.loads(value)
        except json.JSONDecodeError:
            raise SystemExit(f"--vary {item!r}: {value!r} is not JSON (strings need quotes: {name}='\"auto\"')")
    return vary


def configurations(names, n_features, sweep_grid=SWEEP_GRID, vary=None):
    """Config name -> estimator parameters for the config groups ``names``, for rows of ``n_features``.

    ``sweep_grid`` has the keys of :data:`SWEEP_GRID`: the learning rates and latents per feature swept.
    ``vary`` (parameter -> value) turns the new-default configs into a candidate's: each is fitted with
    those parameters changed, under :func:`variant_name`, and judged against the same targets.
    """
    vary = vary or {}
    configs = {}
    if "previous" in names:
        configs["previous"] = resolve(PREVIOUS_DEFAULTS, n_features)
    for name, change in NEW_DEFAULT_CHANGES.items():
        if name in names:
            configs[variant_name(name, vary)] = dict(change, **vary)
    if "sweep" in names:
        for lr, per_feature in itertools.product(sweep_grid["lr"], sweep_grid["latents_per_feature"]):
            # The defaults' Top-K at other rates and sizes: starting wider, which k_start="auto" leaves off
            # for an explicit lr.
            configs[sweep_name(lr, per_feature)] = dict(
                lr=lr, n_latents=per_feature * n_features, k_start=SWEEP_K_START
            )
    return configs


def check_parameters():
    """Fail before any fit when a config names a parameter the estimator no longer has."""
    known = set(SparseAutoencoderTransformer().get_params())
    named = set(PREVIOUS_DEFAULTS) | set(FIXED_FIT_PARAMS) | {"random_state", "lr", "n_latents", "k_start"}
    named |= {name for change in NEW_DEFAULT_CHANGES.values() for name in change}
    unknown = sorted(named - known)
    if unknown:
        raise SystemExit(f"SparseAutoencoderTransformer has no parameter(s) {unknown}: adjust PREVIOUS_DEFAULTS "
                         "or NEW_DEFAULT_CHANGES at the top of benchmarks/bench_defaults.py.")


def _first_lines(caught):
    """The first line of each distinct warning message, in order, as one CSV-friendly string."""
    lines = [f"{w.category.__name__}: {str(w.message).splitlines()[0] if str(w.message) else ''}" for w in caught]
    return " | ".join(dict.fromkeys(lines))


def run_fit(params, seed, X_fit, X_held):
    """Fit one estimator and measure it; never raises for a failed fit (the row says why).

    Parameters
    ----------
    params : dict
        Estimator parameters besides :data:`FIXED_FIT_PARAMS` and ``random_state``.
    seed : int
        ``random_state`` of the fit.
    X_fit, X_held : ndarray
        Fitted and held-out rows.

    Returns
    -------
    row : dict
        The measurements of :data:`FIT_COLUMNS` from ``n_latents_`` on.
    """
    estimator = SparseAutoencoderTransformer(**params, **FIXED_FIT_PARAMS, random_state=seed)
    row = dict(params=json.dumps({k: v for k, v in estimator.get_params().items()
                                  if k not in ("random_state", *FIXED_FIT_PARAMS)}, default=repr), error="")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")  # a warning seen in an earlier fit must still be recorded in this one
        start = time.perf_counter()
        try:
            estimator.fit(X_fit)
        except Exception as error:  # a default that crashes on some set is a result, not a reason to stop
            row["error"] = f"{type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}"
        row["fit_s"] = time.perf_counter() - start
    notes = _first_lines(caught)
    if row["error"]:
        return dict(row, warnings=notes)

    # The "previous" config relies on aux_k=None and max_epochs=20 keeping their old meaning: say so when not.
    expected_epochs = params.get("max_epochs")
    if params.get("aux_k", 0) is None and getattr(estimator.net_.module_, "aux_k", 0):
        notes += " | bench: aux_k=None trained with AuxK on"
    if expected_epochs is not None and params.get("n_iter_no_change") is None and estimator.n_iter_ != expected_epochs:
        notes += f" | bench: max_epochs={expected_epochs} ran {estimator.n_iter_} epochs"

    # Sparse codes: 200,000 x 4,096 dense float32 would be 3 GiB for a count of live columns.
    estimator.set_params(sparse_output=True)
    codes_held = estimator.transform(X_held)
    return dict(
        row,
        n_latents_=estimator.n_latents_,
        n_iter_=estimator.n_iter_,
        # What "auto" parameters resolved to: the rate is lr_, the AuxK sizes are the module's.
        lr_used=estimator.lr_,
        aux_k_used=getattr(estimator.net_.module_, "aux_k", None),
        dead_window_used=getattr(estimator.net_.module_, "dead_window", None),
        dead_fit=dead_fraction(estimator.transform(X_fit)),
        dead_held=dead_fraction(codes_held),
        fvu_held=1.0 - estimator.score(X_held),
        l0_held=np.count_nonzero(codes_held.data) / codes_held.shape[0],
        warnings=notes.strip(" |"),
    )


def append_row(path, row):
    """Append one fit to the CSV, writing the header first when the file is new."""
    pd.DataFrame([row], columns=FIT_COLUMNS).to_csv(path, mode="a", header=not path.exists(), index=False)


def read_fits(path):
    """The fits recorded so far (an empty table when none); a failed fit has a non-missing ``error``."""
    return pd.read_csv(path, keep_default_na=False, na_values=[""]) if path.exists() else pd.DataFrame(
        columns=FIT_COLUMNS)


# ---------------------------------------------------------------- summary

def _span(values):
    """``mean [min, max]`` of a metric over seeds (the value alone for one seed)."""
    values = values.dropna()
    if values.empty:
        return ""
    if len(values) == 1:
        return f"{values.iloc[0]:.4g}"
    return f"{values.mean():.4g} [{values.min():.4g}, {values.max():.4g}]"


def _ratio(value):
    return "" if np.isnan(value) else f"{value:.3f}"


def verdict(worst_dead_fit, worst_dead_held, vs_best, vs_previous):
    """PASS or FAIL against :data:`TARGETS`, naming the failed targets and those that could not be checked."""
    # bool(): numpy's False is not `False`, and None marks a target that could not be checked.
    checks = {
        "dead_fit": bool(worst_dead_fit <= TARGETS["dead_fit"]),
        "dead_held": bool(worst_dead_held <= TARGETS["dead_held"]),
        "fvu/best_sweep": None if np.isnan(vs_best) else bool(vs_best <= TARGETS["fvu_vs_best_sweep"]),
        "fvu/previous": None if np.isnan(vs_previous) else bool(vs_previous <= TARGETS["fvu_vs_previous"]),
    }
    failed = [name for name, ok in checks.items() if ok is False]
    unchecked = [name for name, ok in checks.items() if ok is None]
    text = f"FAIL ({', '.join(failed)})" if failed else "PASS"
    return text + (f" (unchecked: {', '.join(unchecked)})" if unchecked else "")


def summarise(fits, set_stats, seeds, sweep_seeds):
    """The per-set table and the per-set-and-config table of the summary.

    Parameters
    ----------
    fits : DataFrame
        Rows of ``fits.csv``; only the sets of ``set_stats`` and the seeds
        asked for (``sweep_seeds`` for sweep points) are summarised, failed
        fits only counted.
    set_stats : dict
        Set name -> dict of its statistics (N, d, gamma, ...), in run order.
    seeds, sweep_seeds : list of int

    Returns
    -------
    sets, results : DataFrame
    """
    is_sweep = fits.config.str.startswith("sweep[")
    wanted = fits.set.isin(list(set_stats)) & np.where(is_sweep, fits.seed.isin(sweep_seeds), fits.seed.isin(seeds))
    n_failed = fits[wanted & fits.error.notna()].groupby("set").size()
    fits = fits[wanted & fits.error.isna()]

    set_rows, result_rows = [], []
    for name, stats in set_stats.items():
        mean_fvu = fits[fits.set == name].groupby("config").fvu_held.mean()
        sweep = mean_fvu[[config.startswith("sweep[") for config in mean_fvu.index]]
        best = sweep.min() if len(sweep) else np.nan
        # The best FVU a sweep point reaches while meeting the dead-latent targets: a point that buys its
        # error with a dead dictionary is no reference for defaults that must keep theirs alive.
        worst = fits[fits.set == name].groupby("config")[["dead_fit", "dead_held"]].max()
        healthy = [c for c in sweep.index if worst.loc[c, "dead_fit"] <= TARGETS["dead_fit"]
                   and worst.loc[c, "dead_held"] <= TARGETS["dead_held"]]
        best_healthy = sweep[healthy].min() if healthy else np.nan
        set_rows.append(dict(stats, best_sweep=sweep.idxmin() if len(sweep) else "", best_sweep_fvu=best,
                             best_healthy_sweep=sweep[healthy].idxmin() if healthy else "",
                             best_healthy_sweep_fvu=best_healthy))
        previous = mean_fvu.get("previous", np.nan)
        config_order = {c: i for i, c in enumerate(["previous", *NEW_DEFAULT_CHANGES])}
        order = lambda item: (config_order.get(base_config(item[0]), len(config_order)), item[0])  # noqa: E731
        for config, group in sorted(fits[fits.set == name].groupby("config"), key=order):
            row = dict(set=name, config=config, seeds=len(group))
            row.update({metric: _span(group[metric])
                        for metric in ("dead_fit", "dead_held", "fvu_held", "l0_held", "fit_s")})
            if base_config(config) in NEW_DEFAULT_CHANGES:
                vs_best, vs_previous = group.fvu_held.mean() / best, group.fvu_held.mean() / previous
                row.update({"fvu/best_sweep": _ratio(vs_best),
                            "fvu/best_healthy_sweep": _ratio(group.fvu_held.mean() / best_healthy),
                            "fvu/previous": _ratio(vs_previous),
                            "verdict": verdict(group.dead_fit.max(), group.dead_held.max(), vs_best, vs_previous)})
            result_rows.append(row)
        if n_failed.get(name, 0):
            result_rows.append(dict(set=name, config=f"{n_failed[name]} failed fit(s): see fits.csv"))
    return pd.DataFrame(set_rows), pd.DataFrame(result_rows).fillna("")


def as_markdown(table):
    """A table as Markdown, or as plain text when ``tabulate`` (the ``dev`` extra) is not installed."""
    try:
        return table.to_markdown(index=False, floatfmt=".4g")
    except ImportError:  # tabulate (the dev extra) is missing
        return table.to_string(index=False)


# ---------------------------------------------------------------- main

def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", choices=list(SETS), default=list(SETS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--sweep-seeds", type=int, nargs="+", default=[0], help="seeds of the sweep points")
    parser.add_argument("--configs", nargs="+", choices=["previous", *NEW_DEFAULT_CHANGES, "sweep"],
                        default=["previous", *NEW_DEFAULT_CHANGES, "sweep"])
    parser.add_argument("--sweep-lrs", type=float, nargs="+", default=list(SWEEP_GRID["lr"]),
                        help="learning rates of the sweep (a subset keeps wide sets affordable)")
    parser.add_argument("--sweep-latents-per-feature", type=int, nargs="+",
                        default=list(SWEEP_GRID["latents_per_feature"]), help="n_latents / n_features of the sweep")
    parser.add_argument("--vary", nargs="+", default=[], metavar="PARAM=JSON",
                        help="fit the default and gumbel configs with these parameters changed (a candidate "
                             "default), named for example default[dead_window=8192], judged by the same targets")
    parser.add_argument("--out", type=Path, default=None,
                        help="results directory (default results/bench_defaults, or results/bench_defaults-quick "
                             "with --quick so a smoke test never mixes with a real run)")
    parser.add_argument("--summarise-only", action="store_true",
                        help="fit nothing: summarise the fits OUT/fits.csv already holds (merged runs, for example)")
    parser.add_argument("--quick", action="store_true",
                        help=f"keep {QUICK_ROWS} rows of each set (before the split): a smoke test")
    args = parser.parse_args(argv)
    check_parameters()
    vary = parse_vary(args.vary)
    unknown = sorted(set(vary) - set(SparseAutoencoderTransformer().get_params()))
    if unknown:
        parser.error(f"--vary: {unknown} are not parameters of SparseAutoencoderTransformer")

    out = args.out or REPO_ROOT / "results" / ("bench_defaults-quick" if args.quick else "bench_defaults")
    out.mkdir(parents=True, exist_ok=True)
    fits_path = out / "fits.csv"
    done = {(row.set, row.config, int(row.seed)): row for row in read_fits(fits_path).itertuples()}
    max_rows = QUICK_ROWS if args.quick else None

    set_stats = {}
    for set_name in args.sets:
        start = time.perf_counter()
        try:
            X_fit, X_held = SETS[set_name](max_rows)
        except FileNotFoundError as error:
            print(f"{set_name}: skipped, {error}", flush=True)
            continue
        n_features = X_fit.shape[1]
        gamma, n_dirs_90 = data_stats(X_fit, X_held)
        set_stats[set_name] = dict(set=set_name, N=len(X_fit) + len(X_held), d=n_features, n_fit=len(X_fit),
                                   n_held=len(X_held), gamma=gamma, dirs_90pct=n_dirs_90)
        print(f"{set_name}: N={len(X_fit) + len(X_held)}, d={n_features}, gamma={gamma:.2f}, 90% of the variance "
              f"in {n_dirs_90} directions after per-row standardisation; {len(X_fit)} fitted, {len(X_held)} held "
              f"out (made in {time.perf_counter() - start:.1f} s)", flush=True)

        configs = configurations(args.configs, n_features,
                                 dict(lr=args.sweep_lrs, latents_per_feature=args.sweep_latents_per_feature),
                                 vary=vary)
        plan = [(config, seed) for seed in args.seeds for config in configs if not config.startswith("sweep[")]
        plan += [(config, seed) for seed in args.sweep_seeds for config in configs if config.startswith("sweep[")]
        for config, seed in [] if args.summarise_only else plan:
            previous_row = done.get((set_name, config, seed))
            if previous_row is not None:
                if int(previous_row.n_fit) != len(X_fit):
                    print(f"  note: {config} seed {seed} in {fits_path} was fitted on {previous_row.n_fit} rows, "
                          f"not {len(X_fit)}; kept (use another --out for a fresh run)", flush=True)
                continue
            row = dict(set=set_name, config=config, seed=seed, n_fit=len(X_fit), n_held=len(X_held),
                       n_features=n_features, **run_fit(configs[config], seed, X_fit, X_held))
            append_row(fits_path, row)
            done[(set_name, config, seed)] = pd.Series(row)
            if row["error"]:
                print(f"  {config:<28} seed {seed}: FAILED {row['error']}", flush=True)
            else:
                print(f"  {config:<28} seed {seed}: fvu_held={row['fvu_held']:.4f} dead_fit={row['dead_fit']:.3f} "
                      f"dead_held={row['dead_held']:.3f} l0={row['l0_held']:.1f} n_latents_={row['n_latents_']} "
                      f"epochs={row['n_iter_']} {row['fit_s']:.1f} s"
                      + (f"; warnings: {row['warnings']}" if row["warnings"] else ""), flush=True)
        del X_fit, X_held  # the 200k set is large: free it before the next one is made

    if not set_stats:
        print("No set was available: nothing to summarise.")
        return 1
    sets_table, results_table = summarise(read_fits(fits_path), set_stats, args.seeds, args.sweep_seeds)
    targets = (f"Targets (default and gumbel): worst seed dead_fit <= {TARGETS['dead_fit']} and dead_held <= "
               f"{TARGETS['dead_held']}; mean held-out FVU <= {TARGETS['fvu_vs_best_sweep']} x the best sweep "
               f"point's and <= {TARGETS['fvu_vs_previous']} x previous's.")
    text = "\n\n".join([
        f"# Defaults over embedding sets{' (--quick)' if args.quick else ''}",
        f"Seeds {args.seeds}, sweep seeds {args.sweep_seeds}; metrics are mean [min, max] over seeds. gamma = "
        "||mean row|| / ||per-dimension std||; dirs_90pct = principal directions holding 90% of the variance "
        "after per-row standardisation.",
        as_markdown(sets_table), targets, as_markdown(results_table),
    ]) + "\n"
    (out / "summary.md").write_text(text)
    print("\n" + text + f"\nWritten to {out / 'summary.md'}; every fit in {fits_path}.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
