"""Design strategies that steer a generator toward objectives from seed crystals.

:func:`optimise_from_seeds` is the CDVAE/DiffCSP property-optimisation protocol on top of the
diffusion family's :meth:`~crystalgen.generators.diffusion.DiffusionGenerator.refine`: each seed
is noised partway and denoised with surrogate guidance, several times; the best valid proposal
(by the guiding surrogate's pessimistic penalty) replaces the seed when it improves on it; and
that repeats.

:func:`optimise_in_latent_space` is CDVAE's other protocol, for a model with a latent space and a
property head on it (the voxel family): each seed is encoded, its latent vector follows the
gradient of the objectives' penalty on the head's prediction (Adam), and the path is decoded at
evenly spaced steps; the best valid decoded crystal replaces the seed when it improves on it.

In both the surrogate selects; it never judges the outcome (that is the oracle's job).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.design.objectives import Objective, PropertyEvaluator, property_guidance, total_penalty
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.options import SampleOptions
from crystalgen.metrics.validity import evaluate_validity
from crystalgen.progress import progress_bar

#: Seeds per job seed: iteration i of a job with seed s refines with seed s * ITERATION_SEEDS + i.
ITERATION_SEEDS = 7919


@dataclass(frozen=True)
class OptimiseSettings:
    """``strength`` of the guidance; ``start_time``, how far each seed is noised (0: not at all,
    1: back to the prior); ``iterations`` of noise-and-denoise; ``proposals`` per seed and
    iteration; ``uncertainty_weight``, the weight of the surrogate's spread in the penalty."""

    strength: float = 1.0
    start_time: float = 0.3
    iterations: int = 4
    proposals: int = 4
    uncertainty_weight: float = 1.0

    def __post_init__(self) -> None:
        if not self.strength >= 0:
            raise CrystalgenInputError(f"strategy strength must be >= 0, got {self.strength!r}")
        if not 0 < self.start_time <= 1:
            raise CrystalgenInputError(f"strategy start_time must lie in (0, 1], got {self.start_time!r}")
        for name in ("iterations", "proposals"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CrystalgenInputError(f"strategy {name} must be a positive integer, got {value!r}")
        if not self.uncertainty_weight >= 0:
            raise CrystalgenInputError(f"strategy uncertainty_weight must be >= 0, got {self.uncertainty_weight!r}")


@dataclass(frozen=True)
class LatentSettings:
    """``steps`` of Adam at learning rate ``lr`` on each seed's latent vector, decoded at
    ``decodes`` evenly spaced steps; ``uncertainty_weight`` as in :class:`OptimiseSettings`."""

    steps: int = 100
    lr: float = 0.05
    decodes: int = 5
    uncertainty_weight: float = 1.0

    def __post_init__(self) -> None:
        for name in ("steps", "decodes"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise CrystalgenInputError(f"strategy {name} must be a positive integer, got {value!r}")
        if self.decodes > self.steps:
            raise CrystalgenInputError(f"strategy decodes ({self.decodes}) cannot exceed steps ({self.steps})")
        if not self.lr > 0:
            raise CrystalgenInputError(f"strategy lr must be > 0, got {self.lr!r}")
        if not self.uncertainty_weight >= 0:
            raise CrystalgenInputError(f"strategy uncertainty_weight must be >= 0, got {self.uncertainty_weight!r}")


@dataclass
class OptimisationResult:
    """Per seed, the best crystal found and its penalty (the seed itself if nothing beat it), and
    each iteration's chosen proposal (``trajectory[i][seed]``; None where none was valid)."""

    best: list[Crystal]
    best_penalty: np.ndarray
    trajectory: list[list[Crystal | None]] = field(default_factory=list)
    #: Per iteration: the share of proposals that were valid, and the mean best penalty after it.
    history: list[dict[str, float]] = field(default_factory=list)


def penalties(crystals: Sequence[Crystal], evaluator: PropertyEvaluator, objectives: Sequence[Objective],
              uncertainty_weight: float) -> np.ndarray:
    """(n,) the guiding surrogate's penalty, +inf for an invalid crystal or one it cannot predict."""
    values = evaluator.evaluate(crystals)
    penalty = np.asarray(total_penalty(objectives, values, evaluator.scales(), uncertainty_weight), dtype=np.float64)
    return np.where(evaluate_validity(list(crystals)).valid & np.isfinite(penalty), penalty, np.inf)


def optimise_from_seeds(generator: object, seeds: Sequence[Crystal], evaluator: PropertyEvaluator,
                        objectives: Sequence[Objective], settings: OptimiseSettings = OptimiseSettings(),
                        seed: int = 0, device: str | None = None,
                        on_iteration: Callable[[int, OptimisationResult], None] | None = None) -> OptimisationResult:
    """Optimise every seed (see the module docstring); ``generator`` is a diffusion-family model
    (anything with ``refine(crystals, start_time, seed, options)``)."""
    if not hasattr(generator, "refine"):
        raise CrystalgenInputError(f"model {getattr(generator, 'name', generator)!r} cannot refine seeds; "
                                   "optimisation from seeds needs a diffusion-family checkpoint")
    if not seeds:
        raise CrystalgenInputError("optimisation from seeds needs at least one seed structure")
    guidance = property_guidance(evaluator, objectives, settings.strength, settings.uncertainty_weight)
    options = SampleOptions(guidance=guidance if settings.strength > 0 else None, device=device)
    best = list(seeds)
    best_penalty = penalties(best, evaluator, objectives, settings.uncertainty_weight)
    result = OptimisationResult(best, best_penalty)
    with progress_bar() as bar:
        task = bar.add_task("optimising seeds", total=settings.iterations)
        for iteration in range(settings.iterations):
            _iterate(generator, seeds, evaluator, objectives, settings, options, seed * ITERATION_SEEDS + iteration,
                     result)
            bar.advance(task)
            if on_iteration is not None:
                on_iteration(iteration, result)
    return result


def _iterate(generator: object, seeds: Sequence[Crystal], evaluator: PropertyEvaluator,
             objectives: Sequence[Objective], settings: OptimiseSettings, options: SampleOptions, seed: int,
             result: OptimisationResult) -> None:
    """One round: ``proposals`` refinements of every current best, the best valid one kept if better."""
    count = len(seeds)
    repeated = [c for c in result.best for _ in range(settings.proposals)]
    proposals = generator.refine(repeated, settings.start_time, seed=seed, options=options)
    scores = penalties(proposals, evaluator, objectives, settings.uncertainty_weight)
    grid = scores.reshape(count, settings.proposals)
    pick = grid.argmin(axis=1)
    chosen = [proposals[i * settings.proposals + j] for i, j in enumerate(pick)]
    _record(seeds, chosen, grid[np.arange(count), pick], float(np.isfinite(scores).mean()), result)


def _record(seeds: Sequence[Crystal], candidates: Sequence[Crystal | None], scores: np.ndarray, valid_share: float,
            result: OptimisationResult) -> None:
    """Each seed's candidate of this round (penalty ``scores``, inf if invalid) replaces its best if better."""
    result.trajectory.append([c if np.isfinite(score) else None for c, score in zip(candidates, scores)])
    improved = scores < result.best_penalty
    for i in np.flatnonzero(improved):
        candidates[i].id = seeds[i].id
        result.best[i] = candidates[i]
    result.best_penalty = np.where(improved, scores, result.best_penalty)
    finite = result.best_penalty[np.isfinite(result.best_penalty)]
    result.history.append({"iteration": len(result.history) + 1, "valid_share": valid_share,
                           "improved_share": float(improved.mean()),
                           "mean_best_penalty": float(finite.mean()) if len(finite) else float("nan")})


def check_latent_objectives(generator: object, objectives: Sequence[Objective]) -> str:
    """The property ``generator`` 's latent head predicts; a one-line error when it has no head
    or an objective asks for another property."""
    name = getattr(generator, "name", generator)
    head = getattr(generator, "latent_property_name", None)
    if head is None:
        raise CrystalgenInputError(f"model {name!r} has no property head on a latent space; latent optimisation "
                                   "needs a voxel-family checkpoint trained with a property")
    foreign = sorted({o.property for o in objectives} - {head})
    if foreign:
        raise CrystalgenInputError(f"strategy latent: the latent head of {name!r} predicts {head} only, not "
                                   f"{', '.join(foreign)}")
    return head


def optimise_in_latent_space(generator: object, seeds: Sequence[Crystal], evaluator: PropertyEvaluator,
                             objectives: Sequence[Objective], settings: LatentSettings = LatentSettings(),
                             on_iteration: Callable[[int, OptimisationResult], None] | None = None
                             ) -> OptimisationResult:
    """Optimise every seed in ``generator`` 's latent space (see the module docstring);
    ``generator`` has ``encode``, ``decode`` and a differentiable ``latent_property`` head."""
    import torch

    head = check_latent_objectives(generator, objectives)
    if not seeds:
        raise CrystalgenInputError("latent optimisation needs at least one seed structure")
    z = generator.encode(seeds).clone().requires_grad_(True)
    optimiser = torch.optim.Adam([z], lr=settings.lr)
    scales = evaluator.scales()
    decode_at = set(np.linspace(settings.steps / settings.decodes, settings.steps, settings.decodes).round().astype(int))
    result = OptimisationResult(list(seeds), penalties(seeds, evaluator, objectives, settings.uncertainty_weight))
    with progress_bar() as bar:
        task = bar.add_task("optimising latent vectors", total=settings.steps)
        for step in range(1, settings.steps + 1):
            loss = total_penalty(objectives, {head: (generator.latent_property(z), None)}, scales).sum()
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
            bar.advance(task)
            if step in decode_at:
                with torch.no_grad():
                    head_mean = float(generator.latent_property(z).mean())
                decoded = [c if isinstance(c, Crystal) else None for c in generator.decode(z.detach())]
                valid = [i for i, c in enumerate(decoded) if c is not None]
                scores = np.full(len(decoded), np.inf)
                if valid:
                    scores[valid] = penalties([decoded[i] for i in valid], evaluator, objectives,
                                              settings.uncertainty_weight)
                _record(seeds, decoded, scores, float(np.isfinite(scores).mean()), result)
                result.history[-1].update(step=step, mean_head_prediction=head_mean)
                if on_iteration is not None:
                    on_iteration(len(result.history) - 1, result)
    return result
