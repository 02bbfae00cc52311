"""A periodic message-passing denoiser over the atoms of a cell (DiffCSP-style).

Every atom exchanges messages with every other atom of its crystal. A message sees the two
atoms' states, the lattice through its invariants (lengths and angles), and periodic Fourier
features of the fractional-coordinate difference. Hence, by construction:

* permuting atoms permutes the per-atom outputs (sum/mean aggregation);
* translating every atom, or moving one to another periodic image, changes nothing;
* rotating or reflecting the cell (L -> L Q^T) leaves the fractional-coordinate and type outputs
  unchanged and turns the lattice output ``A L`` into ``A L Q^T``, i.e. it is O(3)-equivariant.

``tests/test_nn.py`` checks each of these numerically.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from crystalgen.constants import MAX_EMBEDDED_Z  # type 0 is reserved (e.g. a masked type)
from crystalgen.nn.features import LATTICE_INVARIANTS, PeriodicFourierFeatures, SinusoidalEmbedding, lattice_invariants
from crystalgen.nn.graph import fully_connected_edges, segment_mean



@dataclass(frozen=True)
class DenoiserConfig:
    hidden: int = 256
    layers: int = 4
    fourier_frequencies: int = 32
    time_dim: int = 128
    num_types: int = MAX_EMBEDDED_Z + 1  # type-head outputs (logits over 0..MAX_EMBEDDED_Z); 0: no head
    equivariant_lattice: bool = True  # the A L lattice head; off when a model predicts an invariant instead
    #: Width of optional per-crystal input features (must be invariant, e.g. a noisy log-polar lattice).
    crystal_features: int = 0


@dataclass
class DenoiserOutput:
    frac_score: torch.Tensor  # (N, 3): per-atom output on the torus (e.g. a score or velocity)
    lattice: torch.Tensor | None  # (B, 3, 3): A L, equivariant under L -> L Q^T (None if switched off)
    type_logits: torch.Tensor | None  # (N, num_types) (None without a type head)
    pooled: torch.Tensor  # (B, hidden): invariant per-crystal features, for extra per-cell heads


def _mlp(inputs: int, hidden: int, outputs: int) -> nn.Sequential:
    return nn.Sequential(nn.Linear(inputs, hidden), nn.SiLU(), nn.Linear(hidden, outputs), nn.SiLU())


class MessageLayer(nn.Module):
    """One round of fully connected periodic message passing with a residual update."""

    def __init__(self, hidden: int, edge_features: int):
        super().__init__()
        self.message = _mlp(2 * hidden + LATTICE_INVARIANTS + edge_features, hidden, hidden)
        self.update = _mlp(2 * hidden, hidden, hidden)
        self.norm = nn.LayerNorm(hidden)

    def forward(self, h: torch.Tensor, src: torch.Tensor, dst: torch.Tensor, edge_lattice: torch.Tensor,
                edge_fourier: torch.Tensor) -> torch.Tensor:
        messages = self.message(torch.cat([h[src], h[dst], edge_lattice, edge_fourier], dim=1))
        aggregated = segment_mean(messages, src, h.shape[0])
        return h + self.update(torch.cat([self.norm(h), aggregated], dim=1))


class PeriodicDenoiser(nn.Module):
    """Maps a noisy batch (types, fractional coordinates, lattices, time) to per-atom and per-cell outputs."""

    def __init__(self, config: DenoiserConfig = DenoiserConfig()):
        super().__init__()
        self.config = config
        self.type_embedding = nn.Embedding(MAX_EMBEDDED_Z + 1, config.hidden)
        self.time_embedding = SinusoidalEmbedding(config.time_dim)
        self.input = nn.Linear(config.hidden + config.time_dim + config.crystal_features, config.hidden)
        self.fourier = PeriodicFourierFeatures(config.fourier_frequencies)
        self.layers = nn.ModuleList(MessageLayer(config.hidden, self.fourier.out_features)
                                    for _ in range(config.layers))
        self.out_norm = nn.LayerNorm(config.hidden)
        self.frac_head = nn.Linear(config.hidden, 3, bias=False)
        # Heads a model does not use are not built, so every parameter gets a gradient (DDP needs that).
        self.lattice_head = nn.Linear(config.hidden, 9, bias=False) if config.equivariant_lattice else None
        self.type_head = nn.Linear(config.hidden, config.num_types) if config.num_types else None

    def forward(self, atom_types: torch.Tensor, frac_coords: torch.Tensor, lattices: torch.Tensor,
                num_atoms: torch.Tensor, t: torch.Tensor, crystal_features: torch.Tensor | None = None
                ) -> DenoiserOutput:
        """
        Args:
            atom_types: (N,) integers in [0, MAX_EMBEDDED_Z].
            frac_coords: (N, 3) fractional coordinates (any periodic image).
            lattices: (B, 3, 3) row-vector lattices.
            num_atoms: (B,) atoms per crystal, atoms laid out crystal after crystal.
            t: (B,) diffusion time per crystal.
            crystal_features: (B, config.crystal_features) invariant per-crystal inputs, if configured.
        """
        crystal_index = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), num_atoms)
        per_crystal = self.time_embedding(t)
        if self.config.crystal_features:
            per_crystal = torch.cat([per_crystal, crystal_features.to(per_crystal.dtype)], dim=1)
        h = self.input(torch.cat([self.type_embedding(atom_types), per_crystal[crystal_index]], dim=1))
        src, dst = fully_connected_edges(num_atoms)
        edge_lattice = lattice_invariants(lattices)[crystal_index[src]]
        edge_fourier = self.fourier(frac_coords[dst] - frac_coords[src])
        for layer in self.layers:
            h = layer(h, src, dst, edge_lattice, edge_fourier)
        h = self.out_norm(h)
        pooled = segment_mean(h, crystal_index, len(num_atoms))
        lattice = self.lattice_head(pooled).view(-1, 3, 3) @ lattices if self.lattice_head is not None else None
        logits = self.type_head(h) if self.type_head is not None else None
        return DenoiserOutput(self.frac_head(h), lattice, logits, pooled)
