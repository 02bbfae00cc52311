"""Graphs over the atoms of a batch of cells, built with tensor ops only (no loop over atoms or crystals)."""

from __future__ import annotations

import torch


def fully_connected_edges(num_atoms: torch.Tensor, self_loops: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """Every ordered pair of atoms within the same crystal, for a flat batch.

    Args:
        num_atoms: (B,) atoms per crystal; atoms are laid out crystal after crystal.
        self_loops: include (i, i).

    Returns:
        ``(src, dst)``, each (E,) with E = sum(n_b^2) (minus n_b without self-loops).
    """
    num_atoms = num_atoms.long()
    pairs = num_atoms * num_atoms
    offsets = torch.cumsum(num_atoms, 0) - num_atoms
    edge_crystal = torch.repeat_interleave(torch.arange(len(num_atoms), device=num_atoms.device), pairs)
    first_edge = torch.cumsum(pairs, 0) - pairs
    local = torch.arange(int(pairs.sum()), device=num_atoms.device) - first_edge[edge_crystal]
    n = num_atoms[edge_crystal]
    src = offsets[edge_crystal] + torch.div(local, n, rounding_mode="floor")
    dst = offsets[edge_crystal] + local % n
    if not self_loops:
        keep = src != dst
        src, dst = src[keep], dst[keep]
    return src, dst


def segment_mean(values: torch.Tensor, index: torch.Tensor, size: int) -> torch.Tensor:
    """Mean of ``values`` rows per segment ``index`` (empty segments give 0), via ``index_add_``."""
    total = values.new_zeros((size, *values.shape[1:])).index_add_(0, index, values)
    count = values.new_zeros(size).index_add_(0, index, values.new_ones(index.shape[0]))
    return total / count.clamp(min=1).view(-1, *([1] * (values.dim() - 1)))
