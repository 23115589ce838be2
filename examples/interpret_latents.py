"""Which protein labels do sparse autoencoder latents detect on held-out proteins, against three baselines?

An SAE latent "means" a label when the proteins it fires on are the proteins
that carry the label. Picking, for each label, the best of a thousand latents
and scoring it on the same proteins flatters every representation, so this
script follows a held-out protocol on the SCL2205 split shipped in ``data/``:

``train`` (15,183 proteins)
    fits the representations: the SAE and, for the baselines, the PCA and
    the mean of every embedding dimension;
``eval`` (1,260 proteins)
    chooses, for each label, one feature and one activation threshold: the
    pair with the best F1 (a :class:`~sklearn_sae.interpret.LatentLabelMatcher`);
``test`` (2,631 proteins)
    scores that choice, with the thresholds kept on the eval split's scale:
    precision, recall and F1 of "feature above threshold" as a detector of
    the label, and the AUROC of the feature's activation as a score for it.

The splits are SCL2205's homology-reduced ones, so test proteins are not
close homologues of the proteins that chose the features.

The labels (see ``data/README.md``) are the 13 SCL2205 locations and the
sequence-derived classes of ``per-protein.properties.csv``: every class of
each ``*_class`` column and the positive class of each 0/1 flag, all one
versus the rest, named like ``location=Membrane`` or ``tm_class=2+``.

Four representations go through exactly the same protocol and thresholds:

``sae``
    a Top-K SparseAutoencoderTransformer with the estimator's defaults:
    k=32 active of 4 x 256 = 1,024 latents, and the learning rate, training
    length and AuxK the estimator derives from the data (``lr="auto"``,
    ``max_epochs="auto"``, ``aux_k="auto"``), so the model is the one a user
    gets without tuning; trained on the train split only, with a fixed seed.
``untrained_sae``
    the same estimator, same parameters and seed, "fitted" for a single
    Adam step at lr 1e-12 on one batch of all train rows. That step is below
    float32 resolution for the weights, so the encoder is exactly the
    random Kaiming-uniform initial draw the trained model started from, with
    the data-driven pre-bias (the geometric median of the standardised
    train rows); the latent biases move from 0 to at most 1e-12 (checked).
    It shows what a random dictionary with the same Top-K selection gives.
``pca``
    all principal components of the train embeddings, each split into its
    positive and negative parts (:func:`~sklearn_sae.interpret.split_signs`),
    since a component's sign is arbitrary.
``raw``
    the 256 embedding dimensions, centred on their train means and split
    into signs the same way.

The thresholds are a finer grid than the matcher's default (0, 0.05, ...,
0.95 of the feature's largest eval activation), because the dense baselines
need more than five cut points to isolate a class; every representation gets
the same grid.

F1 flatters frequent labels: calling every protein positive scores
``2 p / (1 + p)`` for a label of frequency ``p``, above 0.5 for any label
carried by a third of the proteins. The tables therefore carry that
reference as a fifth row per label (``all_positive``) and count the labels
on which a feature beats it.

Everything lands in ``--out``: ``heldout.csv`` (one row per representation
and label), ``summary.md`` (means per representation and label set),
``heldout_f1.png`` (test F1 and AUROC of every label), and, for the trained
SAE, ``atlas.html`` (the HTML atlas of all its latents over all proteins,
see :func:`~sklearn_sae.interpret.write_atlas`) and ``card_<latent>.png``,
the feature cards of the latents that beat the all-positive F1 on test by
the widest margin (one per label set), listed in ``cards.txt`` (a rerun
replaces those cards and leaves any other file alone). The atlas and the cards describe all
proteins; the held-out table is the evidence. At the defaults the run takes
one and a half to four minutes on two shared CPU cores, most of it training
the SAE.

Usage::

    python examples/interpret_latents.py
    python examples/interpret_latents.py --epochs 50 --n-latents 4096 --k 64 --device cuda
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from sklearn.decomposition import PCA

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae import metrics as sae_metrics
from sklearn_sae.datasets import load_embeddings, load_protein_labels
from sklearn_sae.interpret import (
    LatentLabelMatcher,
    feature_card,
    label_associations,
    plot_feature_card,
    split_signs,
    split_signs_names,
    write_atlas,
)

REPO_ROOT = Path(__file__).resolve().parents[1]
DATA = REPO_ROOT / "data"
REBUILD_HINT = ("rebuild the shipped files as data/README.md describes (scripts/build_scl2205.py and "
                "scripts/build_protein_properties.py, with the '[data]' extra installed)")

SPLITS = ("train", "eval", "test")
REPRESENTATIONS = ("sae", "untrained_sae", "pca", "raw")
REFERENCE = "all_positive"
"""Rows of the table that call every protein positive: the F1 that frequent labels get for free."""
THRESHOLDS = tuple(np.round(np.arange(0.0, 1.0, 0.05), 2))
ASSOCIATED_F1 = 0.5
UNTRAINED_LR = 1e-12
MAX_UNTRAINED_BIAS = 1e-9
"""The untrained SAE's latent biases start at 0; larger than this after its one step means it learnt something."""

STYLE = {  # representation -> marker, colour, label in the figure
    "sae": ("o", "#1f5fa8", "SAE (trained)"),
    "untrained_sae": ("x", "#7f7f7f", "SAE (untrained)"),
    "pca": ("s", "#e07b20", "PCA components"),
    "raw": ("^", "#2a9d4b", "raw dimensions"),
    REFERENCE: ("|", "#444444", "every protein positive"),
}


# --------------------------------------------------------------------------- labels


def label_sets(labels, properties):
    """The categorical label sets, one column each: ``location``, then the property classes and flags."""
    columns = {"location": labels["location"]}
    for name, values in properties.items():
        if isinstance(values.dtype, pd.CategoricalDtype) or is_flag(values):
            columns[name] = values
    return pd.DataFrame(columns, index=labels.index)


def is_flag(values):
    """A 0/1 integer column, such as ``cys_rich`` or ``signal_peptide``."""
    return pd.api.types.is_integer_dtype(values) and set(values.unique()) <= {0, 1}


def label_indicator(sets):
    """One boolean column per label, named ``set=class``.

    Categorical sets give every class that occurs, one versus the rest; a 0/1
    flag gives only its positive class, since "not Cys-rich" is no property
    a latent should be expected to mark.
    """
    columns = {}
    for name, values in sets.items():
        classes = [1] if is_flag(values) else [c for c in values.cat.categories if (values == c).any()]
        for value in classes:
            columns[f"{name}={value}"] = (values == value).to_numpy()
    return pd.DataFrame(columns, index=sets.index)


def keep_testable(indicator, split):
    """Drop labels with no positive or no negative protein in ``eval`` or ``test``: they cannot be scored there."""
    testable = pd.Series(True, index=indicator.columns)
    for name in ("eval", "test"):
        n_pos = indicator[split == name].sum()
        testable &= (n_pos > 0) & (n_pos < (split == name).sum())
    dropped = testable.index[~testable].tolist()
    if dropped:
        print(f"Left out {len(dropped)} label(s) absent from the eval or test split: {', '.join(dropped)}")
    return indicator.loc[:, testable]


# --------------------------------------------------------------------------- representations


def sae_params(args):
    """Parameters shared by the trained and the untrained SAE."""
    return dict(
        activation="topk", k=args.k, n_latents=args.n_latents, max_epochs=args.epochs or "auto",
        validation_fraction=0.0,
        device=args.device, random_state=args.seed, sparse_output=True,
    )


def fit_sae(args, X_train):
    start = time.perf_counter()
    sae = SparseAutoencoderTransformer(**sae_params(args), verbose=0).fit(X_train)
    print(f"Trained the SAE ({sae.n_latents_} latents, k={sae.k}, {sae.n_iter_} epochs) on "
          f"{len(X_train):,} proteins in {time.perf_counter() - start:.0f} s")
    return sae


def untrained_sae(args, X_train):
    """The SAE as initialised: one Adam step at lr 1e-12 sets up the estimator without moving its weights."""
    params = sae_params(args) | dict(max_epochs=1, lr=UNTRAINED_LR, batch_size=len(X_train), warmup_steps=0)
    sae = SparseAutoencoderTransformer(**params).fit(X_train)
    bias = float(sae.net_.module_.b_lat.detach().abs().max())
    if bias > MAX_UNTRAINED_BIAS:
        raise RuntimeError(f"the 'untrained' SAE moved its latent biases by up to {bias:g}; it is not untrained.")
    print(f"Untrained SAE: initial weights and pre-bias; latent biases at most {bias:.1e} from 0")
    return sae


def encode_all(args, X, split):
    """Every representation of every split: name -> (feature names, {split: non-negative codes}), and the SAE."""
    X_train = X[split == "train"]
    sae = fit_sae(args, X_train)
    random_sae = untrained_sae(args, X_train)
    pca = PCA(random_state=args.seed).fit(X_train)
    mean = X_train.mean(axis=0)
    latent_names = [f"latent {j}" for j in range(sae.n_latents_)]
    transforms = {
        "sae": (latent_names, sae.transform),
        "untrained_sae": (latent_names, random_sae.transform),
        "pca": (split_signs_names([f"pc{j}" for j in range(pca.n_components_)]),
                lambda rows: split_signs(pca.transform(rows))),
        "raw": (split_signs_names(X.shape[1]), lambda rows: split_signs(rows - mean)),
    }
    codes = {name: (names, {s: encode(X[split == s]) for s in ("eval", "test")})
             for name, (names, encode) in transforms.items()}
    return codes, sae


def describe_sae(sae, X_test):
    """Reconstruction and sparsity of the trained SAE on the test split."""
    codes = sae.transform(X_test)
    return {"test_nmse": sae_metrics.nmse(X_test, sae.reconstruct(X_test)), "test_l0": sae_metrics.l0(codes),
            "test_dead_fraction": sae_metrics.dead_fraction(codes)}


# --------------------------------------------------------------------------- the held-out protocol


def heldout_table(codes, indicator, split):
    """Pick each label's feature and threshold on ``eval``, score them on ``test``: a row per representation x label.

    The last rows, representation ``all_positive``, are the reference of a
    detector that calls every protein positive; ``beats_all_positive`` says
    whether a feature's test F1 exceeds it.
    """
    labels = {s: indicator[split == s].reset_index(drop=True) for s in ("eval", "test")}
    rows = []
    for name, (feature_names, by_split) in codes.items():
        matcher = LatentLabelMatcher(thresholds=THRESHOLDS, associated_f1=ASSOCIATED_F1)
        scores = matcher.fit(by_split["eval"], labels["eval"]).evaluate(by_split["test"], labels["test"])
        table = pd.DataFrame({
            "representation": name,
            "label_set": [label.split("=", 1)[0] for label in scores.index],
            "label": scores.index,
            "n_pos_eval": matcher.matches_["n_pos"].to_numpy(),
            "n_pos_test": scores["n_pos"].to_numpy(),
            "feature": np.asarray(feature_names, dtype=object)[scores["latent"].to_numpy()],
            "feature_index": scores["latent"].to_numpy(),
            "threshold": scores["threshold"].to_numpy(),
            "eval_f1": scores["fit_f1"].to_numpy(),
            "test_precision": scores["precision"].to_numpy(),
            "test_recall": scores["recall"].to_numpy(),
            "test_f1": scores["f1"].to_numpy(),
            "test_auroc": scores["auroc"].to_numpy(),
            "associated": scores["associated"].to_numpy(),
        })
        rows.append(table)
    rows.append(all_positive_rows(labels))
    table = pd.concat(rows, ignore_index=True)
    free_f1 = table.loc[table["representation"] == REFERENCE].set_index("label")["test_f1"]
    table["beats_all_positive"] = table["test_f1"] > table["label"].map(free_f1)
    return table


def all_positive_rows(labels):
    """The detector that fires on every protein: precision is the label's frequency, recall 1.

    Its F1, ``2 p / (1 + p)`` for a label of frequency ``p``, exceeds 0.5 for
    every label carried by more than a third of the proteins, so a frequent
    label can look "associated" with a feature that knows nothing about it.
    """
    n_pos = {s: labels[s].sum().to_numpy() for s in labels}
    frequency = {s: n_pos[s] / len(labels[s]) for s in labels}
    f1 = {s: 2 * frequency[s] / (1 + frequency[s]) for s in labels}
    names = labels["eval"].columns
    return pd.DataFrame({
        "representation": REFERENCE,
        "label_set": [label.split("=", 1)[0] for label in names],
        "label": names,
        "n_pos_eval": n_pos["eval"],
        "n_pos_test": n_pos["test"],
        "feature": "every protein",
        "feature_index": -1,
        "threshold": np.nan,
        "eval_f1": f1["eval"],
        "test_precision": frequency["test"],
        "test_recall": 1.0,
        "test_f1": f1["test"],
        "test_auroc": 0.5,
        "associated": (f1["eval"] > ASSOCIATED_F1) & (f1["test"] > ASSOCIATED_F1),
    })


def summarise(heldout, by):
    """Labels, mean test F1 and AUROC, and associated labels, per representation and ``by``."""
    grouped = heldout.groupby(["representation", by], sort=False)
    summary = grouped.agg(labels=("label", "size"), mean_test_f1=("test_f1", "mean"),
                          mean_test_auroc=("test_auroc", "mean"), associated=("associated", "sum"),
                          beats_all_positive=("beats_all_positive", "sum"))
    return summary.reset_index()


def label_group(heldout):
    """``location`` or ``properties``: the two families of labels the README compares."""
    return np.where(heldout["label_set"] == "location", "location", "properties")


def summary_markdown(heldout, sae_stats, n_features, timings):
    """``summary.md``: the compact table, the table per label set, and how the run went."""
    grouped = heldout.assign(group=label_group(heldout))
    compact = pd.concat([summarise(grouped, "group"), summarise(grouped.assign(group="all"), "group")])
    order = [*REPRESENTATIONS, REFERENCE]
    compact = compact.sort_values("representation", key=lambda r: r.map(order.index), kind="stable")
    per_set = summarise(heldout, "label_set").pivot(index="label_set", columns="representation",
                                                     values="mean_test_f1")
    per_set = per_set.loc[heldout["label_set"].unique(), order].reset_index()
    lines = [
        "# Held-out label detection",
        "",
        f"Each label's feature and threshold chosen by F1 on `eval`, scored on `test`. *associated*: F1 > "
        f"{ASSOCIATED_F1} on both splits. *beats_all_positive*: test F1 above that of calling every protein "
        f"positive (the `{REFERENCE}` rows, AUROC 0.5 by definition). Candidate features: "
        + ", ".join(f"{name} {n_features[name]:,}" for name in REPRESENTATIONS) + ".",
        "",
        markdown_table(compact),
        "## Mean test F1 per label set",
        "",
        markdown_table(per_set),
        "## Run",
        "",
        f"Trained SAE on test: NMSE {sae_stats['test_nmse']:.3f}, L0 {sae_stats['test_l0']:.1f}, "
        f"dead fraction {sae_stats['test_dead_fraction']:.3f}. "
        + ", ".join(f"{step} {seconds:.0f} s" for step, seconds in timings.items()) + ".",
        "",
    ]
    return "\n".join(lines)


def markdown_table(table, *, digits=3):
    """``table`` as a Markdown table, floats rounded to ``digits`` decimals."""
    def cell(value):
        return f"{value:.{digits}f}" if isinstance(value, (float, np.floating)) else str(value)

    header = "| " + " | ".join(map(str, table.columns)) + " |"
    align = "|" + "|".join("---:" if pd.api.types.is_numeric_dtype(table[c]) else "---" for c in table.columns) + "|"
    body = ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join([header, align, *body]) + "\n"


# --------------------------------------------------------------------------- figure


def plot_heldout(heldout):
    """Test F1 and AUROC of every label, one marker per representation, label sets separated by lines."""
    labels = heldout["label"].unique()
    y = {label: i for i, label in enumerate(labels)}
    fig, axes = plt.subplots(1, 2, figsize=(11, 1.6 + 0.26 * len(labels)), sharey=True, layout="constrained",
                             gridspec_kw={"width_ratios": [1.6, 1.0]})
    reference = heldout[heldout["representation"] == REFERENCE]
    marker, colour, text = STYLE[REFERENCE]
    axes[0].scatter(reference["test_f1"], reference["label"].map(y), marker=marker, color=colour, label=text,
                    s=120, linewidths=1.5, zorder=2)
    for name in REPRESENTATIONS:
        rows = heldout[heldout["representation"] == name]
        marker, colour, text = STYLE[name]
        for ax, column in zip(axes, ("test_f1", "test_auroc")):
            ax.scatter(rows[column], rows["label"].map(y), marker=marker, color=colour, label=text, s=30,
                       alpha=0.85, zorder=3)
    axes[0].axvline(ASSOCIATED_F1, color="0.4", linestyle="--", linewidth=0.8)
    axes[1].axvline(0.5, color="0.4", linestyle=":", linewidth=0.8)
    axes[0].set(xlim=(0, 1), xlabel="test F1 of the feature chosen on eval", title="F1 (dashed: associated)")
    auroc_floor = min(0.3, heldout["test_auroc"].min() - 0.02)
    axes[1].set(xlim=(auroc_floor, 1), xlabel="test AUROC of the same feature", title="AUROC (dotted: chance)")
    axes[0].set_yticks(range(len(labels)), [short_label(label) for label in labels], fontsize=8)
    axes[0].invert_yaxis()
    for ax in axes:
        ax.grid(axis="x", color="0.9")
        for boundary in label_set_boundaries(labels):
            ax.axhline(boundary, color="0.75", linewidth=0.8)
    fig.suptitle("Held-out label detection: one feature per label, chosen on eval, scored on test", fontsize=11)
    handles, texts = axes[0].get_legend_handles_labels()
    # The reference was drawn first, under the markers; list it last.
    fig.legend(handles[1:] + handles[:1], texts[1:] + texts[:1], loc="outside lower center", ncol=5, fontsize=9,
               frameon=False)
    return fig


def short_label(label, width=34):
    return label if len(label) <= width else label[: width - 1] + "…"


def label_set_boundaries(labels):
    """y positions between consecutive labels of different label sets."""
    sets = [label.split("=", 1)[0] for label in labels]
    return [i + 0.5 for i in range(len(sets) - 1) if sets[i] != sets[i + 1]]


# --------------------------------------------------------------------------- atlas and cards


def associations_by_set(codes, sets):
    """label_associations of the SAE latents with each label set, stacked, with a ``label_set`` column.

    As in the held-out table, a 0/1 flag keeps only its positive class.
    """
    pieces = []
    for name, values in sets.items():
        if values.nunique() < 2:  # one class tells no proteins apart, and label_associations refuses it
            continue
        table = label_associations(codes, values.to_numpy(), sort=False)
        if is_flag(values):
            table = table[table["label"] == 1]
        table.insert(1, "label_set", name)
        pieces.append(table)
    return pd.concat(pieces, ignore_index=True)


def card_latents(heldout, n_cards):
    """The SAE latents chosen for the labels they detect best, one per label set, distinct latents.

    "Best" is the test F1 above that of calling every protein positive, so
    that a frequent label does not win on its frequency alone.
    """
    free_f1 = heldout[heldout["representation"] == REFERENCE].set_index("label")["test_f1"]
    sae = heldout[heldout["representation"] == "sae"]
    best = sae.assign(lift=sae["test_f1"] - sae["label"].map(free_f1)).sort_values("lift", ascending=False,
                                                                                   kind="stable")
    chosen = {}  # latent -> the label set it was chosen for
    for row in best.itertuples():
        if len(chosen) >= n_cards:
            break
        if row.label_set not in chosen.values() and row.feature_index not in chosen:
            chosen[int(row.feature_index)] = row.label_set
    return chosen


CARDS_MANIFEST = "cards.txt"
"""The cards one run wrote, which the next run in the same ``--out`` replaces (other files are left alone)."""


def write_atlas_and_cards(out, sae, X, ids, sets, heldout, n_cards):
    codes = sae.transform(X)
    associations = associations_by_set(codes, sets)
    write_atlas(out / "atlas.html", codes, ids=ids, labels=sets, components=sae.components_,
                associations=associations, title="SAE latents of the SCL2205 proteins")
    # An earlier run's cards would pass for this run's: remove those it listed, and nothing else of --out.
    manifest = out / CARDS_MANIFEST
    if manifest.exists():
        for name in manifest.read_text().split():
            if name.startswith("card_") and name.endswith(".png"):
                (out / name).unlink(missing_ok=True)
    written = []
    for latent, label_set in card_latents(heldout, n_cards).items():
        # The card figure has room for a few label columns: the location and the label set it was chosen for.
        shown = sets[list(dict.fromkeys(["location", label_set]))]
        card = feature_card(codes, latent, ids=ids, labels=shown, components=sae.components_,
                            associations=associations)
        fig = plot_feature_card(card)
        fig.savefig(out / f"card_{latent}.png", dpi=110)
        plt.close(fig)
        written.append(f"card_{latent}.png")
    manifest.write_text("".join(f"{name}\n" for name in written))
    return written


# --------------------------------------------------------------------------- command line


def parse_args(argv):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter
    )
    add = parser.add_argument
    add("--data", type=Path, default=DATA / "per-protein.h5", help="HDF5 per-protein embeddings")
    add("--labels", type=Path, default=DATA / "per-protein.labels.csv",
        help="CSV with accession, location and split (train/eval/test) per protein")
    add("--properties", type=Path, default=DATA / "per-protein.properties.csv",
        help="CSV with accession and categorical *_class columns or 0/1 flags per protein")
    add("--out", type=Path, default=Path("results/interpret_latents"), help="directory for tables and figures")
    add("--n-latents", type=int, default=None,
        help="SAE latents; default: the estimator's (4 x the embedding width here)")
    add("--k", type=int, default=32, help="non-zeros per protein of the Top-K SAE")
    add("--epochs", type=int, default=None, help="training epochs of the SAE; default: the estimator's ('auto')")
    add("--seed", type=int, default=0, help="seed of the SAE's initialisation and batch order (both SAEs share it)")
    add("--device", default="auto", help="'cpu', 'cuda', 'cuda:N', or 'auto' for a GPU when there is one")
    add("--n-cards", type=int, default=3, help="feature cards written for the best-detected labels")
    args = parser.parse_args(argv)
    for option in ("data", "labels", "properties"):
        path = getattr(args, option)
        if not path.is_file():
            parser.error(f"--{option} file {str(path)!r} not found; {REBUILD_HINT}, or pass --{option} PATH.")
    return args


def load(args):
    """Embeddings, label sets and split of every protein, rows aligned with the embeddings."""
    ids, X = load_embeddings(args.data)
    labels = load_protein_labels(args.labels, ids=ids)
    properties = load_protein_labels(args.properties, ids=ids)
    split = labels["split"].to_numpy()
    unknown = sorted(set(split) - set(SPLITS))
    if unknown or any((split == s).sum() == 0 for s in SPLITS):
        raise ValueError(f"the split column of {args.labels} must give every protein one of {SPLITS}, each "
                         f"at least once; found {sorted(set(split), key=str)}.")
    return ids, X, label_sets(labels, properties), split


def main(argv=None):
    """Run the held-out protocol, write tables, figures, the atlas and cards to ``--out``; return 0."""
    args = parse_args(argv)
    start = time.perf_counter()
    ids, X, sets, split = load(args)
    print(f"{len(ids):,} proteins x {X.shape[1]} dims: "
          + ", ".join(f"{(split == s).sum():,} {s}" for s in SPLITS))
    indicator = keep_testable(label_indicator(sets), split)
    print(f"{indicator.shape[1]} labels from {len(sets.columns)} label sets: {', '.join(sets.columns)}")

    codes, sae = encode_all(args, X, split)
    encoded = time.perf_counter()
    heldout = heldout_table(codes, indicator, split)
    matched = time.perf_counter()

    args.out.mkdir(parents=True, exist_ok=True)
    heldout.to_csv(args.out / "heldout.csv", index=False, float_format="%.4g")
    fig = plot_heldout(heldout)
    fig.savefig(args.out / "heldout_f1.png", dpi=120)
    plt.close(fig)
    cards = write_atlas_and_cards(args.out, sae, X, ids, sets, heldout, args.n_cards)
    timings = {"loading, fitting and encoding": encoded - start, "held-out matching": matched - encoded,
               "figure, atlas and cards": time.perf_counter() - matched}

    n_features = {name: len(names) for name, (names, _) in codes.items()}
    summary = summary_markdown(heldout, describe_sae(sae, X[split == "test"]), n_features, timings)
    (args.out / "summary.md").write_text(summary)
    print("\n" + summary)
    print(f"Wrote heldout.csv, summary.md, heldout_f1.png, atlas.html and {', '.join(cards) or 'no cards'} "
          f"to {args.out} in {time.perf_counter() - start:.0f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
