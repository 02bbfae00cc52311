"""Composable corruption processes: each knows how to noise clean data at time t in [0, 1], what a
network should predict from the noisy data, and how to take one reverse step.

Three processes cover crystals (composed in a generator, never knowing about crystals themselves):

* :class:`TorusVE`: variance-exploding wrapped-normal noise on the flat torus (fractional
  coordinates); the network predicts the wrapped-normal score; reverse steps are
  predictor-corrector (annealed Langevin) as in DiffCSP, or a probability-flow ODE step.
* :class:`EuclideanVP`: variance-preserving DDPM on R^d (lattice matrices); the network predicts
  the noise; reverse steps are ancestral (stochastic) or DDIM (deterministic), which allows few steps.
* :class:`AbsorbingDiscrete`: D3PM with an absorbing "mask" state (atom types); the network
  predicts logits of the clean class; reverse steps unmask with the right probability.

Time runs from t=0 (data) to t=1 (noise); a sampler walks a decreasing grid of times.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar
from functools import lru_cache

import torch

from crystalgen.diffusion.torus import (
    geometric_sigmas,
    minimum_image,
    sample_wrapped_normal,
    wrap,
    wrapped_normal_score,
    wrapped_normal_score_norm,
)

#: Offset of the cosine schedule (Nichol & Dhariwal), so alpha_bar does not vanish too fast near t=0.
COSINE_OFFSET = 0.008
#: Smallest alpha_bar reached at t=1, to keep the noise prediction well-posed.
MIN_ALPHA_BAR = 1e-5


#: Points of the time grid on which TorusVE tabulates E[score^2].
SCORE_NORM_TABLE_SIZE = 2001


@lru_cache(maxsize=8)
def _score_norm_table(sigma_min: float, sigma_max: float, device: str = "cpu") -> torch.Tensor:
    """Built once on the CPU, kept on each device that asks, so a GPU step needs no host round trip."""
    t = torch.linspace(0.0, 1.0, SCORE_NORM_TABLE_SIZE, dtype=torch.float64)
    return wrapped_normal_score_norm(geometric_sigmas(sigma_min, sigma_max, t)).to(device)


def _randn_like(x: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(x.shape, dtype=x.dtype, device=x.device, generator=generator)


def _per_row(values: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Broadcast a per-row (N,) tensor against (N, ...) data."""
    return values.reshape(-1, *([1] * (like.dim() - 1)))


# ---------------------------------------------------------------------------------- torus
@dataclass(frozen=True)
class TorusVE:
    """Wrapped-normal diffusion on [0, 1)^d with geometric noise levels."""

    sigma_min: float = 0.005
    sigma_max: float = 0.5
    #: Langevin step size factor of the corrector (DiffCSP's gamma).
    corrector_step: float = 1e-5
    discrete: ClassVar[bool] = False

    def sigma(self, t: torch.Tensor) -> torch.Tensor:
        return geometric_sigmas(self.sigma_min, self.sigma_max, t)

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.rand(shape, generator=generator, dtype=dtype, device=device)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """``(x_t, target score, loss weight)`` for per-row times ``t``; the weight normalises by E[score^2]."""
        sigma = _per_row(self.sigma(t), x0)
        xt = sample_wrapped_normal(x0, sigma, generator)
        weight = 1.0 / self.score_norm(t).to(x0.dtype)
        return xt, self.target_score(x0, xt, t), _per_row(weight, x0)

    def target_score(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The wrapped-normal score of ``x_t`` given ``x0`` (what :meth:`corrupt` returns, for an
        ``x_t`` that was moved afterwards, e.g. projected onto a constraint)."""
        sigma = _per_row(self.sigma(t), x0)
        return wrapped_normal_score(minimum_image(xt - x0), sigma.expand_as(x0))

    def score_norm(self, t: torch.Tensor) -> torch.Tensor:
        """E[score^2] at sigma(t), interpolated from a table built once (the quadrature is costly per batch)."""
        table = _score_norm_table(self.sigma_min, self.sigma_max, str(t.device))
        position = t.detach().double().clamp(0, 1) * (SCORE_NORM_TABLE_SIZE - 1)
        low = position.floor().long().clamp(max=SCORE_NORM_TABLE_SIZE - 2)
        frac = position - low
        log_norm = (1 - frac) * table[low].log() + frac * table[low + 1].log()
        return log_norm.exp().to(device=t.device, dtype=t.dtype if t.is_floating_point() else torch.float32)

    def step_noise(self, xt: torch.Tensor, generator: torch.Generator | None = None,
                   stochastic: bool = True) -> torch.Tensor | None:
        """The standard normal draw a reverse (or corrector) step adds, or ``None`` for a deterministic step."""
        return _randn_like(xt, generator) if stochastic else None

    def reverse_step(self, xt: torch.Tensor, score: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                     generator: torch.Generator | None = None, stochastic: bool = True,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
        """From time t down to s < t (per row): ancestral VE step, or the probability-flow ODE step.
        ``noise`` is the step's standard normal draw (drawn here when not given)."""
        var_t, var_s = _per_row(self.sigma(t), xt) ** 2, _per_row(self.sigma(s), xt) ** 2
        if not stochastic:
            return wrap(xt + 0.5 * (var_t - var_s) * score)
        step = var_t - var_s
        noise_scale = torch.sqrt(step * var_s / var_t)
        noise = _randn_like(xt, generator) if noise is None else noise
        return wrap(xt + step * score + noise_scale * noise)

    def corrector_step_(self, xt: torch.Tensor, score: torch.Tensor, s: torch.Tensor,
                        generator: torch.Generator | None = None, noise: torch.Tensor | None = None) -> torch.Tensor:
        """One Langevin correction at noise level sigma(s), step size scaled as in DiffCSP."""
        step = self.corrector_step * (_per_row(self.sigma(s), xt) / self.sigma_min) ** 2
        noise = _randn_like(xt, generator) if noise is None else noise
        return wrap(xt + step * score + torch.sqrt(2 * step) * noise)

    def denoise(self, xt: torch.Tensor, score: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """Tweedie's estimate of the clean data, ``x_t + sigma(t)^2 score`` (unwrapped, so it stays
        differentiable and its distance to x_t is the predicted displacement)."""
        return xt + _per_row(self.sigma(t), xt) ** 2 * score

    def guide(self, score: torch.Tensor, gradient: torch.Tensor, t: torch.Tensor, strength: float) -> torch.Tensor:
        """The score of the guided density ``p(x) exp(-strength * loss)``, given d loss / d x_t."""
        return score - strength * gradient


# ---------------------------------------------------------------------------------- Euclidean
@dataclass(frozen=True)
class EuclideanVP:
    """DDPM on R^d with the cosine schedule: x_t = sqrt(ab) x0 + sqrt(1 - ab) eps.

    ``x0_clip`` bounds the predicted clean data in reverse steps (the usual DDPM clipping);
    the noise is then recomputed from it so that both stay consistent.
    """

    x0_clip: float | None = None
    discrete: ClassVar[bool] = False

    def alpha_bar(self, t: torch.Tensor) -> torch.Tensor:
        f = torch.cos((t + COSINE_OFFSET) / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        f0 = math.cos(COSINE_OFFSET / (1 + COSINE_OFFSET) * math.pi / 2) ** 2
        return (f / f0).clamp(min=MIN_ALPHA_BAR, max=1.0)

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.float32, device: torch.device | str = "cpu") -> torch.Tensor:
        return torch.randn(shape, generator=generator, dtype=dtype, device=device)

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, eps)``: the noisy data and the noise the network should predict."""
        ab = _per_row(self.alpha_bar(t), x0)
        eps = _randn_like(x0, generator)
        return ab.sqrt() * x0 + (1 - ab).sqrt() * eps, eps

    def predict_x0(self, xt: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        ab = _per_row(self.alpha_bar(t), xt)
        return (xt - (1 - ab).sqrt() * eps) / ab.sqrt()

    def noise_of(self, x0: torch.Tensor, xt: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The noise that takes ``x0`` to ``x_t`` at time t (the inverse of :meth:`predict_x0`)."""
        ab = _per_row(self.alpha_bar(t), xt)
        return (xt - ab.sqrt() * x0) / (1 - ab).sqrt()

    def step_noise(self, xt: torch.Tensor, generator: torch.Generator | None = None,
                   stochastic: bool = True) -> torch.Tensor | None:
        """The standard normal draw a reverse step adds, or ``None`` for a deterministic step."""
        return _randn_like(xt, generator) if stochastic else None

    def denoise(self, xt: torch.Tensor, eps: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The predicted clean data, clipped as in :meth:`reverse_step`. The clip passes gradients
        through unchanged: at high noise most components are clipped, and a zero gradient there
        would switch guidance off exactly where it can still steer."""
        x0 = self.predict_x0(xt, eps, t)
        if self.x0_clip is None:
            return x0
        return x0 + (x0.clamp(-self.x0_clip, self.x0_clip) - x0).detach()

    def guide(self, eps: torch.Tensor, gradient: torch.Tensor, t: torch.Tensor, strength: float) -> torch.Tensor:
        """The noise prediction of the guided density ``p(x) exp(-strength * loss)``: the score is
        ``-eps / sqrt(1 - ab)``, so subtracting ``strength * gradient`` from it adds this to eps."""
        return eps + strength * (1 - _per_row(self.alpha_bar(t), eps)).sqrt() * gradient

    def reverse_step(self, xt: torch.Tensor, eps: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                     generator: torch.Generator | None = None, stochastic: bool = True,
                     noise: torch.Tensor | None = None) -> torch.Tensor:
        """From t to s < t: the DDPM posterior draw, or the deterministic DDIM step. ``noise`` is
        the posterior's standard normal draw (drawn here when not given)."""
        ab_t, ab_s = _per_row(self.alpha_bar(t), xt), _per_row(self.alpha_bar(s), xt)
        x0 = self.predict_x0(xt, eps, t)
        if self.x0_clip is not None:
            x0 = x0.clamp(-self.x0_clip, self.x0_clip)
            eps = (xt - ab_t.sqrt() * x0) / (1 - ab_t).sqrt()
        if not stochastic:
            return ab_s.sqrt() * x0 + (1 - ab_s).sqrt() * eps
        alpha = ab_t / ab_s  # of the jump from s to t
        mean = (ab_s.sqrt() * (1 - alpha) * x0 + alpha.sqrt() * (1 - ab_s) * xt) / (1 - ab_t)
        var = (1 - alpha) * (1 - ab_s) / (1 - ab_t)
        noise = _randn_like(xt, generator) if noise is None else noise
        return mean + var.clamp(min=0).sqrt() * noise


# ---------------------------------------------------------------------------------- discrete
@dataclass(frozen=True)
class AbsorbingDiscrete:
    """D3PM with an absorbing mask: at time t each token is masked with probability t."""

    mask_token: int = 0
    #: Tells the sampler this process has no continuous state to project, denoise or guide.
    discrete: ClassVar[bool] = True

    def prior(self, shape: tuple[int, ...], generator: torch.Generator | None = None,
              dtype: torch.dtype = torch.long, device: torch.device | str = "cpu") -> torch.Tensor:
        """Every token masked (``generator`` and ``dtype`` are there for a uniform interface)."""
        return torch.full(shape, self.mask_token, dtype=torch.long, device=device)

    def step_noise(self, xt: torch.Tensor, generator: torch.Generator | None = None,
                   stochastic: bool = True) -> None:
        """Discrete steps draw their own randomness; there is no additive noise to project."""
        return None

    def corrupt(self, x0: torch.Tensor, t: torch.Tensor, generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x_t, masked)``: tokens masked with probability t (per row), and which were masked."""
        u = torch.rand(x0.shape, generator=generator, device=x0.device)
        masked = u < t.to(u.dtype)
        return torch.where(masked, torch.full_like(x0, self.mask_token), x0), masked

    def reverse_step(self, xt: torch.Tensor, logits: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
                     generator: torch.Generator | None = None, stochastic: bool = True,
                     noise: None = None) -> torch.Tensor:
        """Unmask each masked token with probability (t - s) / t, drawing its class from the logits
        (always stochastic; ``stochastic`` and ``noise`` are there for a uniform interface)."""
        logits = logits.clone()
        logits[:, self.mask_token] = -math.inf
        probs = torch.softmax(logits.float(), dim=-1)
        drawn = torch.multinomial(probs, 1, generator=generator).squeeze(1)
        u = torch.rand(xt.shape, generator=generator, device=xt.device)
        unmask = (xt == self.mask_token) & (u < ((t - s) / t.clamp(min=1e-12)).to(u.dtype))
        return torch.where(unmask, drawn, xt)

    def denoise(self, xt: torch.Tensor, logits: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
        """The most likely clean tokens: masked ones take their most likely class, the others stay
        (what a guidance objective sees, so it never scores a mask token as an element)."""
        logits = logits.detach().clone()
        logits[:, self.mask_token] = -math.inf
        return torch.where(xt == self.mask_token, logits.argmax(-1), xt)
