"""Collate many crystals into flat torch tensors, and back.

The layout is the one every model in crystalgen consumes: all atoms of all crystals concatenated,
with ``crystal_index`` saying which crystal each atom belongs to. Per-crystal reductions are then
``index_add_`` / ``scatter_reduce`` over ``crystal_index``, with no padding and no Python loop.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from crystalgen.crystal import Crystal, crystals_from_arrays, crystals_to_arrays


@dataclass
class CrystalBatch:
    """A batch of crystals as flat tensors.

    Attributes:
        lattices: (B, 3, 3) lattice matrices, rows are lattice vectors.
        frac_coords: (N, 3) fractional coordinates of all atoms.
        atomic_numbers: (N,) atomic numbers.
        crystal_index: (N,) index in [0, B) of the crystal that owns each atom.
        num_atoms: (B,) atoms per crystal.
        ids: B optional identifiers.
        properties: name -> (B,) tensor, NaN where a crystal lacks the property.
    """

    lattices: torch.Tensor
    frac_coords: torch.Tensor
    atomic_numbers: torch.Tensor
    crystal_index: torch.Tensor
    num_atoms: torch.Tensor
    ids: list[str | None] = field(default_factory=list)
    properties: dict[str, torch.Tensor] = field(default_factory=dict)

    @property
    def num_crystals(self) -> int:
        return int(self.num_atoms.shape[0])

    @property
    def cart_coords(self) -> torch.Tensor:
        """(N, 3) Cartesian coordinates, one batched matrix product."""
        return torch.einsum("ni,nij->nj", self.frac_coords, self.lattices[self.crystal_index])

    def to(self, device: torch.device | str) -> "CrystalBatch":
        return CrystalBatch(
            self.lattices.to(device),
            self.frac_coords.to(device),
            self.atomic_numbers.to(device),
            self.crystal_index.to(device),
            self.num_atoms.to(device),
            list(self.ids),
            {k: v.to(device) for k, v in self.properties.items()},
        )

    def to_crystals(self) -> list[Crystal]:
        """Split the batch back into :class:`Crystal` objects."""
        properties = {k: v.detach().cpu().double().numpy() for k, v in self.properties.items()}
        return crystals_from_arrays(
            self.lattices.detach().cpu().double().numpy(),
            self.frac_coords.detach().cpu().double().numpy(),
            self.atomic_numbers.detach().cpu().numpy(),
            self.num_atoms.detach().cpu().numpy(),
            ids=self.ids or None,
            properties=properties,
        )


def collate(crystals: list[Crystal], dtype: torch.dtype = torch.float32) -> CrystalBatch:
    """Concatenate crystals into a :class:`CrystalBatch`."""
    arrays = crystals_to_arrays(crystals)
    num_atoms = torch.from_numpy(arrays["num_atoms"])
    property_names = sorted({name for c in crystals for name in c.properties})
    properties = {
        name: torch.tensor([c.properties.get(name, np.nan) for c in crystals], dtype=dtype)
        for name in property_names
    }
    return CrystalBatch(
        lattices=torch.from_numpy(arrays["lattices"]).to(dtype),
        frac_coords=torch.from_numpy(arrays["frac_coords"]).to(dtype),
        atomic_numbers=torch.from_numpy(arrays["atomic_numbers"]),
        crystal_index=torch.repeat_interleave(torch.arange(len(crystals)), num_atoms),
        num_atoms=num_atoms,
        ids=[c.id for c in crystals],
        properties=properties,
    )
