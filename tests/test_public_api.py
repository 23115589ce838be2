"""The public surface: names importable where the README says, and interpret without PyTorch."""

import subprocess
import sys

import sklearn_sae


def test_top_level_names_resolve():
    for name in sklearn_sae.__all__:
        assert getattr(sklearn_sae, name).__name__ == name
    assert set(sklearn_sae.__all__) <= set(dir(sklearn_sae))


def test_interpret_does_not_import_torch():
    code = "import sys, sklearn_sae.interpret; sys.exit('torch' in sys.modules or 'skorch' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code]).returncode == 0


def test_unknown_attribute_is_an_attribute_error():
    import pytest

    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        sklearn_sae.nope  # noqa: B018
