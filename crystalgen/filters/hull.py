"""A reference convex hull from a training set's energies, and energies above it for candidates.

The hull energy at a composition x is the lowest energy per atom any mix of reference phases with
overall composition x reaches: ``min sum_k w_k e_k`` subject to ``sum_k w_k c_k = x``, ``w >= 0``
(c_k: the phases' element fractions). That is a small linear programme over the reference entries
of the candidate's chemical system (its elements and their subsystems), solved with scipy's HiGHS;
the same lower convex envelope pymatgen's ``PhaseDiagram`` builds, without building a full
diagram per system. Two kinds of reference energy:

* ``formation``: formation energies per atom, with every element's reference at 0 eV/atom;
* ``total``: absolute energies per atom; the elemental references come from the training set
  itself (for carbon_24, graphite and diamond polymorphs), so a system whose elements lack one has
  no hull (NaN).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.metrics.validity import composition_key

REFERENCE_KINDS = ("formation", "total")
#: Element fractions are rounded to this many digits for the per-composition cache key.
FRACTION_DIGITS = 10
#: Composition key: ((Z, count), ...) sorted by Z.
Counts = tuple[tuple[int, int], ...]


def element_counts(item: "Crystal | str | dict | Counts") -> Counts:
    """((Z, count), ...) of a crystal, a formula, a {symbol or Z: amount} mapping or a key."""
    if isinstance(item, Crystal):
        return composition_key(item)  # reduced counts: the same element fractions
    if isinstance(item, tuple):
        return item
    from pymatgen.core import Composition

    composition = Composition(item)
    return tuple(sorted((el.Z, amount) for el, amount in composition.element_composition.items()))


class ReferenceHull:
    """Energies above a hull of reference compositions and per-atom energies."""

    def __init__(self, compositions: Sequence, energies_per_atom: Sequence[float], kind: str = "formation"):
        if kind not in REFERENCE_KINDS:
            raise CrystalgenInputError(f"hull reference must be one of {', '.join(REFERENCE_KINDS)}, got {kind!r}")
        self.kind = kind
        #: chemical system (frozenset of Z) -> list of ({Z: fraction}, energy per atom)
        self._by_system: dict[frozenset[int], list[tuple[dict[int, float], float]]] = defaultdict(list)
        for composition, energy in zip(compositions, energies_per_atom):
            if energy is None or not np.isfinite(energy):
                continue
            counts = element_counts(composition)
            total = float(sum(n for _, n in counts))
            self._by_system[frozenset(z for z, _ in counts)].append(({z: n / total for z, n in counts}, float(energy)))
        self.size = sum(len(v) for v in self._by_system.values())
        self._cache: dict[Counts, float] = {}

    @classmethod
    def from_crystals(cls, crystals: Sequence[Crystal], energy_property: str, kind: str = "formation") -> "ReferenceHull":
        """The hull of the crystals that have ``energy_property`` (per atom)."""
        with_energy = [c for c in crystals if energy_property in c.properties]
        return cls(with_energy, [c.properties[energy_property] for c in with_energy], kind)

    def _entries(self, system: frozenset[int]) -> list[tuple[dict[int, float], float]]:
        """Reference entries of ``system`` and all its subsystems (scanning the stored systems, not
        the 2^n subsets, so a many-element candidate stays cheap)."""
        entries = []
        for stored, members in self._by_system.items():
            if stored <= system:
                entries += members
        if self.kind == "formation":
            entries += [({z: 1.0}, 0.0) for z in system]
        return entries

    def _solve(self, counts: Counts) -> float:
        from scipy.optimize import linprog

        elements = [z for z, _ in counts]
        system = frozenset(elements)
        entries = self._entries(system)
        present = {z for fractions, _ in entries for z in fractions if fractions[z] > 0 and len(fractions) == 1}
        if not system <= present and self.kind == "total":
            return float("nan")  # no elemental reference for some element: the hull is not closed
        total = float(sum(n for _, n in counts))
        target = np.array([n / total for _, n in counts])
        if all(len(fractions) == 1 for fractions, _ in entries):
            # only elemental phases: the cheapest mix is each element's lowest energy, weighted (no LP needed)
            lowest = {z: min(e for fractions, e in entries if z in fractions) for z in elements}
            return float(sum(x * lowest[z] for z, x in zip(elements, target)))
        matrix = np.array([[fractions.get(z, 0.0) for fractions, _ in entries] for z in elements])
        energies = np.array([energy for _, energy in entries])
        result = linprog(energies, A_eq=matrix, b_eq=target, bounds=(0, None), method="highs")
        return float(result.fun) if result.status == 0 else float("nan")

    def hull_energy_per_atom(self, composition: "Crystal | str | dict | Counts") -> float:
        """The hull's energy per atom at ``composition`` (NaN where no hull can be built)."""
        counts = element_counts(composition)
        total = float(sum(n for _, n in counts))
        key = tuple((z, round(n / total, FRACTION_DIGITS)) for z, n in counts)  # the reduced composition
        if key not in self._cache:
            self._cache[key] = self._solve(counts)
        return self._cache[key]

    def energy_above_hull(self, compositions: Sequence["Crystal | str | dict | Counts"], energies_per_atom: np.ndarray
                          ) -> np.ndarray:
        """E - E_hull(composition) per candidate, eV/atom."""
        hull = np.array([self.hull_energy_per_atom(c) for c in compositions], dtype=np.float64)
        return np.asarray(energies_per_atom, dtype=np.float64) - hull
