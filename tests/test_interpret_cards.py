"""Tests of the feature cards and the HTML atlas of sklearn_sae.interpret on a small planted example.

The planted codes: 400 proteins in four locations (A, B, C, D; 100 each) and six latents.

- latent 0 fires on 90 of the A proteins (and weakly on 5 B proteins);
- latent 1 fires on 80 of those same A proteins: its co-activation twin;
- latent 2 fires on a random half of all proteins;
- latent 3 fires on B; its decoder atom is a near-copy of latent 0's;
- latent 4 never fires (dead);
- latent 5 fires on C.
"""

import json
import pathlib
import re

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402
import scipy.sparse as sp  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from sklearn_sae.interpret import FeatureCard, feature_card, plot_feature_card, write_atlas  # noqa: E402
from sklearn_sae.interpret._atlas import json_for_script  # noqa: E402
from sklearn_sae.interpret._cards import N_ASSOCIATIONS, N_HISTOGRAM_BINS, PANEL_TITLES  # noqa: E402

N_PROTEINS = 400
N_LATENTS = 6
LOCATIONS = np.repeat(["A", "B", "C", "D"], 100)
MALICIOUS = "</script><script>alert(1)</script>"


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def planted_codes():
    rng = np.random.default_rng(0)
    codes = np.zeros((N_PROTEINS, N_LATENTS))
    a_rows = np.flatnonzero(LOCATIONS == "A")
    fires_0 = a_rows[:90]
    codes[fires_0, 0] = rng.uniform(1.0, 2.0, fires_0.size)
    codes[np.flatnonzero(LOCATIONS == "B")[:5], 0] = 0.1
    codes[fires_0[:80], 1] = rng.uniform(0.5, 1.0, 80)
    half = rng.random(N_PROTEINS) < 0.5
    codes[half, 2] = rng.uniform(0.1, 1.0, half.sum())
    codes[LOCATIONS == "B", 3] = rng.uniform(0.2, 3.0, 100)
    codes[LOCATIONS == "C", 5] = rng.uniform(0.2, 1.0, 100)
    return codes


def planted_components():
    rng = np.random.default_rng(1)
    atoms = rng.normal(size=(N_LATENTS, 16))
    atoms[3] = atoms[0] + 0.05 * rng.normal(size=16)
    return atoms


def planted_labels():
    rng = np.random.default_rng(2)
    return pd.DataFrame({
        "location": LOCATIONS,
        "length_class": rng.choice(["short", "medium", "long"], N_PROTEINS),
    })


def planted_ids():
    return np.array([f"P{i:04d}" for i in range(N_PROTEINS)], dtype=object)


def hand_associations():
    """A label_associations-shaped table, made by hand: latent 0 best on A, latent 3 on B."""
    rows = []
    for latent in range(N_LATENTS):
        for label in "ABCD":
            for threshold in (0.0, 0.5):
                f1 = 0.9 - 0.1 * threshold if (latent, label) in {(0, "A"), (3, "B"), (5, "C")} else 0.05 * latent
                rows.append({"latent": latent, "label": label, "threshold": threshold, "n_pos": 100,
                             "n_active": 90, "tp": 80, "precision": f1, "recall": f1, "f1": f1,
                             "fold_enrichment": 3.0, "auroc": 0.9, "pvalue": 1e-5, "qvalue": 1e-4})
    return pd.DataFrame(rows)


def make_card(latent=0, codes=None, **options):
    options.setdefault("ids", planted_ids())
    options.setdefault("labels", planted_labels())
    options.setdefault("components", planted_components())
    options.setdefault("associations", hand_associations())
    return feature_card(planted_codes() if codes is None else codes, latent, **options)


# --------------------------------------------------------------------------------------------------
# Card content against hand computation


def test_card_statistics_match_the_column():
    codes = planted_codes()
    card = make_card(0, codes)
    column = codes[:, 0]
    active = column[column > 0]
    assert isinstance(card, FeatureCard)
    assert card.latent == 0 and card.n_proteins == N_PROTEINS
    assert card.n_active == active.size == 95
    assert card.density == pytest.approx(95 / N_PROTEINS)
    assert card.max == pytest.approx(active.max())
    assert card.mean == pytest.approx(column.mean())
    assert card.mean_active == pytest.approx(active.mean())
    counts, edges = np.histogram(active, bins=N_HISTOGRAM_BINS, range=(0, active.max()))
    np.testing.assert_allclose(card.histogram_edges, edges)
    np.testing.assert_array_equal(card.histogram_counts, counts)
    assert card.histogram_counts.sum() == card.n_active


def test_top_proteins_are_the_most_active_with_their_labels():
    codes = planted_codes()
    card = make_card(0, codes, n_top=20)
    expected_rows = np.argsort(-codes[:, 0], kind="stable")[:20]
    top = card.top_proteins
    assert list(top.columns) == ["row", "id", "activation", "location", "length_class"]
    np.testing.assert_array_equal(top["row"], expected_rows)
    assert top["id"].tolist() == planted_ids()[expected_rows].tolist()
    np.testing.assert_allclose(top["activation"], codes[expected_rows, 0])
    assert (top["location"] == "A").all()
    assert top["length_class"].tolist() == planted_labels()["length_class"].to_numpy()[expected_rows].tolist()


def test_planted_label_dominates_the_composition():
    card = make_card(0, n_top=20)
    composition = card.composition
    assert list(composition.columns) == ["label_set", "label", "n_top", "top_fraction", "background_fraction"]
    location = composition[composition["label_set"] == "location"]
    assert location["label"].tolist() == ["A"]
    assert location["top_fraction"].tolist() == [1.0]
    assert location["background_fraction"].tolist() == [0.25]
    lengths = composition[composition["label_set"] == "length_class"]
    assert lengths["n_top"].sum() == 20
    assert lengths["top_fraction"].is_monotonic_decreasing


def test_composition_counts_only_active_proteins_when_fewer_than_n_top():
    codes = np.zeros((10, 2))
    codes[[0, 1, 2], 0] = [3.0, 2.0, 1.0]
    codes[:, 1] = 1.0
    card = feature_card(codes, 0, labels=["x", "x", "y", "y", "y", "y", "y", "y", "y", "y"], n_top=5)
    assert len(card.top_proteins) == 3
    as_dict = dict(zip(card.composition["label"], card.composition["top_fraction"]))
    assert as_dict == pytest.approx({"x": 2 / 3, "y": 1 / 3})


def test_nearest_latent_by_decoder_cosine_is_the_planted_near_duplicate():
    atoms = planted_components()
    card = make_card(0, n_neighbours=3)
    neighbours = card.decoder_neighbours
    assert list(neighbours.columns) == ["latent", "cosine"]
    assert neighbours["latent"].iloc[0] == 3
    unit = atoms / np.linalg.norm(atoms, axis=1, keepdims=True)
    expected = unit[1:] @ unit[0]
    assert neighbours["cosine"].iloc[0] == pytest.approx(expected[2])
    assert 0 not in neighbours["latent"].tolist()
    assert len(neighbours) == 3 and neighbours["cosine"].is_monotonic_decreasing


def test_nearest_latent_by_coactivation_is_the_planted_co_firing_latent():
    codes = planted_codes()
    card = make_card(0, codes)
    neighbours = card.coactivation_neighbours
    assert list(neighbours.columns) == ["latent", "jaccard", "n_both"]
    assert neighbours["latent"].iloc[0] == 1
    active = codes > 0
    both = (active[:, 0] & active[:, 1]).sum()
    either = (active[:, 0] | active[:, 1]).sum()
    assert neighbours["n_both"].iloc[0] == both == 80
    assert neighbours["jaccard"].iloc[0] == pytest.approx(both / either)
    # Only latents sharing a protein are listed: not the dead latent, not C's latent.
    assert set(neighbours["latent"]) == {1, 2, 3}
    assert neighbours["jaccard"].is_monotonic_decreasing


def test_interval_examples_cover_the_activation_range():
    codes = planted_codes()
    card = make_card(3, codes, n_intervals=4, per_interval=5)
    examples = card.interval_examples
    assert list(examples.columns)[:6] == ["interval", "low", "high", "row", "id", "activation"]
    assert (examples.groupby("interval").size() <= 5).all()
    np.testing.assert_allclose(examples["activation"], codes[examples["row"], 3])
    assert (examples["activation"] > examples["low"]).all()
    assert (examples["activation"] <= examples["high"] + 1e-12).all()
    np.testing.assert_allclose(np.unique(np.r_[examples["low"], examples["high"]]),
                               np.linspace(0, card.max, 5))
    assert examples["interval"].is_monotonic_decreasing
    # Uniform activations on (0.2, 3]: every quarter of (0, max] but the first holds more than 5 proteins.
    assert examples.groupby("interval").size().loc[[1, 2, 3]].tolist() == [5, 5, 5]


def test_interval_examples_are_seeded():
    first = make_card(2, random_state=3).interval_examples
    again = make_card(2, random_state=3).interval_examples
    other = make_card(2, random_state=4).interval_examples
    pd.testing.assert_frame_equal(first, again)
    assert first["row"].tolist() != other["row"].tolist()


def test_associations_keep_each_label_at_its_best_threshold():
    table = hand_associations()
    card = make_card(0)
    associations = card.associations
    assert set(associations["latent"]) == {0}
    assert associations["label"].iloc[0] == "A"
    assert associations["threshold"].iloc[0] == 0.0
    assert associations["f1"].iloc[0] == pytest.approx(0.9)
    assert not associations["label"].duplicated().any()
    assert associations["f1"].is_monotonic_decreasing
    assert list(associations.columns) == list(table.columns)


def test_associations_are_limited_to_the_best_labels():
    table = pd.DataFrame({
        "latent": 0, "label": [f"L{i}" for i in range(30)], "f1": np.linspace(0, 1, 30),
    })
    associations = make_card(0, associations=table).associations
    assert len(associations) == N_ASSOCIATIONS
    assert associations["label"].tolist() == [f"L{i}" for i in range(29, 29 - N_ASSOCIATIONS, -1)]


def test_associations_are_computed_on_the_fly_from_labels():
    card = make_card(0, associations=None)
    associations = card.associations
    assert {"latent", "label_set", "label", "threshold", "precision", "recall", "f1"} <= set(associations.columns)
    assert set(associations["latent"]) == {0}
    best = associations.iloc[0]
    assert (best["label_set"], best["label"]) == ("location", "A")
    assert best["f1"] == pytest.approx(associations["f1"].max())


def test_cards_without_labels_components_or_associations():
    card = feature_card(planted_codes(), 0)
    assert card.top_proteins["id"].tolist() == card.top_proteins["row"].tolist()
    assert list(card.top_proteins.columns) == ["row", "id", "activation"]
    assert card.composition.empty and card.associations.empty and card.decoder_neighbours.empty
    assert not card.coactivation_neighbours.empty


def test_dead_latent_card_is_empty_but_valid():
    card = make_card(4)
    assert card.n_active == 0 and card.max == 0 and np.isnan(card.mean_active)
    assert card.histogram_counts.sum() == 0
    assert card.top_proteins.empty and card.interval_examples.empty and card.coactivation_neighbours.empty
    json.dumps(card.to_dict(), allow_nan=False)


@pytest.mark.parametrize(
    "make_other, make_reference",
    [
        (sp.csr_matrix, np.asarray),
        (sp.csc_matrix, np.asarray),
        (sp.coo_matrix, np.asarray),
        (lambda codes: sp.csr_matrix(codes.astype(np.float32)), lambda codes: codes.astype(np.float32)),
    ],
    ids=["csr", "csc", "coo", "float32"],
)
def test_dense_and_sparse_codes_give_the_same_card(make_other, make_reference):
    codes = planted_codes()
    for latent in range(N_LATENTS):
        assert make_card(latent, make_other(codes)).to_dict() == make_card(latent, make_reference(codes)).to_dict()


def test_sparse_codes_with_explicit_zeros_and_the_row_index_agree():
    from sklearn_sae.interpret._cards import CardSource

    codes = sp.csr_matrix(planted_codes())
    codes.data[::7] = 0.0  # explicit zeros must not count as active
    dense = codes.toarray()
    source = CardSource(codes)
    alone = source.card_content(0)
    source.use_row_index()
    indexed = source.card_content(0)
    assert alone["n_active"] == np.count_nonzero(dense[:, 0]) == indexed["n_active"]
    for name in ("latent", "jaccard", "n_both"):
        np.testing.assert_array_equal(alone["coactivation_neighbours"][name], indexed["coactivation_neighbours"][name])


def test_to_dict_is_json_safe_and_rebuilds_the_tables():
    card = make_card(0)
    content = card.to_dict()
    text = json.dumps(content, allow_nan=False)
    back = json.loads(text)
    assert back["latent"] == 0 and back["n_active"] == 95
    assert len(back["histogram"]["counts"]) == N_HISTOGRAM_BINS
    assert len(back["histogram"]["edges"]) == N_HISTOGRAM_BINS + 1
    for name in FeatureCard.TABLES:
        rebuilt = pd.DataFrame(back[name]["rows"], columns=back[name]["columns"])
        assert rebuilt.shape == getattr(card, name).shape
    assert back["top_proteins"]["rows"][0][1] == card.top_proteins["id"].iloc[0]


def test_to_dict_turns_missing_and_numpy_values_into_json():
    labels = pd.DataFrame({"location": pd.Series(LOCATIONS, dtype="category"),
                           "maybe": np.where(np.arange(N_PROTEINS) % 2 == 0, None, "yes")})
    card = make_card(0, labels=labels, ids=np.arange(N_PROTEINS) * 10)
    content = card.to_dict()
    json.dumps(content, allow_nan=False)
    top = content["top_proteins"]
    maybe = [row[top["columns"].index("maybe")] for row in top["rows"]]
    assert set(maybe) <= {None, "yes"} and None in maybe
    assert all(isinstance(row[top["columns"].index("id")], int) for row in top["rows"])


def test_labels_as_an_array_or_a_series():
    from_array = make_card(0, labels=LOCATIONS)
    assert "label" in from_array.top_proteins.columns
    from_series = make_card(0, labels=pd.Series(LOCATIONS, name="where", index=np.arange(N_PROTEINS) + 1000))
    assert from_series.top_proteins["where"].tolist() == ["A"] * 20


# --------------------------------------------------------------------------------------------------
# Figure


def test_plot_feature_card_returns_a_figure_with_the_six_panels():
    fig = plot_feature_card(make_card(0))
    assert isinstance(fig, Figure)
    assert [ax.get_title(loc="left") for ax in fig.axes] == [
        PANEL_TITLES[name] for name in ("histogram", "composition", "top", "associations", "decoder", "coactivation")
    ]
    assert "Latent 0" in fig._suptitle.get_text()
    histogram = fig.axes[0]
    assert sum(patch.get_height() for patch in histogram.patches) == 95


def test_plot_feature_card_of_a_dead_latent_without_extras():
    fig = plot_feature_card(feature_card(planted_codes(), 4))
    texts = [text.get_text() for ax in fig.axes for text in ax.texts]
    assert "dead latent: never active" in texts
    assert "no labels given" in texts


def test_plot_feature_card_rejects_other_objects():
    with pytest.raises(TypeError, match="FeatureCard"):
        plot_feature_card({"latent": 0})


# --------------------------------------------------------------------------------------------------
# Errors


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"latent": 6}, ValueError, r"latent must be in \[0, 6\)"),
        ({"latent": -1}, ValueError, r"latent must be in \[0, 6\)"),
        ({"latent": 1.0}, TypeError, "latent must be an int"),
        ({"ids": ["a", "b"]}, ValueError, "ids has 2 entries but codes has 400 rows"),
        ({"labels": LOCATIONS[:10]}, ValueError, "labels has 10 rows but codes has 400 rows"),
        ({"labels": np.zeros((N_PROTEINS, 2))}, ValueError, "must be 1-D"),
        ({"labels": 3}, TypeError, "labels must be a pandas DataFrame"),
        ({"labels": pd.DataFrame({"id": LOCATIONS})}, ValueError, "clash"),
        ({"components": np.ones((5, 16))}, ValueError, r"components must have shape \(n_latents, n_features\)"),
        ({"components": np.ones(6)}, ValueError, "components must have shape"),
        ({"components": np.full((6, 3), np.nan)}, ValueError, "NaN"),
        ({"associations": pd.DataFrame({"latent": [0]})}, ValueError, r"lacks the column\(s\) \['label', 'f1'\]"),
        ({"associations": [1, 2]}, TypeError, "associations must be a pandas DataFrame"),
        ({"n_top": 0}, ValueError, "n_top must be at least 1"),
        ({"n_intervals": 2.5}, TypeError, "n_intervals must be an int"),
        ({"random_state": "seed"}, TypeError, "random_state must be an int or None"),
    ],
)
def test_invalid_options_raise_clear_errors(change, error, message):
    options = {"latent": 0, **change}
    latent = options.pop("latent")
    with pytest.raises(error, match=message):
        make_card(latent, **options)


@pytest.mark.parametrize(
    "codes, error, message",
    [
        (-planted_codes(), ValueError, "non-negative"),
        (sp.csr_matrix(-planted_codes()), ValueError, "non-negative"),
        (np.full((3, 2), np.nan), ValueError, "NaN"),
        (np.full((3, 2), np.inf), ValueError, "infinite"),
        (np.zeros(5), ValueError, "2-D"),
        (np.zeros((2, 2, 2)), ValueError, "2-D"),
        (np.array([["a", "b"]]), TypeError, "real numbers"),
    ],
)
def test_invalid_codes_raise_clear_errors(codes, error, message):
    with pytest.raises(error, match=message):
        feature_card(codes, 0)


# --------------------------------------------------------------------------------------------------
# Atlas


def read_atlas_data(path):
    text = pathlib.Path(path).read_text(encoding="utf-8")
    match = re.search(r'<script id="atlas-data" type="application/json">(.*?)</script>', text, re.DOTALL)
    assert match, "the atlas has no data element"
    return text, json.loads(match.group(1))


def write_planted_atlas(tmp_path, **options):
    options.setdefault("ids", planted_ids())
    options.setdefault("labels", planted_labels())
    options.setdefault("components", planted_components())
    options.setdefault("associations", hand_associations())
    return write_atlas(tmp_path / "atlas.html", sp.csr_matrix(planted_codes()), **options)


def test_atlas_is_written_and_holds_every_latent(tmp_path):
    path = write_planted_atlas(tmp_path, title="Planted")
    assert path == tmp_path / "atlas.html" and path.is_file()
    text, data = read_atlas_data(path)
    assert "<title>Planted</title>" in text
    assert data["table"]["latent"] == list(range(N_LATENTS))
    assert data["table"]["n_active"] == [int(n) for n in np.count_nonzero(planted_codes(), axis=0)]
    assert data["table"]["best_label"][0] == "A" and data["table"]["best_label"][3] == "B"
    assert sorted(data["cards"], key=int) == ["0", "1", "2", "3", "5"]  # the dead latent 4 has no card
    assert data["meta"]["n_proteins"] == N_PROTEINS and data["meta"]["label_sets"] == ["location", "length_class"]
    assert list(tmp_path.iterdir()) == [path]  # the temporary file was renamed, nothing left behind


def test_atlas_page_files_ship_as_package_data():
    import importlib.resources

    assets = importlib.resources.files("sklearn_sae.interpret").joinpath("atlas")
    assert sorted(entry.name for entry in assets.iterdir() if not entry.name.startswith(".")) == [
        "atlas.css", "atlas.js", "error-trap.js", "page.html"
    ]
    page = assets.joinpath("page.html").read_text(encoding="utf-8")
    for placeholder in ("@@STYLE@@", "@@ERROR_TRAP@@", "@@SCRIPT@@", "@@DATA@@", "@@TITLE@@"):
        assert placeholder in page


def test_atlas_is_self_contained(tmp_path):
    text = write_planted_atlas(tmp_path).read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", text, re.IGNORECASE)
    assert "<link" not in text and "@import" not in text and "url(" not in text
    assert not re.search(r"""(fetch|XMLHttpRequest|import\s*\()""", text)
    assert text.count("<script") == 3  # error trap, data, page script: nothing else


def test_atlas_cards_match_feature_card(tmp_path):
    options = {"n_top": 7, "n_intervals": 3, "per_interval": 2, "n_neighbours": 4, "random_state": 5}
    _, data = read_atlas_data(write_planted_atlas(tmp_path, **options))
    columns = data["meta"]["columns"]
    for latent in (0, 3):
        card = make_card(latent, **options)
        atlas_card = data["cards"][str(latent)]
        id_at = columns["top"].index("id")
        assert [row[id_at] for row in atlas_card["top"]] == card.top_proteins["id"].tolist()
        assert [row[columns["examples"].index("id")] for row in atlas_card["examples"]] == \
            card.interval_examples["id"].tolist()
        assert atlas_card["hist"] == card.histogram_counts.tolist()
        assert [row[0] for row in atlas_card["decoder"]] == card.decoder_neighbours["latent"].tolist()
        assert [row[0] for row in atlas_card["coactivation"]] == card.coactivation_neighbours["latent"].tolist()
        location_at = columns["top"].index("location")
        values = data["meta"]["label_values"]["location"]
        assert [values[row[location_at]] for row in atlas_card["top"]] == card.top_proteins["location"].tolist()


def test_atlas_escapes_user_strings(tmp_path):
    ids = planted_ids()
    ids[int(np.argmax(planted_codes()[:, 0]))] = MALICIOUS  # the top protein of latent 0
    labels = planted_labels()
    labels["location"] = labels["location"].replace({"B": "<img src=x onerror=alert(2)>"})
    path = write_planted_atlas(tmp_path, ids=ids, labels=labels, associations=None,
                               title="<b>bold</b> & </title>")
    text, data = read_atlas_data(path)
    assert MALICIOUS not in text
    assert "<img" not in text and "<b>bold" not in text
    assert "&lt;b&gt;bold&lt;/b&gt; &amp; &lt;/title&gt;" in text
    assert text.count("</script>") == 3
    top = data["cards"]["0"]["top"]
    assert top[0][data["meta"]["columns"]["top"].index("id")] == MALICIOUS
    assert "<img src=x onerror=alert(2)>" in data["meta"]["label_values"]["location"]


def test_json_for_script_escapes_markup_and_line_separators():
    text = json_for_script({"a": "</script>&<!--\u2028\u2029"})
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == {"a": "</script>&<!--\u2028\u2029"}


def test_atlas_computes_associations_from_labels(tmp_path):
    _, data = read_atlas_data(write_planted_atlas(tmp_path, associations=None))
    assert data["meta"]["has_associations"]
    assert data["table"]["best_label"][0] == "location: A"
    assert "label_set" in data["meta"]["columns"]["associations"]


@pytest.mark.parametrize("cards_for, expected", [("all", 6), ("active", 5), ("none", 0)])
def test_atlas_cards_for(tmp_path, cards_for, expected):
    _, data = read_atlas_data(write_planted_atlas(tmp_path, cards_for=cards_for))
    assert len(data["cards"]) == expected == data["meta"]["n_cards"]
    assert len(data["table"]["latent"]) == N_LATENTS


def test_atlas_lists_only_the_chosen_latents(tmp_path):
    _, data = read_atlas_data(write_planted_atlas(tmp_path, latents=[5, 0, 4]))
    assert data["table"]["latent"] == [5, 0, 4]
    assert sorted(data["cards"]) == ["0", "5"]


def test_atlas_without_labels_or_components(tmp_path):
    path = write_atlas(tmp_path / "plain.html", planted_codes(), progress=True)
    _, data = read_atlas_data(path)
    assert not data["meta"]["has_associations"] and not data["meta"]["has_components"]
    assert "best_label" not in data["table"]
    assert data["cards"]["0"]["decoder"] == []


def test_atlas_replaces_an_existing_file_only_when_complete(tmp_path, monkeypatch):
    path = tmp_path / "atlas.html"
    write_planted_atlas(tmp_path, title="old atlas")
    old = path.read_bytes()
    write_planted_atlas(tmp_path)
    assert path.read_text(encoding="utf-8").startswith("<!DOCTYPE html>") and path.read_bytes() != old
    old = path.read_bytes()

    import sklearn_sae.interpret._atlas as atlas_module

    def broken_write(*args, **kwargs):
        raise OSError("disk full")

    monkeypatch.setattr(atlas_module.os, "replace", broken_write)
    with pytest.raises(OSError, match="disk full"):
        write_planted_atlas(tmp_path, title="new atlas")
    assert path.read_bytes() == old
    assert list(tmp_path.iterdir()) == [path]


@pytest.mark.parametrize(
    "change, error, message",
    [
        ({"cards_for": "some"}, ValueError, "cards_for must be one of"),
        ({"latents": [0, 0]}, ValueError, "more than once"),
        ({"latents": [6]}, ValueError, r"latents must be in \[0, 6\)"),
        ({"latents": [0.5]}, TypeError, "latents must hold ints"),
        ({"n_top": 0}, ValueError, "n_top must be at least 1"),
        ({"title": 3}, TypeError, "title must be a str"),
        ({"ids": ["a"]}, ValueError, "ids has 1 entries"),
    ],
)
def test_atlas_invalid_options_raise_clear_errors(tmp_path, change, error, message):
    with pytest.raises(error, match=message):
        write_planted_atlas(tmp_path, **change)
    assert list(tmp_path.iterdir()) == []


def test_atlas_path_must_be_in_an_existing_folder(tmp_path):
    with pytest.raises(ValueError, match="does not exist"):
        write_atlas(tmp_path / "missing" / "atlas.html", planted_codes())
    with pytest.raises(ValueError, match="is a folder"):
        write_atlas(tmp_path, planted_codes())


def test_on_the_fly_associations_skip_single_class_label_sets_and_missing_labels():
    labels = planted_labels()
    labels["constant"] = "same"  # one class: nothing to associate, and label_associations would refuse it
    labels.loc[labels.index % 4 == 0, "location"] = None  # unknown location: left out, not a negative
    card = make_card(0, labels=labels, associations=None)
    assert "constant" not in set(card.associations["label_set"])
    location = card.associations[card.associations["label_set"] == "location"]
    assert location["n_pos"].max() == 75  # A's 100 proteins minus the 25 with an unknown location
    assert set(card.composition["label_set"]) == {"location", "length_class", "constant"}


def test_atlas_table_marks_dead_latents(tmp_path):
    _, data = read_atlas_data(write_planted_atlas(tmp_path))
    assert data["table"]["n_active"][4] == 0
    assert data["table"]["mean_active"][4] is None  # NaN, as latent_stats, written as null
    assert data["table"]["max"][4] == 0


def test_page_code_cannot_close_its_own_elements():
    from sklearn_sae.interpret._atlas_page import _asset

    for name in ("error-trap.js", "atlas.js", "atlas.css"):
        code = _asset(name)
        assert "</" not in code and "<!--" not in code and "@@" not in code and "<script" not in code, name
