"""Representations: round trips for every registered one, plus lattice, Wyckoff, CIF and cell specifics."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from crystalgen import Crystal
from crystalgen.errors import CrystalgenInputError, SpaceGroupError, UnknownElementError
from crystalgen.representations import REPRESENTATIONS, Representation, get_representation
from crystalgen.representations.cell import (
    CellChoice,
    conventional_cell,
    niggli_cell,
    primitive_cell,
    space_group_number,
    standardise,
)
from crystalgen.representations.cif import SymmetricCif, from_symmetric_cif, to_symmetric_cif
from crystalgen.representations.lattice import (
    LatticeLogPolar,
    LatticeParameters,
    lattice_matrix_to_params,
    lattice_params_to_matrix,
    lattice_to_log_polar,
    log_polar_to_lattice,
    symmetric_to_vector,
    vector_to_symmetric,
)
from crystalgen.representations.wyckoff import (
    WyckoffCrystal,
    WyckoffError,
    WyckoffSite,
    decode_wyckoff,
    encode_wyckoff,
)

REPRESENTATION_NAMES = sorted(REPRESENTATIONS)
#: Representations that round the cell: cif-tokens writes lengths to 1 mÅ, so a 3 Å cell's
#: volume may move by up to 3 x 0.0005 / 3 = 5e-4 of itself.
ROUNDED_VOLUME_TOLERANCE = {"cif-tokens": 1e-3}
#: Representations that rebuild the geometry rather than store it; their own tests check the round trip.
APPROXIMATE = {"slices": "SLICES rebuilds the geometry from the bond graph, so its round trip is approximate "
                         "(tests/test_slices.py checks it, bench/slices_roundtrip.py measures it)"}


def _random_rotations(n: int, seed: int) -> np.ndarray:
    from scipy.spatial.transform import Rotation

    return Rotation.random(n, random_state=seed).as_matrix()


def _random_params(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    lengths = rng.uniform(2.5, 12.0, (n, 3))
    angles = rng.uniform(65.0, 115.0, (n, 3))
    return np.column_stack([lengths, angles])


# ------------------------------------------------------------------------------ registry
def test_registry_is_complete():
    assert {"lattice-params", "lattice-logpolar", "wyckoff", "cif-p1", "cif-symmetric"} <= set(REPRESENTATIONS)
    assert {"cell-niggli", "cell-primitive", "cell-conventional"} <= set(REPRESENTATIONS)


@pytest.mark.parametrize("name", REPRESENTATION_NAMES)
def test_registered_factories_follow_the_protocol(name):
    rep = get_representation(name)
    assert isinstance(rep, Representation)
    assert rep.name == name


def test_unknown_representation_raises():
    with pytest.raises(KeyError, match="unknown representation"):
        get_representation("nope")


# ------------------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", REPRESENTATION_NAMES)
def test_round_trip(name, any_crystal, same_crystal):
    if name in APPROXIMATE:
        pytest.skip(APPROXIMATE[name])
    rep = get_representation(name)
    decoded = rep.decode(rep.encode(any_crystal))
    assert isinstance(decoded, Crystal)
    assert same_crystal(any_crystal, decoded), f"{name} changed {any_crystal!r} into {decoded!r}"
    assert decoded.composition.reduced_formula == any_crystal.composition.reduced_formula
    rel = ROUNDED_VOLUME_TOLERANCE.get(name, 1e-4)
    assert decoded.volume / decoded.num_atoms == pytest.approx(any_crystal.volume / any_crystal.num_atoms, rel=rel)
    # StructureMatcher accepts mirror images; the space group number tells enantiomorphs apart.
    assert space_group_number(decoded) == space_group_number(any_crystal)


@pytest.mark.parametrize("name", ["lattice-params", "lattice-logpolar"])
def test_lattice_representations_keep_atoms_and_metric(name, any_crystal):
    rep = get_representation(name)
    encoded = rep.encode(any_crystal)
    assert np.shape(encoded.lattice_vector) == (6,)
    decoded = rep.decode(encoded)
    np.testing.assert_allclose(decoded.lattice @ decoded.lattice.T, any_crystal.lattice @ any_crystal.lattice.T, atol=1e-9)
    np.testing.assert_array_equal(decoded.frac_coords, any_crystal.frac_coords)
    np.testing.assert_array_equal(decoded.atomic_numbers, any_crystal.atomic_numbers)
    assert np.linalg.det(decoded.lattice) > 0


@pytest.mark.parametrize(
    "name",
    REPRESENTATION_NAMES,
)
def test_round_trip_keeps_chirality_of_left_handed_cells(name, random_crystals, same_crystal):
    if name in APPROXIMATE:
        pytest.skip(APPROXIMATE[name])
    original = random_crystals["random-sg76"]
    assert space_group_number(original) == 76
    # The same crystal (same Cartesian positions) described with a left-handed cell.
    left = Crystal(-original.lattice, -original.frac_coords, original.atomic_numbers)
    assert np.linalg.det(left.lattice) < 0
    shift = (left.cart_coords - original.cart_coords) @ np.linalg.inv(original.lattice)
    np.testing.assert_allclose(shift, np.round(shift), atol=1e-9)  # same atoms, up to lattice vectors
    assert space_group_number(left) == 76
    rep = get_representation(name)
    decoded = rep.decode(rep.encode(left))
    assert same_crystal(left, decoded)
    assert space_group_number(decoded) == 76


# ------------------------------------------------------------------------------ lattice parameters
def test_params_to_matrix_known_values():
    cubic = lattice_params_to_matrix(np.array([4.0, 4.0, 4.0, 90.0, 90.0, 90.0]))
    np.testing.assert_allclose(cubic, np.eye(3) * 4.0, atol=1e-12)
    hexagonal = lattice_params_to_matrix(np.array([3.25, 3.25, 5.2, 90.0, 90.0, 120.0]))
    expected = [[3.25, 0, 0], [-1.625, 3.25 * np.sqrt(3) / 2, 0], [0, 0, 5.2]]
    np.testing.assert_allclose(hexagonal, expected, atol=1e-12)
    np.testing.assert_allclose(
        lattice_matrix_to_params(np.diag([3.0, 4.0, 5.0])), [3, 4, 5, 90, 90, 90], atol=1e-12
    )


def test_params_matrix_round_trip_numpy_batched():
    params = _random_params(64, seed=0).reshape(4, 16, 6)
    matrices = lattice_params_to_matrix(params)
    assert isinstance(matrices, np.ndarray) and matrices.shape == (4, 16, 3, 3)
    assert np.all(np.linalg.det(matrices) > 0)
    back = lattice_matrix_to_params(matrices)
    assert isinstance(back, np.ndarray) and back.shape == (4, 16, 6)
    np.testing.assert_allclose(back, params, atol=1e-9)
    np.testing.assert_allclose(lattice_params_to_matrix(back), matrices, atol=1e-9)


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-9), (torch.float32, 1e-3)])
def test_params_matrix_round_trip_torch_batched(dtype, atol):
    params = torch.tensor(_random_params(32, seed=1), dtype=dtype)
    matrices = lattice_params_to_matrix(params)
    assert isinstance(matrices, torch.Tensor) and matrices.shape == (32, 3, 3) and matrices.dtype == dtype
    back = lattice_matrix_to_params(matrices)
    assert isinstance(back, torch.Tensor) and back.dtype == dtype
    torch.testing.assert_close(back, params, atol=atol, rtol=0)


def test_params_from_rotated_matrix_are_rotation_invariant(random_crystals):
    for c in random_crystals.values():
        rotation = _random_rotations(1, seed=c.num_atoms)[0]
        np.testing.assert_allclose(
            lattice_matrix_to_params(c.lattice @ rotation.T), lattice_matrix_to_params(c.lattice), atol=1e-9
        )
        rebuilt = lattice_params_to_matrix(lattice_matrix_to_params(c.lattice))
        np.testing.assert_allclose(rebuilt @ rebuilt.T, c.lattice @ c.lattice.T, atol=1e-8)


def test_params_to_matrix_is_differentiable():
    params = torch.tensor(_random_params(8, seed=2), dtype=torch.float64, requires_grad=True)
    lattice_params_to_matrix(params).sum().backward()
    assert params.grad is not None and torch.isfinite(params.grad).all() and params.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ log-polar
def test_symmetric_vector_round_trip():
    vec = torch.tensor(np.random.default_rng(3).normal(size=(5, 6)))
    sym = vector_to_symmetric(vec)
    assert torch.equal(sym, sym.transpose(-1, -2))
    assert torch.equal(symmetric_to_vector(sym), vec)


def test_log_polar_of_a_cubic_cell():
    np.testing.assert_allclose(
        lattice_to_log_polar(np.eye(3) * 4.0), [np.log(4.0)] * 3 + [0.0] * 3, atol=1e-12
    )


def test_log_polar_is_rotation_invariant_numpy():
    matrices = lattice_params_to_matrix(_random_params(20, seed=4))
    rotations = _random_rotations(20, seed=5)
    rotated = matrices @ np.swapaxes(rotations, -1, -2)  # L -> L R^T rotates every lattice vector
    assert not np.allclose(rotated, matrices)
    np.testing.assert_allclose(lattice_to_log_polar(rotated), lattice_to_log_polar(matrices), atol=1e-9)


def test_log_polar_is_rotation_invariant_torch(random_crystals):
    lattices = torch.tensor(np.stack([c.lattice for c in random_crystals.values()]))
    rotations = torch.tensor(_random_rotations(len(lattices), seed=6))
    vec = lattice_to_log_polar(lattices)
    assert isinstance(vec, torch.Tensor) and vec.shape == (len(lattices), 6)
    torch.testing.assert_close(lattice_to_log_polar(lattices @ rotations.transpose(-1, -2)), vec, atol=1e-9, rtol=0)


def test_log_polar_decodes_to_the_same_metric():
    matrices = lattice_params_to_matrix(_random_params(50, seed=7))
    decoded = log_polar_to_lattice(lattice_to_log_polar(matrices))
    assert decoded.shape == (50, 3, 3)
    np.testing.assert_allclose(decoded, np.swapaxes(decoded, -1, -2), atol=1e-10)  # symmetric S
    metric = matrices @ np.swapaxes(matrices, -1, -2)
    np.testing.assert_allclose(decoded @ np.swapaxes(decoded, -1, -2), metric, atol=1e-8)
    np.testing.assert_allclose(lattice_matrix_to_params(decoded), lattice_matrix_to_params(matrices), atol=1e-7)


def test_any_log_polar_vector_decodes_to_a_valid_lattice():
    vec = torch.tensor(np.random.default_rng(8).normal(scale=1.0, size=(100, 6)))
    lattices = log_polar_to_lattice(vec)
    eigenvalues = torch.linalg.eigvalsh(lattices)
    assert (eigenvalues > 0).all()
    torch.testing.assert_close(lattice_to_log_polar(lattices), vec, atol=1e-8, rtol=0)


def test_log_polar_to_lattice_gradcheck():
    vec = torch.tensor(np.random.default_rng(9).normal(scale=0.5, size=(3, 6)), requires_grad=True)
    assert torch.autograd.gradcheck(log_polar_to_lattice, (vec,), eps=1e-6, atol=1e-5)


def test_log_polar_to_lattice_backward_is_finite():
    vec = torch.tensor([[1.5, 1.5, 1.5, 0.0, 0.0, 0.0]], dtype=torch.float64, requires_grad=True)  # cubic
    lattice = log_polar_to_lattice(vec)
    torch.linalg.det(lattice).sum().backward()
    # det(exp(S)) = exp(trace S): the gradient is det on the diagonal entries, 0 off-diagonal
    det = float(torch.linalg.det(lattice.detach()))
    torch.testing.assert_close(vec.grad, torch.tensor([[det, det, det, 0.0, 0.0, 0.0]], dtype=torch.float64))


# ------------------------------------------------------------------------------ Wyckoff
def test_wyckoff_nacl(nacl):
    encoded = encode_wyckoff(nacl)
    assert encoded.spacegroup == 225
    assert sorted(s.wyckoff for s in encoded.sites) == ["4a", "4b"]
    assert sorted(s.element for s in encoded.sites) == ["Cl", "Na"]
    assert all(s.free_coords == [] for s in encoded.sites)
    assert all(s.multiplicity == 4 for s in encoded.sites)
    assert {s.letter for s in encoded.sites} == {"a", "b"}
    assert encoded.num_atoms == 8
    np.testing.assert_allclose(encoded.lattice_params, [5.64, 5.64, 5.64, 90, 90, 90], atol=1e-6)


@pytest.mark.parametrize(
    "name, spacegroup, multiplicities",
    [("Si", 227, [8]), ("SrTiO3", 221, [1, 1, 3]), ("ZnO", 186, [2, 2])],
)
def test_wyckoff_textbook(textbook_crystals, name, spacegroup, multiplicities):
    encoded = encode_wyckoff(textbook_crystals[name])
    assert encoded.spacegroup == spacegroup
    assert sorted(s.multiplicity for s in encoded.sites) == multiplicities


def test_wyckoff_zno_free_coordinate(zno):
    encoded = encode_wyckoff(zno)
    assert [len(s.free_coords) for s in encoded.sites] == [1, 1]  # 2b = (1/3, 2/3, z)
    z = {s.element: s.free_coords[0] for s in encoded.sites}
    assert (z["O"] - z["Zn"]) % 1.0 == pytest.approx(0.382, abs=1e-6) or (z["Zn"] - z["O"]) % 1.0 == pytest.approx(0.382, abs=1e-6)


def test_wyckoff_space_group_agrees_with_spglib(any_crystal):
    assert encode_wyckoff(any_crystal).spacegroup == space_group_number(any_crystal)


def test_wyckoff_json_round_trip(zno, same_crystal):
    encoded = encode_wyckoff(zno)
    encoded.id, encoded.properties = "zno-1", {"gap": 3.3}
    text = json.dumps(encoded.to_dict())
    parsed = WyckoffCrystal.from_dict(json.loads(text))
    assert parsed == encoded
    assert parsed.to_dict() == encoded.to_dict()
    decoded = decode_wyckoff(parsed)
    assert decoded.id == "zno-1" and decoded.properties == {"gap": 3.3}
    assert same_crystal(zno, decoded)


@pytest.fixture
def nacl_dict(nacl) -> dict:
    return json.loads(json.dumps(encode_wyckoff(nacl).to_dict()))


def _decode(data: dict) -> Crystal:
    return decode_wyckoff(WyckoffCrystal.from_dict(data))


@pytest.mark.parametrize("label", ["a4", "4", "", "4aa", "x", "four-a", "4 a"])
def test_wyckoff_malformed_label_raises(nacl_dict, label):
    nacl_dict["sites"][0]["wyckoff"] = label
    with pytest.raises(WyckoffError, match="malformed Wyckoff label"):
        WyckoffCrystal.from_dict(nacl_dict)


@pytest.mark.parametrize(
    "edit, match",
    [
        (lambda d: d["sites"][0].update(wyckoff="4z"), "no Wyckoff position"),
        (lambda d: d["sites"][0].update(wyckoff="8a"), "multiplicity"),
        (lambda d: d["sites"][0].update(free_coords=[0.1]), "free coordinates"),
        (lambda d: d.pop("sites"), "missing or invalid field"),
        (lambda d: d.pop("lattice"), "missing or invalid field"),
        (lambda d: d.update(lattice=[5.64] * 6), "missing or invalid field"),
        (lambda d: d["lattice"].update(a_b_c_alpha_beta_gamma=[5.64, 90.0]), "6 parameters"),
        (lambda d: d["sites"][0].pop("element"), "missing or invalid field"),
    ],
)
def test_wyckoff_invalid_description_raises(nacl_dict, edit, match):
    edit(nacl_dict)
    with pytest.raises(WyckoffError, match=match):
        _decode(nacl_dict)


def test_wyckoff_wrong_number_of_free_coords(zno):
    encoded = encode_wyckoff(zno)
    encoded.sites[0].free_coords = []
    with pytest.raises(WyckoffError, match="takes 1 free coordinates, got 0"):
        decode_wyckoff(encoded)


@pytest.mark.parametrize("spacegroup", [231, 0, -5, "abc", None])
def test_wyckoff_bad_spacegroup_raises(nacl_dict, spacegroup):
    nacl_dict["spacegroup"] = spacegroup
    with pytest.raises(SpaceGroupError):
        WyckoffCrystal.from_dict(nacl_dict)


@pytest.mark.parametrize("element", ["Xx", "na", "", 11])
def test_wyckoff_unknown_element_raises(nacl_dict, element):
    nacl_dict["sites"][1]["element"] = element
    with pytest.raises(UnknownElementError):
        WyckoffCrystal.from_dict(nacl_dict)


def test_wyckoff_errors_are_input_errors():
    assert issubclass(WyckoffError, CrystalgenInputError)
    assert issubclass(SpaceGroupError, CrystalgenInputError)
    assert issubclass(UnknownElementError, CrystalgenInputError)


@pytest.mark.parametrize("where", ["free_coords", "lattice"])
def test_wyckoff_non_numeric_values_raise_input_error(zno, where):
    data = json.loads(json.dumps(encode_wyckoff(zno).to_dict()))
    if where == "free_coords":
        data["sites"][0]["free_coords"] = ["x"]
    else:
        data["lattice"]["a_b_c_alpha_beta_gamma"][0] = "a"
    with pytest.raises(CrystalgenInputError):
        _decode(data)


@pytest.mark.parametrize(
    "lattice", [[5.64, 5.64, 5.64, 0.0, 0.0, 0.0], [-5.64, 5.64, 5.64, 90, 90, 90], [5.64, 5.64, 5.64, 90, 90, 200]]
)
def test_wyckoff_impossible_lattice_raises(nacl_dict, lattice):
    nacl_dict["lattice"]["a_b_c_alpha_beta_gamma"] = lattice
    with pytest.raises(CrystalgenInputError):
        _decode(nacl_dict)


def test_wyckoff_without_sites_raises(nacl_dict):
    nacl_dict["sites"] = []
    with pytest.raises(CrystalgenInputError):
        _decode(nacl_dict)


def test_wyckoff_site_properties():
    site = WyckoffSite("O", "12k", [0.1, 0.2])
    assert site.multiplicity == 12 and site.letter == "k"


# ------------------------------------------------------------------------------ symmetric CIF
def _atom_site_rows(text: str) -> int:
    from pymatgen.io.cif import CifFile

    (block,) = CifFile.from_str(text).data.values()
    return len(block.data["_atom_site_label"])


def test_symmetric_cif_of_nacl(nacl, same_crystal):
    text = to_symmetric_cif(nacl)
    assert "Fm-3m" in text or "F m -3 m" in text
    assert "225" in text
    assert _atom_site_rows(text) == 2
    assert _atom_site_rows(nacl.to_cif()) == 8  # the P1 CIF lists every atom
    back = from_symmetric_cif(text, id="NaCl")
    assert back.num_atoms == 8 and back.id == "NaCl"
    assert back.formula == "NaCl"
    np.testing.assert_allclose(back.lattice @ back.lattice.T, np.eye(3) * 5.64**2, atol=1e-8)
    assert same_crystal(nacl, back)


def test_symmetric_cif_of_a_primitive_cell_gives_the_conventional_cell(nacl):
    text = SymmetricCif().encode(primitive_cell(nacl))
    assert _atom_site_rows(text) == 2
    assert SymmetricCif().decode(text).num_atoms == 8


def test_symmetric_cif_of_zno(zno, same_crystal):
    text = to_symmetric_cif(zno)
    assert "P6_3mc" in text or "P 63 m c" in text
    assert _atom_site_rows(text) == 2
    back = from_symmetric_cif(text)
    assert back.num_atoms == 4 and same_crystal(zno, back)


# ------------------------------------------------------------------------------ cell choices
def test_cell_choices_of_nacl(nacl, same_crystal):
    primitive = primitive_cell(nacl)
    conventional = conventional_cell(primitive)
    assert primitive.num_atoms == 2
    assert conventional.num_atoms == 8
    assert primitive.volume == pytest.approx(nacl.volume / 4)
    np.testing.assert_allclose(conventional.lattice @ conventional.lattice.T, np.eye(3) * 5.64**2, atol=1e-8)
    assert niggli_cell(nacl).num_atoms == 8
    assert niggli_cell(primitive).num_atoms == 2
    for cell in (primitive, conventional, niggli_cell(nacl), niggli_cell(primitive)):
        assert same_crystal(nacl, cell)


@pytest.mark.parametrize("name, primitive_atoms", [("Si", 2), ("SrTiO3", 5), ("ZnO", 4)])
def test_primitive_cell_sizes(textbook_crystals, name, primitive_atoms):
    assert primitive_cell(textbook_crystals[name]).num_atoms == primitive_atoms


def test_niggli_keeps_atom_count_and_volume(any_crystal):
    reduced = niggli_cell(any_crystal)
    assert reduced.num_atoms == any_crystal.num_atoms
    assert reduced.volume == pytest.approx(any_crystal.volume, rel=1e-9)
    assert niggli_cell(reduced).num_atoms == reduced.num_atoms


def test_niggli_reduces_a_skewed_cell(nacl, same_crystal):
    shear = np.array([[1, 0, 0], [3, 1, 0], [-2, 5, 1]])  # unimodular: same lattice, ugly basis
    skewed = Crystal(shear @ nacl.lattice, nacl.frac_coords @ np.linalg.inv(shear), nacl.atomic_numbers)
    assert np.linalg.norm(skewed.lattice, axis=1).max() > 20
    reduced = niggli_cell(skewed)
    np.testing.assert_allclose(np.sort(np.linalg.norm(reduced.lattice, axis=1)), [5.64] * 3, atol=1e-6)
    assert same_crystal(nacl, reduced)


def test_cell_operations_keep_id_and_properties(nacl):
    nacl.id, nacl.properties = "nacl", {"e": -3.0}
    for cell in ("as-is", "niggli", "primitive", "conventional"):
        out = standardise(nacl, cell)
        assert out.id == "nacl" and out.properties == {"e": -3.0}


def test_unknown_cell_choice_raises(nacl):
    with pytest.raises(ValueError, match="unknown cell choice"):
        standardise(nacl, "supercell")
    with pytest.raises(ValueError, match="unknown cell choice"):
        CellChoice("supercell")


def test_cell_choice_representation_decode_is_identity(srtio3):
    rep = CellChoice("primitive")
    encoded = rep.encode(srtio3)
    assert rep.decode(encoded) is encoded
    assert rep.name == "cell-primitive"


def test_space_group_numbers(textbook_crystals):
    assert {n: space_group_number(c) for n, c in textbook_crystals.items()} == {
        "NaCl": 225, "Si": 227, "SrTiO3": 221, "ZnO": 186,
    }


def test_lattice_representation_classes_are_registered():
    assert REPRESENTATIONS["lattice-params"] is LatticeParameters
    assert REPRESENTATIONS["lattice-logpolar"] is LatticeLogPolar
