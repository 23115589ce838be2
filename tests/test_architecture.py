"""The package's layers: every import points down, and a few things exist in exactly one place.

The imports are read from the source (every ``import`` statement, also those inside functions), so a
lazy import cannot hide an upward dependency.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "sklearn_sae"

LAYERS = {
    # 0: no package imports
    "_warnings": 0, "_atomic": 0, "_device": 0, "_blocks": 0,
    # 1-2: the maths (the measures warn about rows they leave out)
    "metrics": 1, "_defaults": 1, "_activations": 1, "_sparse_ops": 1, "_precision": 1,
    "_model": 2,
    # 3-5: parameters, rows and training
    "_params": 3, "_rows": 3, "_checkpoint": 3, "_plateau": 3,
    "_training": 4, "_persistence": 4,
    "_distributed": 5, "_incremental": 5, "_interop": 5,
    # 6: the sklearn face
    "_transformer": 6,
    # 7: what works on fitted estimators, codes and files, given to it by the user
    "calibration": 7, "datasets": 7, "interpret": 7, "plotting": 7, "evaluate": 7,
    # 8: the entry points
    "_cli": 8, "__init__": 8, "__main__": 9,
}  # fmt: skip
"""Each top-level module (or subpackage) of the package and its layer: a module imports only lower layers."""


def _modules():
    return sorted(path for path in PACKAGE.rglob("*.py") if "__pycache__" not in path.parts)


def _top_level(path: Path) -> str:
    """The top-level module or subpackage ``path`` belongs to (``datasets`` for ``datasets/_codes.py``)."""
    parts = path.relative_to(PACKAGE).with_suffix("").parts
    return parts[0]


def _imported_modules(path: Path):
    """The top-level package modules ``path`` imports, anywhere in its source."""
    package_parts = ("sklearn_sae", *path.relative_to(PACKAGE).parent.parts)
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package_parts[: len(package_parts) - node.level + 1] if node.level else ()
            module = ".".join((*base, node.module)) if node.module else ".".join(base)
            # "from . import _interop" imports modules by name
            names = [module] + [f"{module}.{alias.name}" for alias in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[0] == "sklearn_sae" and len(parts) > 1 and parts[1] in LAYERS:
                yield parts[1], node.lineno


@pytest.mark.parametrize("path", _modules(), ids=lambda path: str(path.relative_to(PACKAGE)))
def test_imports_point_down(path):
    source = _top_level(path)
    assert source in LAYERS, f"{source} has no layer: give it one in LAYERS"
    upward = sorted(
        {(target, line) for target, line in _imported_modules(path) if target != source and LAYERS[target] >= LAYERS[source]}
    )
    assert not upward, f"{path.name} imports modules of its own layer or above: {upward}"


def test_nothing_below_the_face_imports_the_estimator():
    for path in _modules():
        if _top_level(path) in ("_transformer", "__init__"):
            continue
        imported = {target for target, _ in _imported_modules(path)}
        assert "_transformer" not in imported, path


def _code_lines(path: Path):
    """The lines of ``path`` outside docstrings and comments."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    docstrings = {
        number
        for node in ast.walk(tree)
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef)) and ast.get_docstring(node) is not None
        for number in range(node.body[0].value.lineno, node.body[0].value.end_lineno + 1)
    }
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if number not in docstrings and not line.lstrip().startswith("#"):
            yield line


@pytest.mark.parametrize(
    "needle, home",
    [
        ("torch.manual_seed(", "_training.py"),  # one place seeds torch's global RNG
        ("2**24", "_blocks.py"),  # one block size for inference, codes I/O and dense-to-sparse conversions
        ("1 << 24", "_persistence.py"),  # (and one hashing chunk, which is another thing)
        ("default_rng([seed, epoch", "_rows.py"),  # one epoch-order scheme
        ("max_epochs - epochs_done", "_training.py"),  # one place runs a fit's epochs
    ],
)
def test_one_place_for(needle, home):
    places = [path.name for path in _modules() if any(needle in line for line in _code_lines(path))]
    assert places == [home]
