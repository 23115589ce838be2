"""The estimator's docstring specifies: a few lines per parameter, no history, no benchmark figures."""

import inspect
import re

import pytest

import sklearn_sae
from sklearn_sae import SparseAutoencoderTransformer


def _section(doc, title):
    lines = doc.splitlines()
    start = lines.index(title) + 2  # the title and its underline
    end = next(i for i in range(start, len(lines)) if i + 1 < len(lines) and set(lines[i + 1]) == {"-"})
    return lines[start:end]


def test_parameter_text_fits_a_few_screens():
    assert len(_section(inspect.getdoc(SparseAutoencoderTransformer), "Parameters")) < 150


HISTORY = re.compile(r"\bthe seed's\b|\bformer default\b|\bused to be\b|\bpreviously\b", re.IGNORECASE)


@pytest.mark.parametrize("name", ["SparseAutoencoderTransformer", *sorted(
    name for name in dir(SparseAutoencoderTransformer) if not name.startswith("_"))])
def test_docstrings_speak_of_the_code_not_its_history(name):
    obj = SparseAutoencoderTransformer if name == "SparseAutoencoderTransformer" else getattr(
        SparseAutoencoderTransformer, name)
    doc = inspect.getdoc(obj) or ""
    assert not HISTORY.search(doc), HISTORY.search(doc)


def test_package_docstring_has_no_history():
    assert not HISTORY.search(sklearn_sae.__doc__ or "")
