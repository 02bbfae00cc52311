"""Symmetry-preserving CIF: the conventional cell, its space group and the asymmetric unit.

A P1 CIF (``Crystal.to_cif``) lists every atom of one exact cell. The symmetric CIF written here
is what crystallographers expect to read: the conventional standard cell, the Hermann-Mauguin
symbol and number, the symmetry operations, and only the symmetry-distinct sites. Reading it back
applies the operations and gives the same crystal (possibly in a different, equivalent cell).
"""

from __future__ import annotations

from crystalgen.crystal import TEXT_PRECISION, Crystal
from crystalgen.constants import SYMPREC


def to_symmetric_cif(crystal: Crystal, symprec: float = SYMPREC) -> str:
    """CIF text of the conventional cell with its space group and asymmetric unit."""
    from pymatgen.io.cif import CifWriter

    return str(CifWriter(crystal.to_structure(), symprec=symprec, significant_figures=TEXT_PRECISION))


def from_symmetric_cif(text: str, id: str | None = None) -> Crystal:
    """Read any CIF, applying its symmetry operations."""
    return Crystal.from_cif(text, id=id)


class SymmetricCif:
    """Crystal <-> symmetric CIF text."""

    name = "cif-symmetric"

    def __init__(self, symprec: float = SYMPREC):
        self.symprec = symprec

    def encode(self, crystal: Crystal) -> str:
        return to_symmetric_cif(crystal, self.symprec)

    def decode(self, encoded: str) -> Crystal:
        return from_symmetric_cif(encoded)


class P1Cif:
    """Crystal <-> plain P1 CIF text of the exact cell."""

    name = "cif-p1"

    def encode(self, crystal: Crystal) -> str:
        return crystal.to_cif()

    def decode(self, encoded: str) -> Crystal:
        return Crystal.from_cif(encoded)
