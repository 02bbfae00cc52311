"""The reference convex hull of the filter (``crystalgen.filters.hull``), checked against pymatgen's
``PhaseDiagram`` on a hand-made Li-Fe-O set with binaries, ternaries and phases above the hull."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.filters.hull import ReferenceHull, element_counts

from conftest import make_textbook

#: Made-up formation energies per atom (eV/atom). Several phases are deliberately above the hull
#: (Li2O2, LiO2, the second Fe3O4, ...) so the hull is not simply "every entry"; no phase sits exactly
#: on a hull facet without being a vertex.
LI_FE_O = [
    ("Li2O", -2.07), ("Li2O2", -1.30), ("LiO2", -1.00), ("FeO", -1.40), ("Fe2O3", -1.70), ("Fe3O4", -1.66),
    ("Fe3O4", -1.50), ("FeO2", -1.05), ("LiFeO2", -1.95), ("Li5FeO4", -2.02), ("LiFe5O8", -1.62),
    ("Li2FeO3", -1.75), ("LiFe2", 0.05), ("Li3Fe", -0.02),
]

#: Compositions to query: every reference, elements, subsystems, and compositions between phases.
QUERIES = ["Li", "Fe", "O", "LiFe", "Li2O", "Li2O2", "Fe2O3", "Fe3O4", "FeO", "LiFeO2", "Li5FeO4", "LiFe5O8",
           "Li2FeO3", "LiFeO", "Li3FeO3", "LiFe2O4", "Li4Fe3O8", "LiO3", "Fe5O", "Li7FeO", "Li0.3Fe0.2O0.5",
           "LiFe3O9"]


def pymatgen_diagram(entries, elemental=None):
    from pymatgen.analysis.phase_diagram import PDEntry, PhaseDiagram
    from pymatgen.core import Composition

    pd_entries = [PDEntry(Composition(f), e * Composition(f).num_atoms) for f, e in entries]
    for symbol, energy in (elemental or {"Li": 0.0, "Fe": 0.0, "O": 0.0}).items():
        pd_entries.append(PDEntry(Composition(symbol), energy))
    return PhaseDiagram(pd_entries)


def hull_of(entries, kind="formation") -> ReferenceHull:
    return ReferenceHull([f for f, _ in entries], [e for _, e in entries], kind)


def test_formation_hull_matches_pymatgen():
    from pymatgen.core import Composition

    hull = hull_of(LI_FE_O)
    diagram = pymatgen_diagram(LI_FE_O)
    assert hull.size == len(LI_FE_O)
    for formula in QUERIES:
        expected = diagram.get_hull_energy_per_atom(Composition(formula))
        assert hull.hull_energy_per_atom(formula) == pytest.approx(expected, abs=1e-7), formula
    # the hull is non-trivial: some ternary lies on it, some phases above it
    assert hull.hull_energy_per_atom("LiFeO2") == pytest.approx(-1.95, abs=1e-9)
    assert hull.hull_energy_per_atom("Li2O2") < -1.30 - 0.1


def test_energy_above_hull_matches_pymatgen():
    from pymatgen.core import Composition

    hull = hull_of(LI_FE_O)
    diagram = pymatgen_diagram(LI_FE_O)
    formulas = [f for f, _ in LI_FE_O]
    energies = np.array([e for _, e in LI_FE_O])
    above = hull.energy_above_hull(formulas, energies)
    expected = [diagram.get_e_above_hull(entry) for entry in diagram.all_entries
                if entry.composition.reduced_formula in {Composition(f).reduced_formula for f in formulas}
                and len(entry.composition) > 1]
    assert above.shape == (len(LI_FE_O),) and (above >= -1e-9).all()
    assert sorted(np.round(above, 6)) == pytest.approx(sorted(np.round(expected, 6)), abs=1e-6)
    stable = {e.composition.reduced_formula for e in diagram.stable_entries if len(e.composition) > 1}
    for formula, value in zip(formulas, above):
        if value < 1e-9:
            assert Composition(formula).reduced_formula in stable, formula


def test_random_compositions_match_pymatgen():
    from pymatgen.core import Composition

    hull = hull_of(LI_FE_O)
    diagram = pymatgen_diagram(LI_FE_O)
    rng = np.random.default_rng(0)
    for amounts in rng.integers(0, 9, size=(25, 3)):
        if amounts.sum() == 0:
            continue
        formula = {"Li": int(amounts[0]), "Fe": int(amounts[1]), "O": int(amounts[2])}
        formula = {k: v for k, v in formula.items() if v}
        expected = diagram.get_hull_energy_per_atom(Composition(formula))
        assert hull.hull_energy_per_atom(formula) == pytest.approx(expected, abs=1e-7), formula


def test_total_energies_with_every_elemental_reference_match_pymatgen():
    from pymatgen.core import Composition

    elemental = {"Li": -1.9, "Fe": -8.3, "O": -4.9}
    shift = {"Li": -1.9, "Fe": -8.3, "O": -4.9}
    # the same phases as total energies: formation energy + composition-weighted elemental energies
    entries = []
    for formula, formation in LI_FE_O:
        fractions = Composition(formula).fractional_composition
        entries.append((formula, formation + sum(fractions[el] * shift[el] for el in shift)))
    # a second, higher polymorph of Fe must not matter
    references = entries + [(el, e) for el, e in elemental.items()] + [("Fe", -8.0)]
    hull = hull_of(references, "total")
    diagram = pymatgen_diagram(entries, {**{el: e for el, e in elemental.items()}})
    for formula in QUERIES:
        expected = diagram.get_hull_energy_per_atom(Composition(formula))
        assert hull.hull_energy_per_atom(formula) == pytest.approx(expected, abs=1e-7), formula


def test_total_energies_without_an_elemental_reference_give_nan():
    entries = [("Li", -1.9), ("Fe", -8.3), ("Li2O", -4.0), ("FeO", -6.0)]  # no elemental O
    hull = hull_of(entries, "total")
    assert np.isnan(hull.hull_energy_per_atom("Li2O"))
    assert np.isnan(hull.hull_energy_per_atom("LiFeO2"))
    assert hull.hull_energy_per_atom("Li") == pytest.approx(-1.9)
    assert hull.hull_energy_per_atom("LiFe") == pytest.approx((-1.9 - 8.3) / 2)  # no Li-Fe compound: a mix
    assert np.isnan(hull.hull_energy_per_atom("NaCl"))  # elements nobody has seen
    above = hull.energy_above_hull(["Li2O", "Li"], np.array([-3.0, -1.5]))
    assert np.isnan(above[0]) and above[1] == pytest.approx(0.4)


def test_formation_hull_without_references_is_zero():
    hull = ReferenceHull([], [], "formation")
    assert hull.size == 0
    assert hull.hull_energy_per_atom("NaCl") == pytest.approx(0.0, abs=1e-12)
    assert hull.energy_above_hull(["NaCl", "Fe2O3"], [-0.5, 0.2]) == pytest.approx([-0.5, 0.2])


def test_entries_without_a_finite_energy_are_ignored():
    clean = hull_of(LI_FE_O)
    noisy = ReferenceHull([f for f, _ in LI_FE_O] + ["Fe2O3", "Li2O", "LiFeO2"],
                          [e for _, e in LI_FE_O] + [float("nan"), None, float("-inf")])
    assert noisy.size == clean.size
    for formula in QUERIES:
        assert noisy.hull_energy_per_atom(formula) == pytest.approx(clean.hull_energy_per_atom(formula), abs=1e-9)


def test_compositions_in_every_form_and_cache():
    hull = hull_of(LI_FE_O)
    value = hull.hull_energy_per_atom("Fe2O3")
    assert hull.hull_energy_per_atom("Fe4O6") == value  # reduced composition: one cache entry
    assert hull.hull_energy_per_atom({"Fe": 2, "O": 3}) == pytest.approx(value, abs=1e-12)
    assert hull.hull_energy_per_atom(((8, 3), (26, 2))) == pytest.approx(value, abs=1e-12)
    fe2o3 = Crystal(np.eye(3) * 5, np.random.default_rng(0).random((5, 3)), [26, 26, 8, 8, 8])
    assert hull.hull_energy_per_atom(fe2o3) == pytest.approx(value, abs=1e-12)
    assert element_counts(fe2o3) == ((8, 3), (26, 2))
    assert element_counts("Fe2O3") == ((8, 3.0), (26, 2.0))


def test_from_crystals_uses_only_crystals_with_the_energy():
    nacl, zno = make_textbook("NaCl"), make_textbook("ZnO")
    nacl.properties = {"formation_energy_per_atom": -2.0}
    zno.properties = {"band_gap": 3.0}
    hull = ReferenceHull.from_crystals([nacl, zno], "formation_energy_per_atom")
    assert hull.size == 1
    assert hull.hull_energy_per_atom("NaCl") == pytest.approx(-2.0)
    assert hull.hull_energy_per_atom("Na3Cl") == pytest.approx(-1.0)  # half NaCl, half Na
    assert hull.hull_energy_per_atom("ZnO") == pytest.approx(0.0, abs=1e-12)


def test_unknown_reference_kind():
    with pytest.raises(CrystalgenInputError, match="hull reference must be one of formation, total"):
        ReferenceHull([], [], "absolute")
