"""The README's table of activations says what the code does: every activation, and the terms each trains with."""

import re
from pathlib import Path

import pytest

from sklearn_sae import SparseAutoencoderTransformer
from sklearn_sae._params import PARAMETER_CONSTRAINTS, training_settings

README = Path(__file__).resolve().parents[1] / "README.md"
ACTIVATIONS = sorted(next(c for c in PARAMETER_CONSTRAINTS["activation"]).options)


def _table():
    """``{activation: "trained with" cell}`` of the README's table of activations."""
    rows = {}
    for line in README.read_text(encoding="utf-8").splitlines():
        match = re.match(r"\| `(\w+)` \|.*\| (.+) \|$", line)
        if match and match.group(1) in ACTIVATIONS:
            rows[match.group(1)] = match.group(2)
    return rows


def test_the_table_lists_every_activation_and_only_those():
    assert sorted(_table()) == ACTIVATIONS


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_each_row_names_the_terms_a_default_fit_trains_with(activation):
    settings = training_settings(SparseAutoencoderTransformer(activation=activation).get_params())
    terms = _table()[activation]
    assert terms.startswith("NMSE")
    assert ("`l1_coef` * L1" in terms) == (settings.l1_coef > 0)
    assert ("`l0_coef` * L0" in terms) == (settings.l0_coef > 0)
    assert ("AuxK" in terms) == (settings.aux_coef > 0)
    assert ("dead latents' pre-activations" in terms) == (settings.pre_act_coef > 0)
