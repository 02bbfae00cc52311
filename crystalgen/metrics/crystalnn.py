"""CrystalNN coordination weights of every site of a crystal, as array arithmetic.

CrystalNN (Pan et al., *Inorg. Chem.* 60, 1590 (2021)) scores each candidate coordination
number of a site from its Voronoi facets. This module follows pymatgen's ``CrystalNN`` with the
settings of matminer's "ops" fingerprint (``search_cutoff=7``, ``distance_cutoffs=(0.5, 1)``,
``x_diff_weight=3``, porous adjustment on, no oxidation states), step by step:

1. Voronoi cells: one tessellation (scipy/qhull) of the cell and every image within 6 A of an
   atom serves each site whose cell it decides (every vertex within 3 A: no farther point can
   cut it, so it is the cell pymatgen gets from its 7 A sphere). The few others get their own
   tessellation exactly as pymatgen builds it: a 7 A sphere, doubled up to the cell diagonal
   while the cell is unbounded;
2. per facet: the solid angle seen from the site (fan triangles, pymatgen's formula and branch
   conventions), the area, and the weight = solid angle / the site's largest solid angle;
3. the weight scaled by solid angle / area (porous adjustment) and by an electronegativity
   factor, normalised per site, then scaled by a cosine cut-off in distance beyond the sum of
   the two covalent radii, and rounded to three decimals;
4. the distinct weights w_1 > w_2 > ... of a site give coordination numbers
   CN_i = #{w >= w_i}, each scored by the area of a unit quarter circle between w_i and w_{i+1}.

Steps 2-4 run over the facets of all sites at once. ``tests/test_fast_fingerprints.py`` checks
the weights and shells against pymatgen.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

#: CrystalNN settings of matminer's "ops" CrystalNN fingerprint.
SEARCH_CUTOFF = 7.0
DISTANCE_CUTOFFS = (0.5, 1.0)
ELECTRONEGATIVITY_WEIGHT = 3.0
#: Pauling electronegativity range that normalises the difference (CrystalNN's 3.3).
ELECTRONEGATIVITY_SPAN = 3.3
WEIGHT_DECIMALS = 3
#: Radius (A) of the shared tessellation around the cell; 6 A measured fastest on mp_20 test
#: (5 A leaves a quarter of the sites to their own 7 A tessellation, 7 A makes the shared one slow).
FIRST_TRY_RADIUS = 6.0
#: Most periodic images one neighbour search may create (an mp_20 crystal needs a few thousand).
MAX_IMAGE_POINTS = 300_000


@dataclass
class CoordinationData:
    """CN -> weight, and CN -> neighbour vectors (Cartesian, from the site) of that shell."""

    cn_weights: dict[int, float]
    shells: dict[int, np.ndarray]


@lru_cache(maxsize=None)
def _element_table(z: int) -> tuple[float, float]:
    """(Pauling electronegativity, CrystalNN's default radius: covalent, else atomic)."""
    import warnings

    from pymatgen.analysis.molecule_structure_comparator import CovalentRadius
    from pymatgen.core.periodic_table import Element

    element = Element.from_Z(z)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "no electronegativity for He": NaN, handled below
        electronegativity = float(element.X)
    radius = CovalentRadius.radius.get(element.symbol)
    return electronegativity, float(radius if radius is not None else element.atomic_radius)


def element_properties(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Electronegativities and radii of atomic numbers, as arrays."""
    elements, index = np.unique(numbers, return_inverse=True)
    table = np.array([_element_table(int(z)) for z in elements])
    return table[index, 0], table[index, 1]


class PeriodicImages:
    """Cartesian positions of a crystal's atoms and their periodic images out to a radius."""

    def __init__(self, lattice: np.ndarray, frac_coords: np.ndarray, numbers: np.ndarray) -> None:
        self.lattice = np.asarray(lattice, dtype=np.float64)
        # Wrapped into the cell so the image grid below reaches every neighbour; vectors between
        # atoms, all that CrystalNN uses, do not change.
        self.frac = np.asarray(frac_coords, dtype=np.float64) % 1.0
        self.numbers = np.asarray(numbers)
        self.cart = self.frac @ self.lattice
        self._radius = -1.0

    def _build(self, radius: float) -> None:
        from crystalgen.metrics.validity import image_offsets

        reciprocal_norms = np.linalg.norm(np.linalg.inv(self.lattice), axis=0)
        cells = np.prod(2 * np.maximum(1, np.floor(1.0 + radius * reciprocal_norms)) + 1)
        if cells * len(self.numbers) > MAX_IMAGE_POINTS:
            # A degenerate cell (a generated sample with a near-zero spacing) would need millions
            # of images; pymatgen would grind through them, here the structure fails instead.
            raise ValueError(f"cell too thin for a {radius:g} A neighbour search")
        grid = image_offsets(self.lattice, radius, spread=1.0)  # wrapped atoms differ by under one cell
        shifted = self.frac[None, :, :] + grid[:, None, :]
        self.image_cart = (shifted @ self.lattice).reshape(-1, 3)
        self.image_numbers = np.tile(self.numbers, len(grid))
        self._radius = radius

    def near_cell(self, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """The atoms (first, in order) and every image within ``radius`` of one of them."""
        if radius > self._radius:
            self._build(radius)
        n = len(self.numbers)
        cells = len(self.image_cart) // n
        home = (cells // 2) * n  # the zero shift is the middle of the symmetric grid
        gap = np.linalg.norm(self.image_cart[:, None, :] - self.cart[None, :, :], axis=2).min(axis=1)
        keep = np.nonzero(gap <= radius + 1e-8)[0]
        keep = np.concatenate([np.arange(home, home + n), keep[(keep < home) | (keep >= home + n)]])
        return self.image_cart[keep], self.image_numbers[keep]

    def around(self, site: int, radius: float) -> tuple[np.ndarray, np.ndarray]:
        """Images within ``radius`` of a site, nearest first (the site itself at index 0)."""
        if radius > self._radius:
            self._build(radius)
        offset = self.image_cart - self.cart[site]
        dist = np.linalg.norm(offset, axis=1)
        keep = np.nonzero(dist <= radius + 1e-8)[0]
        order = keep[np.argsort(dist[keep], kind="stable")]
        return self.image_cart[order], self.image_numbers[order]

    def max_search_cutoff(self) -> float:
        """pymatgen's largest Voronoi search radius: the longest cell diagonal plus 0.01 A."""
        corners = np.array([[1, 1, 1], [-1, 1, 1], [1, -1, 1], [1, 1, -1]], dtype=np.float64)
        return float(np.linalg.norm(corners @ self.lattice, axis=1).max()) + 0.01


class PathologicalCell(RuntimeError):
    """The site's Voronoi cell stays unbounded up to the largest search radius."""


def crystal_coordination(images: PeriodicImages) -> list[CoordinationData]:
    """CrystalNN's CN weights and shells of every site of a crystal.

    One tessellation of the cell and its surroundings serves every site whose cell it decides
    (see ``voronoi_facets``); the others get their own, built as pymatgen builds them. The
    facets of all sites then go through the weights as one array.
    """
    n_sites = len(images.numbers)
    points, numbers = images.near_cell(FIRST_TRY_RADIUS)
    parts, decided = [], np.zeros(n_sites, dtype=bool)
    try:
        facets, farthest = _facets_of_sites(_voronoi(points), points, numbers, n_sites)
        decided = farthest <= FIRST_TRY_RADIUS / 2
        parts.append(facets.subset(decided[facets.site]))
    except RuntimeError:  # qhull: e.g. one flat layer when the next is farther than the radius
        pass
    for site in np.nonzero(~decided)[0]:
        single = voronoi_facets(images, int(site))
        single.site[:] = site
        parts.append(single)
    return _weigh(images, _Facets.concat(parts), n_sites)


@dataclass
class _Facets:
    """Voronoi facets of several sites, one row per (site, neighbour image)."""

    site: np.ndarray
    positions: np.ndarray
    numbers: np.ndarray
    solid_angle: np.ndarray
    area: np.ndarray

    def subset(self, rows: np.ndarray) -> "_Facets":
        return _Facets(self.site[rows], self.positions[rows], self.numbers[rows], self.solid_angle[rows],
                       self.area[rows])

    @staticmethod
    def concat(parts: list["_Facets"]) -> "_Facets":
        columns = ("site", "positions", "numbers", "solid_angle", "area")
        return _Facets(*(np.concatenate([getattr(p, name) for p in parts]) for name in columns))


def _facets_of_sites(
    tessellation, points: np.ndarray, numbers: np.ndarray, n_sites: int
) -> tuple[_Facets, np.ndarray]:
    """Facets of points 0 .. n_sites-1 of one tessellation, and each site's distance to its
    farthest cell vertex (inf where the cell is unbounded)."""
    ridge_points = np.asarray(tessellation.ridge_points)
    rows, sides = np.nonzero(ridge_points < n_sites)  # a ridge between two sites serves both
    site = ridge_points[rows, sides]
    other = ridge_points[rows, 1 - sides]
    polygons = [tessellation.ridge_vertices[r] for r in rows.tolist()]
    sizes = np.fromiter(map(len, polygons), dtype=np.int64, count=len(polygons))
    flat = np.fromiter((v for polygon in polygons for v in polygon), dtype=np.int64, count=int(sizes.sum()))
    starts = np.cumsum(sizes) - sizes
    vertex_site = np.repeat(site, sizes)
    vertices = tessellation.vertices
    reach = np.linalg.norm(vertices[np.maximum(flat, 0)] - points[vertex_site], axis=1)
    farthest = np.zeros(n_sites)
    np.maximum.at(farthest, vertex_site, reach)
    farthest[vertex_site[flat < 0]] = np.inf
    solid_angle, area = _polygon_measures(vertices, np.maximum(flat, 0), sizes, starts, points[site], points[other])
    return _Facets(site, points[other], numbers[other], solid_angle, area), farthest


def _polygon_measures(vertices: np.ndarray, flat: np.ndarray, sizes: np.ndarray, starts: np.ndarray,
                      centers: np.ndarray, partners: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Solid angle (seen from its center) and area of each facet polygon, by fan triangles."""
    n_triangles = np.maximum(sizes - 2, 0)
    owner = np.repeat(np.arange(len(sizes)), n_triangles)
    local = np.arange(n_triangles.sum()) - np.repeat(np.cumsum(n_triangles) - n_triangles, n_triangles) + 1
    center = centers[owner]
    r0 = vertices[flat[starts[owner]]] - center
    ri = vertices[flat[starts[owner] + local]] - center
    rj = vertices[flat[starts[owner] + local + 1]] - center
    solid = _fan_solid_angles(r0, ri, rj)
    # Tetrahedron (site, v0, v_i, v_i+1) volumes, as pymatgen's vol_tetra orders the corners.
    volume = np.abs(np.einsum("tc,tc->t", -rj, np.cross(r0 - rj, ri - rj))) / 6.0
    solid_angle = np.bincount(owner, solid, minlength=len(sizes))
    cone_volume = np.bincount(owner, volume, minlength=len(sizes))
    face_dist = np.linalg.norm(partners - centers, axis=1) / 2.0
    return solid_angle, 3.0 * cone_volume / face_dist


def _fan_solid_angles(r0: np.ndarray, ri: np.ndarray, rj: np.ndarray) -> np.ndarray:
    """Van Oosterom-Strackee solid angle of each triangle, with pymatgen's branch conventions."""
    n0, ni, nj = (np.linalg.norm(r, axis=1) for r in (r0, ri, rj))
    triple = np.abs(np.einsum("tc,tc->t", r0, np.cross(ri, rj)))
    denominator = (
        n0 * ni * nj
        + nj * np.einsum("tc,tc->t", r0, ri)
        + ni * np.einsum("tc,tc->t", r0, rj)
        + n0 * np.einsum("tc,tc->t", ri, rj)
    )
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.arctan(triple / denominator)
    angle = np.where(denominator == 0, np.where(triple > 0, 0.5 * math.pi, -0.5 * math.pi), ratio)
    return 2.0 * np.where(angle > 0, angle, angle + math.pi)


def voronoi_facets(images: PeriodicImages, site: int) -> _Facets:
    """The Voronoi facets of one site the shared tessellation left undecided, as pymatgen finds them.

    The 7 A sphere, doubled up to the cell diagonal while the cell is unbounded.
    """
    cutoff, max_cutoff = SEARCH_CUTOFF, images.max_search_cutoff()
    while True:
        points, numbers = images.around(site, cutoff)
        try:
            facets, farthest = _facets_of_sites(_voronoi(points), points, numbers, 1)
            if np.isinf(farthest[0]):
                raise RuntimeError("unbounded Voronoi cell")
        except RuntimeError as error:  # qhull errors and unbounded cells
            if cutoff >= max_cutoff:
                raise PathologicalCell(str(error)) from error
            cutoff = min(cutoff * 2, max_cutoff + 0.001)
            continue
        if len(facets.area) == 0:
            raise ValueError("no Voronoi neighbours")
        return facets


def _voronoi(points: np.ndarray):
    from scipy.spatial import Voronoi

    return Voronoi(points)


def _quarter_circle_area(x: np.ndarray) -> np.ndarray:
    """Area under the unit quarter circle from 0 to x, in units of pi/4."""
    with np.errstate(divide="ignore", invalid="ignore"):
        root = np.sqrt(1.0 - x * x)
        area = 0.5 * (x * root + np.arctan(x / root))
    return np.where(x == 1, 0.25 * math.pi, area) / (0.25 * math.pi)


def _site_max(values: np.ndarray, site: np.ndarray, n_sites: int) -> np.ndarray:
    out = np.full(n_sites, -np.inf)
    np.maximum.at(out, site, values)
    return out


def _weigh(images: PeriodicImages, facets: _Facets, n_sites: int) -> list[CoordinationData]:
    """CrystalNN's weights of every facet, then each site's CN levels and shells."""
    kept = facets.solid_angle > 0
    facets = facets.subset(kept)
    site = facets.site
    weight = facets.solid_angle / _site_max(facets.solid_angle, site, n_sites)[site]
    weight = weight * (facets.solid_angle / facets.area)
    x_all, r_all = element_properties(np.concatenate([images.numbers, facets.numbers]))
    x_site, r_site = x_all[:n_sites][site], r_all[:n_sites][site]
    x_neigh, r_neigh = x_all[n_sites:], r_all[n_sites:]
    with np.errstate(invalid="ignore"):
        chemical = 1.0 + ELECTRONEGATIVITY_WEIGHT * np.sqrt(np.abs(x_site - x_neigh) / ELECTRONEGATIVITY_SPAN)
    weight = weight * np.where(np.isnan(chemical), 1.0, chemical)
    highest = _site_max(weight, site, n_sites)
    live = highest > 0  # a site whose weights are all 0 gets CN 0 with certainty, as in pymatgen
    weight = weight / np.where(live, highest, 1.0)[site]
    vectors = facets.positions - images.cart[site]
    dist = np.linalg.norm(vectors, axis=1)
    low = r_site + r_neigh + DISTANCE_CUTOFFS[0]
    high = r_site + r_neigh + DISTANCE_CUTOFFS[1]
    taper = (np.cos((dist - low) / (high - low) * math.pi) + 1.0) * 0.5
    weight = weight * np.where(dist <= low, 1.0, np.where(dist < high, taper, 0.0))
    live &= _site_max(weight, site, n_sites) > 0
    # Shells list neighbours by decreasing weight before rounding, as pymatgen does: the bcc
    # motif counts only pairs j < k, so it depends on this order. Rounding keeps the order, so
    # the neighbours of each CN level are a prefix of the site's sorted list.
    order = np.lexsort((-weight, site))
    site, vectors = site[order], vectors[order]
    rounded = np.round(weight[order], WEIGHT_DECIMALS)
    positive = rounded > 0
    site, vectors, rounded = site[positive], vectors[positive], rounded[positive]
    first = np.searchsorted(site, np.arange(n_sites))
    rank = np.arange(len(site)) - first[site]
    # The last neighbour of each distinct weight level closes one CN.
    closes = np.ones(len(site), dtype=bool)
    closes[:-1] = (site[1:] != site[:-1]) | (rounded[1:] != rounded[:-1])
    next_level = np.zeros(len(site))
    continues = closes[:-1] & (site[1:] == site[:-1])
    next_level[:-1] = np.where(continues, rounded[1:], 0.0)
    score = _quarter_circle_area(rounded) - _quarter_circle_area(next_level)
    result = [CoordinationData({0: 1.0}, {0: np.zeros((0, 3))}) for _ in range(n_sites)]
    ends = np.nonzero(closes)[0]
    for index in np.nonzero(live)[0]:
        mine = ends[site[ends] == index]
        cns = (rank[mine] + 1).tolist()
        start = first[index]
        result[index] = CoordinationData(
            dict(zip(cns, score[mine].tolist())), {cn: vectors[start : start + cn] for cn in cns}
        )
    return result
