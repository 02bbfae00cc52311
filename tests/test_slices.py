"""SLICES-style strings: the graph, its string form, validity checks, and the geometry rebuilt from it."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.representations import decoder_can_fail, get_representation
from crystalgen.representations.slices import QuotientGraph, Slices, SlicesError, check_graph, encode_graph
from crystalgen.representations.slices_geometry import barycentric_embedding

from conftest import MATCHER_KWARGS


def test_rock_salt_graph_is_the_octahedral_first_shell(nacl):
    graph = encode_graph(nacl)
    assert graph.elements == ("Na", "Cl")
    degree = np.bincount(graph.edges.ravel(), minlength=2)
    assert degree.tolist() == [6, 6]  # six Na-Cl bonds, each counted at both ends
    assert set(map(tuple, graph.edges.tolist())) == {(0, 1)}


def test_strings_round_trip_and_are_canonical(any_crystal):
    text = encode_graph(any_crystal).to_string()
    assert QuotientGraph.from_string(text).to_string() == text
    rng = np.random.default_rng(0)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    order = rng.permutation(any_crystal.num_atoms)
    moved = Crystal(any_crystal.lattice @ q.T, any_crystal.frac_coords[order], any_crystal.atomic_numbers[order])
    assert encode_graph(moved).elements == encode_graph(any_crystal).elements


@pytest.mark.parametrize("name", ["NaCl", "Si", "SrTiO3", "ZnO"])
def test_textbook_crystals_are_rebuilt_from_their_graph(name, textbook_crystals):
    from pymatgen.analysis.structure_matcher import StructureMatcher

    crystal = textbook_crystals[name]
    decoded = Slices().decode(Slices().encode(crystal))
    assert decoded.composition.reduced_formula == crystal.composition.reduced_formula
    assert StructureMatcher(**MATCHER_KWARGS).fit(decoded.to_structure(), crystal.to_structure())


def test_layers_held_by_longer_contacts_are_joined_into_a_3_periodic_graph(random_crystals):
    from crystalgen.representations.cell import niggli_cell, primitive_cell
    from crystalgen.representations.slices import contacts

    crystal = random_crystals["random-sg76"]  # first shells form chains: not 3-periodic on their own
    _, _, _, first_shell = contacts(niggli_cell(primitive_cell(crystal)))
    graph = encode_graph(crystal)
    check_graph(graph)
    assert len(graph.edges) > first_shell.sum() // 2


def test_barycentric_embedding_puts_each_atom_at_its_neighbours_mean(si):
    graph = encode_graph(si)
    positions = barycentric_embedding(graph)
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    pull = np.zeros_like(positions)
    np.add.at(pull, i, positions[j] + graph.offsets - positions[i])
    np.add.at(pull, j, positions[i] - graph.offsets - positions[j])
    np.testing.assert_allclose(pull, 0.0, atol=1e-9)


@pytest.mark.parametrize("text, cause", [
    ("Na Cl 0 1 ooo", "periodicity"),  # one bond: not 3-periodic
    ("Na Cl Cl 0 1 +oo 0 1 o+o 0 1 oo+ 0 1 ooo", "coverage"),  # atom 2 on no edge
    ("Na Xx 0 1 ooo", "parse"),
    ("Na Cl 0 1 o+", "parse"),
    ("Na Cl 0 5 ooo", "parse"),
    ("Na Cl 0 1 +oo 0", "parse"),
])
def test_invalid_strings_name_their_cause(text, cause):
    with pytest.raises(SlicesError) as info:
        check_graph(QuotientGraph.from_string(text))
    assert info.value.cause == cause and str(info.value).startswith(cause)


def test_the_decoder_says_it_can_fail():
    assert decoder_can_fail(get_representation("slices"))


def test_convert_writes_slices_and_a_hand_edited_string_is_a_one_line_error(nacl, tmp_path, capsys, same_crystal):
    from conftest import assert_one_line_error, run_main

    source = tmp_path / "NaCl.cif"
    source.write_text(nacl.to_cif())
    written = run_main(["convert", str(source), "--to", "slices"], capsys)
    assert written.returncode == 0 and written.stdout.startswith("Na Cl 0 1 ")
    back = tmp_path / "NaCl.slices"
    back.write_text(written.stdout)
    rebuilt = run_main(["convert", str(back), "--to", "cif"], capsys)
    assert rebuilt.returncode == 0
    for name, text, fragment in (("flat.slices", "Na Cl 0 1 ooo 0 1 +oo", "periodicity: "),
                                 ("typo.slices", written.stdout.replace("Cl", "Cx"), "parse: 'Cx'"),
                                 ("label.slices", written.stdout.replace("--o", "-*o"), "parse: edge 0 1")):
        (tmp_path / name).write_text(text)
        assert_one_line_error(run_main(["convert", str(tmp_path / name), "--to", "cif"], capsys), name, fragment)
