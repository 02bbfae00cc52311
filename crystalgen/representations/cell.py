"""Cell choice: Niggli-reduced, primitive standard and conventional standard cells.

Thin, named wrappers around pymatgen so that the whole project standardises cells the same way
and with the same symmetry tolerance.
"""

from __future__ import annotations

from crystalgen.constants import ANGLE_TOLERANCE, SYMPREC
from crystalgen.crystal import Crystal


CELL_CHOICES = ("as-is", "niggli", "primitive", "conventional")


def niggli_cell(crystal: Crystal) -> Crystal:
    """The Niggli-reduced cell of the same lattice (no symmetry analysis, same atoms)."""
    structure = crystal.to_structure().get_reduced_structure(reduction_algo="niggli")
    return Crystal.from_structure(structure, id=crystal.id, properties=crystal.properties)


def _analyzer(crystal: Crystal, symprec: float):
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    return SpacegroupAnalyzer(crystal.to_structure(), symprec=symprec, angle_tolerance=ANGLE_TOLERANCE)


def primitive_cell(crystal: Crystal, symprec: float = SYMPREC) -> Crystal:
    """The standard primitive cell (Setyawan-Curtarolo convention)."""
    structure = _analyzer(crystal, symprec).get_primitive_standard_structure()
    return Crystal.from_structure(structure, id=crystal.id, properties=crystal.properties)


def conventional_cell(crystal: Crystal, symprec: float = SYMPREC) -> Crystal:
    """The conventional standard cell (International Tables setting)."""
    structure = _analyzer(crystal, symprec).get_conventional_standard_structure()
    return Crystal.from_structure(structure, id=crystal.id, properties=crystal.properties)


def standardise(crystal: Crystal, cell: str, symprec: float = SYMPREC) -> Crystal:
    """Apply one of :data:`CELL_CHOICES`."""
    if cell == "as-is":
        return crystal
    if cell == "niggli":
        return niggli_cell(crystal)
    if cell == "primitive":
        return primitive_cell(crystal, symprec)
    if cell == "conventional":
        return conventional_cell(crystal, symprec)
    raise ValueError(f"unknown cell choice {cell!r}; expected one of {', '.join(CELL_CHOICES)}")


def space_group_number(crystal: Crystal, symprec: float = SYMPREC) -> int:
    """International space group number found by spglib at ``symprec``."""
    import spglib

    cell = (crystal.lattice, crystal.frac_coords, crystal.atomic_numbers)
    dataset = spglib.get_symmetry_dataset(cell, symprec=symprec, angle_tolerance=ANGLE_TOLERANCE)
    return 1 if dataset is None else int(dataset.number)


class CellChoice:
    """A cell standardisation seen as a representation: decode is the identity."""

    def __init__(self, cell: str, symprec: float = SYMPREC):
        if cell not in CELL_CHOICES:
            raise ValueError(f"unknown cell choice {cell!r}")
        self.cell = cell
        self.symprec = symprec
        self.name = f"cell-{cell}"

    def encode(self, crystal: Crystal) -> Crystal:
        return standardise(crystal, self.cell, self.symprec)

    def decode(self, encoded: Crystal) -> Crystal:
        return encoded
