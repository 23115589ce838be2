"""The page of the HTML atlas: its markup, style and script, put together into one self-contained file.

The page's HTML, CSS and JavaScript are files of their own in ``atlas/``
(package data, read with :mod:`importlib.resources`), where editors and
linters see them as what they are; this module fills the placeholders of
``page.html`` with them and with the atlas's data. The page loads nothing from anywhere: the data sits in a
``<script type="application/json">`` element that the script parses once,
and every value taken from it reaches the page through ``textContent`` or
SVG attributes, never as markup, so protein ids and label names cannot
inject HTML or script.

Markers the page writes for automated checks (see ``tests/test_atlas_browser.py``):
``data-atlas-status="rendered"`` on ``<html>`` once the table is drawn,
``data-card="<latent>"`` once a card is drawn, and one ``.atlas-js-error``
element (plus ``data-atlas-error``) per uncaught script error.
"""

from __future__ import annotations

import functools
import html
import importlib.resources

__all__ = ["render_page"]

ASSETS = "atlas"
"""The folder of the page's files, beside this module: ``page.html`` (with ``@@NAME@@`` placeholders),
``atlas.css``, ``atlas.js`` and ``error-trap.js``; package data, so they ship in the wheel."""


@functools.lru_cache(maxsize=None)
def _asset(name: str) -> str:
    return importlib.resources.files(__package__).joinpath(ASSETS, name).read_text(encoding="utf-8")


def render_page(*, title, summary, footer, generator, data_json):
    """The whole atlas page.

    Parameters
    ----------
    title, summary, footer, generator : str
        Plain text; HTML-escaped here.
    data_json : str
        The atlas data as JSON that is already safe inside a ``<script>``
        element (no ``<``, ``>`` or ``&`` left unescaped).

    Returns
    -------
    str
    """
    pieces = {
        "@@TITLE@@": html.escape(title),
        "@@SUMMARY@@": html.escape(summary),
        "@@FOOTER@@": html.escape(footer),
        "@@GENERATOR@@": html.escape(generator),
        "@@STYLE@@": _asset("atlas.css"),
        "@@ERROR_TRAP@@": _asset("error-trap.js"),
        "@@SCRIPT@@": _asset("atlas.js"),
        "@@DATA@@": data_json,
    }
    page = _asset("page.html")
    # One pass over the placeholders, in the template only: substituted text is never searched again,
    # so a title that happens to contain "@@DATA@@" stays text.
    parts = []
    position = 0
    while True:
        start = page.find("@@", position)
        if start < 0:
            parts.append(page[position:])
            break
        stop = page.index("@@", start + 2) + 2
        parts.append(page[position:start])
        parts.append(pieces[page[start:stop]])
        position = stop
    return "".join(parts)
