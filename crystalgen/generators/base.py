"""The interface every generator implements.

A generator is asked for :class:`~crystalgen.generators.target.Target` s and answers with ``n``
crystals per target. What it can be asked is declared in its
:class:`~crystalgen.models.capabilities.Capabilities`; :meth:`Generator.sample` checks every target
and option against them before the family's own :meth:`Generator._sample` runs. It is fitted on a
data protocol and saved to a checkpoint folder (see :mod:`crystalgen.models.store`).
"""

from __future__ import annotations

from abc import abstractmethod
from typing import ClassVar, Sequence

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.options import SampleOptions
from crystalgen.generators.target import PropertyTarget, Target
from crystalgen.models.base import GENERATOR, Model


class Generator(Model):
    """Base class of every generator family.

    Subclasses set :attr:`family`, declare :meth:`capabilities_for`, implement :meth:`fit`,
    :meth:`_sample`, :meth:`state` / :meth:`load_state` and :attr:`is_fitted`, and are registered in
    :data:`crystalgen.models.registry.FAMILIES`.
    """

    kind: ClassVar[str] = GENERATOR

    @property
    def max_atoms(self) -> int | None:
        return self.config.get("max_atoms")

    def check_target(self, target: Target) -> None:
        """Reject a target this model cannot serve, with a one-line reason."""
        self.capabilities.check_target(target, self.name)
        limit = self.max_atoms
        if limit is not None and target.num_atoms is not None and target.num_atoms > limit:
            what = f"{target.label} has {target.num_atoms} atoms" if target.composition is not None else \
                f"{target.num_atoms} atoms per cell is"
            raise CrystalgenInputError(f"{what} beyond model {self.name!r}'s limit of {limit}")

    def check_options(self, options: SampleOptions) -> None:
        """Reject sample options this model would ignore, or values it cannot use, with a one-line reason."""
        self.capabilities.check_options(options, self.name)

    def require_fitted(self) -> None:
        """Refuse to sample from a model that was never trained (or indexed), with a one-line reason."""
        if not self.is_fitted:
            raise CrystalgenInputError(f"model {self.name!r} is not fitted; use a checkpoint (see `crystalgen models`)")

    def sample(self, targets: Sequence[Target], n: int = 1, seed: int = 0,
               options: SampleOptions | None = None) -> list[list[Crystal]]:
        """``n`` crystals for each target (fewer if the generator cannot make that many)."""
        options = options or SampleOptions()
        self.require_fitted()
        self.check_options(options)
        for target in dict.fromkeys(targets):
            self.check_target(target)
        return self._sample(list(targets), n, seed, options)

    @abstractmethod
    def _sample(self, targets: list[Target], n: int, seed: int, options: SampleOptions) -> list[list[Crystal]]:
        """The family's sampling, for targets and options already checked."""

    def sampling_report(self) -> dict | None:
        """What the family counted while sampling in this process (e.g. decodes that failed, by
        cause), for benchmark reports; None when it counts nothing."""
        return None

    def describe_sampling(self, options: SampleOptions | None = None) -> str:
        """How this model samples with ``options``, for reports."""
        return "not applicable"


__all__ = ["Generator", "PropertyTarget", "SampleOptions", "Target"]
