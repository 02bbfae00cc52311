"""Choosing the torch device for training and sampling (``auto``, ``cpu`` or ``cuda``)."""

from __future__ import annotations

import torch

from crystalgen.errors import CrystalgenInputError
from crystalgen.models.base import DEVICES


def resolve_device(name: str | None) -> torch.device:
    """``auto`` (or ``None``) is CUDA when a GPU is visible, else the CPU; ``cuda`` without a GPU is refused."""
    if name in (None, "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise CrystalgenInputError("--device cuda: no CUDA device is visible to torch (this build: "
                                   f"torch {torch.__version__})")
    if name not in DEVICES:
        raise CrystalgenInputError(f"device must be one of {', '.join(DEVICES)}, got {name!r}")
    return torch.device(name)
