"""The learned template ranker's building blocks (``crystalgen.generators.template_ranker``):
structure types up to the group's normalizer, candidates under several element mappings, and the
known-polymorph flag."""

from __future__ import annotations

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.generators import Target
from crystalgen.generators.template import TemplateGenerator, sorted_elements
from crystalgen.generators.template_ranker import known_polymorphs, structure_types_of, type_key

SR, TI, BA, ZR, O = 38, 22, 56, 40, 8


def _perovskite(a_site: int, b_site: int, name: str, a: float = 3.9) -> Crystal:
    """Cubic ABO3: A at the corner (1a), B at the body centre (1b), O on the face centres (3c)."""
    frac = [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal(np.eye(3) * a, np.array(frac, dtype=float), np.array([a_site, b_site, O, O, O]), name)


def test_a_structure_type_does_not_depend_on_the_choice_of_origin():
    # Shifting the origin by (1/2, 1/2, 1/2) relabels 1a <-> 1b and 3c <-> 3d: the same perovskite.
    corner = structure_types_of(221, [(SR, "1a"), (TI, "1b"), (O, "3c")])
    centre = structure_types_of(221, [(SR, "1b"), (TI, "1a"), (O, "3d")])
    order = [SR, TI, O]
    assert type_key(corner, order) == type_key(centre, order)
    # Swapping the cations is a different structure (Ti on the cuboctahedral site), whatever the origin.
    swapped = structure_types_of(221, [(SR, "1b"), (TI, "1a"), (O, "3c")])
    assert type_key(swapped, order) != type_key(corner, order)


def test_retrieval_offers_each_template_under_its_best_element_mappings():
    model = TemplateGenerator({"name": "ranker-test"})
    model.build_index([_perovskite(BA, ZR, "BaZrO3")], fit_volumes=True)
    one_rows, one_maps = model.rank_templates(Target.parse("SrTiO3"))
    rows, maps = model.rank_templates(Target.parse("SrTiO3"), mappings_per_template=2)
    assert len(one_rows) == 1 and rows.tolist() == [0, 0]
    assert np.array_equal(maps[0], one_maps[0])  # the best mapping first, as the template family has it
    cation_of = [dict(zip(m[1].tolist(), m[0].tolist()))[SR] for m in maps]
    assert sorted(cation_of) == [ZR, BA]  # Sr takes the A site in one candidate, the B site in the other


def test_known_polymorphs_are_the_types_of_training_structures_of_the_same_composition():
    train = [_perovskite(SR, TI, "SrTiO3"), _perovskite(TI, SR, "TiSrO3-swapped"), _perovskite(BA, ZR, "BaZrO3")]
    model = TemplateGenerator({"name": "ranker-test"})
    model.build_index(train, fit_volumes=True)
    numbers = train[0].atomic_numbers
    assert sorted(model.rows_with_composition(numbers).tolist()) == [0, 1]
    types = [structure_types_of(221, [(SR, "1a"), (TI, "1b"), (O, "3c")]),
             structure_types_of(221, [(TI, "1a"), (SR, "1b"), (O, "3c")]),
             structure_types_of(221, [(BA, "1a"), (ZR, "1b"), (O, "3c")])]
    order = sorted_elements(numbers)[0]
    both = known_polymorphs(model, types.__getitem__, numbers)
    assert both == {type_key(types[0], order), type_key(types[1], order)}
    # leaving the target out (as training does) hides its own type, so the flag cannot leak the answer
    assert known_polymorphs(model, types.__getitem__, numbers, leave_out=0) == {type_key(types[1], order)}
    assert known_polymorphs(model, types.__getitem__, np.array([BA, ZR, O, O, O, O])) == set()


class _AvoidsKnownPolymorphs:
    """A stand-in ranker whose score is minus the known-polymorph flag (the second-to-last feature)."""

    def __init__(self) -> None:
        from crystalgen.generators.template_ranker import TemplateRanker

        self.features = TemplateRanker().features

    def __call__(self, features):
        return -features[:, -2]


def test_the_known_polymorph_flag_reaches_the_ranker_and_can_be_switched_off():
    from crystalgen.generators.template_ranker import rerank

    # training knows SrTiO3 with Sr on the A site; BaZrO3 offers that assignment and the swapped one
    train = [_perovskite(SR, TI, "SrTiO3"), _perovskite(BA, ZR, "BaZrO3")]
    types = [structure_types_of(221, [(SR, "1a"), (TI, "1b"), (O, "3c")]),
             structure_types_of(221, [(BA, "1a"), (ZR, "1b"), (O, "3c")])]
    model = TemplateGenerator({"name": "ranker-test"})
    model.build_index(train, fit_volumes=True)
    rows, maps = model.rank_templates(Target.parse("SrTiO3"), mappings_per_template=2)
    counts, numbers = np.zeros(len(train)), train[0].atomic_numbers

    avoided_rows, avoided = rerank(_AvoidsKnownPolymorphs(), model, types.__getitem__, numbers, rows, maps, counts)
    kept_rows, kept = rerank(_AvoidsKnownPolymorphs(), model, types.__getitem__, numbers, rows, maps, counts,
                             avoid_known_polymorphs=False)
    order = sorted_elements(numbers)[0]
    known = {type_key(types[0], order)}
    flags = [type_key(types[r], m[0]) in known for r, m in zip(avoided_rows, avoided)]
    assert any(flags) and flags == sorted(flags)  # the known polymorphs (itself, and BaZrO3 as is) go last
    assert [type_key(types[r], m[0]) for r, m in zip(kept_rows, kept)] == \
        [type_key(types[r], m[0]) for r, m in zip(rows, maps)]  # switched off: retrieval's order stands
