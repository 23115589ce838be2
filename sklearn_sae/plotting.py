"""Figures that compare sparse autoencoders: final metrics and training curves.

Both functions take long ("tidy") pandas tables, one row per model and split
(and epoch), such as the ``metrics.csv`` and ``history.csv`` written by
``examples/compare_activations.py``, and return a
:class:`matplotlib.figure.Figure`. They never call ``plt.show``: save the
figure with ``fig.savefig(...)`` or let a notebook display it, and close it
with ``plt.close(fig)`` when done.
"""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd

__all__ = ["plot_comparison", "plot_training_curves"]

METRIC_LABELS = {
    "loss": "Loss",
    "nmse": "NMSE",
    "fvu": "FVU",
    "l0": "L0",
    "dead_fraction": "Dead fraction",
}
"""How each metric column is named in titles and axis labels."""

LOG_SCALE_SPAN = 10.0
"""Training curves use a log y-axis when positive values span more than this factor."""

PANEL_SIZE = (3.6, 2.9)
"""Width and height in inches of one panel."""


def plot_comparison(metrics_table, *, metrics=("loss", "nmse"), splits=("train", "val", "test")):
    """Bar charts of final metrics: one panel per metric and split, one bar per model.

    Parameters
    ----------
    metrics_table : pandas.DataFrame
        One row per model and split, with a ``model`` and a ``split`` column
        and one column per metric (``loss``, ``nmse``, ``fvu``, ``l0``,
        ``dead_fraction``, ...). Models appear in the order they first occur.
    metrics : sequence of str, default=("loss", "nmse")
        Metric columns to plot, one row of panels each.
    splits : sequence of str, default=("train", "val", "test")
        Values of the ``split`` column to plot, one column of panels each.

    Returns
    -------
    fig : matplotlib.figure.Figure
        ``len(metrics)`` rows by ``len(splits)`` columns of axes, titled like
        ``"NMSE — val"``. Each model keeps its colour in every panel, and
        every bar is labelled with its value. A model missing from a split
        gets no bar there.

    Raises
    ------
    ValueError
        If a column is missing, ``metrics`` or ``splits`` is empty, or a
        model has more than one row for a split.

    See Also
    --------
    plot_training_curves : the same metrics, epoch by epoch.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_sae.plotting import plot_comparison
    >>> table = pd.DataFrame({
    ...     "model": ["relu", "relu", "topk", "topk"],
    ...     "split": ["train", "val", "train", "val"],
    ...     "loss": [0.12, 0.15, 0.08, 0.09],
    ...     "nmse": [0.10, 0.13, 0.08, 0.09],
    ... })
    >>> fig = plot_comparison(table, splits=("train", "val"))
    >>> [ax.get_title() for ax in fig.axes]
    ['Loss — train', 'Loss — val', 'NMSE — train', 'NMSE — val']
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    metrics, splits = _as_names(metrics, "metrics"), _as_names(splits, "splits")
    table = _check_table(metrics_table, ["model", "split", *metrics], "metrics_table")
    duplicated = table.duplicated(["model", "split"])
    if duplicated.any():
        model, split = table.loc[duplicated, ["model", "split"]].iloc[0]
        raise ValueError(
            f"metrics_table has more than one row for model={model!r}, split={split!r}; "
            "it needs one row per model and split."
        )
    models = list(pd.unique(table["model"]))
    colors = _model_colors(models)
    values = table.set_index(["model", "split"])

    fig, axes = plt.subplots(
        len(metrics), len(splits), squeeze=False, layout="constrained",
        figsize=(PANEL_SIZE[0] * len(splits), PANEL_SIZE[1] * len(metrics)),
    )
    positions = np.arange(len(models))
    for row, metric in enumerate(metrics):
        for col, split in enumerate(splits):
            ax = axes[row, col]
            heights = [values[metric].get((model, split), np.nan) for model in models]
            shown = [i for i, height in enumerate(heights) if np.isfinite(height)]
            bars = ax.bar(
                positions[shown], [heights[i] for i in shown],
                color=[colors[models[i]] for i in shown], label=[str(models[i]) for i in shown],
            )
            ax.bar_label(bars, fmt="{:.3g}", padding=2, fontsize="small")
            ax.margins(y=0.15)  # room for the labels above the tallest bar
            ax.set_xticks(positions, [str(model) for model in models])
            ax.set_title(f"{_label(metric)} — {split}")
            if col == 0:
                ax.set_ylabel(_label(metric))
    return fig


def plot_training_curves(history_table, *, metric="nmse", splits=("train", "val", "test")):
    """Line plots of one metric over epochs: one panel per split, one line per model.

    Parameters
    ----------
    history_table : pandas.DataFrame
        Long table with columns ``model``, ``epoch``, ``split`` and the
        metric, one row per model, split and epoch. Models appear in the
        order they first occur.
    metric : str, default="nmse"
        The column to plot on the y-axis.
    splits : sequence of str, default=("train", "val", "test")
        Values of the ``split`` column to plot, one panel each.

    Returns
    -------
    fig : matplotlib.figure.Figure
        One row of ``len(splits)`` axes sharing the y-axis, titled like
        ``"NMSE — val"``, with a legend of models in the first one. The
        y-axis is logarithmic when the plotted values are all positive and
        span more than a factor of 10.

    Raises
    ------
    ValueError
        If a column is missing or ``splits`` is empty.

    See Also
    --------
    plot_comparison : the final values as bar charts.

    Notes
    -----
    Training-split values are usually averaged over the batches of an epoch
    in training mode (with noise, for ``"gumbel_topk"``), while the others
    are measured after the epoch in eval mode, so the two are not strictly
    comparable.

    Examples
    --------
    >>> import pandas as pd
    >>> from sklearn_sae.plotting import plot_training_curves
    >>> history = pd.DataFrame({
    ...     "model": ["topk"] * 4,
    ...     "epoch": [1, 2, 1, 2],
    ...     "split": ["train", "train", "val", "val"],
    ...     "nmse": [0.5, 0.2, 0.4, 0.25],
    ... })
    >>> fig = plot_training_curves(history, splits=("train", "val"))
    >>> len(fig.axes)
    2
    >>> import matplotlib.pyplot as plt; plt.close(fig)
    """
    splits = _as_names(splits, "splits")
    if not isinstance(metric, str):
        raise ValueError(f"metric must be the name of a column, got {metric!r}.")
    table = _check_table(history_table, ["model", "epoch", "split", metric], "history_table")
    models = list(pd.unique(table["model"]))
    colors = _model_colors(models)
    table = table[table["split"].isin(splits)].sort_values("epoch", kind="stable")

    fig, axes = plt.subplots(
        1, len(splits), squeeze=False, sharey=True, layout="constrained",
        figsize=(PANEL_SIZE[0] * len(splits), PANEL_SIZE[1]),
    )
    for ax, split in zip(axes[0], splits):
        in_split = table[table["split"] == split]
        for model in models:
            rows = in_split[in_split["model"] == model]
            if len(rows):
                # Markers keep a one-epoch run visible as a point.
                ax.plot(rows["epoch"], rows[metric], marker="o", markersize=3,
                        color=colors[model], label=str(model))
        ax.set_title(f"{_label(metric)} — {split}")
        ax.set_xlabel("epoch")
        ax.xaxis.get_major_locator().set_params(integer=True)
    axes[0, 0].set_ylabel(_label(metric))
    if _wants_log_scale(table[metric]):
        axes[0, 0].set_yscale("log")  # shared: applies to every panel
    if axes[0, 0].get_legend_handles_labels()[0]:
        axes[0, 0].legend(fontsize="small")
    return fig


def _as_names(names, what):
    """Return ``names`` as a non-empty list of str; a lone str is one name."""
    names = [names] if isinstance(names, str) else list(names)
    if not names:
        raise ValueError(f"{what} is empty; give at least one name.")
    return names


def _check_table(table, columns, what):
    if not isinstance(table, pd.DataFrame):
        raise ValueError(f"{what} must be a pandas DataFrame, got {type(table).__name__}.")
    missing = [column for column in columns if column not in table.columns]
    if missing:
        raise ValueError(
            f"{what} lacks the column(s) {missing}; it has {list(table.columns)}."
        )
    return table


def _model_colors(models):
    """One colour of the default property cycle per model, in order."""
    cycle = plt.rcParams["axes.prop_cycle"].by_key().get("color", ["C0"])
    return {model: cycle[i % len(cycle)] for i, model in enumerate(models)}


def _label(metric):
    return METRIC_LABELS.get(metric, metric)


def _wants_log_scale(values):
    values = pd.to_numeric(values, errors="coerce").to_numpy(dtype=float)
    values = values[np.isfinite(values)]
    if values.size == 0 or values.min() <= 0:
        return False
    return values.max() / values.min() > LOG_SCALE_SPAN
