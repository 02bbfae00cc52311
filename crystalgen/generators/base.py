"""The small interface every generator implements, and what it is asked for.

A generator is asked for :class:`Target` s: a composition (crystal structure prediction), a
composition with a space group, a space group alone, or nothing (generation from scratch). It
answers with ``n`` crystals per target. It is fitted on a data protocol and saved to a checkpoint
folder (see :mod:`crystalgen.generators.checkpoint`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Sequence

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.validation import check_spacegroup_compatible, parse_formula, validate_spacegroup

TASKS = ("csp", "gen", "both")


@dataclass(frozen=True)
class Target:
    """What to generate. ``composition`` is the full cell (atom counts), not a reduced formula."""

    composition: Any = None  # pymatgen Composition; kept loose so this module imports fast
    spacegroup: int | None = None

    @classmethod
    def parse(cls, formula: str | None = None, spacegroup: int | str | None = None) -> "Target":
        """Validate user input; raises a one-line :class:`CrystalgenInputError` when it is bad."""
        composition = parse_formula(formula) if formula else None
        number = validate_spacegroup(spacegroup) if spacegroup not in (None, "") else None
        if composition is not None and number is not None:
            check_spacegroup_compatible(composition, number)
        return cls(composition, number)

    @classmethod
    def from_crystal(cls, crystal: Crystal, spacegroup: int | None = None) -> "Target":
        return cls(crystal.composition, spacegroup)

    @property
    def num_atoms(self) -> int | None:
        return None if self.composition is None else int(round(self.composition.num_atoms))

    @property
    def label(self) -> str:
        parts = []
        if self.composition is not None:
            parts.append(self.composition.formula.replace(" ", ""))
        if self.spacegroup is not None:
            parts.append(f"sg{self.spacegroup}")
        return "|".join(parts) or "unconditional"


@dataclass
class GeneratorInfo:
    """What ``crystalgen models`` shows about a model."""

    name: str
    family: str
    task: str
    dataset: str | None = None
    protocol: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: str | None = None


class Generator(ABC):
    """Base class of every generator family.

    Subclasses set :attr:`family` and :attr:`task`, implement :meth:`fit`, :meth:`sample`,
    :meth:`state` / :meth:`from_state`, and register themselves in
    :data:`crystalgen.generators.registry.FAMILIES`.
    """

    family: ClassVar[str]
    task: ClassVar[str]
    #: Trained by gradient descent: ``fit`` then also takes ``run_dir``, ``resume`` and ``time_limit_s``.
    learned: ClassVar[bool] = False

    def __init__(self, config: dict | None = None):
        self.config: dict[str, Any] = dict(config or {})
        self.name: str = self.config.get("name", self.family)

    # -------------------------------------------------------------- to implement
    @abstractmethod
    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None) -> None:
        """Train (or index) on the training split(s) of a data protocol."""

    @abstractmethod
    def sample(self, targets: Sequence[Target], n: int = 1, seed: int = 0) -> list[list[Crystal]]:
        """``n`` crystals for each target (fewer if the generator cannot make that many)."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Arrays to store in ``model.safetensors`` (name -> numpy array or torch tensor)."""

    @abstractmethod
    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        """Restore from :meth:`state`'s arrays (and the data directory, where the family needs it)."""

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    # -------------------------------------------------------------- shared behaviour
    @property
    def max_atoms(self) -> int | None:
        return self.config.get("max_atoms")

    @property
    def protocol(self) -> str | None:
        return self.config.get("protocol")

    def check_target(self, target: Target) -> None:
        """Reject targets this model cannot serve, with a one-line reason."""
        limit = self.max_atoms
        if limit is not None and target.num_atoms is not None and target.num_atoms > limit:
            raise CrystalgenInputError(
                f"{target.label} has {target.num_atoms} atoms, beyond model {self.name!r}'s limit of {limit}"
            )

    def info(self, path: str | Path | None = None, metrics: dict | None = None) -> GeneratorInfo:
        return GeneratorInfo(
            self.name, self.family, self.task, self.config.get("dataset"), self.protocol, dict(metrics or {}),
            str(path) if path else None,
        )
