"""Fixed-length descriptors of a crystal for the design oracle: composition statistics over
matminer's Magpie element table, plus cell and radial-distribution features of the structure.

Built for whole lists at once: composition statistics are segment reductions over all atoms, and
neighbour distances come from one periodic radius graph per batch (:mod:`crystalgen.nn.radius_graph`),
so featurising a 10,000-structure split takes seconds, not matminer's per-structure minutes.
The element table is matminer's; only the (vectorised) statistics are ours.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache

import numpy as np

from crystalgen.constants import MAX_Z
from crystalgen.crystal import Crystal

#: The element properties of matminer's "magpie" ElementProperty preset.
MAGPIE_PROPERTIES = (
    "Number", "MendeleevNumber", "AtomicWeight", "MeltingT", "Column", "Row", "CovalentRadius",
    "Electronegativity", "NsValence", "NpValence", "NdValence", "NfValence", "NValence", "NsUnfilled",
    "NpUnfilled", "NdUnfilled", "NfUnfilled", "NUnfilled", "GSvolume_pa", "GSbandgap", "GSmagmom",
    "SpaceGroupNumber",
)
COMPOSITION_STATISTICS = ("mean", "min", "max", "range", "mean_abs_dev")
#: Neighbour shells counted per atom: distances up to RADIAL_CUTOFF Å in RADIAL_BIN_WIDTH Å bins, and
#: distances over the sum of the two covalent radii in BOND_RATIO_BINS (a bond-aware coordination count).
RADIAL_CUTOFF = 6.0
RADIAL_BIN_WIDTH = 0.25
BOND_RATIO_BINS = np.array([0.0, 0.9, 1.0, 1.1, 1.2, 1.35, 1.5, 1.75, 2.0])
#: Crystals per radius-graph batch: bounds the memory of the candidate pair search.
GRAPH_BATCH = 128
CELL_FEATURES = ("log_atoms", "volume_per_atom", "density", "a/V^1/3", "b/V^1/3", "c/V^1/3",
                 "cos_alpha", "cos_beta", "cos_gamma")
NEIGHBOUR_FEATURES = ("min_distance", "mean_nearest_distance", "mean_electronegativity_difference_first_shell")


@lru_cache(maxsize=1)
def magpie_table() -> np.ndarray:
    """(MAX_Z + 1, len(MAGPIE_PROPERTIES)) element properties, indexed by atomic number (row 0: NaN)."""
    from matminer.utils.data import MagpieData
    from pymatgen.core.periodic_table import Element

    data = MagpieData().all_elemental_props
    table = np.full((MAX_Z + 1, len(MAGPIE_PROPERTIES)), np.nan)
    for z in range(1, MAX_Z + 1):
        symbol = Element.from_Z(z).symbol
        table[z] = [float(data[name].get(symbol, np.nan)) for name in MAGPIE_PROPERTIES]
    return table


def feature_names() -> list[str]:
    names = [f"{prop}:{stat}" for stat in COMPOSITION_STATISTICS for prop in MAGPIE_PROPERTIES]
    names += ["num_elements", "fraction_l2", "fraction_l3", *CELL_FEATURES, *NEIGHBOUR_FEATURES]
    edges = np.arange(0.0, RADIAL_CUTOFF + 1e-9, RADIAL_BIN_WIDTH)
    names += [f"neighbours_{lo:.2f}-{hi:.2f}A" for lo, hi in zip(edges[:-1], edges[1:])]
    names += [f"neighbours_bond_ratio_{lo:.2f}-{hi:.2f}" for lo, hi in zip(BOND_RATIO_BINS[:-1], BOND_RATIO_BINS[1:])]
    return names


def _segment_starts(num_atoms: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(num_atoms)[:-1]])


def composition_features(atomic_numbers: np.ndarray, num_atoms: np.ndarray) -> np.ndarray:
    """Magpie statistics (atom-fraction weighted) and stoichiometry norms, for crystals laid out atom after atom."""
    values = magpie_table()[atomic_numbers]  # (N, P)
    starts = _segment_starts(num_atoms)
    counts = num_atoms[:, None].astype(np.float64)
    mean = np.add.reduceat(values, starts, axis=0) / counts
    low = np.minimum.reduceat(values, starts, axis=0)
    high = np.maximum.reduceat(values, starts, axis=0)
    crystal_of_atom = np.repeat(np.arange(len(num_atoms)), num_atoms)
    deviation = np.add.reduceat(np.abs(values - mean[crystal_of_atom]), starts, axis=0) / counts
    # Element fractions: count each (crystal, element) pair once.
    pairs, pair_counts = np.unique(np.stack([crystal_of_atom, atomic_numbers]), axis=1, return_counts=True)
    fractions = pair_counts / num_atoms[pairs[0]]
    num_elements = np.bincount(pairs[0], minlength=len(num_atoms)).astype(np.float64)
    l2 = np.sqrt(np.bincount(pairs[0], fractions ** 2, minlength=len(num_atoms)))
    l3 = np.cbrt(np.bincount(pairs[0], fractions ** 3, minlength=len(num_atoms)))
    return np.concatenate([mean, low, high, high - low, deviation, num_elements[:, None], l2[:, None], l3[:, None]], axis=1)


def cell_features(lattices: np.ndarray, atomic_numbers: np.ndarray, num_atoms: np.ndarray) -> np.ndarray:
    from crystalgen.metrics.distribution import AMU_PER_A3_TO_G_PER_CM3, atomic_masses

    volumes = np.abs(np.linalg.det(lattices))
    mass = np.add.reduceat(atomic_masses()[atomic_numbers], _segment_starts(num_atoms))
    lengths = np.linalg.norm(lattices, axis=2)  # (B, 3)
    a, b, c = lattices[:, 0], lattices[:, 1], lattices[:, 2]
    cosines = np.stack([np.sum(b * c, 1) / (lengths[:, 1] * lengths[:, 2]),
                        np.sum(a * c, 1) / (lengths[:, 0] * lengths[:, 2]),
                        np.sum(a * b, 1) / (lengths[:, 0] * lengths[:, 1])], axis=1)
    scale = np.cbrt(volumes)[:, None]
    return np.concatenate([np.log(num_atoms)[:, None], (volumes / num_atoms)[:, None],
                           (mass / volumes * AMU_PER_A3_TO_G_PER_CM3)[:, None], lengths / scale, cosines], axis=1)


def _neighbour_features(crystals: Sequence[Crystal]) -> np.ndarray:
    """Per crystal: nearest-neighbour statistics and neighbour counts per atom in distance and bond-ratio bins."""
    import torch

    from crystalgen.nn.radius_graph import periodic_radius_graph

    radii = magpie_table()[:, MAGPIE_PROPERTIES.index("CovalentRadius")] / 100.0  # pm -> Å
    electronegativity = magpie_table()[:, MAGPIE_PROPERTIES.index("Electronegativity")]
    distance_edges = np.arange(0.0, RADIAL_CUTOFF + 1e-9, RADIAL_BIN_WIDTH)
    distance_bins, ratio_bins = len(distance_edges) - 1, len(BOND_RATIO_BINS) - 1
    out = np.zeros((len(crystals), len(NEIGHBOUR_FEATURES) + distance_bins + ratio_bins))
    for start in range(0, len(crystals), GRAPH_BATCH):
        chunk = crystals[start:start + GRAPH_BATCH]
        num_atoms = np.array([c.num_atoms for c in chunk])
        z = np.concatenate([c.atomic_numbers for c in chunk])
        edges = periodic_radius_graph(torch.tensor(np.concatenate([c.frac_coords for c in chunk])),
                                      torch.tensor(np.stack([c.lattice for c in chunk])),
                                      torch.tensor(num_atoms), RADIAL_CUTOFF)
        src, dst, distance = edges.src.numpy(), edges.dst.numpy(), edges.distances.double().numpy()
        atoms, crystal_of_atom = len(z), np.repeat(np.arange(len(chunk)), num_atoms)
        nearest = np.full(atoms, RADIAL_CUTOFF)
        np.minimum.at(nearest, dst, distance)
        ratio = distance / (radii[z[src]] + radii[z[dst]])
        first_shell = ratio < BOND_RATIO_BINS[-2]
        en_difference = np.abs(electronegativity[z[src]] - electronegativity[z[dst]])
        shell_sum = np.bincount(crystal_of_atom[dst[first_shell]], en_difference[first_shell], minlength=len(chunk))
        shell_count = np.bincount(crystal_of_atom[dst[first_shell]], minlength=len(chunk))
        rows = slice(start, start + len(chunk))
        out[rows, 0] = np.minimum.reduceat(nearest, _segment_starts(num_atoms))
        out[rows, 1] = np.add.reduceat(nearest, _segment_starts(num_atoms)) / num_atoms
        out[rows, 2] = shell_sum / np.maximum(shell_count, 1)
        column = len(NEIGHBOUR_FEATURES)
        for edges_of, values, bins in ((distance_edges, distance, distance_bins), (BOND_RATIO_BINS, ratio, ratio_bins)):
            which = np.clip(np.searchsorted(edges_of, values, side="right") - 1, 0, bins - 1)
            histogram = np.zeros((len(chunk), bins))
            np.add.at(histogram, (crystal_of_atom[dst], which), 1.0)
            out[rows, column:column + bins] = histogram / num_atoms[:, None]
            column += bins
    return out


def describe(crystals: Sequence[Crystal]) -> np.ndarray:
    """(len(crystals), len(feature_names())) float64 descriptors; NaN where an element lacks a Magpie value."""
    if not crystals:
        return np.zeros((0, len(feature_names())))
    num_atoms = np.array([c.num_atoms for c in crystals])
    atomic_numbers = np.concatenate([c.atomic_numbers for c in crystals]).astype(np.int64)
    lattices = np.stack([c.lattice for c in crystals]).astype(np.float64)
    return np.concatenate([composition_features(atomic_numbers, num_atoms),
                           cell_features(lattices, atomic_numbers, num_atoms),
                           _neighbour_features(list(crystals))], axis=1)
