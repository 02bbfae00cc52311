"""Guidance for crystal diffusion models: an objective on the denoised crystal, in physical units.

A :class:`CrystalGuidance` is what a user (or ``crystalgen design``) passes in
``SampleOptions(guidance=...)``. The diffusion family turns it into the crystal-agnostic
:class:`crystalgen.diffusion.sampler.Guidance` on its variables, so the objective always sees
lattices as matrices and coordinates as fractions, whatever the model diffuses internally.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch

from crystalgen.diffusion.sampler import Guidance


@dataclass(frozen=True)
class CrystalEstimate:
    """The denoised estimate of a batch of crystals (differentiable in lattices and coordinates)."""

    lattices: torch.Tensor  # (B, 3, 3), rows are lattice vectors, Å
    frac_coords: torch.Tensor  # (N, 3)
    atom_types: torch.Tensor  # (N,)
    num_atoms: torch.Tensor  # (B,)
    crystal_index: torch.Tensor  # (N,)

    @property
    def volumes(self) -> torch.Tensor:
        """(B,) cell volumes, Å^3."""
        return torch.linalg.det(self.lattices).abs()


@dataclass(frozen=True)
class CrystalGuidance:
    """Steer sampling toward low ``objective`` (a (B,) loss on :class:`CrystalEstimate`) with ``strength``."""

    objective: Callable[[CrystalEstimate], torch.Tensor]
    strength: float = 1.0
    #: How reports name it.
    label: str = "custom objective"

    def on_variables(self, decode_lattice: Callable[[torch.Tensor], torch.Tensor], types: torch.Tensor | None,
                     num_atoms: torch.Tensor, crystal_index: torch.Tensor) -> Guidance:
        """The sampler-level guidance for a model whose variables are ``frac``, ``lattice`` (encoded,
        decoded by ``decode_lattice``) and, unless ``types`` are given, ``types``."""

        def objective(denoised: dict[str, torch.Tensor]) -> torch.Tensor:
            atom_types = denoised["types"] if types is None else types
            estimate = CrystalEstimate(decode_lattice(denoised["lattice"]), denoised["frac"], atom_types, num_atoms,
                                       crystal_index)
            return self.objective(estimate)

        return Guidance(objective, self.strength)


def describe_guidance(guidance: CrystalGuidance | None) -> str:
    """The suffix a family's :meth:`describe_sampling` adds for ``guidance`` (empty without any)."""
    return "" if guidance is None else f", guidance: {guidance.label} (strength {guidance.strength:g})"


def volume_guidance(volume_per_atom: float, strength: float = 1.0) -> CrystalGuidance:
    """Pull each cell's volume toward ``volume_per_atom`` Å^3 times its atom count (a squared
    relative error); the toy objective with a known answer that the tests use."""

    def objective(crystals: CrystalEstimate) -> torch.Tensor:
        target = volume_per_atom * crystals.num_atoms.to(crystals.lattices.dtype)
        return ((crystals.volumes - target) / target).square()

    return CrystalGuidance(objective, strength, f"cell volume -> {volume_per_atom:g} Å^3/atom")
