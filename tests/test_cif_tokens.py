"""The cif-tokens representation: canonical form, vocabulary, symmetric CIF text and failing decodes.

Round trips on every textbook and random crystal run in ``test_representations.py``.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.representations import decoder_can_fail, get_representation
from crystalgen.representations.cif_tokens import (
    CifDecodeError,
    CifTokens,
    canonicalise,
    expand,
    render_cif,
    symmetric_cif,
    symmetry_operations,
)
from crystalgen.representations.cif_vocab import EOS, CanonicalSite, CifTokenError, vocabulary


def _rotated_permuted(crystal: Crystal, seed: int) -> Crystal:
    rng = np.random.default_rng(seed)
    q, _ = np.linalg.qr(rng.normal(size=(3, 3)))
    q *= np.sign(np.linalg.det(q))
    order = rng.permutation(crystal.num_atoms)
    return Crystal(crystal.lattice @ q.T, crystal.frac_coords[order], crystal.atomic_numbers[order])


def test_decoder_says_it_can_fail():
    assert decoder_can_fail(get_representation("cif-tokens"))
    assert not decoder_can_fail(get_representation("wyckoff"))


def test_canonical_form_ignores_rotation_and_atom_order(any_crystal):
    tokens = CifTokens()
    assert tokens.encode(_rotated_permuted(any_crystal, 3)) == tokens.encode(any_crystal)


def test_decoding_gives_the_primitive_cell_with_the_formula_of_the_target(srtio3, random_crystals):
    tokens = CifTokens()
    for crystal in (srtio3, random_crystals["random-sg227"], random_crystals["random-sg166"]):
        cif = canonicalise(crystal)
        decoded = tokens.decode(tokens.encode(crystal))
        assert decoded.composition == crystal.composition.__class__(dict(cif.formula))
    assert canonicalise(random_crystals["random-sg227"]).formula == (("Si", 2),)  # 8 per F-centred cell


def test_space_group_and_element_tokens_are_distinct(zno):
    vocab = vocabulary()
    assert vocab.id("Pm") != vocab.spacegroup_id(6)  # the element, the group Pm
    assert vocab.strings([vocab.spacegroup_id(6)]) == ["sg:Pm"]
    strings = vocab.strings(CifTokens().encode(zno))
    assert strings[0] == "data_" and strings[-1] == EOS
    assert "sg:P6_3mc" in strings and "mult:2" in strings


def test_symmetric_cif_is_read_back_by_pymatgen(any_crystal, same_crystal):
    from pymatgen.io.cif import CifParser

    text = symmetric_cif(canonicalise(any_crystal))
    assert "_symmetry_equiv_pos_as_xyz" in text
    structure = CifParser.from_str(text).parse_structures(primitive=True)[0]
    assert same_crystal(any_crystal, Crystal.from_structure(structure))


def test_operations_include_centring():
    rotations, translations = symmetry_operations(225)
    assert len(rotations) == 192 and len(translations) == 192
    assert len(symmetry_operations(166)[0]) == 36  # hexagonal setting of R-3m


def _decode_error(cif) -> CifDecodeError:
    with pytest.raises(CifDecodeError) as info:
        expand(cif)
    return info.value


def test_failures_name_their_cause(nacl):
    cif = canonicalise(nacl)
    na, cl = cif.sites
    wrong_multiplicity = dataclasses.replace(cif, sites=(dataclasses.replace(na, multiplicity=8), cl))
    assert _decode_error(wrong_multiplicity).cause == "multiplicity"
    general = CanonicalSite("Cl", 4, (0.01, 0.0, 0.0))  # merges onto Na's 4a orbit
    assert _decode_error(dataclasses.replace(cif, sites=(na, general))).cause == "overlap"
    assert _decode_error(dataclasses.replace(cif, formula=(("Na", 2), ("Cl", 1)))).cause == "composition"
    flat = dataclasses.replace(cif, cell=(0.1, 0.1, 0.1, 90.0, 90.0, 90.0))
    assert _decode_error(flat).cause == "cell"


def test_malformed_sequences_fail_as_parse_errors(nacl):
    tokens = CifTokens()
    ids = tokens.encode(nacl)
    group = ids.index(vocabulary().id("_symmetry_space_group_name_H-M")) + 1
    element_for_group = ids[:group] + [vocabulary().id("Pm")] + ids[group + 1:]
    for broken in (ids[:20], element_for_group, [len(vocabulary()) + 5] + ids[1:]):
        with pytest.raises(CifDecodeError, match="^parse: "):
            tokens.decode(broken)
    with pytest.raises(CifTokenError, match="unknown token"):
        vocabulary().id("Xx")


def test_a_site_written_near_a_special_position_is_snapped_onto_it(nacl):
    cif = canonicalise(nacl)
    na, cl = cif.sites
    nudged = dataclasses.replace(cif, sites=(na, dataclasses.replace(cl, frac=(0.5, 0.5, 0.52))))
    decoded = expand(nudged)
    assert decoded.num_atoms == 2
    assert "0.500000 0.500000 0.500000" in symmetric_cif(nudged)


def test_token_text_has_no_operations_and_fixed_precision(si):
    text = render_cif(canonicalise(si), with_operations=False)
    assert "_symmetry_equiv_pos_as_xyz" not in text
    assert "_cell_length_a 5.4" in text and "Si Si0 8 " in text


def test_convert_reads_and_writes_token_files_and_bad_ones_are_one_line_errors(nacl, tmp_path, capsys, same_crystal):
    from conftest import assert_one_line_error, run_main

    from crystalgen.io import parse_crystal

    source = tmp_path / "NaCl.cif"
    source.write_text(nacl.to_cif())
    written = run_main(["convert", str(source), "--to", "cif-tokens"], capsys)
    assert written.returncode == 0 and written.stdout.startswith("data_ Na 1 Cl 1 ")
    assert same_crystal(parse_crystal(written.stdout, "cif-tokens"), nacl)
    for name, edit, fragment in (("unknown.tokens", ("sg:Fm-3m", "sg:Fm3m"), "unknown token 'sg:Fm3m'"),
                                 ("multiplicity.tokens", ("Na mult:4", "Na mult:8"), "multiplicity: Na"),
                                 ("cut.tokens", (" loop_", ""), "parse: ")):
        broken = tmp_path / name
        broken.write_text(written.stdout.replace(*edit))
        assert_one_line_error(run_main(["convert", str(broken), "--to", "cif"], capsys), name, fragment)
