"""The HTML atlas in a real browser: headless Chromium opens the file from disk, runs its script, and
we read back the DOM it built (``--dump-dom``) and a screenshot.

The page marks its own state for these checks: ``data-atlas-status="rendered"`` on ``<html>`` once
the table is drawn, ``data-card="<latent>"`` once a card is drawn, and ``data-atlas-error`` plus an
``.atlas-js-error`` element for each uncaught script error. Chromium's console log (stderr) is
checked too. Install the browser with ``apt-get install chromium``; without it these tests skip.
"""

import re
import shutil
import subprocess

import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp

from sklearn_sae.interpret import write_atlas

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = pytest.mark.skipif(
    CHROMIUM is None, reason="no chromium binary on PATH (apt-get install chromium): the atlas is not opened in a browser"
)

N_PROTEINS = 3_000
N_LATENTS = 2_000
PAGE_SIZE = 50
MALICIOUS = "</script><script>alert(1)</script>"
LOCATIONS = np.array(["Nucleus", "Cytoplasm", "Membrane", "Secreted", "Mitochondrion"])


def random_atlas_inputs():
    rng = np.random.default_rng(0)
    codes = sp.random(N_PROTEINS, N_LATENTS, density=0.01, format="csc", random_state=rng,
                      data_rvs=lambda n: rng.gamma(2.0, 0.5, n))
    codes.data[codes.indptr[7]:codes.indptr[8]] = 0  # one dead latent
    codes.eliminate_zeros()
    ids = np.array([f"P{i:05d}" for i in range(N_PROTEINS)], dtype=object)
    ids[codes[:, 5].argmax()] = MALICIOUS  # the top protein of latent 5, shown when its card opens
    labels = pd.DataFrame({
        "location": rng.choice(LOCATIONS, N_PROTEINS),
        "length_class": rng.choice(["short", "medium", "long"], N_PROTEINS),
    })
    associations = pd.DataFrame({
        "latent": np.repeat(np.arange(N_LATENTS), 2),
        "label_set": np.tile(["location", "length_class"], N_LATENTS),
        "label": np.column_stack([rng.choice(LOCATIONS, N_LATENTS), rng.choice(["short", "long"], N_LATENTS)]).ravel(),
        "threshold": 0.0,
        "precision": rng.uniform(0, 1, 2 * N_LATENTS),
        "recall": rng.uniform(0, 1, 2 * N_LATENTS),
    })
    associations["f1"] = 2 / (1 / associations["precision"] + 1 / associations["recall"])
    components = rng.normal(size=(N_LATENTS, 32))
    return codes, ids, labels, associations, components


@pytest.fixture(scope="module")
def atlas(tmp_path_factory):
    codes, ids, labels, associations, components = random_atlas_inputs()
    path = tmp_path_factory.mktemp("atlas") / "atlas.html"
    write_atlas(path, codes, ids=ids, labels=labels, components=components, associations=associations,
                title="Browser test atlas")
    density = np.diff(codes.indptr) / N_PROTEINS
    return path, density


def open_in_chromium(url, tmp_path, *options):
    """Run headless Chromium on ``url``; return its stdout and its console messages about the page."""
    command = [
        CHROMIUM, "--headless", "--disable-gpu", "--no-sandbox", "--no-first-run", "--disable-extensions",
        "--disable-dev-shm-usage", f"--user-data-dir={tmp_path / 'profile'}", "--enable-logging=stderr", "--v=0",
        "--virtual-time-budget=10000", *options, url,
    ]
    done = subprocess.run(command, check=False, capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr[-2000:]
    console = [line for line in done.stderr.splitlines() if "CONSOLE" in line]
    return done.stdout, console


def html_tag(dom):
    match = re.search(r"<html[^>]*>", dom)
    assert match, dom[:500]
    return match.group(0)


def assert_no_script_errors(dom, console):
    assert "data-atlas-error" not in html_tag(dom), re.findall(r'class="atlas-js-error">([^<]*)', dom)
    assert 'class="atlas-js-error"' not in dom
    assert console == [], console  # the page itself never logs: any message is an error or a warning


def test_table_and_card_render_without_errors(atlas, tmp_path):
    path, _ = atlas
    dom, console = open_in_chromium(path.as_uri() + "#latent=5", tmp_path, "--dump-dom")
    assert_no_script_errors(dom, console)
    tag = html_tag(dom)
    assert 'data-atlas-status="rendered"' in tag
    assert 'data-card="5"' in tag
    rows = re.findall(r'<tr[^>]*data-latent="(\d+)"', dom)
    assert rows == [str(latent) for latent in range(PAGE_SIZE)]
    assert f"Latents 1–{PAGE_SIZE} of {N_LATENTS:,}" in dom
    assert "<h2>Latent 5</h2>" in dom
    assert len(re.findall(r'<rect class="bin"', dom)) > 5  # the histogram was drawn
    # The malicious id is shown as text in the card, never run.
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;" in dom
    assert "<script>alert(1)" not in dom


def test_sorting_and_filtering_from_the_url(atlas, tmp_path):
    path, density = atlas
    dom, console = open_in_chromium(path.as_uri() + "#sort=-density&active=1", tmp_path, "--dump-dom")
    assert_no_script_errors(dom, console)
    rows = [int(latent) for latent in re.findall(r'<tr[^>]*data-latent="(\d+)"', dom)]
    expected = sorted(np.flatnonzero(density > 0), key=lambda latent: (-density[latent], latent))[:PAGE_SIZE]
    assert rows == expected
    assert "(filtered from 2,000)" in dom  # the dead latent is hidden by active=1


def test_screenshot_of_an_open_card(atlas, tmp_path):
    path, _ = atlas
    screenshot = tmp_path / "atlas.png"
    _, console = open_in_chromium(path.as_uri() + "#latent=12", tmp_path, "--hide-scrollbars",
                                  "--window-size=1400,900", f"--screenshot={screenshot}")
    assert console == [], console
    image = screenshot.read_bytes()
    assert image.startswith(b"\x89PNG\r\n\x1a\n")
    assert len(image) > 20_000  # a blank page is a few kB
