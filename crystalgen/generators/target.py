"""What a generator is asked for: :class:`Target` (composition, space group, element set, atom
count, property targets) and its :class:`PropertyTarget` s.

A target with a composition is a crystal structure prediction; one without is generation from
scratch, optionally constrained. Which conditions a model accepts is declared in its
:class:`~crystalgen.models.capabilities.Capabilities`.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from crystalgen.errors import CrystalgenInputError
from crystalgen.validation import check_spacegroup_compatible, parse_formula, validate_element, validate_spacegroup

DIRECTIONS = ("minimise", "maximise")
_DIRECTION_WORDS = {"min": "minimise", "minimize": "minimise", "minimise": "minimise",
                    "max": "maximise", "maximize": "maximise", "maximise": "maximise"}
if TYPE_CHECKING:
    import numpy as np

_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_.]*$")
_ELEMENT_SEPARATORS = re.compile(r"[-,\s]+")


@dataclass(frozen=True)
class PropertyTarget:
    """A property with exactly one of: a target ``value``, a ``range`` (low, high), or a ``direction``."""

    name: str
    value: float | None = None
    range: tuple[float, float] | None = None
    direction: str | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not _NAME.match(self.name):
            raise CrystalgenInputError(f"property target needs a property name, got {self.name!r}")
        given = [x is not None for x in (self.value, self.range, self.direction)]
        if sum(given) != 1:
            raise CrystalgenInputError(f"property target {self.name!r} needs exactly one of a value, a range "
                                       "or a direction (minimise/maximise)")
        if self.direction is not None and self.direction not in DIRECTIONS:
            raise CrystalgenInputError(f"property target {self.name!r}: direction must be minimise or maximise, "
                                       f"got {self.direction!r}")
        numbers = [self.value] if self.value is not None else list(self.range or ())
        if any(not isinstance(x, (int, float)) or not math.isfinite(x) for x in numbers):
            raise CrystalgenInputError(f"property target {self.name!r}: values must be finite numbers")
        if self.range is not None and (len(self.range) != 2 or self.range[0] > self.range[1]):
            raise CrystalgenInputError(f"property target {self.name!r}: a range is (low, high) with low <= high")

    @classmethod
    def parse(cls, text: str) -> "PropertyTarget":
        """``band_gap=1.5``, ``band_gap=1:2`` (a range), ``formation_energy_per_atom=min`` or ``=max``."""
        name, sep, goal = (text or "").partition("=")
        name, goal = name.strip(), goal.strip()
        if not sep or not goal:
            raise CrystalgenInputError(f"property target {text!r}: write NAME=VALUE, NAME=LOW:HIGH, NAME=min or NAME=max")
        if goal.lower() in _DIRECTION_WORDS:
            return cls(name, direction=_DIRECTION_WORDS[goal.lower()])
        try:
            numbers = [float(x) for x in goal.split(":", 1)]
        except ValueError:
            raise CrystalgenInputError(f"property target {text!r}: {goal!r} is not a number, a LOW:HIGH range, "
                                       "min or max") from None
        return cls(name, range=(numbers[0], numbers[1])) if len(numbers) == 2 else cls(name, value=numbers[0])

    @property
    def label(self) -> str:
        if self.value is not None:
            return f"{self.name}={self.value:g}"
        if self.range is not None:
            return f"{self.name}={self.range[0]:g}:{self.range[1]:g}"
        return f"{self.name}={self.direction}"


@dataclass(frozen=True)
class Target:
    """What to generate. ``composition`` is the full cell (atom counts), not a reduced formula.

    ``num_atoms`` follows from a composition; without one it is an optional constraint of its own.
    ``elements`` restricts generation to a chemical system (a composition's elements must lie in it).
    """

    composition: Any = None  # pymatgen Composition; kept loose so this module imports fast
    spacegroup: int | None = None
    elements: frozenset[str] | None = None
    num_atoms: int | None = None
    properties: tuple[PropertyTarget, ...] = ()

    def __post_init__(self) -> None:
        if self.composition is not None:
            counted = int(round(self.composition.num_atoms))
            if self.num_atoms is not None and self.num_atoms != counted:
                raise CrystalgenInputError(f"{self.composition.formula.replace(' ', '')} has {counted} atoms, "
                                           f"not the {self.num_atoms} asked for")
            object.__setattr__(self, "num_atoms", counted)
        elif self.num_atoms is not None and (not isinstance(self.num_atoms, int) or self.num_atoms < 1):
            raise CrystalgenInputError(f"an atom count must be a positive integer, got {self.num_atoms!r}")
        if self.elements is not None:
            object.__setattr__(self, "elements", frozenset(self.elements))
            if not self.elements:
                raise CrystalgenInputError("an element set needs at least one element")
            if self.composition is not None:
                outside = sorted({el.symbol for el in self.composition} - self.elements)
                if outside:
                    raise CrystalgenInputError(f"{', '.join(outside)} of the composition lie outside the element set "
                                               f"{'-'.join(sorted(self.elements))}")
        object.__setattr__(self, "properties", tuple(self.properties))

    @classmethod
    def parse(cls, formula: str | None = None, spacegroup: int | str | None = None, elements: str | None = None,
              num_atoms: int | str | None = None, properties: tuple[str, ...] = ()) -> "Target":
        """Validate user input; raises a one-line :class:`CrystalgenInputError` when it is bad.

        ``elements`` is a chemical system such as ``Li-Mn-O`` (or ``Li,Mn,O``); ``properties``
        are :meth:`PropertyTarget.parse` strings.
        """
        composition = parse_formula(formula) if formula else None
        number = validate_spacegroup(spacegroup) if spacegroup not in (None, "") else None
        if composition is not None and number is not None:
            check_spacegroup_compatible(composition, number)
        element_set = None
        if elements is not None:
            element_set = frozenset(validate_element(s) for s in _ELEMENT_SEPARATORS.split(elements.strip()) if s)
        count = None
        if num_atoms not in (None, ""):
            try:
                count = int(str(num_atoms).strip())
            except ValueError:
                raise CrystalgenInputError(f"an atom count must be a positive integer, got {num_atoms!r}") from None
        return cls(composition, number, element_set, count, tuple(PropertyTarget.parse(p) for p in properties))

    @classmethod
    def from_crystal(cls, crystal: Any, spacegroup: int | None = None) -> "Target":
        return cls(crystal.composition, spacegroup)

    def atomic_numbers(self) -> "np.ndarray":
        """One atomic number per atom of the composition (a cell), element by element."""
        import numpy as np

        return np.repeat([el.Z for el in self.composition], [int(round(a)) for a in self.composition.values()])

    def conditions(self) -> list[str]:
        """The conditions this target sets, in :data:`crystalgen.models.capabilities.CONDITIONS` terms
        (an atom count implied by the composition is not a condition of its own)."""
        present = {"composition": self.composition is not None, "spacegroup": self.spacegroup is not None,
                   "elements": self.elements is not None,
                   "num_atoms": self.composition is None and self.num_atoms is not None,
                   "properties": bool(self.properties)}
        return [name for name, on in present.items() if on]

    @property
    def label(self) -> str:
        parts = []
        if self.composition is not None:
            parts.append(self.composition.formula.replace(" ", ""))
        elif self.num_atoms is not None:
            parts.append(f"{self.num_atoms}atoms")
        if self.elements is not None:
            parts.append("-".join(sorted(self.elements)))
        if self.spacegroup is not None:
            parts.append(f"sg{self.spacegroup}")
        parts.extend(p.label for p in self.properties)
        return "|".join(parts) or "unconditional"
