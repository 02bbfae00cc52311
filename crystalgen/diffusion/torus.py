"""The flat torus [0, 1)^d, the manifold of fractional coordinates, and its wrapped normal.

Diffusing fractional coordinates with Gaussian noise and wrapping them into the unit cell gives a
wrapped normal: the density of ``x`` around ``x0`` is a sum over periodic images,
``p(x) ∝ sum_k exp(-(x - x0 + k)^2 / (2 sigma^2))``. Its score (the gradient of log p) is the
regression target of score-matching on the torus (as in DiffCSP). Nothing here knows about crystals.
"""

from __future__ import annotations

import math

import torch

#: Periodic images summed on each side; exp(-(IMAGES)^2 / (2 * 0.5^2)) ~ 1e-8 at sigma = 0.5.
WRAP_IMAGES = 3
#: Grid points per unit for the numerical expectation in :func:`wrapped_normal_score_norm`.
NORM_GRID = 4096
#: Noise levels per block of that quadrature.
NORM_CHUNK = 64


def wrap(x: torch.Tensor) -> torch.Tensor:
    """Into [0, 1)."""
    return x - torch.floor(x)


def minimum_image(d: torch.Tensor) -> torch.Tensor:
    """Into [-0.5, 0.5): the shortest periodic representative of a difference."""
    return d - torch.round(d)


def wrapped_normal_score(d: torch.Tensor, sigma: torch.Tensor | float, images: int = WRAP_IMAGES) -> torch.Tensor:
    """d/dx log p at ``x = x0 + d`` for the wrapped normal of std ``sigma`` (broadcast against ``d``)."""
    sigma = torch.as_tensor(sigma, dtype=d.dtype, device=d.device)
    shifts = torch.arange(-images, images + 1, dtype=d.dtype, device=d.device)
    offsets = minimum_image(d).unsqueeze(-1) + shifts  # (..., 2K+1)
    sigma = sigma.unsqueeze(-1)
    log_weights = -offsets.square() / (2 * sigma.square())
    weights = torch.softmax(log_weights, dim=-1)
    return -(weights * offsets).sum(-1) / sigma.squeeze(-1).square()


def wrapped_normal_score_norm(sigma: torch.Tensor) -> torch.Tensor:
    """E[score^2] per coordinate under the wrapped normal, for loss weighting (deterministic quadrature)."""
    grid = (torch.arange(NORM_GRID, dtype=torch.float64) + 0.5) / NORM_GRID - 0.5  # midpoints of [-0.5, 0.5)
    shifts = torch.arange(-WRAP_IMAGES, WRAP_IMAGES + 1, dtype=torch.float64)
    offsets = (grid.unsqueeze(-1) + shifts).square()  # (G, 2K+1)
    out = []
    for chunk in sigma.to(torch.float64).reshape(-1).split(NORM_CHUNK):  # bounds memory, not a hot path
        sig = chunk.reshape(-1, 1)
        density = torch.exp(-offsets.unsqueeze(0) / (2 * sig.unsqueeze(-1).square())).sum(-1)
        density = density / density.sum(dim=1, keepdim=True)
        score = wrapped_normal_score(grid.expand(len(sig), -1), sig.expand(-1, NORM_GRID))
        out.append((density * score.square()).sum(dim=1))
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)


def sample_wrapped_normal(x0: torch.Tensor, sigma: torch.Tensor | float, generator: torch.Generator | None = None
                          ) -> torch.Tensor:
    """``wrap(x0 + sigma * noise)``: a draw from the wrapped normal around ``x0``."""
    noise = torch.randn(x0.shape, dtype=x0.dtype, device=x0.device, generator=generator)
    return wrap(x0 + torch.as_tensor(sigma, dtype=x0.dtype, device=x0.device) * noise)


def geometric_sigmas(sigma_min: float, sigma_max: float, t: torch.Tensor) -> torch.Tensor:
    """Noise level of a variance-exploding process at time ``t`` in [0, 1]: sigma_min^(1-t) sigma_max^t."""
    return torch.exp((1 - t) * math.log(sigma_min) + t * math.log(sigma_max))
