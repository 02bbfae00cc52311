"""The wrapped normal on the flat torus: its score and score norm against independent computations."""

from __future__ import annotations

import math

import pytest
import torch

from crystalgen.diffusion import (
    geometric_sigmas,
    minimum_image,
    sample_wrapped_normal,
    wrap,
    wrapped_normal_score,
    wrapped_normal_score_norm,
)


def log_density(x: torch.Tensor, sigma: float, images: int = 12) -> torch.Tensor:
    k = torch.arange(-images, images + 1, dtype=x.dtype)
    return torch.logsumexp(-(x.unsqueeze(-1) + k).square() / (2 * sigma**2), dim=-1)


@pytest.mark.parametrize("sigma", [0.01, 0.1, 0.3, 0.5])
def test_score_is_the_gradient_of_the_log_density(sigma):
    d = (torch.rand(200, generator=torch.Generator().manual_seed(0), dtype=torch.float64) - 0.5) * 3  # several images
    d.requires_grad_(True)
    (grad,) = torch.autograd.grad(log_density(d, sigma).sum(), d)
    assert torch.allclose(wrapped_normal_score(d.detach(), sigma), grad, rtol=1e-6, atol=1e-6 / sigma**2)


def test_score_is_periodic_and_gaussian_at_small_sigma():
    d = torch.linspace(-0.4, 0.4, 9, dtype=torch.float64)
    assert torch.allclose(wrapped_normal_score(d + 2.0, 0.2), wrapped_normal_score(d, 0.2))
    assert torch.allclose(wrapped_normal_score(d * 0.01, 0.01), -(d * 0.01) / 0.01**2)


def test_score_broadcasts_per_row_sigma():
    d = torch.full((3, 2), 0.1, dtype=torch.float64)
    sigma = torch.tensor([[0.05], [0.1], [0.2]], dtype=torch.float64).expand(3, 2)
    out = wrapped_normal_score(d, sigma)
    assert torch.allclose(out[:, 0], torch.stack([wrapped_normal_score(d[0, :1], s)[0] for s in (0.05, 0.1, 0.2)]))


def test_score_norm_limits_and_monte_carlo():
    sigmas = torch.tensor([0.005, 0.05, 0.2, 0.5], dtype=torch.float64)
    norm = wrapped_normal_score_norm(sigmas)
    assert norm[0] == pytest.approx(1 / 0.005**2, rel=1e-3)  # a plain Gaussian's Fisher information
    assert norm[1] == pytest.approx(1 / 0.05**2, rel=1e-3)
    assert (norm[2] < 1 / 0.2**2) and (norm[3] < 0.1 * norm[2])  # wrapping flattens the density
    generator = torch.Generator().manual_seed(1)
    for index, sigma in ((2, 0.2), (3, 0.5)):
        x = sample_wrapped_normal(torch.zeros(400_000, dtype=torch.float64), sigma, generator)
        monte_carlo = wrapped_normal_score(x, sigma).square().mean()
        assert monte_carlo == pytest.approx(float(norm[index]), rel=0.03)


def test_wrap_and_minimum_image():
    x = torch.tensor([-0.25, 1.25, 3.0, 0.999], dtype=torch.float64)
    assert wrap(x).tolist() == pytest.approx([0.75, 0.25, 0.0, 0.999])
    assert minimum_image(torch.tensor([0.75, -0.6, 0.2])).tolist() == pytest.approx([-0.25, 0.4, 0.2])


def test_geometric_sigmas_endpoints():
    t = torch.tensor([0.0, 0.5, 1.0], dtype=torch.float64)
    assert geometric_sigmas(0.005, 0.5, t).tolist() == pytest.approx([0.005, math.sqrt(0.005 * 0.5), 0.5])
