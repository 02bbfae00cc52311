"""The one crystal type that every part of crystalgen passes around.

A :class:`Crystal` is deliberately small: a lattice (row vectors, Å), fractional coordinates
wrapped into [0, 1), atomic numbers, and optionally an id and scalar properties. Conversions to
the field's own types (pymatgen ``Structure``, ASE ``Atoms``) and text formats (CIF, POSCAR)
live here so that no other module needs to know how they are spelt.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystalgen.constants import MAX_Z
from crystalgen.errors import StructureParseError, first_line

if TYPE_CHECKING:  # heavy imports only for type checkers
    from ase import Atoms
    from pymatgen.core import Structure

#: Fractional coordinates within this distance of 1 are folded to 0 so that 0.9999999999 and
#: 1e-12 describe the same site.
WRAP_TOLERANCE = 1e-10

#: Decimal places used when crystals are written as text.
TEXT_PRECISION = 8


def wrap_fractional(frac_coords: np.ndarray) -> np.ndarray:
    """Map fractional coordinates into [0, 1), folding values a hair below 1 onto 0."""
    wrapped = np.mod(np.asarray(frac_coords, dtype=np.float64), 1.0)
    wrapped[np.abs(wrapped - 1.0) < WRAP_TOLERANCE] = 0.0
    return wrapped


@dataclass(eq=False)
class Crystal:
    """A periodic crystal.

    Attributes:
        lattice: (3, 3) lattice matrix whose rows are the lattice vectors, in Å.
        frac_coords: (N, 3) fractional coordinates in [0, 1).
        atomic_numbers: (N,) atomic numbers.
        id: optional identifier, e.g. a Materials Project id.
        properties: optional scalar properties (formation energy, band gap, ...).
    """

    lattice: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    id: str | None = None
    properties: dict[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.lattice = np.asarray(self.lattice, dtype=np.float64).reshape(3, 3)
        self.frac_coords = wrap_fractional(np.asarray(self.frac_coords, dtype=np.float64).reshape(-1, 3))
        self.atomic_numbers = np.asarray(self.atomic_numbers, dtype=np.int64).reshape(-1)
        if len(self.frac_coords) != len(self.atomic_numbers):
            raise ValueError(
                f"{len(self.frac_coords)} coordinates but {len(self.atomic_numbers)} atomic numbers"
            )

    # ------------------------------------------------------------------ basic properties
    @property
    def num_atoms(self) -> int:
        return len(self.atomic_numbers)

    @property
    def volume(self) -> float:
        return float(abs(np.linalg.det(self.lattice)))

    @property
    def cart_coords(self) -> np.ndarray:
        return self.frac_coords @ self.lattice

    @property
    def species(self) -> list[str]:
        from pymatgen.core.periodic_table import Element

        return [Element.from_Z(int(z)).symbol for z in self.atomic_numbers]

    @property
    def formula(self) -> str:
        """Reduced formula, e.g. ``"SrTiO3"``."""
        return self.composition.reduced_formula

    @property
    def composition(self):  # -> pymatgen Composition; annotated loosely to keep the import lazy
        from pymatgen.core import Composition

        return Composition(dict(zip(*np.unique(self.species, return_counts=True))))

    @property
    def density(self) -> float:
        """Mass density in g/cm^3."""
        return float(self.to_structure().density)

    def copy(self) -> "Crystal":
        return Crystal(
            self.lattice.copy(),
            self.frac_coords.copy(),
            self.atomic_numbers.copy(),
            self.id,
            dict(self.properties),
        )

    def right_handed(self) -> "Crystal":
        """The same crystal (same Cartesian positions) on a right-handed cell.

        Encodings that keep only lengths and angles (or the metric) rebuild a right-handed cell, so a
        left-handed one (det < 0, as POSCAR and ASE allow) must be flipped first or it decodes as its
        mirror image. Negating all three lattice vectors and the fractional coordinates keeps every
        atom where it is and flips the sign of the determinant.
        """
        if np.linalg.det(self.lattice) >= 0:
            return self
        return Crystal(-self.lattice, -self.frac_coords, self.atomic_numbers.copy(), self.id, dict(self.properties))

    def __repr__(self) -> str:
        label = f"{self.id}, " if self.id else ""
        return f"Crystal({label}{self.formula}, {self.num_atoms} atoms, V={self.volume:.2f} Å^3)"

    # ------------------------------------------------------------------ pymatgen
    @classmethod
    def from_structure(cls, structure: "Structure", id: str | None = None, properties: dict | None = None) -> "Crystal":
        """Build from a pymatgen ``Structure``. Disordered sites are rejected."""
        if not structure.is_ordered:
            raise StructureParseError("disordered structures (partial occupancies) are not supported")
        return cls(
            lattice=structure.lattice.matrix,
            frac_coords=structure.frac_coords,
            atomic_numbers=atomic_numbers_of(structure),
            id=id,
            properties=dict(properties or {}),
        )

    def to_structure(self) -> "Structure":
        from pymatgen.core import Lattice, Structure

        return Structure(Lattice(self.lattice), self.atomic_numbers.tolist(), self.frac_coords)

    # ------------------------------------------------------------------ ASE
    @classmethod
    def from_ase(cls, atoms: "Atoms", id: str | None = None) -> "Crystal":
        if not all(atoms.pbc):
            raise StructureParseError("ASE Atoms must be periodic in all three directions")
        return cls(atoms.cell.array, atoms.get_scaled_positions(wrap=True), atoms.numbers, id=id)

    def to_ase(self) -> "Atoms":
        from ase import Atoms

        return Atoms(numbers=self.atomic_numbers, cell=self.lattice, scaled_positions=self.frac_coords, pbc=True)

    # ------------------------------------------------------------------ text formats
    @classmethod
    def from_cif(cls, text: str, id: str | None = None) -> "Crystal":
        """Parse the first structure of a CIF. Symmetry operations in the CIF are applied."""
        from pymatgen.io.cif import CifParser

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structures = CifParser(io.StringIO(text)).parse_structures(primitive=False)
        except Exception as exc:  # pymatgen raises many different types for bad CIFs
            raise StructureParseError(f"could not parse CIF: {first_line(exc)}") from None
        if not structures:
            raise StructureParseError("CIF contains no structure")
        return cls.from_structure(structures[0], id=id)

    def to_cif(self) -> str:
        """P1 CIF of this exact cell. See :mod:`crystalgen.representations.cif` for a symmetric CIF."""
        from pymatgen.io.cif import CifWriter

        # CIF stores lengths and angles only, which readers build into a right-handed cell.
        return str(CifWriter(self.right_handed().to_structure(), significant_figures=TEXT_PRECISION))

    @classmethod
    def from_poscar(cls, text: str, id: str | None = None) -> "Crystal":
        from pymatgen.io.vasp import Poscar

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                structure = Poscar.from_str(text).structure
        except Exception as exc:
            raise StructureParseError(f"could not parse POSCAR: {first_line(exc)}") from None
        return cls.from_structure(structure, id=id)

    def to_poscar(self) -> str:
        from pymatgen.io.vasp import Poscar

        return Poscar(self.to_structure()).get_str(significant_figures=TEXT_PRECISION)

    @classmethod
    def from_file(cls, path: str | Path) -> "Crystal":
        """Read a CIF, POSCAR/CONTCAR, extxyz or Wyckoff JSON file, chosen by its name."""
        from crystalgen.io import read_crystal_file

        return read_crystal_file(path)


def atomic_numbers_of(structure: "Structure") -> np.ndarray:
    """The atomic numbers of an ordered structure's sites.

    A symbol that is no element ("Xx" in a CIF or POSCAR) reaches pymatgen as a dummy species
    whose ``Z`` is a meaningless number; it is refused here instead of failing later, far away.
    """
    from pymatgen.core.periodic_table import DummySpecies

    numbers = []
    for site in structure:
        specie = site.specie
        if isinstance(specie, DummySpecies) or not 1 <= specie.Z <= MAX_Z:
            raise StructureParseError(f"unknown element {getattr(specie, 'symbol', str(specie))!r}")
        numbers.append(specie.Z)
    return np.array(numbers, dtype=np.int64)


def crystals_to_arrays(crystals: list[Crystal]) -> dict[str, Any]:
    """Flatten crystals into concatenated numpy arrays (the layout used by caches and batches)."""
    num_atoms = np.array([c.num_atoms for c in crystals], dtype=np.int64)
    if crystals:
        lattices = np.stack([c.lattice for c in crystals])
        frac = np.concatenate([c.frac_coords for c in crystals])
        numbers = np.concatenate([c.atomic_numbers for c in crystals])
    else:
        lattices, frac, numbers = np.zeros((0, 3, 3)), np.zeros((0, 3)), np.zeros((0,), np.int64)
    return {"lattices": lattices, "frac_coords": frac, "atomic_numbers": numbers, "num_atoms": num_atoms}


def crystals_from_arrays(
    lattices: np.ndarray,
    frac_coords: np.ndarray,
    atomic_numbers: np.ndarray,
    num_atoms: np.ndarray,
    ids: list[str | None] | None = None,
    properties: dict[str, np.ndarray] | None = None,
) -> list[Crystal]:
    """Inverse of :func:`crystals_to_arrays`."""
    offsets = np.concatenate([[0], np.cumsum(num_atoms)])
    ids = ids if ids is not None else [None] * len(num_atoms)
    properties = properties or {}
    crystals = []
    for i in range(len(num_atoms)):
        start, stop = offsets[i], offsets[i + 1]
        props = {k: float(v[i]) for k, v in properties.items() if not np.isnan(v[i])}
        crystals.append(Crystal(lattices[i], frac_coords[start:stop], atomic_numbers[start:stop], ids[i], props))
    return crystals
