"""Wyckoff representation: space group, conventional lattice and occupied Wyckoff positions.

A crystal becomes its space group (plus the Hall setting), the six conventional lattice
parameters, and one entry per symmetry-distinct site: the element, the Wyckoff label (e.g.
``"4e"``) and the free coordinates of that position (0 to 3 numbers). Decoding applies the
position's symmetry operations to rebuild every atom of the conventional cell. Symmetry finding is
done by pyxtal (on top of spglib); the orbit expansion uses pyxtal's Wyckoff tables.
"""

from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError, first_line
from crystalgen.constants import SYMPREC
from crystalgen.representations.lattice import lattice_params_to_matrix
from crystalgen.validation import validate_element, validate_spacegroup

WYCKOFF_LABEL = re.compile(r"^(\d+)([a-zA-Z])$")
#: Crystal families by their last space group number (trigonal groups belong to the hexagonal family).
FAMILY_ENDS = (("triclinic", 2), ("monoclinic", 15), ("orthorhombic", 74), ("tetragonal", 142),
               ("hexagonal", 194), ("cubic", 230))
FAMILIES = tuple(name for name, _ in FAMILY_ENDS)


def crystal_family(spacegroup: int) -> str:
    return next(name for name, last in FAMILY_ENDS if spacegroup <= last)


class WyckoffError(CrystalgenInputError):
    """A structure whose Wyckoff positions cannot be found, or a malformed Wyckoff description."""


@dataclass
class WyckoffSite:
    """One symmetry-distinct site: element, Wyckoff label such as ``"4e"``, free coordinates."""

    element: str
    wyckoff: str
    free_coords: list[float]

    @property
    def letter(self) -> str:
        return _parse_label(self.wyckoff)[1]

    @property
    def multiplicity(self) -> int:
        return _parse_label(self.wyckoff)[0]


@dataclass
class WyckoffCrystal:
    """A crystal described by its space group and Wyckoff sites (conventional cell)."""

    spacegroup: int
    lattice_params: list[float]
    sites: list[WyckoffSite]
    hall_number: int | None = None
    id: str | None = None
    properties: dict[str, float] = field(default_factory=dict)

    @property
    def num_atoms(self) -> int:
        return sum(site.multiplicity for site in self.sites)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "spacegroup": self.spacegroup,
            "hall_number": self.hall_number,
            "lattice": {"a_b_c_alpha_beta_gamma": [float(x) for x in self.lattice_params]},
            "sites": [
                {"element": s.element, "wyckoff": s.wyckoff, "free_coords": [float(x) for x in s.free_coords]}
                for s in self.sites
            ],
            "properties": dict(self.properties),
        }

    @classmethod
    def from_dict(cls, data: dict) -> "WyckoffCrystal":
        """Parse and validate the dictionary written by :meth:`to_dict`."""
        try:
            spacegroup = validate_spacegroup(data["spacegroup"])
            lattice = [float(x) for x in data["lattice"]["a_b_c_alpha_beta_gamma"]]
            sites = [
                WyckoffSite(validate_element(s["element"]), str(s["wyckoff"]), [float(x) for x in s["free_coords"]])
                for s in data["sites"]
            ]
        except CrystalgenInputError:
            raise
        except (KeyError, TypeError, ValueError) as exc:
            raise WyckoffError(f"malformed Wyckoff JSON: missing or invalid field {exc}") from None
        if len(lattice) != 6:
            raise WyckoffError("malformed Wyckoff JSON: the lattice needs 6 parameters")
        lengths, angles = np.array(lattice[:3]), np.array(lattice[3:])
        if not (np.all(np.isfinite(lattice)) and np.all(lengths > 0) and np.all((angles > 0) & (angles < 180))):
            raise WyckoffError(f"impossible lattice parameters {lattice}: lengths must be > 0, angles in (0, 180)")
        if not sites:
            raise WyckoffError("malformed Wyckoff JSON: no sites")
        for site in sites:
            _parse_label(site.wyckoff)
        return cls(spacegroup, lattice, sites, data.get("hall_number"), data.get("id"), data.get("properties") or {})


def _parse_label(label: str) -> tuple[int, str]:
    match = WYCKOFF_LABEL.match(label)
    if not match:
        raise WyckoffError(f"malformed Wyckoff label {label!r}; expected multiplicity and letter, e.g. '4a'")
    return int(match.group(1)), match.group(2)


def wyckoff_position(spacegroup: int, letter: str, hall_number: int | None):
    """pyxtal's Wyckoff position ``letter`` of ``spacegroup`` (in the Hall setting, when given)."""
    from pyxtal.symmetry import Wyckoff_position

    try:
        if hall_number is None:
            return Wyckoff_position.from_group_and_letter(spacegroup, letter)
        return Wyckoff_position.from_group_and_letter(spacegroup, letter, hn=hall_number)
    except Exception:
        raise WyckoffError(f"space group {spacegroup} has no Wyckoff position {letter!r}") from None


def encode_wyckoff(crystal: Crystal, symprec: float = SYMPREC) -> WyckoffCrystal:
    """Find the space group and Wyckoff sites of ``crystal`` at tolerance ``symprec`` (Å)."""
    from pyxtal import pyxtal

    xtal = pyxtal()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            xtal.from_seed(crystal.to_structure(), tol=symprec)
    except Exception as exc:
        message = first_line(exc)
        raise WyckoffError(f"symmetry analysis failed: {message}") from None
    return wyckoff_from_pyxtal(xtal, crystal.id, crystal.properties)


def wyckoff_from_pyxtal(xtal, id: str | None = None, properties: dict | None = None) -> WyckoffCrystal:
    """The Wyckoff description of a pyxtal crystal as it stands (no new symmetry search, so a
    randomly placed crystal keeps the group it was built in even where it happens to have more)."""
    sites = [
        WyckoffSite(
            element=str(site.specie),
            wyckoff=f"{site.wp.multiplicity}{site.wp.letter}",
            free_coords=[float(x) for x in np.atleast_1d(site.wp.get_free_xyzs(site.position))],
        )
        for site in xtal.atom_sites
    ]
    return WyckoffCrystal(
        spacegroup=int(xtal.group.number),
        lattice_params=[float(x) for x in xtal.lattice.get_para(degree=True)],
        sites=sites,
        hall_number=int(xtal.group.hall_number),
        id=id,
        properties=dict(properties or {}),
    )


def decode_wyckoff(encoded: WyckoffCrystal) -> Crystal:
    """Expand the Wyckoff sites into every atom of the conventional cell."""
    from pymatgen.core.periodic_table import Element

    frac_blocks, numbers = [], []
    for site in encoded.sites:
        multiplicity, letter = _parse_label(site.wyckoff)
        wp = wyckoff_position(encoded.spacegroup, letter, encoded.hall_number)
        if wp.multiplicity != multiplicity:
            raise WyckoffError(
                f"Wyckoff position {letter} of space group {encoded.spacegroup} has multiplicity "
                f"{wp.multiplicity}, not {multiplicity}"
            )
        expected_free = len(np.atleast_1d(wp.get_free_xyzs(np.zeros(3))))
        if len(site.free_coords) != expected_free:
            raise WyckoffError(
                f"Wyckoff position {site.wyckoff} of space group {encoded.spacegroup} takes "
                f"{expected_free} free coordinates, got {len(site.free_coords)}"
            )
        representative = wp.get_position_from_free_xyzs(np.asarray(site.free_coords, dtype=float))
        frac_blocks.append(np.asarray(wp.apply_ops(representative), dtype=float).reshape(-1, 3))
        numbers += [Element(site.element).Z] * multiplicity
    lattice = lattice_params_to_matrix(np.asarray(encoded.lattice_params, dtype=float))
    if not np.all(np.isfinite(lattice)) or abs(np.linalg.det(lattice)) <= 0:
        raise WyckoffError(f"lattice parameters {list(encoded.lattice_params)} do not form a cell")
    frac = np.concatenate(frac_blocks) if frac_blocks else np.zeros((0, 3))
    return Crystal(lattice, frac, numbers, encoded.id, dict(encoded.properties))


class Wyckoff:
    """Crystal <-> :class:`WyckoffCrystal`."""

    name = "wyckoff"

    def __init__(self, symprec: float = SYMPREC):
        self.symprec = symprec

    def encode(self, crystal: Crystal) -> WyckoffCrystal:
        return encode_wyckoff(crystal, self.symprec)

    def decode(self, encoded: WyckoffCrystal) -> Crystal:
        return decode_wyckoff(encoded)
