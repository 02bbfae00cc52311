"""How to sample: one :class:`SampleOptions` object for every family.

A family declares which options it honours (``Capabilities.options``); setting one it would
ignore is refused with a one-line error rather than silently dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from crystalgen.errors import CrystalgenInputError
from crystalgen.models.base import DEVICES


@dataclass(frozen=True)
class SampleOptions:
    """``None`` (or the default) means "the model's own setting".

    * ``sampler_steps``: reverse-diffusion steps (diffusion families);
    * ``guidance``: a :class:`~crystalgen.generators.guidance.CrystalGuidance` (an objective on the
      denoised crystal and a strength), applied by the diffusion sampler's guidance hook;
    * ``temperature`` and ``top_k``: autoregressive decoding;
    * ``batch_size``: targets per model call (also how often output is written);
    * ``device``: ``auto``, ``cpu`` or ``cuda``;
    * ``template_source``: where a template-based family takes its templates (the Wyckoff family:
      ``retrieval``, ``spacegroup``, ``scratch``, or the ``random-placement`` control).
    """

    sampler_steps: int | None = None
    guidance: Any = None
    temperature: float | None = None
    top_k: int | None = None
    batch_size: int | None = None
    device: str | None = None
    template_source: str | None = None

    def __post_init__(self) -> None:
        for name in ("sampler_steps", "top_k", "batch_size"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
                raise CrystalgenInputError(f"sample option {name} must be a positive integer, got {value!r}")
        if self.temperature is not None and not self.temperature > 0:
            raise CrystalgenInputError(f"sample option temperature must be > 0, got {self.temperature!r}")
        if self.device is not None and self.device not in DEVICES:
            raise CrystalgenInputError(f"sample option device must be one of {', '.join(DEVICES)}, got {self.device!r}")

    def set_fields(self) -> list[str]:
        """The options that are set (differ from "the model's own"). A device of ``cpu`` or ``auto``
        is not: every model runs on the CPU, which is what ``auto`` is for one that cannot use a GPU."""
        unset = {"device": (None, "cpu", "auto")}
        return [f.name for f in fields(self) if getattr(self, f.name) not in unset.get(f.name, (None,))]
