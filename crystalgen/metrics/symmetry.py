"""Space-group compliance: does a sample have the symmetry its template promised?

For each sample built in a template's space group H, spglib (at ``symprec``) finds the sample's
group G:

* **exact**: G is H;
* **supergroup**: G is not H, but the sample is invariant under every operation of H (in the
  standard setting, on the sample's own cell, which is the template's conventional cell), so G
  contains H: more symmetry than asked for, counted separately;
* **violated**: neither.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Sequence

import numpy as np

from crystalgen.constants import SYMPREC
from crystalgen.crystal import Crystal
from crystalgen.metrics._util import json_float


@dataclass(frozen=True)
class SpacegroupComplianceConfig:
    #: spglib's tolerance (Å), also the largest displacement an operation may leave an atom at.
    symprec: float = SYMPREC


@dataclass(frozen=True)
class SpacegroupComplianceResult:
    n: int
    exact: int
    supergroup: int
    violated: int

    @property
    def exact_share(self) -> float:
        return self.exact / self.n if self.n else float("nan")

    @property
    def compliance(self) -> float:
        """Exact plus supergroup."""
        return (self.exact + self.supergroup) / self.n if self.n else float("nan")

    def to_dict(self) -> dict:
        return {"n": self.n, "exact": self.exact, "supergroup": self.supergroup, "violated": self.violated,
                "exact_share": json_float(self.exact_share), "compliance": json_float(self.compliance)}


def _operations(spacegroup: int) -> tuple[np.ndarray, np.ndarray]:
    """Rotations (M, 3, 3) and translations (M, 3) of the group in its standard setting (pyxtal)."""
    from pyxtal.symmetry import Group

    affine = np.stack([op.affine_matrix for op in Group(spacegroup)[0].ops])
    return affine[:, :3, :3], affine[:, :3, 3]


def invariant_under(crystal: Crystal, spacegroup: int, tolerance: float = SYMPREC) -> bool:
    """Whether every operation of ``spacegroup`` maps each atom onto an atom of the same element
    within ``tolerance`` Å (periodic images included)."""
    rotations, translations = _operations(spacegroup)
    frac = crystal.frac_coords
    images = np.einsum("mij,nj->mni", rotations, frac) + translations[:, None, :]  # (M, N, 3)
    delta = images[:, :, None, :] - frac[None, None, :, :]  # (M, N, N, 3)
    delta -= np.round(delta)
    distance = np.linalg.norm(delta @ crystal.lattice, axis=-1)
    same = crystal.atomic_numbers[:, None] == crystal.atomic_numbers[None, :]
    return bool(np.all(np.where(same[None], distance, np.inf).min(-1) <= tolerance))


def spacegroup_compliance(crystals: Sequence[Crystal], spacegroups: Sequence[int],
                          config: SpacegroupComplianceConfig = SpacegroupComplianceConfig()) -> SpacegroupComplianceResult:
    """Exact / supergroup / violated counts of ``crystals`` against their templates' ``spacegroups``."""
    from crystalgen.representations.cell import space_group_number

    exact = supergroup = 0
    for crystal, expected in zip(crystals, spacegroups):
        found = space_group_number(crystal, config.symprec)  # 1 where spglib finds nothing
        if found == int(expected):
            exact += 1
        elif invariant_under(crystal, int(expected), config.symprec):
            supergroup += 1
    n = len(crystals)
    return SpacegroupComplianceResult(n, exact, supergroup, n - exact - supergroup)


__all__ = ["SpacegroupComplianceConfig", "SpacegroupComplianceResult", "invariant_under", "spacegroup_compliance"]
