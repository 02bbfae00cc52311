"""A design job file (``configs/design/*.yaml``): what to design, with what, and how far to go.

::

    name: band-gap-mp_20
    generator: diffusion-mp_20-gen      # a shipped checkpoint or a path
    surrogate: surrogate-mp_20          # guides and ranks
    oracle: oracle-mp_20                # judges hits; never guides (default: oracle-<dataset>)
    objectives:
      band_gap: {range: [1.5, 2.5]}
      e_hull: {at_most: 0.1}
    constraints:
      elements: Li-Fe-P-O               # or a composition (Fe4P4O16), a space group, max_atoms
      smact: true                       # SMACT-valid (default true)
      unique: true
      novel: true
    strategy: {name: guided, strength: 1.0}    # screen | guided | optimise (start_time, iterations, proposals)
                                               # | latent (steps, lr, decodes: a voxel model's latent space)
    budget: {candidates: 1000, wall_time_s: 3600, batch_size: 64}   # batch: candidates per model call
    relax_top: 50                       # CHGNet-relax the top candidates and re-score them (0: off)
    seed: 0

Every problem gets a one-line error naming the field, before any work.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from crystalgen.config_sections import read_yaml_mapping
from crystalgen.design.objectives import Objective
from crystalgen.design.strategies import LatentSettings, OptimiseSettings
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.target import Target

STRATEGIES = ("screen", "guided", "optimise", "latent")
#: Strategies that start from seed crystals retrieved from the training set.
FROM_SEEDS = ("optimise", "latent")
_TOP_KEYS = {"name", "generator", "surrogate", "oracle", "objectives", "constraints", "strategy", "budget",
             "relax_top", "seed"}
_CONSTRAINT_KEYS = {"elements", "composition", "spacegroup", "max_atoms", "smact", "unique", "novel"}
_STRATEGY_KEYS = {"screen": {"name"}, "guided": {"name", "strength", "uncertainty_weight"},
                  "optimise": {"name", "strength", "uncertainty_weight", "start_time", "iterations", "proposals"},
                  "latent": {"name", "steps", "lr", "decodes", "uncertainty_weight"}}
#: Candidates a job makes when its budget names none.
DEFAULT_CANDIDATES = 1000
DEFAULT_BATCH = 64


@dataclass(frozen=True)
class Constraints:
    target: Target = field(default_factory=Target)  # elements, composition, space group: the generator's conditions
    max_atoms: int | None = None
    smact: bool = True
    unique: bool = True
    novel: bool = True


@dataclass(frozen=True)
class Strategy:
    name: str = "screen"
    #: Guidance settings; for ``optimise`` also how seeds are noised and iterated; for ``latent``
    #: how latent vectors are optimised.
    settings: OptimiseSettings | LatentSettings = OptimiseSettings(strength=0.0)


@dataclass(frozen=True)
class DesignJob:
    name: str
    generator: str
    surrogate: str
    objectives: tuple[Objective, ...]
    oracle: str | None = None
    constraints: Constraints = Constraints()
    strategy: Strategy = Strategy()
    candidates: int = DEFAULT_CANDIDATES
    wall_time_s: float | None = None
    #: Candidates per generator call: how often output is committed (another size draws other crystals).
    batch_size: int = DEFAULT_BATCH
    relax_top: int = 0
    seed: int = 0

    def settings(self) -> dict[str, Any]:
        """What a resumed run must share with the one it resumes (see :class:`crystalgen.runs.RunDir`)."""
        c = self.constraints
        return {"generator": self.generator, "surrogate": self.surrogate, "oracle": self.oracle,
                "objectives": [o.label for o in self.objectives], "target": c.target.label,
                "max_atoms": c.max_atoms, "smact": c.smact, "unique": c.unique, "novel": c.novel,
                "strategy": self.strategy.name, "strategy_settings": vars(self.strategy.settings),
                "candidates": self.candidates, "batch_size": self.batch_size, "relax_top": self.relax_top, "seed": self.seed}


def load_job(path: str | os.PathLike) -> DesignJob:
    """Read and validate a job file."""
    return parse_job(read_yaml_mapping(path, "a design job"))


def parse_job(spec: Mapping[str, Any]) -> DesignJob:
    _known("job", spec, _TOP_KEYS)
    for key in ("generator", "surrogate", "objectives"):
        if key not in spec:
            raise CrystalgenInputError(f"design job: missing field {key!r}")
    objectives = spec["objectives"]
    if not isinstance(objectives, Mapping) or not objectives:
        raise CrystalgenInputError("design job field 'objectives' must map each property to a goal")
    budget = _mapping(spec, "budget")
    _known("budget", budget, {"candidates", "wall_time_s", "batch_size"})
    return DesignJob(
        name=_text(spec, "name", default="design"),
        generator=_text(spec, "generator"), surrogate=_text(spec, "surrogate"),
        oracle=_text(spec, "oracle", default=None),
        objectives=tuple(Objective.parse(str(name), goal) for name, goal in objectives.items()),
        constraints=_constraints(_mapping(spec, "constraints")),
        strategy=_strategy(spec.get("strategy", "screen")),
        candidates=_count(budget, "budget.candidates", "candidates", DEFAULT_CANDIDATES),
        wall_time_s=_positive(budget, "budget.wall_time_s", "wall_time_s"),
        batch_size=_count(budget, "budget.batch_size", "batch_size", DEFAULT_BATCH),
        relax_top=_count(spec, "relax_top", "relax_top", 0, minimum=0),
        seed=_count(spec, "seed", "seed", 0, minimum=0),
    )


def _known(where: str, spec: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(map(str, set(spec) - allowed))
    if unknown:
        raise CrystalgenInputError(f"design job {where}: unknown field(s) {', '.join(unknown)} "
                                   f"(known: {', '.join(sorted(allowed))})")


def _mapping(spec: Mapping[str, Any], key: str) -> Mapping[str, Any]:
    value = spec.get(key) or {}
    if not isinstance(value, Mapping):
        raise CrystalgenInputError(f"design job field {key!r} must be a mapping, got {value!r}")
    return value


def _text(spec: Mapping[str, Any], key: str, default: Any = ...) -> Any:
    if key not in spec or spec[key] is None:
        if default is ...:
            raise CrystalgenInputError(f"design job: missing field {key!r}")
        return default
    if not isinstance(spec[key], str) or not spec[key].strip():
        raise CrystalgenInputError(f"design job field {key!r} must be a name, got {spec[key]!r}")
    return spec[key].strip()


def _count(spec: Mapping[str, Any], label: str, key: str, default: int, minimum: int = 1) -> int:
    value = spec.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CrystalgenInputError(f"design job field {label!r} must be an integer >= {minimum}, got {value!r}")
    return value


def _positive(spec: Mapping[str, Any], label: str, key: str) -> float | None:
    value = spec.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise CrystalgenInputError(f"design job field {label!r} must be a positive number of seconds, got {value!r}")
    return float(value)


def _flag(spec: Mapping[str, Any], key: str, default: bool) -> bool:
    value = spec.get(key, default)
    if not isinstance(value, bool):
        raise CrystalgenInputError(f"design job field 'constraints.{key}' must be true or false, got {value!r}")
    return value


def _constraints(spec: Mapping[str, Any]) -> Constraints:
    _known("constraints", spec, _CONSTRAINT_KEYS)
    try:
        target = Target.parse(spec.get("composition"), spec.get("spacegroup"), spec.get("elements"))
    except CrystalgenInputError as exc:
        raise CrystalgenInputError(f"design job field 'constraints': {exc}") from None
    max_atoms = spec.get("max_atoms")
    if max_atoms is not None:
        max_atoms = _count(spec, "constraints.max_atoms", "max_atoms", 1)
    return Constraints(target, max_atoms, _flag(spec, "smact", True), _flag(spec, "unique", True),
                       _flag(spec, "novel", True))


def _strategy(spec: Any) -> Strategy:
    if isinstance(spec, str):
        spec = {"name": spec}
    if not isinstance(spec, Mapping) or spec.get("name") not in STRATEGIES:
        raise CrystalgenInputError(f"design job field 'strategy': name one of {', '.join(STRATEGIES)}, got {spec!r}")
    name = spec["name"]
    _known(f"strategy {name!r}", spec, _STRATEGY_KEYS[name])
    settings = {k: v for k, v in spec.items() if k != "name"}
    if name == "screen":
        settings["strength"] = 0.0
    elif name != "latent":
        settings.setdefault("strength", 1.0)
    try:
        return Strategy(name, LatentSettings(**settings) if name == "latent" else OptimiseSettings(**settings))
    except (CrystalgenInputError, TypeError) as exc:
        raise CrystalgenInputError(f"design job field 'strategy': {exc}") from None
