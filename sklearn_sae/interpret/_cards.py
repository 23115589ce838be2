"""Feature cards: what one latent of a sparse autoencoder responds to, in one object.

A card gathers, for a single latent, the numbers and examples a person looks at
to name it: how often and how strongly it fires, which proteins make it fire
most, examples across its whole activation range, how the labels of its top
proteins compare with the labels of all proteins, the labels it predicts best,
and the latents that look like it (by decoder direction) or fire with it (by
shared proteins).

:func:`feature_card` computes a :class:`FeatureCard`, :func:`plot_feature_card`
draws it, and :meth:`FeatureCard.to_dict` turns it into JSON-safe data (the
HTML atlas of :func:`sklearn_sae.interpret.write_atlas` is built from it).

Codes may be dense or any SciPy sparse format. They are read column by column
from one compressed sparse column (CSC) copy, so the full matrix is never
densified, even for 10^6 proteins by 10^4 latents.
"""

from __future__ import annotations

import math
import numbers
from dataclasses import dataclass

import numpy as np
import pandas as pd

from ..metrics import unit_rows
from ._stats import _check_codes, _check_count, latent_scale

__all__ = ["FeatureCard", "feature_card", "plot_feature_card"]

N_HISTOGRAM_BINS = 50
"""Bins of a card's histogram of non-zero activations."""

N_ASSOCIATIONS = 10
"""Labels listed in a card's associations table."""

EXAMPLE_COLUMNS = ("interval", "low", "high", "row", "id", "activation")
"""Leading columns of a card's interval-examples table; label columns follow."""

COMPOSITION_COLUMNS = ("label_set", "label", "n_top", "top_fraction", "background_fraction")
DECODER_COLUMNS = ("latent", "cosine")
COACTIVATION_COLUMNS = ("latent", "jaccard", "n_both")

RESERVED_LABEL_NAMES = frozenset(EXAMPLE_COLUMNS)
"""Label columns may not take these names: they would clash with the protein tables' own columns."""


@dataclass(eq=False)
class FeatureCard:
    """Everything a feature card shows about one latent.

    Built by :func:`feature_card`; all fields are plain numbers, NumPy arrays
    and pandas DataFrames. :meth:`to_dict` converts them to JSON-safe Python
    objects.

    Attributes
    ----------
    latent : int
        Index of the latent (column of the codes).
    n_proteins : int
        Number of proteins (rows of the codes).
    n_active : int
        Proteins on which the latent is non-zero.
    density : float
        ``n_active / n_proteins``.
    max : float
        Largest activation (0 for a dead latent).
    mean : float
        Mean activation over all proteins, zeros included.
    mean_active : float
        Mean of the non-zero activations (NaN for a dead latent, as in
        :func:`sklearn_sae.interpret.latent_stats`).
    histogram_edges : ndarray of shape (n_bins + 1,)
        Edges of equal-width bins from 0 to ``max``.
    histogram_counts : ndarray of shape (n_bins,)
        Non-zero activations in each bin.
    top_proteins : pandas.DataFrame
        The ``n_top`` most active proteins, most active first: ``row``,
        ``id``, ``activation``, then one column per label set.
    interval_examples : pandas.DataFrame
        Random active proteins from each of ``n_intervals`` equal-width
        slices of ``(0, max]``: ``interval`` (0 is the lowest), ``low``,
        ``high``, ``row``, ``id``, ``activation``, then the label columns;
        the highest interval first, most active first within one.
    composition : pandas.DataFrame
        For each label set and each label found among the top proteins:
        ``label_set``, ``label``, ``n_top`` (top proteins with that label),
        ``top_fraction`` (``n_top`` over the number of top proteins) and
        ``background_fraction`` (the label's fraction over all proteins).
    associations : pandas.DataFrame
        The latent's strongest label associations, at most
        ``N_ASSOCIATIONS`` labels, each at its best threshold, best F1 first;
        columns as in :func:`sklearn_sae.interpret.label_associations`.
    decoder_neighbours : pandas.DataFrame
        The latents whose decoder atoms are most similar: ``latent``,
        ``cosine``, most similar first. Empty without decoder atoms.
    coactivation_neighbours : pandas.DataFrame
        The latents whose active proteins overlap most with this one's:
        ``latent``, ``jaccard`` (shared over either's active proteins),
        ``n_both`` (shared active proteins), highest Jaccard first.
    """

    latent: int
    n_proteins: int
    n_active: int
    density: float
    max: float
    mean: float
    mean_active: float
    histogram_edges: np.ndarray
    histogram_counts: np.ndarray
    top_proteins: pd.DataFrame
    interval_examples: pd.DataFrame
    composition: pd.DataFrame
    associations: pd.DataFrame
    decoder_neighbours: pd.DataFrame
    coactivation_neighbours: pd.DataFrame

    TABLES = (
        "top_proteins",
        "interval_examples",
        "composition",
        "associations",
        "decoder_neighbours",
        "coactivation_neighbours",
    )
    """Names of the fields that hold tables."""

    def to_dict(self):
        """The card as JSON-safe Python objects.

        Returns
        -------
        dict
            Scalars as ``int`` and ``float`` (``NaN`` and infinities become
            ``None``), the histogram as ``{"edges": [...], "counts": [...]}``,
            and each table as ``{"columns": [...], "rows": [[...], ...]}``
            (rebuild one with ``pd.DataFrame(t["rows"], columns=t["columns"])``).
            Every value is a ``str``, ``int``, ``float``, ``bool`` or ``None``,
            so ``json.dumps`` accepts it as is.
        """
        content = {
            "latent": int(self.latent),
            "n_proteins": int(self.n_proteins),
            "n_active": int(self.n_active),
            "density": _json_float(self.density),
            "max": _json_float(self.max),
            "mean": _json_float(self.mean),
            "mean_active": _json_float(self.mean_active),
            "histogram": {
                "edges": _json_list(np.asarray(self.histogram_edges, dtype=np.float64)),
                "counts": [int(c) for c in self.histogram_counts],
            },
        }
        for name in self.TABLES:
            content[name] = _json_table(getattr(self, name))
        return content


def feature_card(
    codes,
    latent,
    *,
    ids=None,
    labels=None,
    components=None,
    associations=None,
    n_top=20,
    n_intervals=10,
    per_interval=5,
    n_neighbours=10,
    random_state=0,
):
    """Compute the feature card of one latent.

    Parameters
    ----------
    codes : {array-like, sparse matrix} of shape (n_proteins, n_latents)
        Non-negative activations, e.g. the output of
        ``SparseAutoencoderTransformer.transform``. Never densified.
    latent : int
        The latent to describe, in ``[0, n_latents)``.
    ids : array-like of shape (n_proteins,), default=None
        Protein identifiers; row numbers when None.
    labels : pandas.DataFrame or array-like of shape (n_proteins,), default=None
        Categorical labels of each protein: a DataFrame with one column per
        label set (e.g. ``location``, ``length_class``), or one 1-D array
        (a single label set named after the Series, or ``"label"``).
        Bin continuous values first (e.g. with :func:`pandas.cut`). Missing
        values count in the background but are never listed.
    components : array-like of shape (n_latents, n_features), default=None
        Decoder atoms, one row per latent (``sae.components_``); needed for
        the decoder neighbours.
    associations : pandas.DataFrame, default=None
        Output of :func:`sklearn_sae.interpret.label_associations` for these
        codes, with at least the columns ``latent``, ``label`` and ``f1``.
        When None and ``labels`` is given, the associations of this latent
        with every label set are computed on the fly (with a ``label_set``
        column); pass them precomputed when making many cards.
    n_top : int, default=20
        Top proteins listed, and used for the label composition.
    n_intervals : int, default=10
        Equal-width slices of the activation range ``(0, max]`` to sample
        examples from.
    per_interval : int, default=5
        Examples drawn without replacement from each slice (fewer when a
        slice has fewer proteins).
    n_neighbours : int, default=10
        Neighbouring latents listed by decoder cosine and by co-activation.
    random_state : int or None, default=0
        Seed of the example sampling, combined with ``latent`` so that each
        latent gets its own reproducible draw. None draws fresh examples.

    Returns
    -------
    FeatureCard

    Raises
    ------
    TypeError
        If ``codes`` is not numeric, ``latent`` or a count is not an int,
        ``labels`` or ``associations`` has the wrong type.
    ValueError
        If ``codes`` is not 2-D or holds negative or non-finite values,
        ``latent`` is out of range, ``ids`` or ``labels`` have the wrong
        number of rows, ``components`` has the wrong shape, or
        ``associations`` lacks a required column.

    See Also
    --------
    plot_feature_card : draw the card.
    sklearn_sae.interpret.write_atlas : the cards of every latent in one HTML file.

    Examples
    --------
    >>> import numpy as np
    >>> from sklearn_sae.interpret import feature_card
    >>> codes = np.array([[0.0, 1.0], [2.0, 0.0], [3.0, 0.5]])
    >>> card = feature_card(codes, 0, ids=["a", "b", "c"], labels=["x", "y", "y"])
    >>> card.top_proteins["id"].tolist()
    ['c', 'b']
    >>> card.coactivation_neighbours["latent"].tolist()
    [1]
    """
    source = CardSource(codes, ids=ids, labels=labels, components=components, associations=associations)
    return source.card(
        latent,
        n_top=n_top,
        n_intervals=n_intervals,
        per_interval=per_interval,
        n_neighbours=n_neighbours,
        random_state=random_state,
    )


class CardSource:
    """Validated inputs shared by the cards of many latents.

    Checking the inputs, copying the codes to CSC, normalising the decoder
    atoms and encoding the labels happen once here; a card then costs about
    one column of the codes plus the rows where it is active.
    :func:`write_atlas` builds one and asks it for thousands of cards, which
    is why the per-card work below is plain NumPy rather than pandas.
    """

    def __init__(self, codes, *, ids=None, labels=None, components=None, associations=None):
        self.csc = _check_codes(codes)
        self.n_proteins, self.n_latents = self.csc.shape
        self.n_active = np.diff(self.csc.indptr)
        self.ids = _check_ids(ids, self.n_proteins)
        self.labels = check_labels(labels, self.n_proteins)
        self.label_sets = [] if self.labels is None else list(self.labels.columns)
        self._label_sets = [_EncodedLabelSet(self.labels[name]) for name in self.label_sets]
        atoms = _check_components(components, self.n_latents)
        self.unit_atoms = None if atoms is None else unit_rows(atoms)
        self._has_atom = None if self.unit_atoms is None else np.any(self.unit_atoms, axis=1)
        self._associations = None if associations is None else _AssociationIndex(associations)
        self._csr = None
        self._decoder_cache = {}

    def use_row_index(self):
        """Keep a CSR copy so co-activation costs the latent's active rows, not the whole matrix.

        Worth it when many cards are made: each card then reads only the rows
        where its latent fires, instead of scanning every non-zero.
        """
        if self._csr is None:
            self._csr = self.csc.tocsr()

    def precompute_decoder_neighbours(self, latents, n_neighbours, *, block_size=512):
        """Find the decoder neighbours of many latents with one matrix product per block of latents.

        One card alone compares its atom with all others, reading every atom;
        for thousands of cards, a block product reads them once per block.
        """
        if self.unit_atoms is None or n_neighbours == 0:
            return
        latents = np.asarray(latents, dtype=np.int64)
        for start in range(0, latents.size, block_size):
            block = latents[start:start + block_size]
            cosines = self.unit_atoms[block] @ self.unit_atoms.T
            for latent, cosine in zip(block.tolist(), cosines):
                self._decoder_cache[latent, n_neighbours] = self._nearest_atoms(latent, cosine, n_neighbours)

    def index_associations(self):
        """Associations of every latent, indexed for the cards; None without labels or associations.

        When only labels were given, they are computed here once for all
        latents, instead of once per card.
        """
        if self._associations is None and self.labels is not None:
            self._associations = _AssociationIndex(_associations_by_label_set(self.csc, self.labels))
        return None if self._associations is None else self._associations.table

    def card(self, latent, **options):
        """The :class:`FeatureCard` of ``latent``; ``options`` are those of :func:`feature_card`."""
        content = self.card_content(latent, **options)
        tables = {name: pd.DataFrame(content.pop(name)) for name in FeatureCard.TABLES}
        return FeatureCard(**content, **tables)

    def card_content(self, latent, *, n_top=20, n_intervals=10, per_interval=5, n_neighbours=10, random_state=0):
        """The fields of a :class:`FeatureCard`, with each table as a dict of NumPy columns."""
        latent = _check_latent(latent, self.n_latents)
        n_top = _check_count(n_top, "n_top", minimum=1)
        n_intervals = _check_count(n_intervals, "n_intervals", minimum=1)
        per_interval = _check_count(per_interval, "per_interval", minimum=0)
        n_neighbours = _check_count(n_neighbours, "n_neighbours", minimum=0)
        rng = _card_rng(random_state, latent)

        rows, values = self.column(latent)
        top = _largest(values, n_top)
        scale = float(values.max()) if values.size else 0.0
        edges, counts = _activation_histogram(values, scale)
        return {
            "latent": latent,
            "n_proteins": self.n_proteins,
            "n_active": int(values.size),
            "density": values.size / self.n_proteins if self.n_proteins else 0.0,
            "max": scale,
            "mean": float(values.sum()) / self.n_proteins if self.n_proteins else 0.0,
            "mean_active": float(values.mean()) if values.size else float("nan"),
            "histogram_edges": edges,
            "histogram_counts": counts,
            "top_proteins": self._protein_columns(rows[top], values[top], leading={}),
            "interval_examples": self._interval_examples(rows, values, scale, n_intervals, per_interval, rng),
            "composition": self._composition(rows[top]),
            "associations": self._associations_of(latent),
            "decoder_neighbours": self._decoder_neighbours(latent, n_neighbours),
            "coactivation_neighbours": self._coactivation_neighbours(latent, rows, n_neighbours),
        }

    def column(self, latent):
        """Rows where ``latent`` is non-zero (ascending) and its values there."""
        start, stop = self.csc.indptr[latent], self.csc.indptr[latent + 1]
        return self.csc.indices[start:stop], np.asarray(self.csc.data[start:stop], dtype=np.float64)

    def _associations_of(self, latent):
        if self._associations is not None:
            return self._associations.best_of(latent, N_ASSOCIATIONS)
        if self.labels is not None:
            # One latent's column only: a single card must not pay for every latent's associations.
            table = _associations_by_label_set(self.csc[:, [latent]], self.labels, renumber=np.array([latent]))
            return _AssociationIndex(table).best_of(latent, N_ASSOCIATIONS)
        return _empty_columns(("latent", "label", "f1"), {"latent": np.int64, "label": object})

    def _protein_columns(self, rows, activations, *, leading):
        columns = dict(leading)
        columns["row"] = rows.astype(np.int64)
        columns["id"] = self.ids[rows] if self.ids is not None else rows.astype(np.int64)
        columns["activation"] = activations
        for name, label_set in zip(self.label_sets, self._label_sets):
            columns[name] = label_set.values_at(rows)
        return columns

    def _interval_examples(self, rows, values, scale, n_intervals, per_interval, rng):
        edges = np.linspace(0.0, scale, n_intervals + 1)
        picked, interval_of = _sample_intervals(values, edges, per_interval, rng)
        order = np.lexsort((-values[picked], -interval_of))
        picked, interval_of = picked[order], interval_of[order]
        leading = {"interval": interval_of, "low": edges[interval_of], "high": edges[interval_of + 1]}
        return self._protein_columns(rows[picked], values[picked], leading=leading)

    def _composition(self, top_rows):
        pieces = [label_set.composition(name, top_rows) for name, label_set in zip(self.label_sets, self._label_sets)]
        if not pieces:
            return _empty_columns(COMPOSITION_COLUMNS, {"label_set": object, "label": object, "n_top": np.int64})
        return {name: np.concatenate([piece[name] for piece in pieces]) for name in COMPOSITION_COLUMNS}

    def _decoder_neighbours(self, latent, n_neighbours):
        if self.unit_atoms is None or n_neighbours == 0:
            return _empty_columns(DECODER_COLUMNS, {"latent": np.int64})
        if (latent, n_neighbours) in self._decoder_cache:
            return self._decoder_cache[latent, n_neighbours]
        return self._nearest_atoms(latent, self.unit_atoms @ self.unit_atoms[latent], n_neighbours)

    def _nearest_atoms(self, latent, cosine, n_neighbours):
        if not self._has_atom[latent]:
            return _empty_columns(DECODER_COLUMNS, {"latent": np.int64})
        # Zero atoms have no direction: they are nobody's neighbour.
        candidates = np.flatnonzero(self._has_atom)
        candidates = candidates[candidates != latent]
        best = candidates[_largest(cosine[candidates], n_neighbours)]
        return {"latent": best.astype(np.int64), "cosine": cosine[best]}

    def _coactivation_neighbours(self, latent, rows, n_neighbours):
        if n_neighbours == 0 or rows.size == 0:
            return _empty_columns(COACTIVATION_COLUMNS, {"latent": np.int64, "n_both": np.int64})
        both = self._shared_active_counts(rows)
        both[latent] = 0
        others = np.flatnonzero(both)
        jaccard = both[others] / (rows.size + self.n_active[others] - both[others])
        best = _largest(jaccard, n_neighbours)
        return {
            "latent": others[best].astype(np.int64),
            "jaccard": jaccard[best],
            "n_both": both[others[best]].astype(np.int64),
        }

    def _shared_active_counts(self, rows):
        """For every latent, how many of ``rows`` it is active on."""
        if self._csr is not None:
            return np.bincount(self._csr[rows].indices, minlength=self.n_latents)
        # One pass over the non-zeros, no row-major copy: cheaper for a single card.
        in_rows = np.zeros(self.n_proteins, dtype=bool)
        in_rows[rows] = True
        running = np.concatenate([[0], np.cumsum(in_rows[self.csc.indices], dtype=np.int64)])
        return running[self.csc.indptr[1:]] - running[self.csc.indptr[:-1]]


class _EncodedLabelSet:
    """One label column as integer codes (-1 when missing), its distinct values and their background fractions."""

    def __init__(self, series):
        codes, uniques = pd.factorize(series, use_na_sentinel=True)
        self.codes = codes.astype(np.int64)
        self.values = np.asarray(uniques, dtype=object)
        known = self.codes[self.codes >= 0]
        self.background = np.bincount(known, minlength=self.values.size) / max(self.codes.size, 1)

    def values_at(self, rows):
        codes = self.codes[rows]
        values = np.full(codes.size, None, dtype=object)
        values[codes >= 0] = self.values[codes[codes >= 0]]
        return values

    def composition(self, name, top_rows):
        """Labels found among ``top_rows``: most frequent first, then the rarer in the background first."""
        codes = self.codes[top_rows]
        counts = np.bincount(codes[codes >= 0], minlength=self.values.size)
        present = np.flatnonzero(counts)
        present = present[np.lexsort((self.background[present], -counts[present]))]
        return {
            "label_set": np.full(present.size, name, dtype=object),
            "label": self.values[present],
            "n_top": counts[present].astype(np.int64),
            "top_fraction": counts[present] / max(top_rows.size, 1),
            "background_fraction": self.background[present],
        }


class _AssociationIndex:
    """A label-associations table sorted by latent, held as NumPy columns so one latent's rows are a slice."""

    REQUIRED = ("latent", "label", "f1")

    def __init__(self, table):
        if not isinstance(table, pd.DataFrame):
            raise TypeError(
                f"associations must be a pandas DataFrame from label_associations; got {type(table).__name__}."
            )
        missing = [column for column in self.REQUIRED if column not in table.columns]
        if missing:
            raise ValueError(f"associations lacks the column(s) {missing}; pass the output of label_associations.")
        self.table = table.sort_values("latent", kind="stable").reset_index(drop=True)
        self.columns = {str(name): self.table[name].to_numpy() for name in self.table.columns}
        self._latents = self.columns["latent"].astype(np.int64)
        keys = ["label_set", "label"] if "label_set" in self.table.columns else ["label"]
        self._label_keys = self.table.groupby(keys, sort=False, dropna=False).ngroup().to_numpy()
        self._f1 = np.nan_to_num(self.table["f1"].to_numpy(dtype=np.float64), nan=-np.inf)

    def best_of(self, latent, limit):
        """Each label's row with the highest F1 for ``latent`` (its best threshold), the ``limit`` best labels."""
        start, stop = np.searchsorted(self._latents, [latent, latent + 1])
        f1 = self._f1[start:stop]
        by_f1 = np.lexsort((np.arange(f1.size), -f1))
        _, first = np.unique(self._label_keys[start:stop][by_f1], return_index=True)
        picked = start + by_f1[np.sort(first)[:limit]]
        return {name: values[picked] for name, values in self.columns.items()}


def _associations_by_label_set(codes, labels, *, renumber=None):
    """label_associations for each label set, stacked, with a ``label_set`` column after ``latent``.

    Proteins whose label is missing are left out of that label set's
    associations, rather than counted as negatives of every label; the
    thresholds stay fractions of each latent's maximum over all proteins.
    A label set with fewer than two labels is skipped: it tells the
    proteins apart in no way. ``renumber`` maps the columns of ``codes`` to
    latent indices when they are a subset.
    """
    from ._associations import label_associations  # sibling module, imported when first needed

    scale = latent_scale(codes)
    pieces = []
    for name in labels.columns:
        values = labels[name]
        known = values.notna().to_numpy()
        if values[known].nunique() < 2:
            continue
        rows = codes if known.all() else codes[np.flatnonzero(known)]
        table = label_associations(rows, values[known].to_numpy(), scale=scale, sort=False)
        if renumber is not None:
            table["latent"] = renumber[table["latent"].to_numpy(dtype=np.int64)]
        table.insert(1, "label_set", name)
        pieces.append(table)
    if not pieces:
        return pd.DataFrame({"latent": np.array([], dtype=np.int64), "label_set": np.array([], dtype=object),
                             "label": np.array([], dtype=object), "f1": np.array([], dtype=np.float64)})
    return pd.concat(pieces, ignore_index=True)


def _check_ids(ids, n_proteins):
    """``ids`` as a 1-D array of length ``n_proteins``; None stays None (row numbers are used)."""
    if ids is None:
        return None
    if isinstance(ids, (str, bytes)):
        raise TypeError("ids must be a sequence with one identifier per protein, not a single string.")
    ids = np.asarray(ids.to_numpy() if isinstance(ids, (pd.Series, pd.Index)) else ids)
    if ids.ndim != 1:
        raise ValueError(f"ids must be 1-D; got shape {ids.shape}.")
    if ids.shape[0] != n_proteins:
        raise ValueError(f"ids has {ids.shape[0]} entries but codes has {n_proteins} rows (proteins).")
    if ids.dtype.kind == "S":
        ids = ids.astype(object)
        ids = np.array([value.decode("utf-8", "replace") for value in ids], dtype=object)
    return ids


def check_labels(labels, n_proteins):
    """``labels`` as a DataFrame with a fresh 0..n-1 index and unique str column names, or None."""
    if labels is None:
        return None
    if isinstance(labels, pd.DataFrame):
        frame = labels.reset_index(drop=True)
    elif isinstance(labels, pd.Series):
        frame = labels.reset_index(drop=True).to_frame(name="label" if labels.name is None else labels.name)
    elif isinstance(labels, (str, bytes)) or not hasattr(labels, "__len__"):
        raise TypeError(
            "labels must be a pandas DataFrame (one column per label set) or a 1-D array "
            f"(one label per protein); got {type(labels).__name__}."
        )
    else:
        array = np.asarray(labels)
        if array.ndim != 1:
            raise ValueError(
                "labels given as an array must be 1-D (one label per protein); "
                f"got shape {array.shape}. Pass several label sets as a pandas DataFrame."
            )
        frame = pd.DataFrame({"label": array})
    if len(frame) != n_proteins:
        raise ValueError(f"labels has {len(frame)} rows but codes has {n_proteins} rows (proteins).")
    if frame.shape[1] == 0:
        raise ValueError("labels has no columns.")
    frame.columns = [str(name) for name in frame.columns]
    clashes = sorted(set(frame.columns) & RESERVED_LABEL_NAMES)
    if clashes:
        raise ValueError(f"labels columns {clashes} clash with the card's own columns; rename them.")
    if frame.columns.duplicated().any():
        raise ValueError(f"labels has duplicate column names: {list(frame.columns)}.")
    return frame


def _check_components(components, n_latents):
    if components is None:
        return None
    atoms = np.asarray(components)
    if not (np.issubdtype(atoms.dtype, np.floating) or np.issubdtype(atoms.dtype, np.integer)):
        raise TypeError(f"components must hold real numbers; got dtype {atoms.dtype}.")
    if atoms.ndim != 2 or atoms.shape[0] != n_latents:
        raise ValueError(
            f"components must have shape (n_latents, n_features) = ({n_latents}, ...), one decoder atom "
            f"per latent (sae.components_); got shape {atoms.shape}."
        )
    atoms = atoms.astype(np.float64, copy=False)
    if not np.all(np.isfinite(atoms)):
        raise ValueError("components holds NaN or infinite values.")
    return atoms


def _check_latent(latent, n_latents):
    if isinstance(latent, (bool, np.bool_)) or not isinstance(latent, numbers.Integral):
        raise TypeError(f"latent must be an int; got {type(latent).__name__}.")
    if not 0 <= latent < n_latents:
        raise ValueError(f"latent must be in [0, {n_latents}), the columns of codes; got {latent}.")
    return int(latent)


def _card_rng(random_state, latent):
    """A generator seeded by (random_state, latent): a card is the same alone or inside an atlas."""
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, (bool, np.bool_)) or not isinstance(random_state, numbers.Integral):
        raise TypeError(f"random_state must be an int or None; got {type(random_state).__name__}.")
    if random_state < 0:
        raise ValueError(f"random_state must be non-negative; got {random_state}.")
    return np.random.default_rng([int(random_state), latent])


def _largest(values, n):
    """Indices of the ``n`` largest ``values``, largest first; ties keep the lower index first."""
    if n >= values.size:
        candidates = np.arange(values.size)
    else:
        # Everything tied with the n-th largest value is a candidate, so ties resolve the same way always.
        threshold = np.partition(values, values.size - n)[values.size - n]
        candidates = np.flatnonzero(values >= threshold)
    order = np.lexsort((candidates, -values[candidates]))
    return candidates[order][:n]


def _activation_histogram(values, scale):
    edges = np.linspace(0.0, scale if scale > 0 else 1.0, N_HISTOGRAM_BINS + 1)
    counts, _ = np.histogram(values, bins=edges)
    return edges, counts.astype(np.int64)


def _sample_intervals(values, edges, per_interval, rng):
    """Up to ``per_interval`` random positions of ``values`` in each interval ``(edges[i], edges[i + 1]]``."""
    n_intervals = edges.size - 1
    interval = np.clip(np.searchsorted(edges, values, side="left") - 1, 0, n_intervals - 1)
    by_interval = np.argsort(interval, kind="stable")  # positions grouped by interval, ascending within each
    bounds = np.searchsorted(interval[by_interval], np.arange(n_intervals + 1))
    picked, interval_of = [], []
    for i in range(n_intervals):
        members = by_interval[bounds[i]:bounds[i + 1]]
        chosen = rng.choice(members, size=min(per_interval, members.size), replace=False)
        picked.append(np.sort(chosen))
        interval_of.append(np.full(chosen.size, i, dtype=np.int64))
    return np.concatenate(picked).astype(np.int64), np.concatenate(interval_of)


def _empty_columns(columns, dtypes):
    return {name: np.array([], dtype=dtypes.get(name, np.float64)) for name in columns}


def _json_float(value):
    value = float(value)
    return value if math.isfinite(value) else None


def _json_list(array):
    """A NumPy array as a list of JSON-safe values."""
    if array.dtype.kind == "f":
        finite = np.isfinite(array)
        values = array.tolist()
        return values if finite.all() else [v if ok else None for v, ok in zip(values, finite)]
    if array.dtype.kind in "iub":
        return array.tolist()
    return [_json_scalar(value) for value in array]


def _json_scalar(value):
    if type(value) is str:  # the common case first: ids and label names
        return value
    if value is None or value is pd.NA or value is pd.NaT:
        return None
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, numbers.Integral):
        return int(value)
    if isinstance(value, numbers.Real):
        return _json_float(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, str):
        return value
    try:
        if pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return str(value)


def _json_table(frame):
    columns = [str(name) for name in frame.columns]
    data = [_json_list(frame[name].to_numpy()) for name in frame.columns]
    return {"columns": columns, "rows": [list(row) for row in zip(*data)] if data else []}


# --------------------------------------------------------------------------------------------------
# Plotting

CARD_FIGSIZE = (13.0, 10.0)
"""Width and height in inches of a feature-card figure."""

PANEL_TITLES = {
    "histogram": "Activation histogram",
    "top": "Top proteins",
    "composition": "Label composition: top proteins vs all",
    "associations": "Label associations (best F1)",
    "decoder": "Nearest latents by decoder cosine",
    "coactivation": "Nearest latents by co-activation (Jaccard)",
}
"""Titles of the six panels of :func:`plot_feature_card`, in reading order."""

TOP_COLOUR = "#3b6fb6"
BACKGROUND_COLOUR = "#c9c9c9"
N_PLOTTED_ROWS = 12
"""Rows shown in each table and bar panel of the figure (the card itself may hold more)."""


def plot_feature_card(card):
    """Draw a feature card as one figure of six panels.

    Parameters
    ----------
    card : FeatureCard
        From :func:`feature_card`.

    Returns
    -------
    fig : matplotlib.figure.Figure
        Six axes, in reading order (titles in ``PANEL_TITLES``): the
        histogram of non-zero activations, the top proteins (a table),
        label fractions among the top proteins against all proteins, the
        F1 of the best label associations, and the nearest latents by
        decoder cosine and by co-activation. A panel with nothing to show
        (no labels, no decoder atoms, a dead latent) says so. The figure is
        not shown; close it with ``plt.close(fig)``.

    Raises
    ------
    TypeError
        If ``card`` is not a :class:`FeatureCard`.
    """
    if not isinstance(card, FeatureCard):
        raise TypeError(f"card must be a FeatureCard from feature_card; got {type(card).__name__}.")
    import matplotlib.pyplot as plt  # only here: cards and atlases need no matplotlib

    fig, axes = plt.subplots(3, 2, figsize=CARD_FIGSIZE, layout="constrained",
                             gridspec_kw={"height_ratios": [1.0, 1.3, 1.0]})
    fig.suptitle(_card_title(card), fontsize=12)
    _plot_histogram(axes[0, 0], card)
    _plot_top_proteins(axes[1, 0], card.top_proteins)
    _plot_composition(axes[0, 1], card.composition)
    _plot_associations(axes[1, 1], card.associations)
    _plot_neighbours(axes[2, 0], card.decoder_neighbours, "cosine", PANEL_TITLES["decoder"],
                     empty="no decoder atoms given (components=None)")
    _plot_neighbours(axes[2, 1], card.coactivation_neighbours, "jaccard", PANEL_TITLES["coactivation"],
                     empty="no latent shares an active protein")
    return fig


def _card_title(card):
    if card.n_active == 0:
        return f"Latent {card.latent}: never active on {card.n_proteins:,} proteins"
    return (
        f"Latent {card.latent}: active on {card.n_active:,} of {card.n_proteins:,} proteins "
        f"({card.density:.2%}), max {card.max:.3g}, mean when active {card.mean_active:.3g}"
    )


def _say_empty(ax, title, message):
    ax.set_title(title, loc="left", fontsize=10)
    ax.text(0.5, 0.5, message, ha="center", va="center", color="0.4", transform=ax.transAxes)
    ax.set_axis_off()


def _plot_histogram(ax, card):
    title = PANEL_TITLES["histogram"]
    if card.n_active == 0:
        _say_empty(ax, title, "dead latent: never active")
        return
    edges = np.asarray(card.histogram_edges)
    ax.bar(edges[:-1], card.histogram_counts, width=np.diff(edges), align="edge", color=TOP_COLOUR)
    ax.set_title(title, loc="left", fontsize=10)
    ax.set_xlabel("activation (non-zero only)")
    ax.set_ylabel("proteins")
    if card.histogram_counts.max() > 100 * max(card.histogram_counts[card.histogram_counts > 0].min(), 1):
        ax.set_yscale("log")  # a long tail would otherwise be invisible next to the mode


def _plot_top_proteins(ax, table):
    title = PANEL_TITLES["top"]
    if table.empty:
        _say_empty(ax, title, "no active protein")
        return
    shown = table.drop(columns="row").head(N_PLOTTED_ROWS)
    cells = [[_short(value) for value in row] for row in shown.itertuples(index=False)]
    ax.set_axis_off()
    ax.set_title(title, loc="left", fontsize=10)
    drawn = ax.table(cellText=cells, colLabels=list(shown.columns), loc="upper center", cellLoc="left")
    drawn.auto_set_font_size(False)
    drawn.set_fontsize(8)
    drawn.auto_set_column_width(list(range(shown.shape[1])))


def _short(value, width=24):
    if isinstance(value, (float, np.floating)):
        return f"{value:.4g}"
    text = str(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def _label_names(shown, *, several_sets):
    """Axis labels for rows of ``label`` (prefixed by their ``label_set`` when several sets are shown)."""
    if several_sets:
        return [f"{label_set}: {_short(label)}" for label_set, label in zip(shown["label_set"], shown["label"])]
    return [_short(label) for label in shown["label"]]


def _plot_composition(ax, table):
    title = PANEL_TITLES["composition"]
    if table.empty:
        _say_empty(ax, title, "no labels given")
        return
    shown = table.head(N_PLOTTED_ROWS).iloc[::-1]
    names = _label_names(shown, several_sets=table["label_set"].nunique() > 1)
    y = np.arange(len(shown))
    ax.barh(y + 0.2, shown["top_fraction"], height=0.4, color=TOP_COLOUR, label="top proteins")
    ax.barh(y - 0.2, shown["background_fraction"], height=0.4, color=BACKGROUND_COLOUR, label="all proteins")
    ax.set_yticks(y, names, fontsize=8)
    _keep_bar_height(ax, len(shown))
    ax.set_xlim(0, 1)
    ax.set_xlabel("fraction of proteins")
    ax.legend(loc="lower right", fontsize=8)
    ax.set_title(title, loc="left", fontsize=10)


def _plot_associations(ax, table):
    title = PANEL_TITLES["associations"]
    if table.empty:
        _say_empty(ax, title, "no labels given")
        return
    shown = table.head(N_PLOTTED_ROWS).iloc[::-1]
    names = _label_names(shown, several_sets="label_set" in shown.columns and shown["label_set"].nunique() > 1)
    y = np.arange(len(shown))
    f1 = shown["f1"].fillna(0).to_numpy(dtype=np.float64)
    ax.barh(y, f1, color=TOP_COLOUR)
    _keep_bar_height(ax, len(shown))
    for yi, f1_value, (_, row) in zip(y, f1, shown.iterrows()):
        details = [f"F1 {row['f1']:.2f}"]
        details += [f"{short} {row[name]:.2f}" for name, short in (("precision", "P"), ("recall", "R"))
                    if name in row.index and pd.notna(row[name])]
        if "threshold" in row.index and pd.notna(row["threshold"]):
            details.append(f"at >{row['threshold']:g}")
        # Long bars carry their numbers inside, so the text never runs past the axis.
        inside = f1_value > 0.6
        ax.text(f1_value - 0.01 if inside else f1_value + 0.01, yi, "  ".join(details), va="center", fontsize=7,
                ha="right" if inside else "left", color="white" if inside else "0.2")
    ax.set_yticks(y, names, fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("F1")
    ax.set_title(title, loc="left", fontsize=10)


def _plot_neighbours(ax, table, column, title, *, empty):
    if table.empty:
        _say_empty(ax, title, empty)
        return
    shown = table.head(N_PLOTTED_ROWS).iloc[::-1]
    y = np.arange(len(shown))
    ax.barh(y, shown[column], color=TOP_COLOUR)
    _keep_bar_height(ax, len(shown))
    ax.set_yticks(y, [f"latent {latent}" for latent in shown["latent"]], fontsize=8)
    ax.set_xlabel(column)
    if column == "jaccard":
        ax.set_xlim(0, 1)
    else:
        ax.set_xlim(min(0.0, float(shown[column].min())), 1)
    ax.set_title(title, loc="left", fontsize=10)


def _keep_bar_height(ax, n_bars, *, min_slots=6):
    """Give a few bars the height they would have among many, stacked from the top, not stretched."""
    ax.set_ylim(n_bars - max(n_bars, min_slots) - 0.5, n_bars - 0.5)
