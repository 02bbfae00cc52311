"""The Crystal type: wrapping, conversions to pymatgen / ASE / CIF / POSCAR / extxyz, errors."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.crystal import WRAP_TOLERANCE, crystals_from_arrays, crystals_to_arrays, wrap_fractional
from crystalgen.errors import CrystalgenInputError, StructureParseError
from crystalgen.io import format_crystal, parse_crystal, read_crystal_file, write_crystal_file

AVOGADRO = 6.02214076e23


# ------------------------------------------------------------------------------ wrapping
@pytest.mark.parametrize(
    "value, expected",
    [
        (-1e-12, 0.0),
        (1.0, 0.0),
        (2.5, 0.5),
        (-0.25, 0.75),
        (-1e-17, 0.0),
        (1.0 - WRAP_TOLERANCE / 10, 0.0),
        (0.0, 0.0),
        (0.3, 0.3),
        (0.99999, 0.99999),
        (-3.0, 0.0),
        (7.125, 0.125),
    ],
)
def test_wrap_fractional(value, expected):
    wrapped = wrap_fractional(np.array([[value, value, value]]))
    assert wrapped.dtype == np.float64
    assert np.all(wrapped >= 0.0) and np.all(wrapped < 1.0)
    np.testing.assert_allclose(wrapped, expected, atol=1e-12)


def test_crystal_wraps_coordinates_on_construction():
    c = Crystal(np.eye(3) * 4.0, [[-1e-12, 1.0, 2.5], [0.25, -0.75, 1 - 1e-12]], [11, 17])
    np.testing.assert_allclose(c.frac_coords, [[0.0, 0.0, 0.5], [0.25, 0.25, 0.0]], atol=1e-12)
    assert np.all((c.frac_coords >= 0) & (c.frac_coords < 1))
    assert c.lattice.dtype == np.float64 and c.frac_coords.dtype == np.float64
    assert c.atomic_numbers.dtype == np.int64
    assert c.num_atoms == 2


def test_crystal_does_not_alias_input_coordinates():
    frac = np.array([[0.1, 0.2, 0.3]])
    c = Crystal(np.eye(3) * 3.0, frac, [26])
    c.frac_coords[0, 0] = 0.9
    assert frac[0, 0] == 0.1


@pytest.mark.parametrize(
    "frac, numbers",
    [
        ([[0, 0, 0], [0.5, 0.5, 0.5]], [11]),
        ([[0, 0, 0]], [11, 17]),
        (np.zeros((0, 3)), [11]),
    ],
)
def test_mismatched_lengths_raise(frac, numbers):
    with pytest.raises(ValueError, match="coordinates but"):
        Crystal(np.eye(3) * 4.0, frac, numbers)


def test_bad_lattice_shape_raises():
    with pytest.raises(ValueError):
        Crystal(np.eye(2), [[0, 0, 0]], [1])


# ------------------------------------------------------------------------------ basic properties
@pytest.mark.parametrize(
    "name, formula, num_atoms, volume, density",
    [
        ("NaCl", "NaCl", 8, 5.64**3, 2.16),
        ("Si", "Si", 8, 5.43**3, 2.33),
        ("SrTiO3", "SrTiO3", 5, 3.905**3, 5.12),
        ("ZnO", "ZnO", 4, np.sqrt(3) / 2 * 3.25**2 * 5.2, 5.68),
    ],
)
def test_formula_volume_density(textbook_crystals, name, formula, num_atoms, volume, density):
    from pymatgen.core.periodic_table import Element

    c = textbook_crystals[name]
    assert c.formula == formula
    assert c.num_atoms == num_atoms
    assert c.volume == pytest.approx(volume, rel=1e-9)
    mass_g = sum(Element.from_Z(int(z)).atomic_mass for z in c.atomic_numbers) / AVOGADRO
    assert c.density == pytest.approx(mass_g / (c.volume * 1e-24), rel=1e-6)
    assert c.density == pytest.approx(density, rel=0.02)  # the handbook value
    assert formula in repr(c)


def test_species_and_composition(srtio3):
    assert sorted(srtio3.species) == ["O", "O", "O", "Sr", "Ti"]
    assert srtio3.composition.as_dict() == {"Sr": 1.0, "Ti": 1.0, "O": 3.0}


def test_cart_coords(zno):
    np.testing.assert_allclose(zno.cart_coords, zno.frac_coords @ zno.lattice)
    np.testing.assert_allclose(zno.cart_coords, zno.to_structure().cart_coords, atol=1e-12)


def test_copy_is_independent(nacl):
    nacl.id = "x"
    nacl.properties["e"] = 1.0
    dup = nacl.copy()
    dup.frac_coords[0, 0] = 0.123
    dup.properties["e"] = 2.0
    dup.lattice[0, 0] = 9.0
    assert nacl.frac_coords[0, 0] != 0.123 and nacl.properties["e"] == 1.0 and nacl.lattice[0, 0] == 5.64
    assert dup.id == "x"


# ------------------------------------------------------------------------------ round trips
def test_right_handed_keeps_atoms_and_flips_only_left_handed_cells(any_crystal):
    assert any_crystal.right_handed() is any_crystal or np.linalg.det(any_crystal.lattice) < 0
    left = Crystal(-any_crystal.lattice, -any_crystal.frac_coords, any_crystal.atomic_numbers, "x", {"e": 1.0})
    right = left.right_handed()
    assert np.linalg.det(right.lattice) > 0
    np.testing.assert_allclose(right.lattice, any_crystal.lattice)
    # the same Cartesian positions, up to whole lattice vectors
    shift = (right.cart_coords - left.cart_coords) @ np.linalg.inv(right.lattice)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)
    np.testing.assert_array_equal(right.atomic_numbers, left.atomic_numbers)
    assert right.id == "x" and right.properties == {"e": 1.0}


def test_pymatgen_round_trip_is_exact(any_crystal):
    s = any_crystal.to_structure()
    back = Crystal.from_structure(s, id="abc", properties={"e": -1.5})
    np.testing.assert_array_equal(back.lattice, any_crystal.lattice)
    np.testing.assert_allclose(back.frac_coords, any_crystal.frac_coords, atol=1e-12)
    np.testing.assert_array_equal(back.atomic_numbers, any_crystal.atomic_numbers)
    assert [str(site.specie) for site in s] == any_crystal.species
    assert back.id == "abc" and back.properties == {"e": -1.5}


def test_ase_round_trip_is_exact(any_crystal):
    atoms = any_crystal.to_ase()
    assert all(atoms.pbc)
    np.testing.assert_array_equal(atoms.numbers, any_crystal.atomic_numbers)
    np.testing.assert_allclose(atoms.cell.array, any_crystal.lattice)
    back = Crystal.from_ase(atoms, id="a")
    np.testing.assert_allclose(back.lattice, any_crystal.lattice, atol=1e-12)
    np.testing.assert_allclose(back.frac_coords, any_crystal.frac_coords, atol=1e-9)
    np.testing.assert_array_equal(back.atomic_numbers, any_crystal.atomic_numbers)
    assert back.id == "a"


@pytest.mark.parametrize("fmt", ["cif", "poscar", "extxyz"])
def test_text_round_trip(any_crystal, fmt, assert_same_cell, same_crystal):
    text = format_crystal(any_crystal, fmt)
    back = parse_crystal(text, fmt, id="x")
    assert back.id == "x"
    # The exact same cell, atom for atom (CIF stores lengths and angles, so compare the metric).
    assert_same_cell(any_crystal, back, atol=1e-6)
    assert sorted(back.species) == sorted(any_crystal.species)
    assert same_crystal(any_crystal, back)


def test_poscar_and_extxyz_keep_the_lattice_matrix(any_crystal):
    for fmt in ("poscar", "extxyz"):
        back = parse_crystal(format_crystal(any_crystal, fmt), fmt)
        np.testing.assert_allclose(back.lattice, any_crystal.lattice, atol=1e-6)


def test_cif_method_round_trip(si, assert_same_cell):
    back = Crystal.from_cif(si.to_cif(), id="Si")
    assert_same_cell(si, back)
    assert back.id == "Si"
    back = Crystal.from_poscar(si.to_poscar())
    assert_same_cell(si, back)


@pytest.mark.parametrize("suffix, fmt", [(".cif", "cif"), (".vasp", "poscar"), (".extxyz", "extxyz"), (".json", "wyckoff-json")])
def test_files_round_trip(tmp_path, zno, suffix, fmt, same_crystal):
    path = write_crystal_file(zno, tmp_path / "sub" / f"ZnO{suffix}", fmt)
    back = Crystal.from_file(path)
    assert same_crystal(zno, back)
    assert back.formula == "ZnO"
    if fmt != "wyckoff-json":  # see test_wyckoff_json_takes_the_given_id
        assert back.id == "ZnO"


def test_wyckoff_json_takes_the_given_id(tmp_path, nacl):
    text = format_crystal(nacl, "wyckoff-json")  # written without an id
    assert parse_crystal(text, "wyckoff-json", id="NaCl").id == "NaCl"


def test_poscar_file_name_without_extension(tmp_path, nacl, assert_same_cell):
    path = tmp_path / "POSCAR"
    path.write_text(nacl.to_poscar())
    assert_same_cell(nacl, read_crystal_file(path))


# ------------------------------------------------------------------------------ errors
def test_disordered_structure_raises():
    from pymatgen.core import Lattice, Structure

    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(StructureParseError, match="disordered"):
        Crystal.from_structure(disordered)


def test_disordered_cif_raises():
    from pymatgen.core import Lattice, Structure
    from pymatgen.io.cif import CifWriter

    disordered = Structure(Lattice.cubic(3.6), [{"Fe": 0.5, "Ni": 0.5}], [[0, 0, 0]])
    with pytest.raises(StructureParseError):
        Crystal.from_cif(str(CifWriter(disordered)))


@pytest.mark.parametrize(
    "text",
    [
        "",
        "garbage text, not a CIF\n",
        "data_x\n_cell_length_a 3\n",
        "data_x\n_cell_length_a 3\n_cell_length_b 3\n_cell_length_c 3\nloop_\n_atom_site_label\nNa1\n",
    ],
)
def test_corrupt_cif_raises(text):
    with pytest.raises(StructureParseError):
        Crystal.from_cif(text)


def test_truncated_cif_raises(nacl):
    text = nacl.to_cif()
    with pytest.raises(StructureParseError):
        Crystal.from_cif(text[: text.index("_cell_length_b")])


@pytest.mark.parametrize("text", ["", "not a poscar\n1.0\n"])
def test_corrupt_poscar_raises(text):
    with pytest.raises(StructureParseError):
        Crystal.from_poscar(text)


def test_corrupt_extxyz_raises():
    with pytest.raises(StructureParseError):
        parse_crystal("3\nnot extxyz at all\n", "extxyz")


def test_non_periodic_ase_raises():
    from ase import Atoms

    with pytest.raises(StructureParseError, match="periodic"):
        Crystal.from_ase(Atoms("H2", positions=[[0, 0, 0], [0, 0, 0.74]], cell=np.eye(3) * 5, pbc=[True, True, False]))


def test_parse_errors_are_input_errors():
    assert issubclass(StructureParseError, CrystalgenInputError)
    assert issubclass(CrystalgenInputError, ValueError)


def test_read_crystal_file_errors(tmp_path):
    with pytest.raises(CrystalgenInputError, match="file not found"):
        read_crystal_file(tmp_path / "missing.cif")
    (tmp_path / "x.foo").write_text("x")
    with pytest.raises(CrystalgenInputError, match="cannot tell the format"):
        read_crystal_file(tmp_path / "x.foo")
    (tmp_path / "bin.cif").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(StructureParseError):
        read_crystal_file(tmp_path / "bin.cif")
    (tmp_path / "bad.cif").write_text("nonsense")
    with pytest.raises(StructureParseError, match="bad.cif"):  # the message names the file
        read_crystal_file(tmp_path / "bad.cif")


def test_unknown_format_raises(nacl):
    with pytest.raises(CrystalgenInputError, match="unknown format"):
        format_crystal(nacl, "pdb")
    with pytest.raises(CrystalgenInputError, match="unknown format"):
        parse_crystal("", "pdb")


# ------------------------------------------------------------------------------ arrays
def test_arrays_round_trip(textbook_crystals, random_crystals):
    crystals = list(textbook_crystals.values()) + list(random_crystals.values())
    crystals[0].properties = {"e": 1.0}
    arrays = crystals_to_arrays(crystals)
    assert arrays["lattices"].shape == (len(crystals), 3, 3)
    assert arrays["num_atoms"].sum() == len(arrays["frac_coords"]) == len(arrays["atomic_numbers"])
    props = {"e": np.array([1.0] + [np.nan] * (len(crystals) - 1))}
    back = crystals_from_arrays(**arrays, ids=[c.id for c in crystals], properties=props)
    for a, b in zip(crystals, back):
        np.testing.assert_array_equal(a.lattice, b.lattice)
        np.testing.assert_array_equal(a.frac_coords, b.frac_coords)
        np.testing.assert_array_equal(a.atomic_numbers, b.atomic_numbers)
        assert a.id == b.id
    assert back[0].properties == {"e": 1.0} and back[1].properties == {}


def test_arrays_of_no_crystals():
    arrays = crystals_to_arrays([])
    assert arrays["lattices"].shape == (0, 3, 3) and arrays["frac_coords"].shape == (0, 3)
    assert crystals_from_arrays(**arrays) == []


# ------------------------------------------------------------------------------ fixtures
def test_random_fixture_is_deterministic_and_covers_all_crystal_systems(random_crystals):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    from conftest import RANDOM_CASES, make_random

    assert len(random_crystals) >= 12
    sg, species, counts, seed = RANDOM_CASES[4]
    again = make_random(sg, species, counts, seed)
    original = random_crystals[f"random-sg{sg}"]
    np.testing.assert_array_equal(again.lattice, original.lattice)
    np.testing.assert_array_equal(again.frac_coords, original.frac_coords)
    systems = {SpacegroupAnalyzer(c.to_structure(), symprec=0.1).get_crystal_system() for c in random_crystals.values()}
    assert systems == {"triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic"}
