"""A deep ensemble of periodic GNN regressors: crystal -> properties, with an uncertainty.

Each member is a CGCNN-style network from :mod:`crystalgen.nn`: gated convolutions over a periodic
radius graph with Gaussian distance features, atoms starting from a learned embedding plus fixed
element descriptors, mean-pooled into a small head. Members differ only in their initial weights
(a deep ensemble); the ensemble mean is the prediction and the spread across members its uncertainty.

Everything is differentiable in the fractional coordinates and the lattice, which is what lets
inverse design guide a diffusion sampler with the prediction's gradient.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from crystalgen.batch import CrystalBatch
from crystalgen.errors import CrystalgenInputError
from crystalgen.nn.convolution import GatedConvolution, GaussianDistanceBasis, cosine_envelope
from crystalgen.constants import MAX_EMBEDDED_Z
from crystalgen.nn.elements import ELEMENT_FEATURES, element_feature_table
from crystalgen.nn.graph import segment_mean
from crystalgen.nn.radius_graph import periodic_radius_graph
#: Lower bound on a property's training standard deviation, so a constant property does not divide by zero.
MIN_PROPERTY_STD = 1e-6


@dataclass(frozen=True)
class EncoderConfig:
    hidden: int = 64
    layers: int = 3
    cutoff: float = 4.0  # Å
    distance_features: int = 32

    def __post_init__(self) -> None:
        if self.distance_features < 2:
            raise CrystalgenInputError(f"model.distance_features must be at least 2, got {self.distance_features}")


@dataclass(frozen=True)
class SurrogateConfig:
    properties: tuple[str, ...] = ("formation_energy_per_atom",)
    members: int = 4
    encoder: EncoderConfig = field(default_factory=EncoderConfig)


@dataclass
class Prediction:
    mean: torch.Tensor  # (B, P) in the properties' own units
    std: torch.Tensor  # (B, P) spread across ensemble members
    members: torch.Tensor  # (M, B, P)


class PropertyNet(nn.Module):
    """One ensemble member: gated convolutions on the periodic radius graph, mean-pooled, then an
    MLP to the (standardised) properties. Invariant to atom order, periodic translation and rotation
    because it only sees element identities and interatomic distances."""

    def __init__(self, encoder: EncoderConfig, outputs: int):
        super().__init__()
        self.config = encoder
        hidden = encoder.hidden
        self.embedding = nn.Embedding(MAX_EMBEDDED_Z + 1, hidden)
        self.register_buffer("element_features", element_feature_table().clone(), persistent=False)
        self.describe = nn.Linear(ELEMENT_FEATURES, hidden)
        self.basis = GaussianDistanceBasis(encoder.cutoff, encoder.distance_features)
        self.layers = nn.ModuleList(GatedConvolution(hidden, encoder.distance_features) for _ in range(encoder.layers))
        self.head = nn.Sequential(nn.Linear(hidden, hidden), nn.SiLU(), nn.Linear(hidden, outputs))

    def forward(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor) -> torch.Tensor:
        edges = periodic_radius_graph(frac_coords, lattices, num_atoms, self.config.cutoff)
        return self.from_edges(atom_types, num_atoms, edges.src, edges.dst, edges.distances)

    def from_edges(self, atom_types: torch.Tensor, num_atoms: torch.Tensor, src: torch.Tensor, dst: torch.Tensor,
                   distances: torch.Tensor) -> torch.Tensor:
        """The forward pass on a graph already built (ensemble members share one)."""
        h = self.embedding(atom_types) + self.describe(self.element_features[atom_types])
        edge_features = self.basis(distances)
        edge_weights = cosine_envelope(distances, self.config.cutoff)
        for layer in self.layers:
            h = layer(h, src, dst, edge_features, edge_weights)
        crystal_of_atom = torch.repeat_interleave(torch.arange(len(num_atoms), device=h.device), num_atoms)
        return self.head(segment_mean(h, crystal_of_atom, len(num_atoms)))


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
        outputs = self._members_output(batch.atomic_numbers, batch.frac_coords, batch.lattices, batch.num_atoms)
        squared = (outputs - target).square() * present
        per_property = squared.sum(dim=(0, 1)) / (present.sum(0) * len(self.members)).clamp(min=1)
        losses = {f"mse_{name}": value for name, value in zip(self.config.properties, per_property)}
        losses["loss"] = per_property.mean()
        return losses

    def predict(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor) -> Prediction:
        """Ensemble prediction in physical units; differentiable in ``frac_coords`` and ``lattices``."""
        standardised = self._members_output(atom_types, frac_coords, lattices, num_atoms)
        values = standardised * self.property_std + self.property_mean
        return Prediction(values.mean(0), values.std(0, unbiased=len(self.members) > 1), values)

    def _members_output(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                        num_atoms: torch.Tensor) -> torch.Tensor:
        """(M, B, P) standardised outputs; the radius graph is built once and shared by the members."""
        edges = periodic_radius_graph(frac_coords, lattices, num_atoms, self.config.encoder.cutoff)
        return torch.stack([m.from_edges(atom_types, num_atoms, edges.src, edges.dst, edges.distances)
                            for m in self.members])

    def predict_batch(self, batch: CrystalBatch) -> Prediction:
        return self.predict(batch.atomic_numbers, batch.frac_coords, batch.lattices, batch.num_atoms)


__all__ = ["EncoderConfig", "Prediction", "PropertyNet", "SurrogateConfig", "SurrogateEnsemble"]
