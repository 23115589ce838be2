"""docs/api.rst and the public surface cannot drift apart.

Every name in an autosummary of the API page must be importable from the module that the page's
``currentmodule`` says, and every public module's ``__all__`` must be listed there.
"""

import importlib
import pkgutil
import re
from pathlib import Path

import pytest

import sklearn_sae

API_RST = Path(__file__).resolve().parents[1] / "docs" / "api.rst"


def _autosummary_entries(text):
    """``(module, name)`` for every entry of every autosummary directive, in page order."""
    entries, module, in_autosummary = [], None, False
    for line in text.splitlines():
        directive = re.match(r"\.\.\s+([\w:-]+)::\s*(\S*)", line.strip())
        if directive and not line[:1].isspace():
            in_autosummary = directive.group(1) == "autosummary"
            if directive.group(1) == "currentmodule":
                module = directive.group(2)
            continue
        if not in_autosummary:
            continue
        if line.strip() and not line[:1].isspace():
            in_autosummary = False  # back at the left margin: the directive's content has ended
        elif line.strip() and not line.strip().startswith(":"):  # skip options such as :toctree:
            assert module is not None, f"autosummary entry {line.strip()!r} before any currentmodule"
            entries.append((module, line.strip()))
    return entries


ENTRIES = _autosummary_entries(API_RST.read_text(encoding="utf-8"))


def test_api_page_lists_names():
    assert len(ENTRIES) >= 20
    assert len(set(ENTRIES)) == len(ENTRIES), "a name is listed twice under the same module"


@pytest.mark.parametrize(("module", "name"), ENTRIES, ids=[f"{m}.{n}" for m, n in ENTRIES])
def test_documented_name_is_importable(module, name):
    obj = getattr(importlib.import_module(module), name)
    assert obj.__name__ == name.rsplit(".", 1)[-1]


def test_public_names_are_documented():
    documented = {}
    for module, name in ENTRIES:
        documented.setdefault(module, set()).add(name)
    public_modules = ["sklearn_sae"] + [
        f"sklearn_sae.{info.name}" for info in pkgutil.iter_modules(sklearn_sae.__path__) if not info.name.startswith("_")
    ]
    for module in public_modules:
        exported = set(importlib.import_module(module).__all__)
        missing = exported - documented.get(module, set())
        assert not missing, f"{module}.__all__ has names that docs/api.rst does not list: {sorted(missing)}"
