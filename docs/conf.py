"""Sphinx configuration: the API reference and user guide of sklearn-sae.

Built offline (no intersphinx, builtin theme) by ``make docs`` with warnings as errors.
"""

import os
import sys

sys.path.insert(0, os.path.abspath(".."))

import sklearn_sae  # noqa: E402

project = "sklearn-sae"
author = "The sklearn-sae developers"
copyright = "The sklearn-sae developers"
version = release = sklearn_sae.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.doctest",
    "numpydoc",
    "myst_parser",  # the guide pages written in Markdown (moved from the README)
]

source_suffix = {".rst": "restructuredtext", ".md": "markdown"}
myst_heading_anchors = 3  # "page.md#section" links resolve to the section

exclude_patterns = ["_build", "images/*.md"]
templates_path = []
html_theme = "alabaster"
html_static_path = []

autosummary_generate = True
autosummary_imported_members = False
autodoc_default_options = {"members": True, "inherited-members": False}
autodoc_typehints = "none"

numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

# The docstring examples run under the doctest builder; plain ``>>>`` blocks count as tests.
doctest_test_doctest_blocks = "default"
doctest_global_setup = "import numpy as np"

# Parameter types stay plain text. numpydoc's type parsing is on only so that a fitted attribute
# in a shape, "ndarray of shape (n_latents_, n_features_in_)", is shown as a literal instead of being
# read as a reST link target ("n_latents_"). Its default aliases point into the Python and NumPy
# docs through intersphinx, which this offline build does not load: each is mapped to itself,
# which with numpydoc_xref_ignore = "all" leaves the word as text.
from numpydoc.xref import DEFAULT_LINKS  # noqa: E402

numpydoc_xref_param_type = True
numpydoc_xref_ignore = "all"
numpydoc_xref_aliases = {name: name for name in DEFAULT_LINKS} | {
    name: f"``{name}``" for name in ("n_latents_", "n_features_in_")
}
numpydoc_xref_aliases["n_features_in_,"] = "``n_features_in_``,"  # in "(n_features_in_,)"


def _skip_metadata_request(app, what, name, obj, skip, options):
    """Leave out scikit-learn's generated ``set_*_request`` methods (metadata routing)."""
    if name.startswith("set_") and name.endswith("_request"):
        return True
    return skip


def setup(app):
    app.connect("autodoc-skip-member", _skip_metadata_request)
