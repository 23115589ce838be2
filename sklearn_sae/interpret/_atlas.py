"""The HTML atlas: every latent of a sparse autoencoder in one static, self-contained page.

:func:`write_atlas` writes one HTML file that needs no server and loads
nothing from the network: its style and script are inline, and its data (a
summary row per latent plus the feature card of each latent) is embedded as
JSON. The page shows a sortable, filterable, paginated table of latents and
draws a latent's card (histogram as inline SVG, top proteins, label
composition, associations, neighbours) only when it is opened, so it stays
responsive at 10^4 latents.

A card can be linked to: ``atlas.html#latent=5`` opens latent 5; ``sort``
(a column, ``-`` first for descending), ``q`` (the filter), ``active=1`` and
``page`` set the table, e.g. ``#sort=-f1&q=nucleus``.
"""

from __future__ import annotations

import json
import math
import os
import pathlib

import numpy as np
import pandas as pd

from .._atomic import atomic_file, check_replaceable
from ._atlas_page import render_page
from ._cards import CardSource, _json_scalar
from ._stats import _check_count

__all__ = ["write_atlas"]

CARDS_FOR = ("active", "all", "none")
"""Values of ``write_atlas(cards_for=...)``."""

SIGNIFICANT_DIGITS = 3
"""Floats in the atlas are rounded to this many significant digits, as many as the page shows."""

MAX_ASSOCIATIONS = 6
"""Best labels kept in each card of the atlas (of the card's ``N_ASSOCIATIONS``)."""

MAX_COMPOSITION = 6
"""Labels per label set kept in each card's composition in the atlas (the most frequent among the top proteins)."""

ASSOCIATION_COLUMNS = (
    "label_set", "label", "threshold", "n_pos", "precision", "recall", "f1",
    "fold_enrichment", "auroc", "qvalue",
)
"""Columns of the associations kept in the atlas' cards (when present)."""


def write_atlas(
    path,
    codes,
    *,
    ids=None,
    labels=None,
    components=None,
    associations=None,
    latents=None,
    cards_for="active",
    n_top=10,
    n_intervals=5,
    per_interval=3,
    n_neighbours=8,
    random_state=0,
    title="Sparse autoencoder atlas",
    progress=False,
):
    """Write an HTML atlas of the latents: a table of all of them and a card for each.

    The file is self-contained (inline style, script and data; no network
    access, no server: open it from disk) and written atomically: a
    temporary file in the same folder is renamed over ``path`` only when
    complete.

    Parameters
    ----------
    path : str or os.PathLike
        The HTML file to write; its folder must exist. An existing atlas
        (a page this function wrote) is replaced; any other file there
        raises ``ValueError`` and is left as it was.
    codes : {array-like, sparse matrix} of shape (n_proteins, n_latents)
        Non-negative activations. Never densified.
    ids : array-like of shape (n_proteins,), default=None
        Protein identifiers; row numbers when None.
    labels : pandas.DataFrame or array-like of shape (n_proteins,), default=None
        Categorical labels per protein, one column per label set; see
        :func:`feature_card`.
    components : array-like of shape (n_latents, n_features), default=None
        Decoder atoms (``sae.components_``), for the decoder neighbours.
    associations : pandas.DataFrame, default=None
        Precomputed :func:`sklearn_sae.interpret.label_associations`. When
        None and ``labels`` is given, they are computed here, once per label
        set, over all latents.
    latents : array-like of int, default=None
        The latents listed in the atlas, in any order; all when None.
    cards_for : {"active", "all", "none"}, default="active"
        Which listed latents get a card: those active on at least one
        protein, all of them (dead latents then have an empty card), or none
        (a table-only atlas).
    n_top, n_intervals, per_interval, n_neighbours, random_state
        Card options, as in :func:`feature_card`; smaller defaults keep the
        file small (1 to 2 kB per card).
    title : str, default="Sparse autoencoder atlas"
        Title of the page.
    progress : bool, default=False
        Show a tqdm progress bar while the cards are made.

    Returns
    -------
    pathlib.Path
        ``path``.

    Raises
    ------
    TypeError, ValueError
        On invalid input, as :func:`feature_card`; also when ``latents`` holds
        repeated or out-of-range indices, ``cards_for`` is unknown, or
        ``path`` is a file other than an atlas.

    See Also
    --------
    feature_card : one latent's card as Python objects.

    Examples
    --------
    >>> import numpy as np, tempfile, pathlib
    >>> from sklearn_sae.interpret import write_atlas
    >>> codes = np.array([[0.0, 1.0], [2.0, 0.0], [3.0, 0.5]])
    >>> folder = pathlib.Path(tempfile.mkdtemp())
    >>> write_atlas(folder / "atlas.html", codes, labels=["x", "y", "y"]).name
    'atlas.html'
    """
    path = check_replaceable(_check_path(path), foreign_atlas_content, writer=WRITER, directory=False)
    cards_for = _check_cards_for(cards_for)
    card_options = _card_options(n_top, n_intervals, per_interval, n_neighbours, random_state)
    if not isinstance(title, str):
        raise TypeError(f"title must be a str; got {type(title).__name__}.")

    source = CardSource(codes, ids=ids, labels=labels, components=components, associations=associations)
    listed = _check_latents(latents, source.n_latents)
    all_associations = source.index_associations()
    table = _latent_table(source, listed, all_associations)

    carded = _latents_with_cards(listed, table["n_active"], cards_for)
    cards = _compact_cards(source, carded, card_options, progress=progress)

    label_sets = source.label_sets
    data = {
        "meta": _meta(source, listed, carded, cards, label_sets, all_associations, cards_for, title, card_options),
        "table": _json_columns(table),
        "cards": cards.by_latent,
    }
    page = render_page(
        title=title,
        summary=_summary(source, listed, carded, label_sets),
        footer="Written by sklearn-sae " + _version() + ". Self-contained: share this one file.",
        generator="sklearn-sae " + _version(),
        data_json=json_for_script(data),
    )
    _write_atomically(path, page)
    return path


def _check_path(path):
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path must be a str or os.PathLike; got {type(path).__name__}.")
    path = pathlib.Path(path)
    if not path.parent.is_dir():
        raise ValueError(f"the folder of {str(path)!r} does not exist; create it first.")
    if path.is_dir():
        raise ValueError(f"{str(path)!r} is a folder; give the path of the HTML file to write.")
    return path


def _check_cards_for(cards_for):
    if cards_for not in CARDS_FOR:
        raise ValueError(f"cards_for must be one of {CARDS_FOR}; got {cards_for!r}.")
    return cards_for


def _card_options(n_top, n_intervals, per_interval, n_neighbours, random_state):
    """Check the card options now, before any work, even when no card is made."""
    options = {
        "n_top": _check_count(n_top, "n_top", minimum=1),
        "n_intervals": _check_count(n_intervals, "n_intervals", minimum=1),
        "per_interval": _check_count(per_interval, "per_interval", minimum=0),
        "n_neighbours": _check_count(n_neighbours, "n_neighbours", minimum=0),
    }
    if random_state is not None:
        _check_count(random_state, "random_state", minimum=0)
    options["random_state"] = random_state
    return options


def _check_latents(latents, n_latents):
    if latents is None:
        return np.arange(n_latents, dtype=np.int64)
    listed = np.asarray(latents)
    if listed.ndim != 1:
        raise ValueError(f"latents must be a 1-D sequence of latent indices; got shape {listed.shape}.")
    if listed.size and not np.issubdtype(listed.dtype, np.integer):
        raise TypeError(f"latents must hold ints; got dtype {listed.dtype}.")
    listed = listed.astype(np.int64)
    outside = listed[(listed < 0) | (listed >= n_latents)]
    if outside.size:
        raise ValueError(f"latents must be in [0, {n_latents}), the columns of codes; got {int(outside[0])}.")
    if np.unique(listed).size != listed.size:
        raise ValueError("latents holds a latent more than once.")
    return listed


def _latent_table(source, listed, associations):
    """One row per listed latent: its activation statistics and its best label by F1."""
    from ._stats import latent_stats  # sibling module, imported when first needed

    stats = latent_stats(source.csc).iloc[listed]
    table = pd.DataFrame({
        "latent": listed,
        "n_active": stats["n_active"].to_numpy(dtype=np.int64),
        "density": stats["density"].to_numpy(dtype=np.float64),
        "max": stats["max"].to_numpy(dtype=np.float64),
        "mean_active": stats["mean_active"].to_numpy(dtype=np.float64),
    })
    if associations is not None:
        best = _best_label_per_latent(associations)
        table = table.merge(best, on="latent", how="left")
    return table


def _best_label_per_latent(associations):
    """Each latent's association with the highest F1, as ``best_label``, ``f1``, ``precision``, ``recall``."""
    ranked = associations.assign(_f1=associations["f1"].fillna(-np.inf))
    ranked = ranked.sort_values(["latent", "_f1"], ascending=[True, False], kind="stable")
    best = ranked.drop_duplicates("latent", keep="first")
    label = best["label"].astype(str)
    if "label_set" in best.columns and best["label_set"].nunique() > 1:
        label = best["label_set"].astype(str) + ": " + label
    columns = {"latent": best["latent"].to_numpy(dtype=np.int64), "best_label": label.to_numpy(dtype=object)}
    for name in ("f1", "precision", "recall"):
        columns[name] = best[name].to_numpy(dtype=np.float64) if name in best.columns else np.nan
    return pd.DataFrame(columns)


def _latents_with_cards(listed, n_active, cards_for):
    if cards_for == "none":
        return listed[:0]
    if cards_for == "active":
        return listed[np.asarray(n_active) > 0]
    return listed


class _CompactCards:
    """Cards in the atlas' compact layout: tables as bare rows, with their columns stated once in ``meta``.

    Floats are rounded, the histogram keeps only its counts (its edges follow
    from the latent's max), and protein label values become indices into one
    list per label set, so the file holds each label's text once.
    """

    def __init__(self, label_sets):
        self.by_latent = {}
        self.columns = {}
        self.label_sets = label_sets
        self.label_values = {name: [] for name in label_sets}
        self._codes = {name: {} for name in label_sets}

    def add(self, content):
        """Add one card, given as :meth:`CardSource.card_content`."""
        self.by_latent[str(content["latent"])] = {
            "hist": content["histogram_counts"].tolist(),
            "top": self._proteins("top", content["top_proteins"], drop=("row",)),
            "examples": self._proteins("examples", content["interval_examples"], drop=("row", "low", "high")),
            "composition": self._composition(content["composition"]),
            "associations": self._associations(content["associations"]),
            "decoder": self._rows("decoder", content["decoder_neighbours"]),
            "coactivation": self._rows("coactivation", content["coactivation_neighbours"]),
        }

    def _rows(self, name, columns, *, keep=None, drop=()):
        names = [c for c in columns if (keep is None or c in keep) and c not in drop]
        known = self.columns.setdefault(name, names)
        n_rows = len(next(iter(columns.values()))) if columns else 0
        values = [json_values(columns[c]) if c in columns else [None] * n_rows for c in known]
        return [list(row) for row in zip(*values)]

    def _proteins(self, name, columns, *, drop):
        rows = self._rows(name, columns, drop=drop)
        for label_set in self.label_sets:
            at = self.columns[name].index(label_set)
            for row in rows:
                row[at] = self._label_code(label_set, row[at])
        return rows

    def _composition(self, columns):
        rows = self._rows("composition", columns)
        at = self.columns["composition"].index("label_set")
        kept, per_set = [], {}
        for row in rows:
            per_set[row[at]] = per_set.get(row[at], 0) + 1
            if per_set[row[at]] <= MAX_COMPOSITION:
                row[at] = self.label_sets.index(row[at])
                kept.append(row)
        return kept

    def _associations(self, columns):
        rows = self._rows("associations", columns, keep=ASSOCIATION_COLUMNS)[:MAX_ASSOCIATIONS]
        if "label_set" in self.columns["associations"]:
            at = self.columns["associations"].index("label_set")
            for row in rows:
                # A label set of these labels becomes its index; one the labels lack stays text.
                if row[at] in self.label_sets:
                    row[at] = self.label_sets.index(row[at])
        return rows

    def _label_code(self, label_set, value):
        if value is None:
            return None
        codes = self._codes[label_set]
        if value not in codes:
            codes[value] = len(codes)
            self.label_values[label_set].append(value)
        return codes[value]


def _compact_cards(source, carded, options, *, progress):
    cards = _CompactCards(source.label_sets)
    if carded.size:
        source.use_row_index()
        source.precompute_decoder_neighbours(carded, options["n_neighbours"])
    for latent in _progress(carded, enabled=progress):
        cards.add(source.card_content(int(latent), **options))
    return cards


def _progress(items, *, enabled):
    if not enabled:
        return items
    from tqdm.auto import tqdm

    return tqdm(items, desc="feature cards", unit="latent")


def _meta(source, listed, carded, cards, label_sets, associations, cards_for, title, options):
    return {
        "title": title,
        "n_proteins": int(source.n_proteins),
        "n_latents": int(source.n_latents),
        "n_listed": int(listed.size),
        "n_cards": int(carded.size),
        "cards_for": cards_for,
        "n_intervals": options["n_intervals"],
        "label_sets": label_sets,
        "label_values": cards.label_values,
        "has_components": source.unit_atoms is not None,
        "has_associations": associations is not None,
        "columns": cards.columns | {name: [] for name in _TABLE_NAMES if name not in cards.columns},
    }


_TABLE_NAMES = ("top", "examples", "composition", "associations", "decoder", "coactivation")


def _summary(source, listed, carded, label_sets):
    parts = [
        f"{source.n_proteins:,} proteins",
        f"{listed.size:,} of {source.n_latents:,} latents listed",
        f"{carded.size:,} cards",
    ]
    if label_sets:
        parts.append("labels: " + ", ".join(label_sets))
    return " \u00b7 ".join(parts)


def _json_columns(table):
    """A DataFrame as ``{column: [values]}``, JSON-safe and rounded."""
    return {str(name): json_values(table[name].to_numpy()) for name in table.columns}


def json_values(array):
    """A 1-D array as a list of JSON-safe values; floats rounded to ``SIGNIFICANT_DIGITS`` digits, NaN to None."""
    array = np.asarray(array)
    if array.dtype.kind == "f":
        # Formatting each float is quicker than NumPy rounding for the few values of one card's table.
        spec = f".{SIGNIFICANT_DIGITS}g"
        return [float(format(value, spec)) if math.isfinite(value) else None for value in array.tolist()]
    if array.dtype.kind in "iub":
        return array.tolist()
    return [_json_scalar(value) for value in array]


def json_for_script(data):
    """JSON text that is safe inside an HTML ``<script>`` element.

    ``<``, ``>`` and ``&`` are written as ``\\u`` escapes, so no string in
    the data can close the element (``</script>``) or open a comment; U+2028
    and U+2029 are escaped too, for older JavaScript parsers. ``JSON.parse``
    reads the escapes back as the original characters.
    """
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"), allow_nan=False)
    for character, escape in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"),
                              ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(character, escape)
    return text


WRITER = "write_atlas()"

GENERATOR_TAG = b'<meta name="generator" content="sklearn-sae '
"""How an atlas is recognised: every page this package has written carries it in its head."""

_HEAD_BYTES = 4096
"""The start of a file read to find :data:`GENERATOR_TAG` (the page's head is well within it)."""


def foreign_atlas_content(path):
    """``None`` when the existing file ``path`` is an atlas this package wrote, else why it is not."""
    with pathlib.Path(path).open("rb") as stream:
        head = stream.read(_HEAD_BYTES)
    if GENERATOR_TAG in head:
        return None
    return "it is not an atlas written by sklearn-sae (its head has no generator tag naming sklearn-sae)"


def _write_atomically(path, text):
    """Write ``text`` to a temporary file next to ``path``, then rename it over ``path``.

    Readers never see half a page, and a failure leaves any earlier atlas intact.
    """
    # Keeps the mode of an atlas it replaces.
    with atomic_file(path, foreign=foreign_atlas_content, writer=WRITER, suffix=".html") as temporary:
        with open(temporary, "w", encoding="utf-8", newline="\n") as stream:
            stream.write(text)


def _version():
    from .. import __version__

    return __version__
