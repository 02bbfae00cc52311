"""Wyckoff constraints as torch tensors, for models that diffuse only what symmetry leaves free.

pyxtal finds the space group and the Wyckoff sites once, when data are prepared
(:func:`crystalgen.representations.wyckoff.encode_wyckoff`); everything a sampling step needs is
then a tensor of a :class:`WyckoffBatch`:

* per atom: the affine operation ``(R, t)`` of its site, which places the atom at
  ``R g + t (mod 1)`` for the orbit's generic point ``g``, and the index of its orbit's anchor
  (the first atom of the orbit, whose own coordinates serve as ``g``);
* per orbit: the pseudo-inverse of ``sum_j R_j^T R_j`` over its atoms, which turns per-atom
  vectors into the least-squares displacement of ``g``;
* per crystal: the space group, its crystal family, and the family's lattice subspace, an affine
  subspace of the log-polar lattice vector (:func:`crystalgen.representations.lattice.lattice_to_log_polar`,
  entries s11, s22, s33, s12, s13, s23): cubic 1 free parameter, tetragonal 2, hexagonal and
  trigonal 2 (gamma = 120 degrees fixed, so s12 = -ln(3)/4), orthorhombic 3, monoclinic 4,
  triclinic 6.

Settings are fixed: the conventional cell of spglib/pyxtal's standard setting, so rhombohedral
groups are in the hexagonal setting and monoclinic groups are b-unique (alpha = gamma = 90). A
structure found in another setting fails the round trip with a cause that says so.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import numpy as np
import torch

from crystalgen.crystal import Crystal
from crystalgen.constants import SYMPREC
from crystalgen.diffusion.sampler import Projection
from crystalgen.diffusion.torus import wrap
from crystalgen.representations.lattice import lattice_params_to_matrix, lattice_to_log_polar, log_polar_to_lattice
from crystalgen.representations.wyckoff import (  # noqa: F401  (FAMILIES, crystal_family: re-exported)
    FAMILIES,
    WyckoffCrystal,
    WyckoffError,
    crystal_family,
    encode_wyckoff,
    wyckoff_position,
)

#: The fixed off-diagonal log-polar entry of a gamma = 120 degree cell with a = b (see the module docstring).
HEXAGONAL_S12 = -math.log(3.0) / 4
#: Largest disagreement (fractional coordinates, log-polar entries) a round trip may show.
ROUND_TRIP_TOLERANCE = 1e-4
#: Per family, which log-polar entries move together (one free parameter per group); the rest are fixed.
_FREE_GROUPS = {
    "triclinic": ((0,), (1,), (2,), (3,), (4,), (5,)),
    "monoclinic": ((0,), (1,), (2,), (4,)),
    "orthorhombic": ((0,), (1,), (2,)),
    "tetragonal": ((0, 1), (2,)),
    "hexagonal": ((0, 1), (2,)),
    "cubic": ((0, 1, 2),),
}


def lattice_subspace(family: str) -> tuple[torch.Tensor, torch.Tensor]:
    """``(projector, offset)``: the family's allowed log-polar vectors are ``offset + projector @ k``."""
    basis = torch.zeros(6, len(_FREE_GROUPS[family]), dtype=torch.float64)
    for column, group in enumerate(_FREE_GROUPS[family]):
        basis[list(group), column] = 1.0 / math.sqrt(len(group))
    offset = torch.zeros(6, dtype=torch.float64)
    if family == "hexagonal":
        offset[3] = HEXAGONAL_S12
    return basis @ basis.T, offset


@dataclass
class WyckoffBatch:
    """Wyckoff constraints of B crystals with N atoms in O orbits, as flat tensors."""

    frac_coords: torch.Tensor  # (N, 3) conventional cell
    atomic_numbers: torch.Tensor  # (N,)
    num_atoms: torch.Tensor  # (B,)
    lattice_vector: torch.Tensor  # (B, 6) log-polar vector of the conventional cell
    rotation: torch.Tensor  # (N, 3, 3) R of each atom's site operation
    translation: torch.Tensor  # (N, 3) t of each atom's site operation
    anchor: torch.Tensor  # (N,) index of the orbit's anchor atom
    orbit: torch.Tensor  # (N,) orbit of each atom, 0..O-1
    orbit_pinv: torch.Tensor  # (O, 3, 3) pinv(sum_j R_j^T R_j) over the orbit
    spacegroup: torch.Tensor  # (B,)
    family: torch.Tensor  # (B,) index into FAMILIES
    lattice_projector: torch.Tensor  # (B, 6, 6)
    lattice_offset: torch.Tensor  # (B, 6)

    @property
    def crystal_index(self) -> torch.Tensor:
        return torch.repeat_interleave(torch.arange(len(self.num_atoms), device=self.num_atoms.device), self.num_atoms)

    @property
    def lattices(self) -> torch.Tensor:
        """(B, 3, 3) conventional lattice matrices (rows a, b, c)."""
        return log_polar_to_lattice(self.lattice_vector)

    def to(self, device: torch.device | str) -> "WyckoffBatch":
        return WyckoffBatch(**{f.name: getattr(self, f.name).to(device) for f in fields(self)})

    # ------------------------------------------------------------------ projections
    def rebuild(self, frac: torch.Tensor) -> torch.Tensor:
        """Every atom placed from its orbit's anchor: ``R_j x_anchor + t_j (mod 1)``."""
        generic = frac[self.anchor].to(self.rotation.dtype)
        return wrap(torch.einsum("nij,nj->ni", self.rotation, generic) + self.translation).to(frac.dtype)

    def project_displacement(self, vectors: torch.Tensor) -> torch.Tensor:
        """Per-atom vectors replaced by the orbit's least-squares displacement of its generic point, applied to every member."""
        rotation = self.rotation.to(vectors.dtype)
        pulled = torch.einsum("nji,nj->ni", rotation, vectors)  # R_j^T v_j
        summed = torch.zeros(len(self.orbit_pinv), 3, dtype=vectors.dtype, device=vectors.device)
        summed.index_add_(0, self.orbit, pulled)
        generic = torch.einsum("oij,oj->oi", self.orbit_pinv.to(vectors.dtype), summed)
        return torch.einsum("nij,nj->ni", rotation, generic[self.orbit])

    def project_noise(self, noise: torch.Tensor) -> torch.Tensor:
        """One draw per free parameter: the anchor's draw, moved to every member by its operation."""
        return torch.einsum("nij,nj->ni", self.rotation.to(noise.dtype), noise[self.anchor])

    def project_lattice(self, vectors: torch.Tensor) -> torch.Tensor:
        """Log-polar vectors onto each crystal's family subspace."""
        offset = self.lattice_offset.to(vectors.dtype)
        return offset + torch.einsum("bij,bj->bi", self.lattice_projector.to(vectors.dtype), vectors - offset)

    def project_lattice_vector(self, vectors: torch.Tensor) -> torch.Tensor:
        """Directions (scores, noise) in log-polar space onto the family subspace's linear part."""
        return torch.einsum("bij,bj->bi", self.lattice_projector.to(vectors.dtype), vectors)

    def to_crystals(self, frac: torch.Tensor | None = None, lattice_vector: torch.Tensor | None = None) -> list[Crystal]:
        """Crystals from (projected) coordinates and lattice vectors; by default the batch's own."""
        from crystalgen.crystal import crystals_from_arrays

        frac = self.rebuild(self.frac_coords if frac is None else frac)
        lattices = log_polar_to_lattice(self.project_lattice(self.lattice_vector if lattice_vector is None
                                                             else lattice_vector).double())
        return crystals_from_arrays(lattices.detach().cpu().numpy(), frac.detach().cpu().double().numpy(),
                                    self.atomic_numbers.cpu().numpy(), self.num_atoms.cpu().numpy())


class WyckoffProjection(Projection):
    """The sampler hook for a Wyckoff model: ``frac`` stays on each orbit's Wyckoff manifold and
    ``lattice`` in each family's subspace, and (generation) every orbit member takes its anchor's type.

    ``lattice_mean`` and ``lattice_std`` describe a model that diffuses the standardised log-polar
    vector ``(k - mean) / std``; the projection is done on ``k`` itself.
    """

    def __init__(self, batch: WyckoffBatch, lattice_mean: torch.Tensor | None = None,
                 lattice_std: torch.Tensor | None = None) -> None:
        self.batch = batch
        self.mean = torch.zeros(6, dtype=torch.float64) if lattice_mean is None else lattice_mean
        self.std = torch.ones(6, dtype=torch.float64) if lattice_std is None else lattice_std

    def state(self, name: str, x: torch.Tensor) -> torch.Tensor:
        if name == "frac":
            return self.batch.rebuild(x)
        if name == "lattice":
            mean, std = self.mean.to(x), self.std.to(x)
            return (self.batch.project_lattice(x * std + mean) - mean) / std
        if name == "types":  # one type per orbit: its anchor's
            return x[self.batch.anchor]
        return x

    def vector(self, name: str, v: torch.Tensor) -> torch.Tensor:
        if name == "frac":
            return self.batch.project_displacement(v)
        if name == "lattice":
            std = self.std.to(v)
            return self.batch.project_lattice_vector(v * std) / std
        return v

    def noise(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return self.batch.project_noise(z) if name == "frac" else self.vector(name, z)


# ---------------------------------------------------------------------------------- building
def wyckoff_tensors(encoded: WyckoffCrystal) -> WyckoffBatch:
    """One crystal's :class:`WyckoffBatch`, from its (pyxtal-found) Wyckoff description."""
    from pymatgen.core.periodic_table import Element

    rotations, translations, frac, numbers, anchors, orbits, pinvs = [], [], [], [], [], [], []
    for orbit, site in enumerate(encoded.sites):
        wp = wyckoff_position(encoded.spacegroup, site.letter, encoded.hall_number)
        generic = np.asarray(wp.get_position_from_free_xyzs(np.asarray(site.free_coords, dtype=float)), dtype=float)
        affine = np.stack([op.affine_matrix for op in wp.ops])  # (m, 4, 4)
        rotation, translation = affine[:, :3, :3], affine[:, :3, 3]
        anchors += [len(numbers)] * len(rotation)
        rotations.append(rotation)
        translations.append(translation)
        frac.append(np.mod(rotation @ generic + translation, 1.0))
        numbers += [Element(site.element).Z] * len(rotation)
        orbits += [orbit] * len(rotation)
        pinvs.append(np.linalg.pinv(np.einsum("mji,mjk->ik", rotation, rotation)))
    family = crystal_family(encoded.spacegroup)
    projector, offset = lattice_subspace(family)
    lattice = lattice_params_to_matrix(np.asarray(encoded.lattice_params, dtype=float))
    return WyckoffBatch(
        frac_coords=torch.as_tensor(np.concatenate(frac), dtype=torch.float64),
        atomic_numbers=torch.as_tensor(numbers, dtype=torch.long),
        num_atoms=torch.tensor([len(numbers)]),
        lattice_vector=torch.as_tensor(lattice_to_log_polar(lattice), dtype=torch.float64).reshape(1, 6),
        rotation=torch.as_tensor(np.concatenate(rotations), dtype=torch.float64),
        translation=torch.as_tensor(np.concatenate(translations), dtype=torch.float64),
        anchor=torch.as_tensor(anchors, dtype=torch.long),
        orbit=torch.as_tensor(orbits, dtype=torch.long),
        orbit_pinv=torch.as_tensor(np.stack(pinvs), dtype=torch.float64),
        spacegroup=torch.tensor([encoded.spacegroup]),
        family=torch.tensor([FAMILIES.index(family)]),
        lattice_projector=projector.unsqueeze(0),
        lattice_offset=offset.unsqueeze(0),
    )


def collate_wyckoff(batches: list[WyckoffBatch]) -> WyckoffBatch:
    """Concatenate single-crystal batches; atom and orbit indices are shifted to the joint numbering."""
    atom_offsets = np.cumsum([0] + [len(b.atomic_numbers) for b in batches[:-1]])
    orbit_offsets = np.cumsum([0] + [len(b.orbit_pinv) for b in batches[:-1]])
    joined = {f.name: torch.cat([getattr(b, f.name) for b in batches]) for f in fields(WyckoffBatch)}
    joined["anchor"] = torch.cat([b.anchor + int(o) for b, o in zip(batches, atom_offsets)])
    joined["orbit"] = torch.cat([b.orbit + int(o) for b, o in zip(batches, orbit_offsets)])
    return WyckoffBatch(**joined)


def check_round_trip(batch: WyckoffBatch) -> None:
    """Raise a :class:`WyckoffError` naming the cause when the constraints do not reproduce the batch."""
    drift = (batch.rebuild(batch.frac_coords) - batch.frac_coords + 0.5) % 1.0 - 0.5
    if len(drift) and float(drift.abs().max()) > ROUND_TRIP_TOLERANCE:
        raise WyckoffError("an orbit member is not rebuilt from its anchor by its site operation")
    off = (batch.project_lattice(batch.lattice_vector) - batch.lattice_vector).abs().max()
    if float(off) > ROUND_TRIP_TOLERANCE:
        names = [FAMILIES[int(f)] for f in batch.family]
        raise WyckoffError(f"the conventional lattice lies off its {names[0]} subspace (another setting?)")


class WyckoffTensors:
    """Crystal <-> a one-crystal :class:`WyckoffBatch` (registered as ``wyckoff-batch``); decoding
    rebuilds every atom from its anchor and the lattice from its family's subspace."""

    name = "wyckoff-batch"

    def __init__(self, symprec: float = SYMPREC):
        self.symprec = symprec

    def encode(self, crystal: Crystal) -> WyckoffBatch:
        return wyckoff_tensors(encode_wyckoff(crystal, self.symprec))

    def decode(self, encoded: WyckoffBatch) -> Crystal:
        check_round_trip(encoded)
        return encoded.to_crystals()[0]


__all__ = ["FAMILIES", "WyckoffBatch", "WyckoffProjection", "WyckoffTensors", "check_round_trip", "collate_wyckoff", "crystal_family",
           "lattice_subspace", "wyckoff_tensors"]
