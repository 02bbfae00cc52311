"""3D convolutional encoders and decoders over periodic voxel grids.

Every 3x3x3 convolution pads circularly, because a crystal's grid is periodic: the voxel beyond
the last one along an axis is the first one. Encoders halve the grid once per width with a
strided convolution and end in a code vector; decoders mirror them with nearest-neighbour
upsampling followed by a convolution (which, unlike a transposed convolution, leaves no
checkerboard pattern in the peaks the voxel decoder looks for).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn

#: Channels per GroupNorm group (fewer channels than this form one group).
CHANNELS_PER_GROUP = 8


def _norm(channels: int) -> nn.GroupNorm:
    return nn.GroupNorm(max(1, channels // CHANNELS_PER_GROUP), channels)


def periodic_block(in_channels: int, out_channels: int, stride: int = 1) -> nn.Sequential:
    """3x3x3 convolution with circular padding, GroupNorm and SiLU."""
    return nn.Sequential(nn.Conv3d(in_channels, out_channels, 3, stride=stride, padding=1, padding_mode="circular"),
                         _norm(out_channels), nn.SiLU())


def _check_grid(grid: int, levels: int) -> int:
    coarse = grid >> levels
    if coarse < 1 or coarse << levels != grid:
        raise ValueError(f"a grid of {grid} cannot be halved {levels} times; use a multiple of {2 ** levels}")
    return coarse


class VoxelEncoder(nn.Module):
    """(batch, channels, grid, grid, grid) -> (batch, code_dim)."""

    def __init__(self, in_channels: int, grid: int, widths: Sequence[int], code_dim: int, stem: int | None = None):
        super().__init__()
        coarse = _check_grid(grid, len(widths))
        # a 1x1x1 stem mixes many sparse element channels into a few dense ones before any 3x3x3 work
        stem = stem or widths[0]
        layers: list[nn.Module] = [nn.Conv3d(in_channels, stem, 1)]
        previous = stem
        for width in widths:
            layers.append(periodic_block(previous, width, stride=2))
            previous = width
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(previous * coarse ** 3, code_dim)

    def forward(self, grids: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(grids).flatten(1))


class VoxelDecoder(nn.Module):
    """(batch, code_dim) -> (batch, out_channels, grid, grid, grid)."""

    def __init__(self, code_dim: int, grid: int, widths: Sequence[int], out_channels: int):
        super().__init__()
        widths = list(widths)[::-1]  # coarse to fine
        self.coarse = _check_grid(grid, len(widths))
        self.widths = widths
        self.head = nn.Linear(code_dim, widths[0] * self.coarse ** 3)
        layers: list[nn.Module] = []
        for previous, width in zip(widths, widths[1:] + [widths[-1]]):
            layers += [nn.Upsample(scale_factor=2, mode="nearest"), periodic_block(previous, width)]
        layers.append(nn.Conv3d(widths[-1], out_channels, 1))
        self.features = nn.Sequential(*layers)

    def forward(self, code: torch.Tensor) -> torch.Tensor:
        side = self.coarse
        return self.features(self.head(code).view(len(code), self.widths[0], side, side, side))


__all__ = ["VoxelDecoder", "VoxelEncoder", "periodic_block"]
