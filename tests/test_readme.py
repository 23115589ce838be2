"""The README is the front page: short, its examples run, and its links lead somewhere."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"


def _python_blocks(text):
    return re.findall(r"^```python\n(.*?)^```", text, flags=re.MULTILINE | re.DOTALL)


def test_readme_is_a_front_page():
    assert len(README.read_text(encoding="utf-8").splitlines()) < 250


def test_readme_examples_run_in_order(monkeypatch):
    """Every ```python block, run top to bottom in one namespace from the repository's root."""
    blocks = _python_blocks(README.read_text(encoding="utf-8"))
    assert len(blocks) >= 4
    monkeypatch.chdir(ROOT)
    namespace = {}
    for number, block in enumerate(blocks, start=1):
        exec(compile(block, f"README.md python block {number}", "exec"), namespace)
    assert namespace["codes"].shape == (2000, 512)
    search = namespace["search"]
    scores = search.cv_results_["mean_test_score"]
    assert scores[0] != scores[1]  # k reached the SAE: k=8 and k=32 make different pipelines
    best_k = search.best_params_["sae__k"]
    assert best_k == search.cv_results_["params"][scores.argmax()]["sae__k"]
    assert search.best_estimator_.named_steps["sae"].k == best_k
    assert (search.best_estimator_[:-1].transform(namespace["X"]) != 0).sum(axis=1).max() <= best_k
    X, saved, loaded = namespace["X"], namespace["sae"], namespace["same"]
    assert (loaded.transform(X) != saved.transform(X)).nnz == 0  # the loaded model is the saved one


def test_readme_links_lead_to_files():
    text = README.read_text(encoding="utf-8")
    links = re.findall(r"\]\(([^)#]+)(?:#[^)]*)?\)", text)
    paths = re.findall(r"`((?:docs|data|benchmarks|examples)/[\w./-]+)`", text)
    local = [target for target in links + paths if not target.startswith(("http://", "https://"))]
    assert len(local) >= 10
    assert [target for target in local if not (ROOT / target).exists()] == []
