"""Validation of user targets: elements, formulas, space groups, composition/space-group compatibility."""

from __future__ import annotations

import pytest

from crystalgen.errors import CrystalgenInputError, MalformedFormulaError, SpaceGroupError, UnknownElementError
from crystalgen.validation import check_spacegroup_compatible, parse_formula, validate_element, validate_spacegroup


@pytest.mark.parametrize(
    "formula, expected",
    [
        ("SrTiO3", {"Sr": 1, "Ti": 1, "O": 3}),
        ("Ca(OH)2", {"Ca": 1, "O": 2, "H": 2}),
        ("Fe2O3", {"Fe": 2, "O": 3}),
        ("NaCl", {"Na": 1, "Cl": 1}),
        ("  Fe2O3 ", {"Fe": 2, "O": 3}),
        ("Fe2 O3", {"Fe": 2, "O": 3}),
        ("Li2.0O", {"Li": 2, "O": 1}),
        ("C", {"C": 1}),
    ],
)
def test_parse_formula_ok(formula, expected):
    composition = parse_formula(formula)
    assert {str(el): amount for el, amount in composition.items()} == expected


def test_parse_formula_reduced(formula="Sr2Ti2O6"):
    assert parse_formula(formula).reduced_formula == "SrTiO3"


@pytest.mark.parametrize(
    "formula",
    ["", "   ", "2Fe", "Fe2O3!!", "Fe0.5Ni0.5", "fe2o3", "Fe2O3)", "(Fe", "()", "O0", "Fe-2", "Fe..O", None],
)
def test_parse_formula_malformed(formula):
    with pytest.raises(MalformedFormulaError):
        parse_formula(formula)


@pytest.mark.parametrize("formula, symbol", [("Xx2O", "Xx"), ("Qq", "Qq"), ("FeXx", "Xx"), ("Ab3", "Ab")])
def test_parse_formula_unknown_element(formula, symbol):
    with pytest.raises(UnknownElementError, match=symbol):
        parse_formula(formula)


def test_messages_name_the_value():
    with pytest.raises(MalformedFormulaError, match=r"Fe2O3!!"):
        parse_formula("Fe2O3!!")
    with pytest.raises(MalformedFormulaError, match="non-integer"):
        parse_formula("Fe0.5Ni0.5")


def test_parse_formula_zero_count_raises():
    with pytest.raises(MalformedFormulaError):
        parse_formula("NaCl0")


def test_error_hierarchy():
    for cls in (MalformedFormulaError, UnknownElementError, SpaceGroupError):
        assert issubclass(cls, CrystalgenInputError)


@pytest.mark.parametrize("symbol", ["Fe", "O", "Og", "H"])
def test_validate_element_ok(symbol):
    assert validate_element(symbol) == symbol


@pytest.mark.parametrize("symbol", ["Xx", "fe", "", "FE", None, 26])
def test_validate_element_unknown(symbol):
    with pytest.raises(UnknownElementError):
        validate_element(symbol)


@pytest.mark.parametrize("value, expected", [("225", 225), (225, 225), (" 12 ", 12), (1, 1), (230, 230), ("230", 230)])
def test_validate_spacegroup_ok(value, expected):
    assert validate_spacegroup(value) == expected


@pytest.mark.parametrize("value", [0, 231, "abc", -1, "", "12.5", 12.5, None, "1e2"])
def test_validate_spacegroup_invalid(value):
    with pytest.raises(SpaceGroupError):
        validate_spacegroup(value)


@pytest.mark.parametrize(
    "formula, spacegroup",
    [("Na4Cl4", 225), ("NaCl", 1), ("Na2Cl2", 2), ("Sr1Ti1O3", 221), ("Si8", 227), ("Zn2O2", 186)],
)
def test_spacegroup_compatible(formula, spacegroup):
    check_spacegroup_compatible(parse_formula(formula), spacegroup)  # does not raise


@pytest.mark.parametrize("formula, spacegroup", [("NaCl", 230), ("Na4Cl4", 230), ("SrTiO3", 225), ("Si1", 227)])
def test_spacegroup_incompatible(formula, spacegroup):
    with pytest.raises(SpaceGroupError, match=str(spacegroup)):
        check_spacegroup_compatible(parse_formula(formula), spacegroup)


def test_nacl_formula_compatible_with_225():
    check_spacegroup_compatible(parse_formula("NaCl"), 225)


def test_incompatible_checks_spacegroup_range():
    with pytest.raises(SpaceGroupError):
        check_spacegroup_compatible(parse_formula("NaCl"), 231)
