"""A deep ensemble of periodic GNN regressors: crystal -> properties, with an uncertainty.

Each member is the shared periodic message-passing network of :mod:`crystalgen.nn` (at a fixed
diffusion time, so it acts as a plain encoder) followed by a small head on its pooled crystal
features. Members differ only in their initial weights (a deep ensemble); the ensemble mean is
the prediction and the spread across members its uncertainty.

Everything is differentiable in the fractional coordinates and the lattice, which is what lets
inverse design guide a diffusion sampler with the prediction's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import torch
from torch import nn

from crystalgen.batch import CrystalBatch
from crystalgen.nn.denoiser import DenoiserConfig, PeriodicDenoiser

#: The encoder is the denoiser at this (arbitrary, fixed) time; only its invariance properties matter here.
ENCODER_TIME = 0.0
#: Lower bound on a property's training standard deviation, so a constant property does not divide by zero.
MIN_PROPERTY_STD = 1e-6


@dataclass(frozen=True)
class SurrogateConfig:
    properties: tuple[str, ...] = ("formation_energy_per_atom",)
    members: int = 4
    encoder: DenoiserConfig = field(default_factory=lambda: DenoiserConfig(hidden=128, layers=3, fourier_frequencies=16,
                                                                          time_dim=16))


@dataclass
class Prediction:
    mean: torch.Tensor  # (B, P) in the properties' own units
    std: torch.Tensor  # (B, P) spread across ensemble members
    members: torch.Tensor  # (M, B, P)


class PropertyNet(nn.Module):
    """One ensemble member: periodic encoder, mean-pooled, then an MLP to the (standardised) properties."""

    def __init__(self, encoder: DenoiserConfig, outputs: int):
        super().__init__()
        self.encoder = PeriodicDenoiser(replace(encoder, num_types=0, equivariant_lattice=False, crystal_features=0))
        hidden = encoder.hidden
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs))

    def forward(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor) -> torch.Tensor:
        t = torch.full((len(num_atoms),), ENCODER_TIME, dtype=frac_coords.dtype, device=frac_coords.device)
        return self.head(self.encoder(atom_types, frac_coords, lattices, num_atoms, t).pooled)


class SurrogateEnsemble(nn.Module):
    def __init__(self, config: SurrogateConfig = SurrogateConfig()):
        super().__init__()
        if not config.properties:
            raise ValueError("a surrogate needs at least one property")
        self.config = config
        self.members = nn.ModuleList(PropertyNet(config.encoder, len(config.properties)) for _ in range(config.members))
        self.register_buffer("property_mean", torch.zeros(len(config.properties)))
        self.register_buffer("property_std", torch.ones(len(config.properties)))

    @torch.no_grad()
    def set_statistics(self, values: torch.Tensor) -> None:
        """Standardisation from the training set's (N, P) property values (NaN where missing)."""
        for j in range(values.shape[1]):
            column = values[:, j][~torch.isnan(values[:, j])]
            if len(column):
                self.property_mean[j] = column.mean()
                self.property_std[j] = column.std().clamp(min=MIN_PROPERTY_STD) if len(column) > 1 else 1.0

    def targets(self, batch: CrystalBatch) -> torch.Tensor:
        """(B, P) property values of a batch, NaN where a crystal lacks one."""
        nan = torch.full((batch.num_crystals,), float("nan"))
        return torch.stack([batch.properties.get(name, nan) for name in self.config.properties], dim=1)

    def forward(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Training losses: mean squared error on standardised properties, per member, missing values skipped."""
        target = (self.targets(batch).to(self.property_mean.dtype) - self.property_mean) / self.property_std
        present = ~torch.isnan(target)
        target = torch.nan_to_num(target)
        outputs = torch.stack([m(batch.atomic_numbers, batch.frac_coords, batch.lattices, batch.num_atoms)
                               for m in self.members])  # (M, B, P)
        squared = (outputs - target).square() * present
        per_property = squared.sum(dim=(0, 1)) / (present.sum(0) * len(self.members)).clamp(min=1)
        losses = {f"mse_{name}": value for name, value in zip(self.config.properties, per_property)}
        losses["loss"] = per_property.mean()
        return losses

    def predict(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor) -> Prediction:
        """Ensemble prediction in physical units; differentiable in ``frac_coords`` and ``lattices``."""
        standardised = torch.stack([m(atom_types, frac_coords, lattices, num_atoms) for m in self.members])
        values = standardised * self.property_std + self.property_mean
        return Prediction(values.mean(0), values.std(0, unbiased=len(self.members) > 1), values)

    def predict_batch(self, batch: CrystalBatch) -> Prediction:
        return self.predict(batch.atomic_numbers, batch.frac_coords, batch.lattices, batch.num_atoms)


__all__ = ["Prediction", "PropertyNet", "SurrogateConfig", "SurrogateEnsemble"]
