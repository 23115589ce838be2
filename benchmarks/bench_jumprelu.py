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
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_defaults import SETS, run_fit  # noqa: E402


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
                r = run_fit(dict(activation="jumprelu", aux_k=aux_k), seed, X_fit, X_held)
                if r["error"]:
                    print(f"| {name} | {seed} | {aux_k} | failed: {r['error']} |", flush=True)
                    continue
                print(f"| {name} | {seed} | {aux_k} | {r['n_latents_']} | {r['l0_held']:.1f} | {r['fvu_held']:.4f} | "
                      f"{r['dead_fit']:.3f} | {r['dead_held']:.3f} | {r['fit_s']:.0f} |", flush=True)


if __name__ == "__main__":
    main()
