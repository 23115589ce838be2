"""Matryoshka against plain Top-K on synthetic features with a hierarchy: which recovers the parents?

``make_hierarchical_signals`` draws parent features (Zipfian, correlated) and children that fire
only with their parent and resemble it (cosine ``--child-similarity``). A plain SAE tends to absorb
a parent into its children's atoms; Matryoshka's small prefixes must reconstruct alone, which
should keep the general (parent) directions in the early latents. For each seed both are fitted on
the same rows, and the parent atoms and the child atoms are matched to the learned atoms separately
(``sklearn_sae.evaluate.ground_truth_recovery``: Hungarian matching on the signed cosine; MCC, the mean
matched cosine, and the fraction of true atoms matched at cosine >= 0.9).

Usage::

    OMP_NUM_THREADS=2 PYTHONPATH=. python benchmarks/bench_matryoshka.py --seeds 0 1 2
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae.datasets import make_hierarchical_signals
from sklearn_sae.evaluate import ground_truth_recovery


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-latents", type=int, default=256)
    parser.add_argument("--k", type=int, default=8)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--child-similarity", type=float, default=0.5)
    args = parser.parse_args(argv)
    X, atoms, _, parent = make_hierarchical_signals(
        n_samples=20_000, n_features=64, n_parents=32, children_per_parent=4, parent_l0=3.0, child_probability=0.5,
        child_similarity=args.child_similarity, random_state=0,
    )
    parents, children = atoms[parent == -1], atoms[parent >= 0]
    models = {"topk": None, "matryoshka topk (1/8, 1/4, 1/2)": (1 / 8, 1 / 4, 1 / 2)}
    rows = []
    for name, matryoshka in models.items():
        for seed in args.seeds:
            start = time.perf_counter()
            sae = SparseAutoencoderTransformer(n_latents=args.n_latents, k=args.k, max_epochs=args.epochs,
                                               matryoshka=matryoshka, device="cpu", random_state=seed)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", UserWarning)
                sae.fit(X)
            parent_match = ground_truth_recovery(parents, sae.components_)
            child_match = ground_truth_recovery(children, sae.components_)
            scores = [match.attrs[key] for match in (parent_match, child_match)
                      for key in ("mcc_hungarian_signed", "fraction_recovered_hungarian")]
            rows.append((name, seed, sae.score(X), *scores))
            print(f"{name} seed {seed}: {time.perf_counter() - start:.0f} s", flush=True)
    print(f"\n{len(parents)} parents, {len(children)} children, child similarity {args.child_similarity}; "
          f"{args.n_latents} latents, k={args.k}, {args.epochs} epochs; mean [min, max] over seeds {args.seeds}\n")
    columns = ["explained variance", "parent MCC (Hungarian, signed)", "parents recovered (Hungarian, cos >= 0.9)",
               "child MCC (Hungarian, signed)", "children recovered (Hungarian, cos >= 0.9)"]
    print("| model | " + " | ".join(columns) + " |")
    print("|---|" + "---:|" * len(columns))
    for name in models:
        values = np.array([row[2:] for row in rows if row[0] == name])
        cells = [f"{mean:.3f} [{low:.3f}, {high:.3f}]"
                 for mean, low, high in zip(values.mean(0), values.min(0), values.max(0))]
        print(f"| {name} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
