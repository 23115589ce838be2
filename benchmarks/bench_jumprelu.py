"""JumpReLU with and without its pre-activation term against dead latents, on the defaults benchmark's sets.

For each set of :mod:`bench_defaults` (fitted and held-out rows split as there) and seed, two JumpReLU fits
at the estimator's defaults: ``aux_k="auto"`` (the pre-activation term on) and ``aux_k=None`` (off). Prints
one Markdown row per fit: latents, held-out L0 and FVU, dead fractions on the fitted and held-out rows, time.

Usage::

    PYTHONPATH=. python benchmarks/bench_jumprelu.py --sets near256-all near256-2k --seeds 0
"""

from __future__ import annotations

import argparse
import sys
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_defaults import SETS  # noqa: E402

from sklearn_sae import SparseAutoencoderTransformer, metrics  # noqa: E402


def fit_and_measure(X_fit, X_held, *, aux_k, seed):
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the dead-latent warning: the row reports the fraction
        sae = SparseAutoencoderTransformer(activation="jumprelu", aux_k=aux_k, random_state=seed, device="cpu")
        sae.fit(X_fit)
    held = sae.transform(X_held)
    return {
        "n_latents": sae.n_latents_, "l0": metrics.l0(held), "fvu": 1.0 - sae.score(X_held),
        "dead_fit": metrics.dead_fraction(sae.transform(X_fit)), "dead_held": metrics.dead_fraction(held),
        "seconds": time.perf_counter() - start,
    }


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sets", nargs="+", default=["near256-all", "near256-2k"], choices=sorted(SETS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    args = parser.parse_args(argv)
    print("| set | seed | aux_k | latents | L0, held out | FVU, held out | dead, fitted | dead, held out | fit s |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for name in args.sets:
        X_fit, X_held = SETS[name]()
        for seed in args.seeds:
            for aux_k in ("auto", None):
                r = fit_and_measure(X_fit, X_held, aux_k=aux_k, seed=seed)
                print(f"| {name} | {seed} | {aux_k} | {r['n_latents']} | {r['l0']:.1f} | {r['fvu']:.4f} | "
                      f"{r['dead_fit']:.3f} | {r['dead_held']:.3f} | {r['seconds']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
