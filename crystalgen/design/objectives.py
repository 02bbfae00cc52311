"""What a design job asks for: :class:`Objective` s on predicted properties, and how candidates are
scored against them, both as numbers (ranking, hits) and as a differentiable guidance loss.

A property is one a property model predicts (a surrogate's ``formation_energy_per_atom``,
``band_gap``, ``heat_ref``, ``energy_per_atom``) or a derived one:

* ``density`` in g/cm^3, from the crystal itself;
* ``e_hull``, the predicted energy above the reference hull of the training set's energies
  (:class:`~crystalgen.filters.hull.ReferenceHull`), in eV/atom.

Every objective turns into a penalty in units of its property's scale (lower is better):
``((x - value) / scale)^2`` for a value, the squared distance outside a range, ``x / scale`` to
minimise and ``-x / scale`` to maximise. An objective may also say what counts as a *hit*: inside
its range, within ``tolerance`` of its value, or beyond ``hit_below`` / ``hit_above``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.guidance import CrystalEstimate, CrystalGuidance
from crystalgen.generators.target import PropertyTarget
from crystalgen.metrics.distribution import AMU_PER_A3_TO_G_PER_CM3, atomic_masses, densities

DENSITY, E_HULL = "density", "e_hull"
DERIVED_PROPERTIES = (DENSITY, E_HULL)
#: The scale of density penalties, g/cm^3 (about the spread of inorganic crystal densities).
DENSITY_SCALE = 1.0
GOALS = ("value", "range", "minimise", "maximise")
_GOAL_KEYS = {"value": "value", "range": "range", "at_most": "range", "at_least": "range", "minimise": "minimise",
              "minimize": "minimise", "maximise": "maximise", "maximize": "maximise"}
_OPTIONAL_KEYS = {"tolerance", "hit_below", "hit_above", "weight"}

Values = Mapping[str, tuple[Any, Any]]  # property -> (mean, std), numpy arrays or torch tensors


@dataclass(frozen=True)
class Objective:
    """One property goal. ``low``/``high`` bound a range (either may be open: ``None``)."""

    property: str
    goal: str
    value: float | None = None
    low: float | None = None
    high: float | None = None
    tolerance: float | None = None
    hit_below: float | None = None
    hit_above: float | None = None
    weight: float = 1.0

    def __post_init__(self) -> None:
        where = f"objective {self.property!r}"
        if self.goal not in GOALS:
            raise CrystalgenInputError(f"{where}: goal must be one of {', '.join(GOALS)}, got {self.goal!r}")
        for name in ("value", "low", "high", "tolerance", "hit_below", "hit_above", "weight"):
            number = getattr(self, name)
            if number is not None and (isinstance(number, bool) or not isinstance(number, (int, float))
                                       or not math.isfinite(number)):
                raise CrystalgenInputError(f"{where}: {name} must be a finite number, got {number!r}")
        if self.goal == "value" and self.value is None:
            raise CrystalgenInputError(f"{where}: a value goal needs a value")
        if self.goal == "range" and (self.low is None and self.high is None):
            raise CrystalgenInputError(f"{where}: a range needs a low or a high bound")
        if self.low is not None and self.high is not None and self.low > self.high:
            raise CrystalgenInputError(f"{where}: a range is [low, high] with low <= high")
        if self.tolerance is not None and (self.goal != "value" or self.tolerance < 0):
            raise CrystalgenInputError(f"{where}: tolerance is a non-negative number, for a value goal only")
        if self.hit_below is not None and self.goal != "minimise" or self.hit_above is not None and self.goal != "maximise":
            raise CrystalgenInputError(f"{where}: hit_below goes with minimise, hit_above with maximise")
        if self.weight <= 0:
            raise CrystalgenInputError(f"{where}: weight must be > 0, got {self.weight!r}")

    @classmethod
    def parse(cls, name: str, spec: Any) -> "Objective":
        """From a job file: ``min``, ``max``, ``1.5:2.5`` or ``2.0`` (as ``--property``), or a mapping
        with one of value / range / at_most / at_least / minimise / maximise, and optionally
        tolerance, hit_below, hit_above and weight."""
        if isinstance(spec, (str, int, float)) and not isinstance(spec, bool):
            target = PropertyTarget.parse(f"{name}={spec}")
            if target.direction is not None:
                return cls(name, target.direction)
            if target.range is not None:
                return cls(name, "range", low=target.range[0], high=target.range[1])
            return cls(name, "value", value=target.value)
        if not isinstance(spec, Mapping):
            raise CrystalgenInputError(f"objective {name!r}: expected a goal such as min, max, LOW:HIGH, a number, "
                                       f"or a mapping, got {spec!r}")
        goals = [key for key in spec if key in _GOAL_KEYS]
        unknown = sorted(set(spec) - set(_GOAL_KEYS) - _OPTIONAL_KEYS)
        if unknown or len(goals) != 1:
            problem = f"unknown key(s) {', '.join(map(str, unknown))}" if unknown else \
                f"give exactly one of {', '.join(sorted(_GOAL_KEYS))}"
            raise CrystalgenInputError(f"objective {name!r}: {problem}")
        key = goals[0]
        options = {k: spec[k] for k in _OPTIONAL_KEYS if k in spec}
        given = spec[key]
        if key == "range":
            if not isinstance(given, Sequence) or isinstance(given, str) or len(given) != 2:
                raise CrystalgenInputError(f"objective {name!r}: range must be [low, high], got {given!r}")
            return cls(name, "range", low=given[0], high=given[1], **options)
        if key in ("at_most", "at_least"):
            bound = {"high" if key == "at_most" else "low": given}
            return cls(name, "range", **bound, **options)
        if key == "value":
            return cls(name, "value", value=given, **options)
        if given is not True:
            raise CrystalgenInputError(f"objective {name!r}: {key} takes true, got {given!r}")
        return cls(name, _GOAL_KEYS[key], **options)

    @property
    def label(self) -> str:
        if self.goal == "value":
            return f"{self.property} = {self.value:g}" + (f" ± {self.tolerance:g}" if self.tolerance is not None else "")
        if self.goal == "range":
            if self.low is None:
                return f"{self.property} <= {self.high:g}"
            return f"{self.property} >= {self.low:g}" if self.high is None else \
                f"{self.property} in [{self.low:g}, {self.high:g}]"
        threshold = self.hit_below if self.goal == "minimise" else self.hit_above
        sign = "<" if self.goal == "minimise" else ">"
        return f"{self.goal} {self.property}" + (f" (hit: {sign} {threshold:g})" if threshold is not None else "")

    def penalty(self, x: Any, scale: float) -> Any:
        """Lower is better; works on numpy arrays and (differentiably) on torch tensors."""
        if self.goal == "value":
            return ((x - self.value) / scale) ** 2
        if self.goal == "range":
            outside = 0.0 * x
            if self.low is not None:
                outside = outside + _relu(self.low - x)
            if self.high is not None:
                outside = outside + _relu(x - self.high)
            return (outside / scale) ** 2
        return x / scale if self.goal == "minimise" else -x / scale

    def hit(self, x: np.ndarray) -> np.ndarray:
        """(n,) whether each value is a hit (False for NaN); all True if this objective judges none."""
        x = np.asarray(x, dtype=np.float64)
        low, high = self.low, self.high
        if self.goal == "value":
            low, high = (self.value - self.tolerance, self.value + self.tolerance) if self.tolerance is not None \
                else (None, None)
        elif self.goal == "minimise":
            low, high = None, self.hit_below
        elif self.goal == "maximise":
            low, high = self.hit_above, None
        hit = ~np.isnan(x)
        if low is not None:
            hit &= x >= low
        if high is not None:
            hit &= x <= high
        return hit


def _relu(x: Any) -> Any:
    return (x + abs(x)) / 2


def total_penalty(objectives: Sequence[Objective], values: Values, scales: Mapping[str, float],
                  uncertainty_weight: float = 0.0) -> Any:
    """The weighted sum of penalties, plus ``uncertainty_weight`` times each property's predicted
    std in units of its scale: a pessimistic score, so the search does not chase the property
    model's confident-looking mistakes in regions it has not seen."""
    total = 0.0
    for objective in objectives:
        mean, std = values[objective.property]
        scale = scales[objective.property]
        term = objective.penalty(mean, scale)
        if uncertainty_weight:
            term = term + uncertainty_weight * _nan_to_zero(std) / scale
        total = total + objective.weight * term
    return total


def _nan_to_zero(x: Any) -> Any:
    return torch.nan_to_num(x) if torch.is_tensor(x) else np.nan_to_num(np.asarray(x, dtype=np.float64))


def hits(objectives: Sequence[Objective], values: Values) -> np.ndarray:
    """(n,) True where every objective's hit rule holds."""
    result = None
    for objective in objectives:
        ok = objective.hit(values[objective.property][0])
        result = ok if result is None else result & ok
    if result is None:
        raise CrystalgenInputError("a design job needs at least one objective")
    return result


# ---------------------------------------------------------------------------------- properties
class PropertyEvaluator:
    """Predicted and derived properties of candidates, from one property model (a surrogate that
    guides, or the oracle that judges) and the reference hull for ``e_hull``."""

    def __init__(self, model: Any, hull: Any = None, energy_property: str | None = None):
        self.model, self.hull, self.energy_property = model, hull, energy_property

    @property
    def properties(self) -> tuple[str, ...]:
        derived = (DENSITY, E_HULL) if self.hull is not None and self.energy_property else (DENSITY,)
        return (*self.model.properties, *derived)

    def check(self, objectives: Sequence[Objective], what: str) -> None:
        for objective in objectives:
            if objective.property not in self.properties:
                raise CrystalgenInputError(f"objective {objective.property!r}: {what} {self.model.name!r} gives "
                                           f"{', '.join(self.properties)}")

    def evaluate(self, crystals: Sequence[Crystal]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """property -> (mean, std) over ``crystals``, NaN where the model cannot predict."""
        values = dict(self.model.predict(crystals)) if crystals else \
            {p: (np.zeros(0), np.zeros(0)) for p in self.model.properties}
        values[DENSITY] = (densities(crystals), np.zeros(len(crystals)))
        if E_HULL in self.properties:
            energy, spread = values[self.energy_property]
            values[E_HULL] = (self.hull.energy_above_hull(crystals, energy), spread)
        return values

    def evaluate_estimate(self, estimate: CrystalEstimate) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """The same on a denoised estimate, differentiably (needs a surrogate: its ensemble's raw spread)."""
        ensemble = self.model.ensemble
        prediction = ensemble.predict(estimate.atom_types, estimate.frac_coords, estimate.lattices, estimate.num_atoms)
        values = {name: (prediction.mean[:, j], prediction.std[:, j]) for j, name in enumerate(self.model.properties)}
        masses = torch.zeros(len(estimate.num_atoms), dtype=estimate.lattices.dtype, device=estimate.lattices.device)
        masses.index_add_(0, estimate.crystal_index, _mass_table(estimate.lattices.device)[estimate.atom_types]
                          .to(masses.dtype))
        values[DENSITY] = (AMU_PER_A3_TO_G_PER_CM3 * masses / estimate.volumes.clamp(min=1e-6), torch.zeros_like(masses))
        if E_HULL in self.properties:
            energy, spread = values[self.energy_property]
            reference = torch.as_tensor(self._hull_energies(estimate), dtype=energy.dtype, device=energy.device)
            values[E_HULL] = (energy - reference, spread)
        return values

    def _hull_energies(self, estimate: CrystalEstimate) -> np.ndarray:
        """The hull energy at each estimated crystal's composition (a constant for the gradient)."""
        types = estimate.atom_types.detach().cpu().numpy()
        bounds = np.concatenate([[0], np.cumsum(estimate.num_atoms.cpu().numpy())])
        energies = []
        for start, stop in zip(bounds[:-1], bounds[1:]):
            elements, counts = np.unique(types[start:stop], return_counts=True)
            energies.append(self.hull.hull_energy_per_atom({int(z): int(n) for z, n in zip(elements, counts)}))
        return np.nan_to_num(np.array(energies, dtype=np.float64))

    def scales(self) -> dict[str, float]:
        """Each property's penalty scale: a surrogate's training std, else 1 (density: DENSITY_SCALE)."""
        stds = getattr(getattr(self.model, "ensemble", None), "property_std", None)
        scales = {name: float(stds[j]) if stds is not None else 1.0 for j, name in enumerate(self.model.properties)}
        scales[DENSITY] = DENSITY_SCALE
        if self.energy_property:
            scales[E_HULL] = scales[self.energy_property]
        return scales


def property_guidance(evaluator: PropertyEvaluator, objectives: Sequence[Objective], strength: float,
                      uncertainty_weight: float = 0.0) -> CrystalGuidance:
    """Classifier guidance toward the objectives, through the surrogate, on the denoised crystal."""
    evaluator.check(objectives, "the guiding surrogate")
    scales = evaluator.scales()

    def objective(estimate: CrystalEstimate) -> torch.Tensor:
        return total_penalty(objectives, evaluator.evaluate_estimate(estimate), scales, uncertainty_weight)

    label = "; ".join(o.label for o in objectives) + f" by {evaluator.model.name}"
    return CrystalGuidance(objective, strength, label)


def _mass_table(device: torch.device | str) -> torch.Tensor:
    """Atomic mass (amu) by atomic number, as a tensor; index 0 (a mask token) weighs nothing."""
    return torch.nan_to_num(torch.as_tensor(atomic_masses(), device=device))
