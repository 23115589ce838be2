# Entry points, each sets up .venv on first use:
#   make demo   train the SAEs of the comparison on data/per-protein.h5 and write results/compare_activations/
#   make test   run the test suite
#   make docs   build the HTML API reference and user guide into docs/_build/html, and run the
#               docstring examples (sphinx doctest); warnings are errors
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Installed only when the venv has no torch. On this project's machines torch==2.13.0 resolves to a
# local CPU build (a bare "torch" would pull the multi-GB CUDA build); elsewhere, install the torch
# you want into .venv first, or set TORCH_SPEC (e.g. "torch --index-url https://download.pytorch.org/whl/cpu").
TORCH_SPEC ?= torch==2.13.0
# Test processes (pytest-xdist): one per core by default; each runs whole files, so a file's
# module-scoped fixtures are built once. TEST_WORKERS=0 runs the suite in this process.
TEST_WORKERS ?= auto

.PHONY: demo test venv clean docs

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -c "import torch" 2>/dev/null || $(PY) -m pip install --quiet $(TORCH_SPEC)
	$(PY) -m pip install --quiet -e ".[test]"
	touch $@

venv: $(VENV)/.installed

demo: venv
	$(PY) examples/compare_activations.py

test: venv
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile

# Sphinx and numpydoc, on top of the package and its test extra.
$(VENV)/.docs-installed: $(VENV)/.installed pyproject.toml
	$(PY) -m pip install --quiet -e ".[test,docs]"
	touch $@

docs: $(VENV)/.docs-installed
	$(VENV)/bin/sphinx-build -W --keep-going -q -b html docs docs/_build/html
	$(VENV)/bin/sphinx-build -W -q -b doctest docs docs/_build/doctest

clean:
	rm -rf $(VENV) results build *.egg-info docs/_build docs/generated
