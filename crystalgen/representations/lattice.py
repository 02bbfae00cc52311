"""Lattice representations.

Two invertible encodings of a lattice, both batched over leading dimensions and written in torch
so that models can use them directly:

* **Parameters** ``(a, b, c, alpha, beta, gamma)`` in Å and degrees. Decoding puts ``a`` along x
  and ``b`` in the xy-plane.
* **Log-polar** (6 numbers): the polar decomposition ``L = S Q`` of the row-vector lattice has a
  symmetric positive-definite ``S = (L Lᵀ)^½``, which depends only on the metric ``L Lᵀ`` and is
  therefore invariant to rotations ``L -> L Rᵀ``. Its matrix logarithm is an unconstrained
  symmetric matrix, a flat space in which Gaussian diffusion is natural; any 6 real numbers decode
  to a valid lattice. Both encodings return the same lattice up to a rotation of Cartesian space.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from crystalgen.crystal import Crystal

#: (row, column) of the 6 independent entries of a symmetric 3x3 matrix, diagonal first.
SYMMETRIC_INDEX = ((0, 0), (1, 1), (2, 2), (0, 1), (0, 2), (1, 2))


def _as_tensor(x: torch.Tensor | np.ndarray) -> tuple[torch.Tensor, bool]:
    if isinstance(x, torch.Tensor):
        return x, False
    return torch.as_tensor(np.asarray(x, dtype=np.float64)), True


def lattice_params_to_matrix(params: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``(..., 6)`` lengths (Å) and angles (degrees) to ``(..., 3, 3)`` row-vector matrices."""
    p, was_numpy = _as_tensor(params)
    a, b, c = p[..., 0], p[..., 1], p[..., 2]
    alpha, beta, gamma = torch.deg2rad(p[..., 3]), torch.deg2rad(p[..., 4]), torch.deg2rad(p[..., 5])
    cos_a, cos_b, cos_g, sin_g = torch.cos(alpha), torch.cos(beta), torch.cos(gamma), torch.sin(gamma)
    cy = (cos_a - cos_b * cos_g) / sin_g
    cz = torch.sqrt(torch.clamp(1.0 - cos_b**2 - cy**2, min=0.0))
    zero = torch.zeros_like(a)
    matrix = torch.stack(
        [
            torch.stack([a, zero, zero], -1),
            torch.stack([b * cos_g, b * sin_g, zero], -1),
            torch.stack([c * cos_b, c * cy, c * cz], -1),
        ],
        -2,
    )
    return matrix.numpy() if was_numpy else matrix


def lattice_matrix_to_params(matrix: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``(..., 3, 3)`` row-vector matrices to ``(..., 6)`` lengths (Å) and angles (degrees)."""
    m, was_numpy = _as_tensor(matrix)
    lengths = torch.linalg.norm(m, dim=-1)

    def angle(i: int, j: int) -> torch.Tensor:
        cos = (m[..., i, :] * m[..., j, :]).sum(-1) / (lengths[..., i] * lengths[..., j])
        return torch.rad2deg(torch.arccos(torch.clamp(cos, -1.0, 1.0)))

    params = torch.cat([lengths, torch.stack([angle(1, 2), angle(0, 2), angle(0, 1)], -1)], -1)
    return params.numpy() if was_numpy else params


def symmetric_to_vector(sym: torch.Tensor) -> torch.Tensor:
    """``(..., 3, 3)`` symmetric matrices to their ``(..., 6)`` independent entries."""
    return torch.stack([sym[..., i, j] for i, j in SYMMETRIC_INDEX], -1)


def vector_to_symmetric(vec: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`symmetric_to_vector`."""
    sym = vec.new_zeros(vec.shape[:-1] + (3, 3))
    for k, (i, j) in enumerate(SYMMETRIC_INDEX):
        sym[..., i, j] = vec[..., k]
        sym[..., j, i] = vec[..., k]
    return sym


def lattice_to_log_polar(matrix: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``(..., 3, 3)`` lattices to the ``(..., 6)`` rotation-invariant log-polar vector.

    Uses an eigendecomposition of the metric; it is meant for encoding data, not for
    back-propagation (its gradient is undefined at degenerate metrics such as cubic cells).
    """
    m, was_numpy = _as_tensor(matrix)
    metric = m @ m.transpose(-1, -2)
    eigvals, eigvecs = torch.linalg.eigh(metric)
    log_s = eigvecs @ torch.diag_embed(0.5 * torch.log(eigvals)) @ eigvecs.transpose(-1, -2)
    vec = symmetric_to_vector(log_s)
    return vec.numpy() if was_numpy else vec


def log_polar_to_lattice(vec: torch.Tensor | np.ndarray) -> torch.Tensor | np.ndarray:
    """``(..., 6)`` log-polar vectors to ``(..., 3, 3)`` symmetric lattices. Differentiable."""
    v, was_numpy = _as_tensor(vec)
    lattice = torch.linalg.matrix_exp(vector_to_symmetric(v))
    return lattice.numpy() if was_numpy else lattice


@dataclass
class LatticeEncodedCrystal:
    """A crystal whose lattice is stored as 6 numbers; the atoms are kept as they are."""

    lattice_vector: np.ndarray
    frac_coords: np.ndarray
    atomic_numbers: np.ndarray
    id: str | None = None


class _LatticeVectorRepresentation:
    """Crystal <-> a 6-number lattice encoding plus the atoms, unchanged."""

    name: str

    @staticmethod
    def lattice_to_vector(matrix: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    @staticmethod
    def vector_to_lattice(vector: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def encode(self, crystal: Crystal) -> LatticeEncodedCrystal:
        crystal = crystal.right_handed()  # the 6 numbers cannot express a left-handed cell
        vector = self.lattice_to_vector(crystal.lattice)
        return LatticeEncodedCrystal(vector, crystal.frac_coords, crystal.atomic_numbers, crystal.id)

    def decode(self, encoded: LatticeEncodedCrystal) -> Crystal:
        lattice = self.vector_to_lattice(encoded.lattice_vector)
        return Crystal(lattice, encoded.frac_coords, encoded.atomic_numbers, encoded.id)


class LatticeParameters(_LatticeVectorRepresentation):
    """Crystal <-> (a, b, c, alpha, beta, gamma) plus atoms."""

    name = "lattice-params"
    lattice_to_vector = staticmethod(lattice_matrix_to_params)
    vector_to_lattice = staticmethod(lattice_params_to_matrix)


class LatticeLogPolar(_LatticeVectorRepresentation):
    """Crystal <-> rotation-invariant symmetric log of the lattice's polar factor plus atoms."""

    name = "lattice-logpolar"
    lattice_to_vector = staticmethod(lattice_to_log_polar)
    vector_to_lattice = staticmethod(log_polar_to_lattice)
