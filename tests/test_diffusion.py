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


# ---------------------------------------------------------------------------------- processes
from crystalgen.diffusion.processes import AbsorbingDiscrete, EuclideanVP, TorusVE  # noqa: E402


def time_grid(steps: int, n: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
    grid = torch.linspace(1.0, 0.0, steps + 1, dtype=torch.float64)
    return [(torch.full((n,), float(grid[i]), dtype=torch.float64), torch.full((n,), float(grid[i + 1]), dtype=torch.float64))
            for i in range(steps)]


def test_torus_corrupt_targets_the_wrapped_normal_score():
    process = TorusVE()
    generator = torch.Generator().manual_seed(0)
    x0 = torch.rand(1000, 3, generator=generator, dtype=torch.float64)
    t = torch.rand(1000, generator=generator, dtype=torch.float64)
    xt, target, weight = process.corrupt(x0, t, generator)
    sigma = process.sigma(t).unsqueeze(1).expand_as(x0)
    assert ((xt >= 0) & (xt < 1)).all()
    assert torch.allclose(target, wrapped_normal_score(xt - x0, sigma))
    assert torch.allclose(weight.squeeze(1), 1 / wrapped_normal_score_norm(process.sigma(t)), rtol=1e-4)


@pytest.mark.parametrize("stochastic", [True, False], ids=["ancestral", "ode"])
def test_torus_sampler_with_the_exact_score_recovers_a_point_mass(stochastic):
    """Data = one point; the exact score of the noised marginal is the wrapped-normal score around it."""
    process = TorusVE()
    generator = torch.Generator().manual_seed(1)
    target = torch.tensor([0.3, 0.9, 0.05], dtype=torch.float64)
    x = process.prior((500, 3), generator, dtype=torch.float64)
    for t, s in time_grid(200, 500):
        score = wrapped_normal_score(x - target, process.sigma(t).unsqueeze(1).expand_as(x))
        x = process.reverse_step(x, score, t, s, generator, stochastic=stochastic)
    error = minimum_image(x - target).abs()
    assert (error < 0.02).float().mean() > 0.99


@pytest.mark.parametrize("stochastic, steps", [(True, 1000), (False, 100)], ids=["ddpm", "ddim"])
def test_euclidean_sampler_with_the_exact_noise_recovers_a_gaussian(stochastic, steps):
    """Data ~ N(m, s^2): E[eps | x_t] is known in closed form, so samples must come out N(m, s^2).

    Ancestral DDPM with the posterior mean of x0 under-disperses with few steps (0.48 instead of 0.5
    at 100 steps); it converges as steps grow, so it is checked at 1,000. DDIM is exact at 100.
    """
    process = EuclideanVP()
    m, s = 2.0, 0.5
    generator = torch.Generator().manual_seed(2)
    x = process.prior((10_000, 1), generator, dtype=torch.float64)
    for t, t_next in time_grid(steps, 10_000):
        ab = process.alpha_bar(t).unsqueeze(1)
        eps = (1 - ab).sqrt() * (x - ab.sqrt() * m) / (ab * s**2 + 1 - ab)
        x = process.reverse_step(x, eps, t, t_next, generator, stochastic=stochastic)
    assert float(x.mean()) == pytest.approx(m, abs=0.02)
    assert float(x.std()) == pytest.approx(s, rel=0.03)


def test_euclidean_corrupt_and_predict_x0_invert():
    process = EuclideanVP()
    x0 = torch.randn(10, 9, dtype=torch.float64)
    t = torch.linspace(0.0, 1.0, 10, dtype=torch.float64)
    xt, eps = process.corrupt(x0, t)
    assert torch.allclose(process.predict_x0(xt, eps, t), x0, atol=1e-6)
    assert process.alpha_bar(torch.tensor([0.0]))[0] == pytest.approx(1.0)


def test_absorbing_masks_with_probability_t_and_unmasks_to_the_predicted_class():
    process = AbsorbingDiscrete()
    generator = torch.Generator().manual_seed(3)
    x0 = torch.randint(1, 50, (20_000,), generator=generator)
    t = torch.full((20_000,), 0.3)
    xt, masked = process.corrupt(x0, t, generator)
    assert float(masked.float().mean()) == pytest.approx(0.3, abs=0.015)
    assert (xt[masked] == 0).all() and (xt[~masked] == x0[~masked]).all()
    x = process.prior((1000,))
    truth = torch.randint(1, 50, (1000,), generator=generator)
    logits = torch.nn.functional.one_hot(truth, 51).float() * 50.0
    unmasked_share = []
    for t_now, s in time_grid(10, 1000):
        x = process.reverse_step(x, logits, t_now, s, generator)
        unmasked_share.append(float((x != 0).float().mean()))
    assert (x == truth).all()  # every token ends unmasked, as predicted
    assert unmasked_share[0] == pytest.approx(0.1, abs=0.04)  # ~(t - s) / t of them in the first step
