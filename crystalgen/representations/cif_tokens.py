"""The ``cif-tokens`` representation: a canonical symmetric CIF, tokenised (CrystaLLM-style, written in-house).

**Canonical form** (:func:`canonicalise`). spglib (symprec :data:`~crystalgen.constants.SYMPREC`)
finds the space group and the standardised conventional cell in its default setting (rhombohedral
groups hexagonal, monoclinic b-unique, the first origin choice). The CIF holds:

* the formula of the *primitive* cell (what a CSP target gives), elements in pymatgen's order;
* the space group (Hermann-Mauguin symbol);
* the conventional cell's lengths (Å, 3 decimals) and angles (degrees, 2 decimals);
* the asymmetric unit: one site per orbit, with its multiplicity in the conventional cell, at the
  orbit member with the smallest rounded (x, y, z), fractional coordinates to 4 decimals; sites
  ordered by the formula's element order, then by coordinates.

**Decoding** (:func:`expand`) applies every operation of the group (spglib's database, same
setting), merges images closer than :data:`MERGE_TOLERANCE` (averaging them, which puts an atom
written near a special position onto it), and returns the primitive cell. It fails, with a
:class:`CifDecodeError` whose message starts with the cause, when an orbit's size differs from the
stated multiplicity, when two orbits overlap, when the cell is degenerate, or when the atoms do
not add up to the formula. The decoder can fail, and says so (:attr:`CifTokens.decoder_can_fail`):
a generated sequence need not describe a crystal, and those failures are counted, not hidden.

Cells are symmetrised on decoding by the group's crystal family (cubic a = b = c, tetragonal and
hexagonal a = b, hexagonal gamma = 120°, right angles where the family has them), so a rounded or
generated cell cannot break the symmetry it states.
"""

from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

from crystalgen.constants import SYMPREC
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.representations.base import DecodeFailure
from crystalgen.representations.cif_vocab import (
    CELL_FIELDS,
    COORD_SCALE,
    CanonicalCif,
    CanonicalSite,
    CifTokenError,
    spacegroup_symbols,
    vocabulary,
)
from crystalgen.representations.wyckoff import crystal_family

#: Images of a site closer than this (Å) are one atom; a little under the shortest bonds in the data.
MERGE_TOLERANCE = 0.5
#: Lattice points per conventional cell, by the centring letter of the space-group symbol.
CENTRING_FACTOR = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
#: Rows: primitive vectors in conventional fractional coordinates, per centring (R: hexagonal, obverse).
PRIMITIVE_VECTORS = {
    "P": np.eye(3),
    "A": np.array([[1, 0, 0], [0, 0.5, 0.5], [0, -0.5, 0.5]]),
    "B": np.array([[0.5, 0, 0.5], [0, 1, 0], [-0.5, 0, 0.5]]),
    "C": np.array([[0.5, 0.5, 0], [-0.5, 0.5, 0], [0, 0, 1]]),
    "I": np.array([[-0.5, 0.5, 0.5], [0.5, -0.5, 0.5], [0.5, 0.5, -0.5]]),
    "F": np.array([[0, 0.5, 0.5], [0.5, 0, 0.5], [0.5, 0.5, 0]]),
    "R": np.array([[2, 1, 1], [-1, 1, 1], [-1, -2, 1]]) / 3,
}
#: Decoded cells must be at least this thin (volume / product of lengths) and no length under this (Å).
MIN_CELL_SINE, MIN_LENGTH = 0.05, 0.5
#: Decimals of the coordinates in a CIF written for people and other readers (see :func:`render_cif`).
USER_DECIMALS = 6
CAUSES = ("parse", "multiplicity", "overlap", "cell", "composition")


class CifDecodeError(DecodeFailure):
    """A token sequence that does not decode to a crystal; the message starts with one of :data:`CAUSES`."""

    CAUSES = CAUSES


def centring(spacegroup: int) -> str:
    return spacegroup_symbols()[spacegroup - 1][0]


@lru_cache(maxsize=None)
def _default_hall(spacegroup: int) -> int:
    import spglib

    return next(h for h in range(1, 531) if spglib.get_spacegroup_type(h).number == spacegroup)


@lru_cache(maxsize=None)
def symmetry_operations(spacegroup: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (n, 3, 3) and translations (n, 3) of the conventional cell, centring included."""
    import spglib

    ops = spglib.get_symmetry_from_database(_default_hall(spacegroup))
    return np.asarray(ops["rotations"], dtype=np.float64), np.asarray(ops["translations"], dtype=np.float64)


def formula_order(counts: dict[str, int]) -> tuple[tuple[str, int], ...]:
    """(element, count) pairs in pymatgen's formula order (by electronegativity), as the canonical CIF writes them."""
    from pymatgen.core import Composition

    order = re.findall(r"([A-Z][a-z]?)\d", Composition(counts).formula.replace(" ", ""))
    return tuple((el, int(counts[el])) for el in order)


def canonicalise(crystal: Crystal, symprec: float = SYMPREC) -> CanonicalCif:
    """The canonical symmetric description of ``crystal`` (see the module docstring)."""
    import spglib
    from pymatgen.core.periodic_table import Element

    from crystalgen.representations.lattice import lattice_matrix_to_params

    crystal = crystal.right_handed()
    dataset = spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, crystal.atomic_numbers),
                                          symprec=symprec)
    if dataset is None:
        raise CrystalgenInputError(f"spglib finds no symmetry for {crystal.formula} at symprec {symprec}")
    # the orbit of each standardised atom, through the primitive atom both map to
    orbit_of_primitive = {}
    for atom, primitive in enumerate(dataset.mapping_to_primitive):
        orbit_of_primitive.setdefault(int(primitive), int(dataset.equivalent_atoms[atom]))
    orbits = np.array([orbit_of_primitive[int(p)] for p in dataset.std_mapping_to_primitive])
    rounded = np.round(np.asarray(dataset.std_positions) % 1.0 * COORD_SCALE) % COORD_SCALE / COORD_SCALE
    symbols = [Element.from_Z(int(z)).symbol for z in dataset.std_types]
    sites = []
    for orbit in np.unique(orbits):
        members = np.flatnonzero(orbits == orbit)
        first = members[np.lexsort(rounded[members].T[::-1])[0]]
        sites.append(CanonicalSite(symbols[first], len(members), tuple(float(x) for x in rounded[first])))
    factor = CENTRING_FACTOR[centring(dataset.number)]
    counts: dict[str, int] = {}
    for site in sites:
        counts[site.element] = counts.get(site.element, 0) + site.multiplicity
    formula = formula_order({el: n // factor for el, n in counts.items()})
    order = {el: i for i, (el, _) in enumerate(formula)}
    sites.sort(key=lambda s: (order[s.element], s.frac))
    cell = tuple(float(x) for x in lattice_matrix_to_params(np.asarray(dataset.std_lattice)))
    return CanonicalCif(formula, int(dataset.number), cell, tuple(sites))


def symmetrised_cell(spacegroup: int, cell: tuple[float, ...]) -> np.ndarray:
    """Lengths and angles with the crystal family's equalities imposed (see the module docstring)."""
    a, b, c, alpha, beta, gamma = cell
    family = crystal_family(spacegroup)
    if family == "cubic":
        a = b = c = (a + b + c) / 3
    elif family in ("tetragonal", "hexagonal"):
        a = b = (a + b) / 2
    if family in ("cubic", "tetragonal", "orthorhombic", "hexagonal"):
        alpha = beta = gamma = 90.0
        if family == "hexagonal":
            gamma = 120.0
    elif family == "monoclinic":
        alpha = gamma = 90.0
    return np.array([a, b, c, alpha, beta, gamma])


def _merge_images(images: np.ndarray, lattice: np.ndarray, tolerance: float) -> np.ndarray:
    """Cluster periodic images (m, 3) closer than ``tolerance`` Å; the mean of each cluster."""
    delta = images[:, None, :] - images[None, :, :]
    delta -= np.round(delta)
    close = np.linalg.norm(delta @ lattice, axis=-1) < tolerance
    unassigned = np.ones(len(images), dtype=bool)
    centres = []
    for i in range(len(images)):
        if not unassigned[i]:
            continue
        members = close[i] & unassigned
        unassigned &= ~members
        centres.append(images[i] + delta[members, i].mean(axis=0))
    return np.mod(np.array(centres), 1.0)


def _orbits(cif: CanonicalCif, merge_tolerance: float) -> tuple[np.ndarray, list[np.ndarray]]:
    """The symmetrised conventional lattice and each site's orbit (its first row the snapped site)."""
    from crystalgen.representations.lattice import lattice_params_to_matrix

    params = symmetrised_cell(cif.spacegroup, cif.cell)
    lattice = lattice_params_to_matrix(params)
    lengths = params[:3]
    if not np.all(np.isfinite(lattice)) or lengths.min() < MIN_LENGTH or \
            abs(np.linalg.det(lattice)) < MIN_CELL_SINE * np.prod(lengths):
        raise CifDecodeError("cell", f"degenerate cell {', '.join(f'{x:g}' for x in params)}")
    rotations, translations = symmetry_operations(cif.spacegroup)  # the identity comes first
    orbits = []
    for site in cif.sites:
        orbit = _merge_images(np.mod(rotations @ np.asarray(site.frac) + translations, 1.0), lattice, merge_tolerance)
        if len(orbit) != site.multiplicity:
            raise CifDecodeError("multiplicity", f"{site.element} at {site.frac} has {len(orbit)} images in "
                                 f"space group {cif.spacegroup}, not the stated {site.multiplicity}")
        orbits.append(orbit)
    return lattice, orbits


def snapped(cif: CanonicalCif, merge_tolerance: float = MERGE_TOLERANCE) -> CanonicalCif:
    """``cif`` with its cell symmetrised and each site moved onto the special position its images merge to."""
    _, orbits = _orbits(cif, merge_tolerance)
    sites = tuple(CanonicalSite(s.element, s.multiplicity, tuple(float(x) for x in orbit[0]))
                  for s, orbit in zip(cif.sites, orbits))
    return CanonicalCif(cif.formula, cif.spacegroup, tuple(symmetrised_cell(cif.spacegroup, cif.cell)), sites)


def expand(cif: CanonicalCif, merge_tolerance: float = MERGE_TOLERANCE, id: str | None = None) -> Crystal:
    """The primitive cell that ``cif`` describes; raises :class:`CifDecodeError` when there is none."""
    from pymatgen.core.periodic_table import Element

    lattice, orbits = _orbits(cif, merge_tolerance)
    frac = np.concatenate(orbits)
    numbers = np.concatenate([[Element(s.element).Z] * len(o) for s, o in zip(cif.sites, orbits)]).astype(int)
    if len(_merge_images(frac, lattice, merge_tolerance)) != len(frac):
        raise CifDecodeError("overlap", "two sites' orbits share positions")
    factor = CENTRING_FACTOR[centring(cif.spacegroup)]
    expected = {el: n * factor for el, n in cif.formula}
    symbols, counts = np.unique([Element.from_Z(int(z)).symbol for z in numbers], return_counts=True)
    found = {str(el): int(n) for el, n in zip(symbols, counts)}
    if found != expected:
        raise CifDecodeError("composition", f"the sites hold {found}, the formula says {expected} per conventional cell")
    return _primitive(lattice, frac, numbers, centring(cif.spacegroup), id)


def _primitive(lattice: np.ndarray, frac: np.ndarray, numbers: np.ndarray, letter: str, id: str | None) -> Crystal:
    vectors = PRIMITIVE_VECTORS[letter]
    prim_frac = np.mod(frac @ np.linalg.inv(vectors), 1.0)
    prim_lattice = vectors @ lattice
    delta = prim_frac[:, None, :] - prim_frac[None, :, :]
    delta -= np.round(delta)
    same = np.linalg.norm(delta @ prim_lattice, axis=-1) < 1e-3
    keep = ~np.triu(same, k=1).any(axis=0)  # the first of each set of lattice-translated copies
    return Crystal(prim_lattice, prim_frac[keep], numbers[keep], id=id)


def render_cif(cif: CanonicalCif, with_operations: bool = True, decimals: int = 4) -> str:
    """CIF text of the canonical description; with the symmetry operations, any CIF reader rebuilds the
    crystal (write a :func:`snapped` description with 6 decimals for that: readers merge images only
    when they coincide to about 1e-4)."""
    factor = CENTRING_FACTOR[centring(cif.spacegroup)]
    symbol = spacegroup_symbols()[cif.spacegroup - 1]
    lines = ["data_" + "".join(f"{el}{n}" for el, n in cif.formula),
             f"_symmetry_space_group_name_H-M '{symbol}'",
             f"_symmetry_Int_Tables_number {cif.spacegroup}"]
    lines += [f"{name} {value:.{3 if 'length' in name else 2}f}" for name, value in zip(CELL_FIELDS, cif.cell)]
    lines.append("_chemical_formula_sum '" + " ".join(f"{el}{n * factor}" for el, n in cif.formula) + "'")
    if with_operations:
        lines += ["loop_", "_symmetry_equiv_pos_site_id", "_symmetry_equiv_pos_as_xyz"]
        rotations, translations = symmetry_operations(cif.spacegroup)
        lines += [f"{i + 1} '{_xyz(r, t)}'" for i, (r, t) in enumerate(zip(rotations, translations))]
    lines += ["loop_", "_atom_site_type_symbol", "_atom_site_label", "_atom_site_symmetry_multiplicity",
              "_atom_site_fract_x", "_atom_site_fract_y", "_atom_site_fract_z", "_atom_site_occupancy"]
    lines += [f"{s.element} {s.element}{i} {s.multiplicity} " + " ".join(f"{x:.{decimals}f}" for x in s.frac) + " 1"
              for i, s in enumerate(cif.sites)]
    return "\n".join(lines) + "\n"


def _xyz(rotation: np.ndarray, translation: np.ndarray) -> str:
    from fractions import Fraction

    parts = []
    for row, shift in zip(rotation, translation):
        term = "".join(f"{'+' if c > 0 else '-'}{axis}" for c, axis in zip(row, "xyz") if c)
        fraction = Fraction(float(shift) % 1.0).limit_denominator(12)
        parts.append((term + (f"+{fraction}" if fraction else "")).lstrip("+"))
    return ", ".join(parts)


class CifTokens:
    """Crystal <-> token ids of its canonical symmetric CIF (see the module docstring).

    ``decoder_can_fail``: a sequence, above all a generated one, may describe no crystal;
    :meth:`decode` then raises :class:`CifDecodeError` naming the cause.
    """

    name = "cif-tokens"
    decoder_can_fail = True

    def __init__(self, symprec: float = SYMPREC, merge_tolerance: float = MERGE_TOLERANCE):
        self.symprec, self.merge_tolerance = symprec, merge_tolerance
        self.vocabulary = vocabulary()

    def encode(self, crystal: Crystal) -> list[int]:
        return self.vocabulary.encode(canonicalise(crystal, self.symprec))

    def decode(self, encoded: list[int]) -> Crystal:
        try:
            cif = self.vocabulary.decode(list(encoded))
        except CifTokenError as exc:
            raise CifDecodeError("parse", str(exc)) from None
        return expand(cif, self.merge_tolerance)


def symmetric_cif(cif: CanonicalCif) -> str:
    """A complete CIF (operations included, sites snapped, 6 decimals) that any CIF reader expands correctly."""
    return render_cif(snapped(cif), with_operations=True, decimals=USER_DECIMALS)


__all__ = ["CAUSES", "CifDecodeError", "CifTokens", "canonicalise", "expand", "render_cif", "snapped", "symmetric_cif",
           "symmetry_operations"]
