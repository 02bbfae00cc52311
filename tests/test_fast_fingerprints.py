"""The fast CrystalNN "ops" fingerprint against pymatgen and matminer, piece by piece.

The order parameters are compared motif by motif on seeded random shells and ideal polyhedra,
the CrystalNN weights and shells site by site, and the whole fingerprint feature by feature.
The bcc motif (feature 30) is order-dependent in pymatgen (pairs j < k only), so it is compared
only where the neighbours' order is not decided by rounding noise; ``bench/fingerprint_agreement.py``
measures it on full splits.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from crystalgen.metrics import fingerprints as fp_module
from crystalgen.metrics.crystalnn import PeriodicImages, crystal_coordination
from crystalgen.metrics.order_params import NeighbourAngles, ops_preset, order_parameter

from conftest import make_random, make_textbook

#: Index of the order-dependent bcc feature in the 61-number fingerprint.
BCC_FEATURE = 30
TOLERANCE = 1e-6

IDEAL_SHELLS = {
    2: [[1, 0, 0], [-1, 0, 0]],
    3: [[1, 0, 0], [-0.5, 0.8660254, 0], [-0.5, -0.8660254, 0]],
    4: [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]],
    6: [[1, 0, 0], [-1, 0, 0], [0, 1, 0], [0, -1, 0], [0, 0, 1], [0, 0, -1]],
    8: [[a, b, c] for a in (1, -1) for b in (1, -1) for c in (1, -1)],
    12: [[a, b, 0] for a in (1, -1) for b in (1, -1)]
    + [[a, 0, b] for a in (1, -1) for b in (1, -1)]
    + [[0, a, b] for a in (1, -1) for b in (1, -1)],
}


def _shells(cn: int, rng: np.random.Generator) -> list[np.ndarray]:
    shells = [rng.normal(size=(cn, 3)) * rng.uniform(1.5, 3.0) for _ in range(3)]
    if cn in IDEAL_SHELLS:
        ideal = 2.1 * np.asarray(IDEAL_SHELLS[cn], dtype=np.float64)
        shells += [ideal, ideal + rng.normal(scale=0.05, size=ideal.shape)]
    return shells


def _pymatgen_order_parameter(kind: str, params, vectors: np.ndarray) -> float:
    from pymatgen.core.local_env import LocalStructOrderParams
    from pymatgen.core.sites import Site

    sites = [Site("Na", [0.0, 0.0, 0.0])] + [Site("Cl", v) for v in vectors]
    value = LocalStructOrderParams([kind], parameters=[params]).get_order_parameters(
        sites, 0, indices_neighs=list(range(1, len(vectors) + 1))
    )[0]
    return value or 0.0


@pytest.mark.parametrize("cn", range(1, 13))
def test_every_motif_matches_pymatgen(cn):
    rng = np.random.default_rng(cn)
    entries = [(kind, params) for kind, params in ops_preset()[cn - 1] if kind != "wt"]
    assert entries, f"the preset has motifs for CN {cn}"
    shells = _shells(cn, rng)
    batch = NeighbourAngles(np.stack(shells))  # every shell at once, as the fingerprint computes them
    for kind, params in entries:
        expected = [_pymatgen_order_parameter(kind, params, vectors) for vectors in shells]
        # q_l is a square root, so near zero (a perfect cuboctahedron's q2) rounding noise
        # of 1e-16 becomes 1e-8: hence 1e-7, still well inside the fingerprint's 1e-6.
        np.testing.assert_allclose(order_parameter(kind, params, batch), expected, atol=1e-7, err_msg=kind)
        single = [float(order_parameter(kind, params, NeighbourAngles(v[None]))[0]) for v in shells]
        np.testing.assert_allclose(single, expected, atol=1e-7, err_msg=kind)


def test_preset_layout():
    preset = ops_preset()
    assert len(preset) == 24 and sum(len(entries) for entries in preset) == fp_module.STRUCTURE_FP_DIM
    assert all(entries[0][0] == "wt" for entries in preset)
    assert preset[7][1][0] == "bcc"  # feature 30: CN 8's first motif
    assert sum(len(entries) for entries in preset[:7]) + 1 == BCC_FEATURE


def _crystals() -> list:
    crystals = [make_textbook(name) for name in ("NaCl", "Si", "SrTiO3", "ZnO")]
    for sg, species, counts, seed in [(225, ["Cu"], [4], 0), (62, ["Ca", "Ti", "O"], [4, 4, 12], 1),
                                      (14, ["Li", "P", "O"], [4, 4, 16], 2), (166, ["Bi", "Se"], [6, 9], 3)]:
        try:
            crystals.append(make_random(sg, species, counts, seed))
        except Exception:  # pyxtal could not place these atoms: the textbook cells still run
            continue
    return crystals


@pytest.fixture(scope="module")
def crystals() -> list:
    return _crystals()


def test_coordination_matches_pymatgen_crystalnn(crystals):
    from pymatgen.core.local_env import CrystalNN

    cnn = CrystalNN(distance_cutoffs=(0.5, 1), x_diff_weight=3.0, search_cutoff=7, porous_adjustment=True)
    for crystal in crystals:
        structure = crystal.to_structure()
        found = crystal_coordination(PeriodicImages(crystal.lattice, crystal.frac_coords, crystal.atomic_numbers))
        for site in range(len(structure)):
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                expected = cnn.get_nn_data(structure, site)
            got = found[site]
            assert set(got.cn_weights) == set(expected.cn_weights) - {0} or set(got.cn_weights) == set(
                expected.cn_weights
            ), crystal.id
            for cn, weight in got.cn_weights.items():
                assert weight == pytest.approx(expected.cn_weights[cn], abs=1e-9)
                reference = np.array([e["site"].coords - structure[site].coords for e in expected.cn_nninfo[cn]])
                assert _same_rows(got.shells[cn], reference), (crystal.id, site, cn)


def _same_rows(a: np.ndarray, b: np.ndarray) -> bool:
    if a.shape != b.shape:
        return False
    key = lambda rows: rows[np.lexsort(np.round(rows, 6).T)]  # noqa: E731 - sort rows for a set comparison
    return bool(np.allclose(key(a), key(b), atol=1e-8))


def _matminer_sites(crystal) -> np.ndarray:
    site_fp, _ = fp_module._featurizers()
    structure = crystal.to_structure()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.array([site_fp.featurize(structure, i) for i in range(len(structure))])


def test_site_fingerprints_match_matminer(crystals):
    for crystal in crystals:
        expected = _matminer_sites(crystal)
        got = fp_module.fast_site_fingerprints(crystal)
        assert got.shape == expected.shape
        difference = np.abs(got - expected)
        difference[:, BCC_FEATURE] = 0.0
        assert difference.max() < TOLERANCE, crystal.id


def test_bcc_feature_matches_where_neighbour_order_is_unambiguous(crystals):
    # Without a CN-8 shell the feature is 0 in both; with one, pymatgen's order comes from the
    # weights, which here are distinct or exactly mirrored by symmetry.
    for crystal in crystals[:4]:
        expected = _matminer_sites(crystal)[:, BCC_FEATURE]
        got = fp_module.fast_site_fingerprints(crystal)[:, BCC_FEATURE]
        np.testing.assert_allclose(got, expected, atol=TOLERANCE, err_msg=crystal.id)


def test_structure_fingerprint_methods_and_errors(nacl):
    fast = fp_module.structure_fingerprint(nacl, "fast")
    reference = fp_module.structure_fingerprint(nacl, "matminer")
    np.testing.assert_allclose(fast, reference, atol=TOLERANCE)
    with pytest.raises(ValueError, match="unknown fingerprint method"):
        fp_module.structure_fingerprint(nacl, "voronoi")
    broken = nacl.copy()
    broken.frac_coords[0, 0] = np.nan
    with pytest.raises(ValueError, match="non-finite"):
        fp_module.structure_fingerprint(broken)


def test_cache_is_keyed_by_method(nacl, tmp_path):
    fast = fp_module.fingerprint_cache_path([nacl], tmp_path, "fast")
    reference = fp_module.fingerprint_cache_path([nacl], tmp_path, "matminer")
    assert fast != reference


def test_mp20_test_structures_match_matminer(data_dir):
    from crystalgen.data.loading import load_structures

    crystals = load_structures(data_dir / "mp_20" / "test.csv.gz")[:25]
    for crystal in crystals:
        difference = np.abs(fp_module.fast_site_fingerprints(crystal) - _matminer_sites(crystal))
        difference[:, BCC_FEATURE] = 0.0
        assert difference.max() < TOLERANCE, crystal.id


def test_degenerate_cell_fails_cleanly(nacl):
    thin = nacl.copy()
    thin.lattice[2] *= 1e-4  # a 0.0006 A spacing: millions of images to search
    with pytest.raises(ValueError, match="cell too thin"):
        fp_module.fast_site_fingerprints(thin)
    rows = fp_module._fingerprint_chunk([thin, nacl])
    assert [ok for _, _, ok in rows] == [False, True]


def test_a_single_layer_far_from_the_next_matches_matminer():
    # Graphene 10 A apart (mp-990448 in mp_20 test): within 6 A every atom is in one plane, so
    # the shared tessellation is flat and every site falls back to pymatgen's growing sphere.
    from crystalgen.crystal import Crystal

    lattice = np.array([[2.468, 0.0, 0.0], [-1.234, 2.1373, 0.0], [0.0, 0.0, 10.0]])
    layer = Crystal(lattice, np.array([[2 / 3, 1 / 3, 0.0], [1 / 3, 2 / 3, 0.0]]), np.array([6, 6]), id="graphene")
    np.testing.assert_allclose(fp_module.fast_site_fingerprints(layer), _matminer_sites(layer), atol=TOLERANCE)
