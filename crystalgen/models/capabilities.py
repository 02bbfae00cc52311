"""What a model family can do, declared once per family and asked by the CLI and the benchmarks.

A :class:`Capabilities` says which tasks a model does (crystal structure prediction, generation
from scratch), which conditions a :class:`~crystalgen.generators.target.Target` may carry for it,
and which :class:`~crystalgen.generators.options.SampleOptions` it honours. Nothing else in
crystalgen compares family names or probes attributes to find out.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from crystalgen.errors import CrystalgenInputError

if TYPE_CHECKING:
    from crystalgen.generators.options import SampleOptions
    from crystalgen.generators.target import Target

#: Crystal structure prediction (a composition is given) and generation from scratch (none is).
CSP, GEN = "csp", "gen"
TASKS = (CSP, GEN)
#: Everything a target can condition on (see :meth:`Target.conditions`).
CONDITIONS = ("composition", "spacegroup", "elements", "num_atoms", "properties")
#: Everything a :class:`~crystalgen.generators.options.SampleOptions` can set (its fields).
OPTIONS = ("sampler_steps", "guidance", "temperature", "top_k", "batch_size", "device", "template_source")
#: Options the shared sampling loop applies, around any model: no family needs to declare them.
LOOP_OPTIONS = frozenset({"batch_size"})
_CONDITION_WORDS = {"composition": "a composition", "spacegroup": "a space group", "elements": "an element set",
                    "num_atoms": "an atom count", "properties": "property targets"}


@dataclass(frozen=True)
class Capabilities:
    """Tasks, target conditions and sample options a model serves.

    ``conditions`` are what a target may carry; ``requires`` what every target must carry (a
    Wyckoff CSP model needs the space group), which benchmarks then supply from the ground truth.
    ``options`` are the :class:`SampleOptions` it honours besides :data:`LOOP_OPTIONS`. ``trained`` models are fitted by the shared :class:`~crystalgen.training.Trainer` (steps,
    resume, devices); ``baseline`` marks the reference method that reports of other models show
    beside them (the template baseline).
    """

    tasks: frozenset[str] = frozenset()
    conditions: frozenset[str] = frozenset()
    requires: frozenset[str] = frozenset()
    options: frozenset[str] = frozenset()
    trained: bool = False
    baseline: bool = False

    def __post_init__(self) -> None:
        unknown = (set(self.tasks) - set(TASKS)) | (set(self.conditions) - set(CONDITIONS)) | (set(self.options) - set(OPTIONS))
        if unknown:
            raise ValueError(f"unknown capabilities: {', '.join(sorted(unknown))}")
        if not self.requires <= self.conditions:
            raise ValueError(f"required conditions must be accepted conditions: {', '.join(sorted(self.requires))}")

    def does(self, task: str) -> bool:
        return task in self.tasks

    @property
    def task_label(self) -> str:
        """``csp``, ``gen``, ``csp+gen``, or ``predict`` for a model that generates nothing."""
        return "+".join(t for t in TASKS if t in self.tasks) or "predict"

    def check_target(self, target: "Target", model: str) -> None:
        """A one-line error when ``target`` asks for a task or a condition this model does not serve."""
        if target.composition is not None and not self.does(CSP):
            raise CrystalgenInputError(f"model {model!r} generates from scratch and takes no composition; "
                                       "use a CSP model")
        if target.composition is None and not self.does(GEN):
            raise CrystalgenInputError(f"model {model!r} does crystal structure prediction: give a composition")
        absent = [c for c in CONDITIONS if c in self.requires and c not in target.conditions() and c != "composition"]
        if absent:
            raise CrystalgenInputError(f"model {model!r} needs {' and '.join(_CONDITION_WORDS[c] for c in absent)} "
                                       "for every target")
        missing = [c for c in target.conditions() if c not in self.conditions]
        if missing:
            served = ", ".join(_CONDITION_WORDS[c] for c in CONDITIONS if c in self.conditions) or "nothing"
            raise CrystalgenInputError(f"model {model!r} cannot condition on {' or '.join(_CONDITION_WORDS[c] for c in missing)}"
                                       f" (it conditions on: {served})")

    def check_options(self, options: "SampleOptions", model: str) -> None:
        """A one-line error for a sample option this model would silently ignore."""
        unused = [name for name in options.set_fields() if name not in self.options | LOOP_OPTIONS]
        if unused:
            raise CrystalgenInputError(f"model {model!r} does not take the sample option(s) {', '.join(unused)}")
