"""A reverse-diffusion sampler over named variables, with two hooks (as in MatterGen's sampler):

* a :class:`Projection`, applied to every state, noise draw, score and guidance gradient, which is
  what a symmetry-constrained model needs (updates confined to the free parameters of each
  Wyckoff orbit, the lattice kept in its crystal family's subspace);
* a :class:`Guidance` term: the gradient of a differentiable objective evaluated on the denoised
  estimate of every variable, scaled by a strength and added to the model's score.

Nothing here knows about crystals. A model describes its variables (each a name, a process from
:mod:`crystalgen.diffusion.processes` and a shape), and a predictor that maps the noisy state at
time t to each variable's prediction in its process's parametrisation (a score for
:class:`~crystalgen.diffusion.processes.TorusVE`, the noise for
:class:`~crystalgen.diffusion.processes.EuclideanVP`, logits for
:class:`~crystalgen.diffusion.processes.AbsorbingDiscrete`).

Random draws happen in a fixed order (priors in variable order, then per step each variable's
step in variable order, then the corrector), so a seed gives the same samples however the hooks
are configured, as long as they do not draw themselves.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

#: (state, time per batch element) -> prediction per variable.
Predictor = Callable[[dict[str, torch.Tensor], torch.Tensor], dict[str, torch.Tensor]]


@dataclass(frozen=True)
class SamplerConfig:
    """How reverse diffusion is run: ``steps`` on a uniform time grid from 1 to 0, ancestral steps
    (``stochastic``) or the probability-flow ODE / DDIM, and Langevin corrector steps per step."""

    steps: int = 100
    stochastic: bool = True
    corrector_steps: int = 0


@dataclass(frozen=True)
class Variable:
    """One diffused variable.

    ``owner`` gives, for each row, the batch element it belongs to (e.g. the crystal of each atom),
    so each row sees its element's time; ``None`` means one row per batch element. ``corrector``
    variables also take the Langevin corrector steps (their process has ``corrector_step_``).
    """

    name: str
    process: object
    shape: tuple[int, ...]
    owner: torch.Tensor | None = None
    dtype: torch.dtype = torch.float32
    corrector: bool = False

    @property
    def discrete(self) -> bool:
        return bool(self.process.discrete)

    def times(self, t: torch.Tensor) -> torch.Tensor:
        return t if self.owner is None else t[self.owner]


class Projection:
    """The identity. Subclass it to constrain a model: :meth:`state` maps a state onto the
    constraint set, :meth:`vector` maps an update direction (a score, a guidance gradient) onto its
    tangent space, and :meth:`noise` does the same for a standard normal draw (by default as
    :meth:`vector`; a constraint that ties rows together, such as a Wyckoff orbit, keeps one draw
    per free parameter there instead of averaging the rows' draws, which would shrink the noise)."""

    def state(self, name: str, x: torch.Tensor) -> torch.Tensor:
        return x

    def vector(self, name: str, v: torch.Tensor) -> torch.Tensor:
        return v

    def noise(self, name: str, z: torch.Tensor) -> torch.Tensor:
        return self.vector(name, z)


@dataclass(frozen=True)
class Guidance:
    """Classifier-style guidance: sample from ``p(x) exp(-strength * loss(denoised(x)))``.

    ``objective`` maps the denoised estimate of every variable (discrete ones: their current
    state, with masked tokens at their most likely class) to a loss per batch element, to be
    minimised; it must be differentiable in the continuous variables.
    """

    objective: Callable[[dict[str, torch.Tensor]], torch.Tensor]
    strength: float = 1.0


class ReverseSampler:
    def __init__(self, variables: Sequence[Variable], predictor: Predictor, config: SamplerConfig = SamplerConfig(),
                 projection: Projection | None = None, guidance: Guidance | None = None) -> None:
        self.variables = list(variables)
        self.predictor = predictor
        self.config = config
        self.projection = projection or Projection()
        self.guidance = guidance

    @torch.no_grad()
    def run(self, batch_size: int, generator: torch.Generator | None = None, device: torch.device | str = "cpu",
            start: dict[str, torch.Tensor] | None = None, start_time: float = 1.0) -> dict[str, torch.Tensor]:
        """Walk the time grid from ``start_time`` down to 0; the final state.

        By default every variable starts from its prior at t=1. With ``start`` (clean values of
        some variables) and ``start_time`` < 1, those variables are first noised to ``start_time``
        by their process, which refines a given structure instead of generating one (SDEdit-style);
        the others still start from their priors.
        """
        if not 0.0 < start_time <= 1.0:
            raise ValueError(f"start_time must be in (0, 1], got {start_time}")
        start = start or {}
        state = {}
        for variable in self.variables:
            if variable.name in start and start_time < 1.0:
                times = variable.times(torch.full((batch_size,), start_time, device=device))
                x = variable.process.corrupt(start[variable.name].to(device, variable.dtype), times, generator)[0]
            else:
                x = variable.process.prior(variable.shape, generator, dtype=variable.dtype, device=device)
            state[variable.name] = self.projection.state(variable.name, x)
        grid = torch.linspace(start_time, 0.0, self.config.steps + 1, device=device)
        for i in range(self.config.steps):
            t, s = grid[i].expand(batch_size), grid[i + 1].expand(batch_size)
            predictions = self.predict(state, t)
            for variable in self.variables:
                state[variable.name] = self._step(variable, state[variable.name], predictions[variable.name], t, s,
                                                  generator)
            for _ in range(self.config.corrector_steps if float(s[0]) > 0 else 0):
                predictions = self.predict(state, s)
                for variable in (v for v in self.variables if v.corrector):
                    state[variable.name] = self._correct(variable, state[variable.name], predictions[variable.name],
                                                         s, generator)
        return state

    def _noise(self, variable: Variable, x: torch.Tensor, generator: torch.Generator | None,
               stochastic: bool) -> torch.Tensor | None:
        noise = variable.process.step_noise(x, generator, stochastic)
        return None if noise is None else self.projection.noise(variable.name, noise)

    def _step(self, variable: Variable, x: torch.Tensor, prediction: torch.Tensor, t: torch.Tensor, s: torch.Tensor,
              generator: torch.Generator | None) -> torch.Tensor:
        stochastic = self.config.stochastic
        noise = self._noise(variable, x, generator, stochastic)
        x = variable.process.reverse_step(x, prediction, variable.times(t), variable.times(s), generator, stochastic,
                                          noise)
        return self.projection.state(variable.name, x)

    def _correct(self, variable: Variable, x: torch.Tensor, score: torch.Tensor, s: torch.Tensor,
                 generator: torch.Generator | None) -> torch.Tensor:
        noise = self._noise(variable, x, generator, stochastic=True)
        x = variable.process.corrector_step_(x, score, variable.times(s), generator, noise)
        return self.projection.state(variable.name, x)

    def predict(self, state: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
        """The predictor's output at ``state`` and ``t``, projected, with the guidance term added."""
        if self.guidance is None:
            predictions = self.predictor(state, t)
            return {v.name: self._project_prediction(v, predictions[v.name]) for v in self.variables}
        continuous = [v for v in self.variables if not v.discrete]
        with torch.enable_grad():
            leaves = {v.name: state[v.name].detach().requires_grad_(True) for v in continuous}
            inputs = {**state, **leaves}
            predictions = self.predictor(inputs, t)
            denoised = {v.name: v.process.denoise(leaves.get(v.name, state[v.name]), predictions[v.name], v.times(t))
                        for v in self.variables}
            loss = self.guidance.objective(denoised).sum()
            gradients = torch.autograd.grad(loss, list(leaves.values()), allow_unused=True)
        out = {}
        for variable in self.variables:
            prediction = self._project_prediction(variable, predictions[variable.name].detach())
            gradient = dict(zip(leaves, gradients)).get(variable.name)
            if gradient is not None:
                gradient = self.projection.vector(variable.name, gradient)
                prediction = variable.process.guide(prediction, gradient, variable.times(t), self.guidance.strength)
            out[variable.name] = prediction
        return out

    def _project_prediction(self, variable: Variable, prediction: torch.Tensor) -> torch.Tensor:
        return prediction if variable.discrete else self.projection.vector(variable.name, prediction)


__all__ = ["Guidance", "Predictor", "Projection", "ReverseSampler", "SamplerConfig", "Variable"]
