"""Time and memory of ``label_associations`` and ``latent_stats`` on large random sparse codes.

The codes mimic a Top-K autoencoder's: ``k`` non-zeros per row (64 by
default), spread over the latents with a Zipf-like popularity so that latent
densities span orders of magnitude, gamma-distributed float32 values. The
labels are a random sparse multi-label indicator whose prevalences are
log-uniform over a factor of 100 around ``--label-density``.

One size::

    PYTHONPATH=. python benchmarks/bench_interpret.py --rows 100000 --latents 4096 --labels 256

Scaling, and an extrapolation to the target size (by default 10**6 proteins x
10**4 latents x 10**3 labels): every size is the target times a factor, in a
fresh process each; the time and memory of the largest sizes are fitted as
``a * factor**b`` (log-log least squares) and evaluated at factor 1::

    PYTHONPATH=. python benchmarks/bench_interpret.py --scaling 0.03125,0.0625,0.125,0.25

With ``k`` fixed, the proteins each latent fires on (``rows * k / latents``)
do not change with the factor, the non-zeros grow as ``factor`` and the
(latent, label) pairs as ``factor**2``.

``peak MiB`` is tracemalloc's peak during the call, above what was allocated
before it (the codes and labels themselves are not counted); NumPy and
SciPy's sparse products allocate through Python's tracked allocator.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
import tracemalloc
from contextlib import contextmanager
from fractions import Fraction

import numpy as np
import scipy
import scipy.sparse as sp

from sklearn_sae.interpret import _associations, label_associations, latent_stats

# The private steps of label_associations that are timed on their own.
PHASES = {
    "check codes": (_associations, "_check_codes"),
    "ranks": (_associations, "_midranks_within_columns"),
    "products": (_associations, "_true_positives"),
    "p-values": (_associations, "_enrichment_pvalues"),
    "BH": (_associations, "_benjamini_hochberg"),
    "top_n": (_associations, "_selected_pairs"),
}


def make_codes(n_rows, n_latents, k, rng):
    popularity = 1.0 / (np.arange(n_latents) + 10.0) ** 0.7
    popularity = rng.permutation(popularity / popularity.sum())
    columns = rng.choice(n_latents, size=(n_rows, k), p=popularity)
    values = rng.gamma(2.0, 0.5, size=(n_rows, k)).astype(np.float32)
    rows = np.repeat(np.arange(n_rows), k)
    # Repeated latents in a row are summed: a few rows end with fewer than k non-zeros.
    return sp.csr_matrix((values.ravel(), (rows, columns.ravel())), shape=(n_rows, n_latents))


def make_labels(n_rows, n_labels, label_density, rng):
    prevalence = np.minimum(label_density * 10 ** rng.uniform(-1, 1, n_labels), 0.5)
    indices = []
    for share in prevalence:
        count = max(2, round(share * n_rows))
        indices.append(np.unique(rng.integers(0, n_rows, count)))
    indptr = np.concatenate([[0], np.cumsum([len(rows) for rows in indices])])
    data = np.ones(indptr[-1], dtype=bool)
    return sp.csc_matrix((data, np.concatenate(indices), indptr), shape=(n_rows, n_labels))


@contextmanager
def timed_phases(totals):
    """Accumulate the wall time of each private step of label_associations into ``totals``."""
    originals = {}
    for name, (module, attribute) in PHASES.items():
        original = getattr(module, attribute)
        originals[name] = original

        def wrapper(*args, _original=original, _name=name, **kwargs):
            start = time.perf_counter()
            try:
                return _original(*args, **kwargs)
            finally:
                totals[_name] = totals.get(_name, 0.0) + time.perf_counter() - start

        setattr(module, attribute, wrapper)
    try:
        yield totals
    finally:
        for name, (module, attribute) in PHASES.items():
            setattr(module, attribute, originals[name])


def measure(function):
    """Wall seconds and tracemalloc peak (MiB above the start) of ``function()``."""
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    start = time.perf_counter()
    result = function()
    seconds = time.perf_counter() - start
    peak = (tracemalloc.get_traced_memory()[1] - base) / 2**20
    tracemalloc.stop()
    return result, seconds, peak


def run_one(n_rows, n_latents, n_labels, density, label_density, top_n, seed):
    rng = np.random.default_rng(seed)
    k = max(1, round(density * n_latents))
    start = time.perf_counter()
    codes = make_codes(n_rows, n_latents, k, rng)
    labels = make_labels(n_rows, n_labels, label_density, rng)
    generate = time.perf_counter() - start
    _, stats_seconds, stats_peak = measure(lambda: latent_stats(codes))
    phases = {}
    with timed_phases(phases):
        table, seconds, peak = measure(lambda: label_associations(codes, labels, top_n=top_n))
    return {
        "rows": n_rows,
        "latents": n_latents,
        "labels": n_labels,
        "k": k,
        "nnz": int(codes.nnz),
        "label_nnz": int(labels.nnz),
        "pairs": n_latents * n_labels,
        "table_rows": len(table),
        "generate_s": generate,
        "latent_stats_s": stats_seconds,
        "latent_stats_peak_mib": stats_peak,
        "label_associations_s": seconds,
        "label_associations_peak_mib": peak,
        "phases_s": phases,
    }


def run_in_subprocess(args, factor):
    """One size in a fresh interpreter, so that sizes do not share memory or caches."""
    command = [
        sys.executable,
        __file__,
        "--rows", str(max(2, round(args.rows * factor))),
        "--latents", str(max(1, round(args.latents * factor))),
        "--labels", str(max(1, round(args.labels * factor))),
        "--density", str(args.density if args.density else args.k / max(1, round(args.latents * factor))),
        "--label-density", str(args.label_density),
        "--top-n", str(args.top_n),
        "--seed", str(args.seed),
        "--json",
    ]  # fmt: skip
    output = subprocess.run(command, check=True, capture_output=True, text=True, env=os.environ).stdout
    return json.loads(output.strip().splitlines()[-1])


def fit_power_law(factors, values):
    """Exponent ``b`` and prefactor ``a`` of ``values = a * factors**b`` (least squares in logs)."""
    slope, intercept = np.polyfit(np.log(factors), np.log(values), 1)
    return float(np.exp(intercept)), float(slope)


def print_table(results):
    phase_names = list(PHASES)
    print("| rows | latents | labels | non-zeros | pairs | latent_stats s | label_associations s | peak MiB | "
          + " | ".join(f"{name} s" for name in phase_names) + " |")  # fmt: skip
    print("|" + "---:|" * (8 + len(phase_names)))
    for r in results:
        phases = " | ".join(f"{r['phases_s'].get(name, 0.0):.2f}" for name in phase_names)
        print(
            f"| {r['rows']:,} | {r['latents']:,} | {r['labels']:,} | {r['nnz']:,} | {r['pairs']:,} | "
            f"{r['latent_stats_s']:.2f} | {r['label_associations_s']:.2f} | "
            f"{r['label_associations_peak_mib']:,.0f} | {phases} |"
        )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="proteins (default: the 10**6 target)")
    parser.add_argument("--latents", type=int, default=10_000)
    parser.add_argument("--labels", type=int, default=1_000)
    parser.add_argument(
        "--density", type=float, default=None, help="fraction of latents active per row (default: --k / --latents)"
    )
    parser.add_argument("--k", type=int, default=64, help="non-zeros per row when --density is not given")
    parser.add_argument("--label-density", type=float, default=0.01, help="median fraction of proteins per label")
    parser.add_argument("--top-n", type=int, default=10, help="label_associations(top_n=...)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--scaling", default=None, help="comma-separated factors (fractions allowed) of the sizes; extrapolates to 1"
    )
    parser.add_argument("--json", action="store_true", help="print one JSON line (used by --scaling)")
    args = parser.parse_args(argv)

    if args.scaling is None:
        density = args.density if args.density else args.k / args.latents
        result = run_one(args.rows, args.latents, args.labels, density, args.label_density, args.top_n, args.seed)
        if args.json:
            print(json.dumps(result))
        else:
            print_table([result])
        return 0

    factors = [float(Fraction(value)) for value in args.scaling.split(",")]
    results = []
    for factor in factors:
        results.append(run_in_subprocess(args, factor))
        print(f"factor {factor:g}: {results[-1]['label_associations_s']:.2f} s", file=sys.stderr, flush=True)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, Python {platform.python_version()}, "
          f"NumPy {np.__version__}, SciPy {scipy.__version__}\n")  # fmt: skip
    print_table(results)
    fitted = factors[-3:] if len(factors) >= 3 else factors
    tail = results[-len(fitted) :]
    print(f"\nExtrapolation to {args.rows:,} x {args.latents:,} x {args.labels:,} "
          f"(power law fitted on factors {', '.join(f'{f:g}' for f in fitted)}):\n")  # fmt: skip
    print("| quantity | exponent | at factor 1 |")
    print("|---|---:|---:|")
    for key, unit in [
        ("label_associations_s", "s"),
        ("label_associations_peak_mib", "MiB"),
        ("latent_stats_s", "s"),
        ("latent_stats_peak_mib", "MiB"),
    ]:
        prefactor, exponent = fit_power_law(fitted, [r[key] for r in tail])
        print(f"| {key} | {exponent:.2f} | {prefactor:,.1f} {unit} |")
    # The steps grow at different rates (ranks with the non-zeros, products and
    # p-values with the pairs), so one exponent for the total is dominated by
    # the small sizes' mix: the sum of the steps' own extrapolations is the
    # better estimate.
    phase_series = {name: [r["phases_s"].get(name, 0.0) for r in tail] for name in PHASES}
    phase_series["rest"] = [r["label_associations_s"] - sum(r["phases_s"].values()) for r in tail]
    total = 0.0
    for name, values in phase_series.items():
        prefactor, exponent = fit_power_law(fitted, np.maximum(values, 1e-3))
        total += prefactor
        print(f"| label_associations: {name} | {exponent:.2f} | {prefactor:,.1f} s |")
    print(f"| label_associations: sum of the steps | | {total:,.1f} s |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
