"""From a labelled quotient graph back to coordinates: a periodic barycentric embedding, then a batched
geometry optimisation toward tabulated bond lengths (the first two decoding levels of SLICES strings).

1. **Embedding.** Every atom sits at the mean of its bonded neighbours' images (Tutte / Delgado-
   Friedrichs' barycentric placement): the graph Laplacian system ``sum_j (x_j + o_ij - x_i) = 0``
   with atom 0 fixed at the origin, in the basis the image labels refer to.
2. **Optimisation** (torch, many crystals at once, atoms of all of them in one flat batch): the
   lattice and the fractional coordinates minimise ``sum_bonds (|d| - (r_i + r_j))^2`` (covalent
   radii, Cordero et al., as tabulated by ASE) plus a repulsion ``relu(s (r_i + r_j) - |d|)^2``
   between non-bonded pairs among the 27 nearest images, with Adam. The lattice starts as the
   identity scaled so that the median bond has its target length.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crystalgen.crystal import Crystal
from crystalgen.representations.slices import QuotientGraph

#: Non-bonded atoms are pushed apart until this multiple of their radii sum.
REPULSION_SCALE = 1.25
REPULSION_WEIGHT = 1.0
#: A rebuilt cell smaller than this (Å^3) has collapsed.
MIN_VOLUME = 1e-3
#: Steps between refreshes of the list of non-bonded contacts that repel, and how far beyond
#: contact (as a multiple of the repulsion distance) a pair must be to be left off it.
CONTACT_REFRESH = 50
CONTACT_MARGIN = 1.5


@dataclass(frozen=True)
class OptimiserConfig:
    """Chosen on the first 150 structures of the mp_20 validation split (bench/slices_roundtrip.py)."""

    steps: int = 600
    lr: float = 0.05
    repulsion_scale: float = REPULSION_SCALE
    repulsion_weight: float = REPULSION_WEIGHT


def barycentric_embedding(graph: QuotientGraph) -> np.ndarray:
    """Fractional coordinates (n, 3) of the barycentric placement (see the module docstring)."""
    n = len(graph.elements)
    i, j = graph.edges[:, 0], graph.edges[:, 1]
    laplacian = np.zeros((n, n))
    np.add.at(laplacian, (i, i), 1.0)
    np.add.at(laplacian, (j, j), 1.0)
    np.add.at(laplacian, (i, j), -1.0)
    np.add.at(laplacian, (j, i), -1.0)
    rhs = np.zeros((n, 3))
    np.add.at(rhs, i, graph.offsets)
    np.add.at(rhs, j, -graph.offsets)
    positions = np.zeros((n, 3))
    if n > 1:
        solution, *_ = np.linalg.lstsq(laplacian[1:, 1:], rhs[1:], rcond=None)
        positions[1:] = solution
    return positions


def _radii(elements: tuple[str, ...]) -> np.ndarray:
    from ase.data import atomic_numbers, covalent_radii

    return np.array([covalent_radii[atomic_numbers[e]] for e in elements])


def optimise(graphs: list[QuotientGraph], config: OptimiserConfig = OptimiserConfig()) -> list[Crystal | None]:
    """One crystal per graph: embedded, then relaxed toward the bond lengths (see the module
    docstring); None where the cell collapsed."""
    from pymatgen.core.periodic_table import Element

    images = torch.tensor([[a, b, c] for a in (-1, 0, 1) for b in (-1, 0, 1) for c in (-1, 0, 1)], dtype=torch.float64)
    counts = [len(g.elements) for g in graphs]
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    frac = torch.tensor(np.concatenate([barycentric_embedding(g) for g in graphs]), dtype=torch.float64)
    radii = torch.tensor(np.concatenate([_radii(g.elements) for g in graphs]))
    owner = torch.repeat_interleave(torch.arange(len(graphs)), torch.tensor(counts))
    bond_i = torch.tensor(np.concatenate([g.edges[:, 0] + s for g, s in zip(graphs, starts)]))
    bond_j = torch.tensor(np.concatenate([g.edges[:, 1] + s for g, s in zip(graphs, starts)]))
    bond_offset = torch.tensor(np.concatenate([g.offsets for g in graphs]), dtype=torch.float64)
    target = radii[bond_i] + radii[bond_j]
    # every ordered pair of atoms of one crystal, with each of the 27 images
    pair_i, pair_j = [], []
    for s, n in zip(starts, counts):
        a, b = np.meshgrid(np.arange(n) + s, np.arange(n) + s, indexing="ij")
        pair_i.append(a.ravel())
        pair_j.append(b.ravel())
    pair_i, pair_j = torch.tensor(np.concatenate(pair_i)), torch.tensor(np.concatenate(pair_j))
    bonded = _bonded_mask(pair_i, pair_j, bond_i, bond_j, bond_offset, images)
    close = config.repulsion_scale * (radii[pair_i] + radii[pair_j])

    initial_vectors = (frac[bond_j] + bond_offset - frac[bond_i]).norm(dim=-1).clamp_min(1e-3)
    scale = torch.zeros(len(graphs), dtype=torch.float64)
    for k in range(len(graphs)):  # per crystal: the median ratio of target to embedded bond length
        mask = owner[bond_i] == k
        scale[k] = (target[mask] / initial_vectors[mask]).median()
    lattice = (torch.eye(3, dtype=torch.float64)[None] * scale[:, None, None]).requires_grad_(True)
    frac = frac.clone().requires_grad_(True)
    optimiser = torch.optim.Adam([lattice, frac], lr=config.lr)
    candidates = ~bonded & ~((pair_i == pair_j)[:, None] & (images.abs().sum(-1) == 0)[None])
    for step in range(config.steps):
        if step % CONTACT_REFRESH == 0:  # the non-bonded pairs near enough to matter, with their images
            with torch.no_grad():
                near = candidates & (_distances(frac, lattice, owner, pair_i, pair_j, images) < CONTACT_MARGIN * close[:, None])
            contact_pair, contact_image = near.nonzero(as_tuple=True)
            a, b, shift = pair_i[contact_pair], pair_j[contact_pair], images[contact_image]
            contact_distance = close[contact_pair]
        optimiser.zero_grad()
        bond_vectors = torch.einsum("ek,ekl->el", frac[bond_j] + bond_offset - frac[bond_i], lattice[owner[bond_i]])
        energy = ((bond_vectors.norm(dim=-1) - target) ** 2).sum()
        contacts = torch.einsum("ek,ekl->el", frac[b] + shift - frac[a], lattice[owner[a]]).norm(dim=-1)
        energy = energy + config.repulsion_weight * (torch.relu(contact_distance - contacts) ** 2).sum()
        energy.backward()
        optimiser.step()
    crystals = []
    final = frac.detach().numpy()
    for k, (g, s, n) in enumerate(zip(graphs, starts, counts)):
        numbers = [Element(e).Z for e in g.elements]
        matrix = lattice[k].detach().numpy()
        collapsed = not np.all(np.isfinite(matrix)) or abs(np.linalg.det(matrix)) < MIN_VOLUME
        crystals.append(None if collapsed else Crystal(matrix, final[s:s + n], numbers))
    return crystals


def _distances(frac, lattice, owner, pair_i, pair_j, images) -> torch.Tensor:
    """(pairs, 27) distances of every pair at every image."""
    delta = frac[pair_j][:, None, :] + images[None] - frac[pair_i][:, None, :]
    return torch.einsum("pmk,pkl->pml", delta, lattice[owner[pair_i]]).norm(dim=-1)


def _bonded_mask(pair_i, pair_j, bond_i, bond_j, bond_offset, images) -> torch.Tensor:
    """(pairs, 27) True where that pair and image is a bond, in either direction."""
    image_index = {tuple(int(v) for v in row): m for m, row in enumerate(images.tolist())}
    pair_index = {(int(a), int(b)): p for p, (a, b) in enumerate(zip(pair_i.tolist(), pair_j.tolist()))}
    mask = torch.zeros(len(pair_i), len(images), dtype=torch.bool)
    for a, b, offset in zip(bond_i.tolist(), bond_j.tolist(), bond_offset.tolist()):
        forward = tuple(int(v) for v in offset)
        mask[pair_index[(a, b)], image_index[forward]] = True
        mask[pair_index[(b, a)], image_index[tuple(-v for v in forward)]] = True
    return mask


__all__ = ["OptimiserConfig", "barycentric_embedding", "optimise"]
