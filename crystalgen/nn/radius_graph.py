"""Periodic neighbour graphs: every atom pair (any periodic image) closer than a cutoff.

Built with tensor ops over the whole batch. Crystals are grouped by how many periodic images the
cutoff reaches (a handful of groups, never a loop over atoms), and the edge vectors are recomputed
from the inputs outside ``no_grad``, so distances stay differentiable in fractional coordinates
and lattice (the graph's topology, like any cutoff graph's, is piecewise constant).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from crystalgen.nn.graph import fully_connected_edges

#: Largest image range searched along one axis. A cell needing more (thinner than cutoff / this
#: along some axis) is degenerate; its far images are left out rather than exhausting memory.
MAX_IMAGE_RANGE = 6
#: Candidate (pair, image) combinations examined at once, bounding the search's memory (~100 MB)
#: however many degenerate cells a batch holds.
MAX_CANDIDATES = 4_000_000
#: Squared-length floor inside the square root, so an atom sitting exactly on another still has a gradient.
DISTANCE_EPS = 1e-12


@dataclass
class PeriodicEdges:
    src: torch.Tensor  # (E,) atom sending the message
    dst: torch.Tensor  # (E,) atom receiving it
    image: torch.Tensor  # (E, 3) lattice translation of src's image, in cell units
    vectors: torch.Tensor  # (E, 3) Cartesian vector from dst to src's image, differentiable
    distances: torch.Tensor  # (E,)


def image_ranges(lattices: torch.Tensor, cutoff: float) -> torch.Tensor:
    """(B,) images needed along the worst axis: ceil(cutoff / smallest interplanar spacing).
    A singular or non-finite lattice gets the largest range (its graph is meaningless anyway)."""
    inverse, info = torch.linalg.inv_ex(lattices.detach().double())
    reciprocal_norms = inverse.norm(dim=1).max(dim=1).values  # columns of L^-1 are the b_a
    needed = torch.nan_to_num(cutoff * reciprocal_norms, nan=MAX_IMAGE_RANGE, posinf=MAX_IMAGE_RANGE)
    needed[info != 0] = MAX_IMAGE_RANGE
    return torch.ceil(needed).clamp(1, MAX_IMAGE_RANGE).long()


def _images(k: int, device: torch.device) -> torch.Tensor:
    span = torch.arange(-k, k + 1, device=device, dtype=torch.float64)
    return torch.cartesian_prod(span, span, span)


def periodic_radius_graph(frac_coords: torch.Tensor, lattices: torch.Tensor, num_atoms: torch.Tensor,
                          cutoff: float) -> PeriodicEdges:
    """All (dst, src-image) pairs within ``cutoff`` Å, self-image at zero shift excluded.

    Args:
        frac_coords: (N, 3), any periodic image.
        lattices: (B, 3, 3) row-vector lattices.
        num_atoms: (B,) atoms per crystal, laid out crystal after crystal.
    """
    device = frac_coords.device
    crystal_of_atom = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), num_atoms)
    with torch.no_grad():
        wrapped = (frac_coords.detach().double()) % 1.0
        cells = lattices.detach().double()
        ranges = image_ranges(cells, cutoff)
        src_all, dst_all = fully_connected_edges(num_atoms, self_loops=True)
        pair_range = ranges[crystal_of_atom[src_all]]
        kept_src, kept_dst, kept_image = [], [], []
        for k in torch.unique(pair_range).tolist():
            in_group = pair_range == k
            images = _images(k, device)  # (I, 3)
            pairs_per_slice = max(1, MAX_CANDIDATES // len(images))
            for src, dst in zip(src_all[in_group].split(pairs_per_slice), dst_all[in_group].split(pairs_per_slice)):
                delta = (wrapped[src] - wrapped[dst])[:, None, :] + images[None]  # (P, I, 3)
                cart = torch.einsum("pij,pjk->pik", delta, cells[crystal_of_atom[dst]])
                close = cart.square().sum(-1) < cutoff * cutoff
                close &= ~((src == dst)[:, None] & (images.abs().sum(-1) == 0)[None])
                pair, image = close.nonzero(as_tuple=True)
                kept_src.append(src[pair])
                kept_dst.append(dst[pair])
                kept_image.append(images[image])
        src = torch.cat(kept_src) if kept_src else src_all[:0]
        dst = torch.cat(kept_dst) if kept_dst else dst_all[:0]
        image = torch.cat(kept_image) if kept_image else frac_coords.new_zeros((0, 3), dtype=torch.float64)
    # The search ran on wrapped coordinates (raw - floor(raw)); express the shift for the raw inputs.
    floors = torch.floor(frac_coords.detach())
    image = image.to(frac_coords.dtype) - floors[src] + floors[dst]
    vectors = torch.einsum("ej,ejk->ek", frac_coords[src] - frac_coords[dst] + image, lattices[crystal_of_atom[dst]])
    distances = torch.sqrt(vectors.square().sum(-1) + DISTANCE_EPS)
    return PeriodicEdges(src, dst, image, vectors, distances)
