"""Tests of sklearn_sae.plotting on small hand-made tables."""

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
from matplotlib.container import BarContainer  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sklearn_sae.plotting import plot_comparison, plot_training_curves  # noqa: E402

MODELS = ["relu", "topk", "gumbel_topk"]
SPLITS = ("train", "val", "test")
METRICS = ["loss", "nmse", "fvu", "l0", "dead_fraction"]


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def metrics_table():
    rng = np.random.default_rng(0)
    rows = [
        {"model": model, "split": split, **dict(zip(METRICS, rng.uniform(0.01, 1, len(METRICS))))}
        for model in MODELS
        for split in SPLITS
    ]
    return pd.DataFrame(rows)


def history_table(*, n_epochs=4, scale=1.0):
    rows = [
        {"model": model, "epoch": epoch, "split": split,
         **{metric: scale * (1 + i) / epoch for metric in METRICS}}
        for i, model in enumerate(MODELS)
        for split in SPLITS
        for epoch in range(1, n_epochs + 1)
    ]
    return pd.DataFrame(rows)


def bars_of(ax):
    return [patch for container in ax.containers if isinstance(container, BarContainer) for patch in container]


@pytest.mark.parametrize("metrics", [("loss", "nmse"), ("nmse",), ("loss", "nmse", "l0")])
@pytest.mark.parametrize("splits", [SPLITS, ("val",)])
def test_plot_comparison_layout(metrics, splits):
    fig = plot_comparison(metrics_table(), metrics=metrics, splits=splits)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(metrics) * len(splits)
    labels = {"loss": "Loss", "nmse": "NMSE", "l0": "L0"}
    expected = [f"{labels[m]} — {s}" for m in metrics for s in splits]
    assert [ax.get_title() for ax in fig.axes] == expected
    for ax in fig.axes:
        assert len(bars_of(ax)) == len(MODELS)
        assert [tick.get_text() for tick in ax.get_xticklabels()] == MODELS
    plt.close(fig)
    assert not plt.fignum_exists(fig.number)


def test_plot_comparison_values_colours_and_labels():
    table = metrics_table()
    fig = plot_comparison(table)
    colours_by_panel = []
    for ax, (metric, split) in zip(fig.axes, [(m, s) for m in ("loss", "nmse") for s in SPLITS]):
        expected = table[table["split"] == split].set_index("model").loc[MODELS, metric].to_numpy()
        np.testing.assert_allclose([bar.get_height() for bar in bars_of(ax)], expected)
        texts = [text.get_text() for text in ax.texts]
        assert texts == [f"{value:.3g}" for value in expected]
        colours_by_panel.append([bar.get_facecolor() for bar in bars_of(ax)])
    assert all(colours == colours_by_panel[0] for colours in colours_by_panel)
    assert len(set(colours_by_panel[0])) == len(MODELS)


def test_plot_comparison_model_missing_from_a_split():
    table = metrics_table()
    table = table[~((table["model"] == "topk") & (table["split"] == "test"))]
    fig = plot_comparison(table)
    n_bars = [len(bars_of(ax)) for ax in fig.axes]
    assert n_bars == [3, 3, 2, 3, 3, 2]


@pytest.mark.parametrize(
    "table, kwargs, match",
    [
        (metrics_table().drop(columns="nmse"), {}, "lacks the column"),
        (pd.concat([metrics_table()] * 2), {}, "more than one row"),
        (metrics_table(), {"metrics": ()}, "metrics is empty"),
        (metrics_table().to_dict(), {}, "pandas DataFrame"),
    ],
)
def test_plot_comparison_errors(table, kwargs, match):
    with pytest.raises(ValueError, match=match):
        plot_comparison(table, **kwargs)


@pytest.mark.parametrize("splits", [SPLITS, ("train", "test")])
def test_plot_training_curves_layout(splits):
    fig = plot_training_curves(history_table(), metric="nmse", splits=splits)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == len(splits)
    assert [ax.get_title() for ax in fig.axes] == [f"NMSE — {split}" for split in splits]
    for ax in fig.axes:
        lines = ax.get_lines()
        assert [line.get_label() for line in lines] == MODELS
        np.testing.assert_array_equal(lines[0].get_xdata(), [1, 2, 3, 4])
        assert ax.get_xlabel() == "epoch"
    assert [t.get_text() for t in fig.axes[0].get_legend().get_texts()] == MODELS
    plt.close(fig)
    assert not plt.fignum_exists(fig.number)


@pytest.mark.parametrize(
    "n_epochs, scale, expected",
    [(20, 1.0, "log"), (2, 1.0, "linear"), (20, -1.0, "linear")],
)
def test_plot_training_curves_log_scale(n_epochs, scale, expected):
    # Values span (1 + 2) / 1 over 1 / n_epochs: 60x for 20 epochs, 6x for 2.
    fig = plot_training_curves(history_table(n_epochs=n_epochs, scale=scale), metric="loss")
    assert {ax.get_yscale() for ax in fig.axes} == {expected}


def test_plot_training_curves_single_epoch_and_errors():
    fig = plot_training_curves(history_table(n_epochs=1), metric="dead_fraction", splits="val")
    assert len(fig.axes) == 1
    assert fig.axes[0].get_title() == "Dead fraction — val"
    assert all(line.get_marker() == "o" for line in fig.axes[0].get_lines())
    with pytest.raises(ValueError, match="lacks the column"):
        plot_training_curves(history_table(), metric="auc")
    with pytest.raises(ValueError, match="splits is empty"):
        plot_training_curves(history_table(), splits=[])
