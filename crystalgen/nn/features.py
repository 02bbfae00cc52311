"""Symmetry-respecting input features: periodic Fourier features, lattice invariants, time embeddings."""

from __future__ import annotations

import math

import torch
from torch import nn


class PeriodicFourierFeatures(nn.Module):
    """``sin(2 pi k d), cos(2 pi k d)`` for k = 1..K of fractional differences d.

    Adding an integer to d (another periodic image) leaves them unchanged, and so does shifting
    every atom by the same vector (d is a difference), which makes edge features invariant to
    periodic translation.
    """

    def __init__(self, num_frequencies: int):
        super().__init__()
        self.register_buffer("frequencies", 2 * math.pi * torch.arange(1, num_frequencies + 1, dtype=torch.float32))

    @property
    def out_features(self) -> int:
        return 2 * 3 * len(self.frequencies)

    def forward(self, frac_diff: torch.Tensor) -> torch.Tensor:
        angles = frac_diff.unsqueeze(-1) * self.frequencies.to(frac_diff.dtype)  # (E, 3, K)
        return torch.cat([angles.sin(), angles.cos()], dim=-1).flatten(1)


#: Number of lattice invariants: three log lengths and three angle cosines.
LATTICE_INVARIANTS = 6


def lattice_invariants(lattices: torch.Tensor) -> torch.Tensor:
    """(B, 6): log lengths and cosines of the angles of (B, 3, 3) row-vector lattices.

    They depend only on the Gram matrix L L^T, so any rotation or reflection of the cell
    (L -> L Q^T with Q orthogonal) leaves them unchanged.
    """
    gram = lattices @ lattices.transpose(1, 2)
    lengths = torch.diagonal(gram, dim1=1, dim2=2).clamp(min=1e-12).sqrt()
    pairs = torch.tensor([[1, 2], [0, 2], [0, 1]], device=lattices.device)  # alpha, beta, gamma
    cosines = gram[:, pairs[:, 0], pairs[:, 1]] / (lengths[:, pairs[:, 0]] * lengths[:, pairs[:, 1]])
    return torch.cat([lengths.log(), cosines], dim=1)


class SinusoidalEmbedding(nn.Module):
    """Transformer-style embedding of a scalar per row (e.g. diffusion time in [0, 1])."""

    #: Longest period of the embedding, in units of the input.
    MAX_PERIOD = 10_000.0

    def __init__(self, dim: int, scale: float = 1000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"embedding dimension must be even, got {dim}")
        half = dim // 2
        self.scale = scale
        self.register_buffer("frequencies", torch.exp(-math.log(self.MAX_PERIOD) * torch.arange(half) / half))

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        angles = self.scale * t.reshape(-1, 1) * self.frequencies.to(t.dtype)
        return torch.cat([angles.sin(), angles.cos()], dim=1)
