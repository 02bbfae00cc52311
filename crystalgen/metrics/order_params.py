"""Local structure order parameters of matminer's CrystalNN "ops" fingerprint, vectorised.

pymatgen's ``LocalStructOrderParams`` loops in Python over every neighbour pair (j, k) and every
third neighbour m, separately for each of the 37 order parameters of the preset, and that is
two thirds of the cost of a CDVAE coverage fingerprint. Here the angles of one neighbour set are
computed once as (n, n) and (n, n, n) arrays, and every order parameter is a masked sum or max
over them.

The definitions follow Zimmermann et al., *Front. Mater.* 4, 34 (2017), with the exact
conventions of pymatgen's implementation, because the point is to reproduce its numbers:

* neighbour j is the north pole; neighbour k (k != j) fixes the prime meridian; theta_jk is the
  j-i-k angle and phi_jkm the azimuth of m about j, measured from k;
* a (j, k) pair whose meridian is undefined (k parallel to j) gets no third-neighbour terms,
  and a third neighbour m parallel to j gets only the "south pole" term;
* the "_max" motifs normalise each (j, k) pair by its own count and take the largest, the
  others normalise the total sum;
* the bond-orientational q_l use the addition theorem, q_l^2 = sum_jk P_l(cos gamma_jk) / n^2,
  which equals the spherical-harmonic sum.

The preset (which motifs per coordination number, and their parameters) is read from matminer
at run time, not copied. ``tests/test_fast_fingerprints.py`` compares every motif with pymatgen.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from functools import lru_cache
from typing import Any

import numpy as np

#: pymatgen's threshold below which a projected axis counts as undefined.
VERY_SMALL = 1e-12
#: Largest coordination number in the fingerprint (the "ops" preset has 24 "wt" entries).
MAX_CN = 24
_FAC_BCC = 1.0 / math.exp(-0.5)
_ASIN_THIRD = math.asin(1.0 / 3.0)


def _gauss(x: np.ndarray) -> np.ndarray:
    return np.exp(-0.5 * x * x)


class NeighbourAngles:
    """Angles of B neighbour shells of n neighbours each, shared by every order parameter."""

    def __init__(self, vectors: np.ndarray) -> None:
        vectors = np.asarray(vectors, dtype=np.float64)
        if vectors.ndim == 2:
            vectors = vectors[None]
        self.batch, n = vectors.shape[:2]
        self.n = n
        self.dist = np.linalg.norm(vectors, axis=-1)
        unit = vectors / self.dist[..., None]
        self.unit = unit
        gram = np.einsum("bjc,bkc->bjk", unit, unit)
        self.cos = np.clip(gram, -1.0, 1.0)
        self.theta = np.arccos(self.cos) / math.pi  # in units of pi, as every motif uses
        # Projection of k onto the plane normal to j: the prime meridian of pair (j, k).
        self_dot = np.einsum("bjj->bj", gram)
        axis = unit[:, None, :, :] - (gram / self_dot[:, :, None])[..., None] * unit[:, :, None, :]
        norm = np.linalg.norm(axis, axis=-1)
        self.axis_undefined = norm < VERY_SMALL
        axis = axis / np.where(self.axis_undefined, 1.0, norm)[..., None]
        self.phi = np.arccos(np.clip(np.einsum("bjkc,bjmc->bjkm", axis, axis), -1.0, 1.0))
        eye = np.eye(n, dtype=bool)
        self.pair = ~eye
        distinct = self.pair[:, :, None] & self.pair[:, None, :] & self.pair[None, :, :]
        # m differs from j and k; the (j, k) meridian must be defined for any third-neighbour term.
        self.triple = distinct[None] & ~self.axis_undefined[..., None]
        self.triple_both = self.triple & ~self.axis_undefined[:, :, None, :]

    @property
    def theta_k(self) -> np.ndarray:
        """theta_jk broadcast over m."""
        return self.theta[..., None]

    @property
    def theta_m(self) -> np.ndarray:
        """theta_jm broadcast over k."""
        return self.theta[:, :, None, :]


# ------------------------------------------------------------------------- reductions
# Every motif returns one value per shell, 0 where pymatgen's is undefined (None), which is
# what the fingerprint makes of it.
def _max_of_pairs(angles: NeighbourAngles, pair_sum: np.ndarray, pair_norm: np.ndarray) -> np.ndarray:
    if angles.n <= 1:
        return np.zeros(angles.batch)
    defined = pair_norm > VERY_SMALL
    ratio = np.where(defined, pair_sum / np.where(defined, pair_norm, 1.0), 0.0)
    return np.where(angles.pair[None], ratio, -np.inf).max(axis=(1, 2))


def _mean_of_all(angles: NeighbourAngles, pair_sum: np.ndarray, pair_norm: np.ndarray) -> np.ndarray:
    total = np.where(angles.pair[None], pair_norm, 0.0).sum(axis=(1, 2))
    summed = np.where(angles.pair[None], pair_sum, 0.0).sum(axis=(1, 2))
    return np.where(total > VERY_SMALL, summed / np.where(total > VERY_SMALL, total, 1.0), 0.0)


def _triple_terms(mask: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sum over m of masked third-neighbour terms and their count, per (j, k)."""
    return np.where(mask, values, 0.0).sum(axis=-1), mask.sum(axis=-1).astype(np.float64)


# ------------------------------------------------------------------------- motifs
def _bent(a: NeighbourAngles, p: dict) -> np.ndarray:
    return _mean_of_all(a, _gauss(p["IGW_TA"] * (a.theta - p["TA"])), np.ones_like(a.theta))


def _planar_or_tetrahedral_max(a: NeighbourAngles, p: dict) -> np.ndarray:
    """tri_plan_max, tet_max: the j-i-k and j-i-m angles near TA, azimuths near multiples."""
    pair_sum = _gauss(p["IGW_TA"] * (a.theta - p["TA"]))
    values = _gauss(p["IGW_TA"] * (a.theta_m - p["TA"])) * np.cos(p["fac_AA"] * a.phi) ** p["exp_cos_AA"]
    s, c = _triple_terms(a.triple_both, values)
    return _max_of_pairs(a, pair_sum + s, 1.0 + c)


def _pyramid(a: NeighbourAngles, p: dict) -> np.ndarray:
    """T, tri_pyr, sq_pyr, pent_pyr, hex_pyr: an apex j and a ring at right angles to it."""
    pair_sum = _gauss(p["IGW_EP"] * (a.theta - 0.5))
    values = np.cos(p["fac_AA"] * a.phi) ** p["exp_cos_AA"] * _gauss(p["IGW_EP"] * (a.theta_m - 0.5))
    s, c = _triple_terms(a.triple_both, values)
    return _max_of_pairs(a, pair_sum + s, 1.0 + c)


def _bipyramid(hexagonal_plane: bool, see_saw: bool) -> Callable[[NeighbourAngles, dict], np.ndarray]:
    """tri/pent/hex_bipyr, oct_max, sq_plan_max, hex_plan_max, see_saw_rect: two poles and a ring."""

    def ring_angle(theta: np.ndarray, p: dict) -> np.ndarray:
        if hexagonal_plane:
            return p["IGW_TA"] * (np.abs(theta - 0.5) - p["TA"])
        return p["IGW_EP"] * (theta - 0.5)

    def motif(a: NeighbourAngles, p: dict) -> np.ndarray:
        min_spp = p["min_SPP"] / math.pi
        k_in_ring = a.theta < min_spp
        pair_sum = np.where(k_in_ring, _gauss(ring_angle(a.theta, p)), 0.0)
        pair_norm = k_in_ring.astype(np.float64)
        south = a.triple & (a.theta_m >= min_spp)
        s_south, c_south = _triple_terms(south, _gauss(p["IGW_SPP"] * (a.theta_m - 1.0)))
        ring = a.triple_both & (a.theta_m < min_spp) & k_in_ring[..., None]
        if see_saw:
            ring &= a.phi < 0.75 * math.pi
        values = np.cos(p["fac_AA"] * a.phi) ** p["exp_cos_AA"] * _gauss(ring_angle(a.theta_m, p))
        s_ring, c_ring = _triple_terms(ring, values)
        return _max_of_pairs(a, pair_sum + s_south + s_ring, pair_norm + c_south + c_ring)

    return motif


def _pentagonal_plane_max(a: NeighbourAngles, p: dict) -> np.ndarray:
    def target(theta: np.ndarray) -> np.ndarray:
        return np.where(theta <= p["TA"], 0.4, 0.8)

    pair_sum = _gauss(p["IGW_TA"] * (a.theta - target(a.theta)))
    values = _gauss(p["IGW_TA"] * (a.theta_m - target(a.theta_m))) * np.cos(a.phi) ** 2
    s, c = _triple_terms(a.triple_both, values)
    return _max_of_pairs(a, pair_sum + s, 1.0 + c)


def _body_centred_cubic(a: NeighbourAngles, p: dict) -> np.ndarray:
    if a.n <= 3:
        return np.zeros(a.batch)
    min_spp = p["min_SPP"] / math.pi
    upper = np.triu(np.ones((a.n, a.n), dtype=bool), 1)[None]
    opposite = upper & (a.theta >= min_spp)
    total = np.where(opposite, p["w_SPP"] * _gauss(p["IGW_SPP"] * (a.theta - 1.0)), 0.0).sum(axis=(1, 2))
    t = (a.theta_m * math.pi - math.pi / 2) / _ASIN_THIRD
    sign = np.where(a.theta_k > 0.5, 1.0, -1.0)
    values = sign * np.cos(3 * a.phi) * _FAC_BCC * t * _gauss(t)
    mask = a.triple_both & (upper & (a.theta < min_spp))[..., None]
    total = total + np.where(mask, values, 0.0).sum(axis=(1, 2, 3))
    return total / (0.5 * a.n * (6 + (a.n - 2) * (a.n - 3)))


def _cuboctahedral_max(a: NeighbourAngles, p: dict) -> np.ndarray:
    min_spp, low, high = p["min_SPP"] / math.pi, p[4] / math.pi, p[2] / math.pi
    opposite = a.theta >= min_spp
    pair_sum = np.where(opposite, p["w_SPP"] * _gauss(p["IGW_SPP"] * (a.theta - 1.0)), 0.0)
    pair_norm = np.where(opposite, float(p["w_SPP"]), 0.0)
    base = a.triple_both & (a.theta_m < min_spp) & ((low < a.theta) & (a.theta < high))[..., None]
    tm = a.theta_m
    square = base & (low < tm) & (tm < high)
    azimuth = _gauss(0.0556 * (np.cos(a.phi - 0.5 * math.pi) - 0.81649658))
    s1, c1 = _triple_terms(square, np.cos(a.phi) ** 2 * _gauss(p[5] * (tm - 0.5)))
    s2, c2 = _triple_terms(base & (tm < low), azimuth * _gauss(p[6] * (tm - 1.0 / 3.0)))
    s3, c3 = _triple_terms(base & (tm > high), azimuth * _gauss(p[6] * (tm - 2.0 / 3.0)))
    return _max_of_pairs(a, pair_sum + s1 + s2 + s3, pair_norm + c1 + c2 + c3)


def _single_bond(a: NeighbourAngles, p: Any) -> np.ndarray:
    if a.n <= 1:
        return np.full(a.batch, float(a.n))
    nearest = np.sort(a.dist, axis=-1)
    return 1.0 - nearest[:, 0] / nearest[:, 1]


def _steinhardt(degree: int) -> Callable[[NeighbourAngles, Any], np.ndarray]:
    coefficients = [0] * degree + [1]

    def motif(a: NeighbourAngles, p: Any) -> np.ndarray:
        if a.n == 0:
            return np.zeros(a.batch)
        legendre = np.polynomial.legendre.legval(a.cos, coefficients).sum(axis=(1, 2))
        return np.sqrt(np.maximum(legendre, 0.0)) / a.n

    return motif


MOTIFS: dict[str, Callable[[NeighbourAngles, Any], np.ndarray]] = {
    "sgl_bd": _single_bond,
    "bent": _bent,
    "tri_plan_max": _planar_or_tetrahedral_max,
    "tet_max": _planar_or_tetrahedral_max,
    "T": _pyramid,
    "tri_pyr": _pyramid,
    "sq_pyr": _pyramid,
    "pent_pyr": _pyramid,
    "hex_pyr": _pyramid,
    "tri_bipyr": _bipyramid(False, False),
    "pent_bipyr": _bipyramid(False, False),
    "hex_bipyr": _bipyramid(False, False),
    "oct_max": _bipyramid(False, False),
    "sq_plan_max": _bipyramid(False, False),
    "hex_plan_max": _bipyramid(True, False),
    "see_saw_rect": _bipyramid(False, True),
    "pent_plan_max": _pentagonal_plane_max,
    "bcc": _body_centred_cubic,
    "cuboct_max": _cuboctahedral_max,
    "q2": _steinhardt(2),
    "q4": _steinhardt(4),
    "q6": _steinhardt(6),
}


def order_parameter(kind: str, params: dict | None, angles: NeighbourAngles) -> np.ndarray:
    """One order parameter of each shell in ``angles``; 0 where pymatgen's is undefined."""
    return MOTIFS[kind](angles, params)


@lru_cache(maxsize=1)
def ops_preset() -> tuple[tuple[tuple[str, dict | None], ...], ...]:
    """Per coordination number 1..24: the (motif, parameters) of matminer's "ops" preset, "wt" first."""
    from matminer.featurizers.site.fingerprint import CrystalNNFingerprint

    featurizer = CrystalNNFingerprint.from_preset("ops")
    preset = []
    for cn in range(1, MAX_CN + 1):
        entries = []
        for op in featurizer.ops.get(cn, []):
            if op == "wt":
                entries.append(("wt", None))
            else:
                (kind,), (params,) = op._types, op._params  # one motif per pymatgen object in this preset
                entries.append((kind, params))
        preset.append(tuple(entries))
    return tuple(preset)


def site_fingerprints(cn_weights: list[dict[int, float]], shells: list[dict[int, np.ndarray]]) -> np.ndarray:
    """(n_sites, 61) "ops" fingerprints from each site's CN weights and neighbour vectors per CN.

    Shells of the same coordination number are stacked, so each motif is one array operation
    over every site that has that CN.
    """
    preset = ops_preset()
    widths = [len(entries) for entries in preset]
    offsets = np.concatenate([[0], np.cumsum(widths)[:-1]])
    out = np.zeros((len(cn_weights), sum(widths)))
    for cn, (entries, offset) in enumerate(zip(preset, offsets), start=1):
        weight = np.array([weights.get(cn, 0.0) for weights in cn_weights])
        out[:, offset] = weight
        members = np.nonzero(weight != 0)[0]
        if len(entries) == 1 or len(members) == 0:
            continue
        angles = NeighbourAngles(np.stack([shells[i][cn] for i in members]))
        for column, (kind, params) in enumerate(entries[1:], start=offset + 1):
            out[members, column] = weight[members] * order_parameter(kind, params, angles)
    return out
