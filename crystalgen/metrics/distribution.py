"""Property statistics: Wasserstein distances between generated and test distributions.

docs/protocol.md: d_rho (density, g/cm^3), d_E (a property predicted by a model; crystalgen uses
its own surrogate, so d_E is comparable only among crystalgen's rows) and d_elem (number of
distinct elements), computed on 1,000 *valid* generated samples drawn with a fixed seed, against
every test structure. The published code draws the samples with an unseeded
``np.random.choice`` and stops if there are too few valid samples; here the draw is seeded and,
with fewer valid samples than asked for, all of them are used and the count is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.stats import wasserstein_distance

from crystalgen.constants import MAX_Z
from crystalgen.crystal import Crystal
from crystalgen.metrics._util import json_float

#: Valid generated samples the distribution metrics use.
N_DISTRIBUTION_SAMPLES = 1000
#: Seed of the sample draw, fixed so that reruns give the same figures.
DISTRIBUTION_SEED = 0
#: g/cm^3 per (atomic mass unit / Å^3).
AMU_PER_A3_TO_G_PER_CM3 = 1.66053906660

PropertyFn = Callable[[list[Crystal]], Sequence[float]]


def wasserstein(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray) -> float:
    """1-D Wasserstein (earth mover's) distance; NaN values are dropped, NaN if either side is empty."""
    a = np.asarray(a, dtype=np.float64).ravel()
    b = np.asarray(b, dtype=np.float64).ravel()
    a, b = a[np.isfinite(a)], b[np.isfinite(b)]
    if len(a) == 0 or len(b) == 0:
        return float("nan")
    return float(wasserstein_distance(a, b))


def densities(crystals: Sequence[Crystal]) -> np.ndarray:
    """Mass densities in g/cm^3 (same numbers as pymatgen's ``Structure.density``, without building one)."""
    masses = atomic_masses()
    out = np.full(len(crystals), np.nan)
    for i, c in enumerate(crystals):
        volume = abs(np.linalg.det(c.lattice))
        if volume > 0:
            out[i] = masses[c.atomic_numbers].sum() / volume * AMU_PER_A3_TO_G_PER_CM3
    return out


@lru_cache(maxsize=1)
def atomic_masses() -> np.ndarray:
    """Atomic mass (amu) indexed by atomic number, as pymatgen has them."""
    from pymatgen.core.periodic_table import Element

    masses = np.full(MAX_Z + 1, np.nan)
    for z in range(1, MAX_Z + 1):
        masses[z] = float(Element.from_Z(z).atomic_mass)
    return masses


def num_elements(crystals: Sequence[Crystal]) -> np.ndarray:
    """Number of distinct elements of each crystal."""
    return np.array([len(np.unique(c.atomic_numbers)) for c in crystals], dtype=np.float64)


def sample_valid(
    valid: Sequence[bool] | np.ndarray, n: int = N_DISTRIBUTION_SAMPLES, seed: int = DISTRIBUTION_SEED
) -> np.ndarray:
    """Indices of ``n`` valid structures drawn without replacement with a fixed seed (all if fewer), sorted."""
    candidates = np.flatnonzero(np.asarray(valid, dtype=bool))
    if len(candidates) <= n:
        return candidates
    rng = np.random.default_rng(seed)
    return np.sort(rng.choice(candidates, size=n, replace=False))


@dataclass
class DistributionResult:
    """Wasserstein distances between generated (valid sample) and test distributions."""

    d_rho: float
    d_elem: float
    d_prop: float | None  # None when no property function was given
    n_samples: int  # valid generated samples used
    n_test: int
    seed: int

    def to_dict(self) -> dict[str, Any]:
        return {
            "d_rho": json_float(self.d_rho),
            "d_elem": json_float(self.d_elem),
            "d_prop": json_float(self.d_prop),
            "n_samples": self.n_samples,
            "n_test": self.n_test,
            "seed": self.seed,
        }


def evaluate_distribution(
    generated: Sequence[Crystal],
    test: Sequence[Crystal],
    valid: Sequence[bool] | np.ndarray,
    property_fn: PropertyFn | None = None,
    n_samples: int = N_DISTRIBUTION_SAMPLES,
    seed: int = DISTRIBUTION_SEED,
    test_property: Sequence[float] | np.ndarray | None = None,
) -> DistributionResult:
    """d_rho, d_elem and (with ``property_fn``) d_prop on a seeded sample of valid generated structures.

    ``property_fn`` maps a list of crystals to one value each; ``test_property`` may supply the
    test side precomputed (it does not change between models).
    """
    index = sample_valid(valid, n_samples, seed)
    sample = [generated[i] for i in index]
    test = list(test)
    d_prop = None
    if property_fn is not None:
        test_values = property_fn(test) if test_property is None else test_property
        d_prop = wasserstein(property_fn(sample), test_values) if sample else float("nan")
    return DistributionResult(
        d_rho=wasserstein(densities(sample), densities(test)),
        d_elem=wasserstein(num_elements(sample), num_elements(test)),
        d_prop=d_prop,
        n_samples=len(sample),
        n_test=len(test),
        seed=seed,
    )
