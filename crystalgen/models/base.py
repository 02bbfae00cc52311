"""What every model in the store is, generator or property model: a family, a config, a fit on a
data protocol, and the arrays a checkpoint stores."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import Any, ClassVar

from crystalgen.models.capabilities import Capabilities

GENERATOR, PROPERTY = "generator", "property"
KINDS = (GENERATOR, PROPERTY)
DEVICES = ("auto", "cpu", "cuda")


@dataclass(frozen=True)
class TrainingRun:
    """How a fit runs: where its resumable state goes, whether to resume it, for how long, on what.

    ``device`` is ``auto`` (CUDA when available), ``cpu`` or ``cuda``; ``bf16`` enables bf16
    autocast on CUDA. Families that are not trained by gradient descent ignore all of it.
    """

    run_dir: str | os.PathLike | None = None
    resume: bool = False
    time_limit_s: float | None = None
    device: str = "cpu"
    bf16: bool = False


class Model(ABC):
    """Base class of every model family in :mod:`crystalgen.models.registry`."""

    family: ClassVar[str]
    kind: ClassVar[str]

    def __init__(self, config: dict | None = None) -> None:
        self.config: dict[str, Any] = dict(config or {})
        #: Set by a trained fit (what :func:`crystalgen.training.train_model` returns): steps done,
        #: seconds spent, whether finished, the training settings, processes, device, last losses.
        self.training_summary: dict[str, Any] = {}
        #: Figures :meth:`after_fit` measured (name -> number), written to the card's front matter.
        self.measured_metrics: dict[str, Any] = {}

    @classmethod
    def capabilities_for(cls, config: dict[str, Any]) -> Capabilities:
        """What a model of this family with this config can do (without loading its weights)."""
        return Capabilities()

    @property
    def capabilities(self) -> Capabilities:
        return self.capabilities_for(self.config)

    @property
    def name(self) -> str:
        return str(self.config.get("name", self.family))

    @property
    def protocol(self) -> str | None:
        return self.config.get("protocol")

    @property
    def dataset(self) -> str | None:
        return self.config.get("dataset")

    # -------------------------------------------------------------- to implement
    @abstractmethod
    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None, run: TrainingRun | None = None) -> None:
        """Train (or index) on the training split(s) of a data protocol."""

    @abstractmethod
    def state(self) -> dict[str, Any]:
        """Arrays to store in ``model.safetensors`` (name -> numpy array or torch tensor)."""

    @abstractmethod
    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        """Restore from :meth:`state`'s arrays (and the data directory, where the family needs it)."""

    @property
    @abstractmethod
    def is_fitted(self) -> bool: ...

    # -------------------------------------------------------------- card and checkpoint
    def checkpoint_config(self) -> dict[str, Any]:
        """The ``config.yaml`` of this model's checkpoint."""
        return {"family": self.family, **{k: v for k, v in self.config.items() if k != "family"}}

    def describe_architecture(self) -> str:
        """One line for a card: parameter count and the main sizes."""
        return ""

    def card_notes(self, fit_wall_s: float) -> str:
        """Family-specific lines (Markdown list items) for the card written after a fit."""
        return ""

    def after_fit(self, data_dir: str | os.PathLike | None = None) -> str:
        """Work that follows a fit before the checkpoint is saved (e.g. calibration on the
        protocol's held-out split); returns a card section for it, or ``""``."""
        return ""


def load_weights(module: Any, tensors: dict[str, Any], what: str) -> None:
    """Load checkpoint arrays into a torch module and switch it to eval mode; a one-line
    :class:`~crystalgen.errors.CrystalgenInputError` naming ``what`` when they do not fit it."""
    import numpy as np
    import torch

    from crystalgen.errors import CrystalgenInputError, first_line

    try:
        module.load_state_dict({k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()})
    except RuntimeError as exc:
        raise CrystalgenInputError(f"{what}: weights do not match its config ({first_line(exc)})") from None
    module.eval()
