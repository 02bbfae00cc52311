"""METRe / cRMSE arithmetic, polymorph leakage and the polymorph-grouped split (crystalgen.metrics.polymorph)."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import make_textbook

from crystalgen.crystal import Crystal
from crystalgen.metrics.matching import rms_distance
from crystalgen.metrics.polymorph import (
    MetreConfig,
    MetreMetric,
    cross_pairs,
    polymorph_grouped_split,
    polymorph_leakage,
)

STOL = MetreConfig().unmatched_rms
#: RMS distance of a structure to itself in another cell: zero up to round-off.
SAME_STRUCTURE_RMS = 1e-6


def caesium_chloride_type_nacl() -> Crystal:
    """NaCl in the CsCl (B2) structure: a polymorph of rock salt."""
    from pymatgen.core import Lattice, Structure

    return Crystal.from_structure(
        Structure.from_spacegroup("Pm-3m", Lattice.cubic(3.0), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]]))


def primitive_rock_salt() -> Crystal:
    """Rock salt in its 2-atom primitive cell (the textbook one is the 8-atom conventional cell)."""
    return Crystal.from_structure(make_textbook("NaCl").to_structure().get_primitive_structure())


def metre(references, proposals):
    return MetreMetric()(references, proposals, workers=1)


def test_rock_salt_and_caesium_chloride_are_distinct_polymorphs():
    # Precondition of the tests below: the two NaCl cells are different structures, the two rock-salt cells the same.
    assert np.isnan(rms_distance(caesium_chloride_type_nacl(), make_textbook("NaCl")))
    assert rms_distance(primitive_rock_salt(), make_textbook("NaCl")) < SAME_STRUCTURE_RMS


def test_swapped_polymorphs_score_zero_index_aligned_and_one_under_metre():
    references = [make_textbook("NaCl"), caesium_chloride_type_nacl()]
    proposals = [[caesium_chloride_type_nacl()], [primitive_rock_salt()]]
    result = metre(references, proposals)
    assert result.match_rate == 0.0
    assert result.crmse_own == STOL  # both unmatched: each counts as stol
    assert result.metre == 1.0
    assert result.crmse < SAME_STRUCTURE_RMS
    assert result.n == 2 and result.n_proposals == 2


def test_unmatched_structures_count_as_stol_in_crmse():
    references = [make_textbook("NaCl"), caesium_chloride_type_nacl(), make_textbook("Si")]
    proposals = [[primitive_rock_salt()], [None], [make_textbook("SrTiO3")]]  # hit, missing, wrong composition
    result = metre(references, proposals)
    assert result.metre == pytest.approx(1 / 3)
    assert result.match_rate == pytest.approx(1 / 3)
    assert result.crmse == pytest.approx((0.0 + STOL + STOL) / 3, abs=SAME_STRUCTURE_RMS)
    assert np.isnan(result.rms_any[1:]).all()


def test_crmse_is_the_mean_of_the_matcher_rms_over_all_references():
    reference = make_textbook("NaCl")
    displaced = reference.copy()
    displaced.frac_coords[0] += [0.02, 0.01, 0.0]  # small enough to still match, large enough to cost RMS
    expected = rms_distance(displaced, reference)
    assert 0.0 < expected < STOL
    result = metre([reference, make_textbook("Si")], [[displaced], [None]])
    assert result.rms_any[0] == pytest.approx(expected, rel=1e-9)
    assert result.mean_rms == pytest.approx(expected, rel=1e-9)
    assert result.crmse == pytest.approx((expected + STOL) / 2, rel=1e-9)


def test_one_proposal_may_match_several_references():
    # METRe is not a one-to-one assignment: a proposal matching two duplicate references counts for both.
    references = [make_textbook("NaCl"), primitive_rock_salt()]
    result = metre(references, [[make_textbook("NaCl")], [None]])
    assert result.metre == 1.0
    assert result.match_rate == 0.5


def test_pools_do_not_cross_compositions():
    references = [make_textbook("NaCl"), make_textbook("Si")]
    result = metre(references, [[make_textbook("Si")], [make_textbook("NaCl")]])
    assert result.metre == 0.0 and result.crmse == STOL


def test_subset_restricts_every_figure():
    references = [make_textbook("NaCl"), caesium_chloride_type_nacl(), make_textbook("Si")]
    result = metre(references, [[make_textbook("NaCl")], [None], [None]])
    first = result.subset(np.array([True, False, False]))
    rest = result.subset(np.array([False, True, True]))
    assert (first.n, first.metre, rest.n, rest.metre) == (1, 1.0, 2, 0.0)
    assert rest.crmse == STOL
    with pytest.raises(ValueError):
        result.subset(np.array([True]))


def test_precomputed_own_rms_gives_the_same_figures_as_matching_everything():
    references = [make_textbook("NaCl"), caesium_chloride_type_nacl(), make_textbook("Si"), primitive_rock_salt()]
    proposals = [[caesium_chloride_type_nacl()], [primitive_rock_salt()], [make_textbook("Si")], [None]]
    full = metre(references, proposals)
    own = MetreMetric()(references, proposals, workers=1, own_rms=full.rms_own)
    np.testing.assert_allclose(own.rms_any, full.rms_any, equal_nan=True)
    assert (own.metre, own.match_rate, own.crmse) == (full.metre, full.match_rate, full.crmse) == (1.0, 0.25, own.crmse)
    # a wrong own_rms shows: it is taken as given, so claiming no own matches lowers only the usual rate
    none_own = MetreMetric()(references, proposals, workers=1, own_rms=np.full(4, np.nan))
    assert none_own.match_rate == 0.0 and none_own.metre == 0.75  # Si's only proposal is its own
    with pytest.raises(ValueError, match="own_rms"):
        MetreMetric()(references, proposals, workers=1, own_rms=np.zeros(3))


def test_cross_pairs_counts_the_other_proposals_of_each_composition():
    references = [make_textbook("NaCl"), caesium_chloride_type_nacl(), primitive_rock_salt(), make_textbook("Si")]
    assert cross_pairs(references, [[None]] * 4) == 3 * 2  # three NaCl entries each see two others; Si none
    assert cross_pairs(references, [[None, None], [None], [], [None]]) == (1 + 0) + (2 + 0) + (2 + 1)
    assert cross_pairs([], []) == 0


def test_usual_figures_alone_print_no_metre():
    references = [make_textbook("NaCl"), make_textbook("Si")]
    result = MetreMetric().own_only(references, [[None], [None]], np.array([0.1, np.nan]))
    figures = result.to_dict(with_metre=False)
    assert figures["match_rate"] == 0.5 and figures["crmse_own"] == pytest.approx((0.1 + STOL) / 2)
    assert figures["metre"] is figures["crmse"] is figures["metre_mean_rms"] is None


def test_mismatched_lengths_are_rejected():
    with pytest.raises(ValueError):
        metre([make_textbook("NaCl")], [])


# ---------------------------------------------------------------------------------- leakage
def test_leakage_counts_test_structures_with_a_training_polymorph():
    train = [make_textbook("NaCl"), make_textbook("Si")]  # Na4Cl4 conventional cell, Si8
    test = [caesium_chloride_type_nacl(), primitive_rock_salt(), make_textbook("SrTiO3"), make_textbook("ZnO")]
    reduced = polymorph_leakage(train, test)
    assert reduced.leaked.tolist() == [True, True, False, False]
    assert (reduced.n_leaked, reduced.leaked_fraction) == (2, 0.5)
    assert (reduced.n_test_compositions, reduced.n_leaked_compositions) == (3, 1)
    assert reduced.n_test_sharing_within_test == 2  # the two NaCl test structures
    exact = polymorph_leakage(train, test, key="exact")  # Na1Cl1 is not Na4Cl4
    assert exact.n_leaked == 0
    with pytest.raises(ValueError):
        polymorph_leakage(train, test, key="formula")


# ---------------------------------------------------------------------------------- grouped split
ELEMENTS = np.array([3, 8, 11, 12, 14, 17, 26])


def fake_crystals(n: int, seed: int = 0) -> list[Crystal]:
    """Cubic cells of random 1-3 element compositions; only composition matters to the split."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        elements = rng.choice(ELEMENTS, size=rng.integers(1, 4), replace=False)
        numbers = np.repeat(elements, rng.integers(1, 3, size=len(elements)))
        out.append(Crystal(np.eye(3) * 4.0, rng.random((len(numbers), 3)), numbers, id=f"x-{i}"))
    return out


def split_ids(splits):
    return {name: sorted(c.id for c in crystals) for name, crystals in splits.items()}


def test_grouped_split_keeps_each_composition_in_one_split():
    from crystalgen.metrics.validity import composition_key

    crystals = fake_crystals(400)
    splits = polymorph_grouped_split(crystals, seed=3)
    keys = {name: {composition_key(c) for c in members} for name, members in splits.items()}
    assert not keys["train"] & keys["val"] and not keys["train"] & keys["test"] and not keys["val"] & keys["test"]
    assert sorted(i for ids in split_ids(splits).values() for i in ids) == sorted(c.id for c in crystals)
    largest_group = max(sum(composition_key(c) == k for c in crystals) for k in keys["train"] | keys["val"])
    for name, fraction in {"train": 0.6, "val": 0.2}.items():
        assert fraction * len(crystals) <= len(splits[name]) <= fraction * len(crystals) + largest_group


def test_grouped_split_is_deterministic_and_independent_of_row_order():
    crystals = fake_crystals(300)
    shuffled = [crystals[i] for i in np.random.default_rng(1).permutation(len(crystals))]
    first = split_ids(polymorph_grouped_split(crystals, seed=5))
    assert split_ids(polymorph_grouped_split(crystals, seed=5)) == first
    assert split_ids(polymorph_grouped_split(shuffled, seed=5)) == first
    assert split_ids(polymorph_grouped_split(crystals, seed=6)) != first


def test_a_single_composition_cannot_be_split():
    carbon = [Crystal(np.eye(3) * 3.0, np.zeros((n, 3)) + np.arange(n)[:, None] / n, [6] * n, id=f"c{n}")
              for n in range(6, 12)]
    reduced = polymorph_grouped_split(carbon)
    assert [len(reduced[name]) for name in ("train", "val", "test")] == [6, 0, 0]
    exact = polymorph_grouped_split(carbon, key="exact")  # C6 .. C11 are six groups
    assert sum(len(v) for v in exact.values()) == 6 and len(exact["train"]) < 6


def test_bad_fractions_are_rejected():
    with pytest.raises(ValueError):
        polymorph_grouped_split(fake_crystals(5), {"train": 0.5, "test": 0.2})
