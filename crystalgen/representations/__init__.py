"""Invertible crystal representations, each with ``encode`` / ``decode``.

To add one: write a module here with a class that has ``name``, ``encode`` and ``decode``
(see :class:`~crystalgen.representations.base.Representation`), add a factory to
:data:`REPRESENTATIONS`, and a round-trip test in ``tests/test_representations.py``. The
round-trip benchmark (``bench/roundtrip.py``) picks it up from the registry.
"""

from __future__ import annotations

from typing import Callable

from crystalgen.representations.base import Representation
from crystalgen.representations.cell import CellChoice
from crystalgen.representations.cif import P1Cif, SymmetricCif
from crystalgen.representations.lattice import LatticeLogPolar, LatticeParameters
from crystalgen.representations.wyckoff import Wyckoff, WyckoffCrystal, WyckoffSite


def _cif_tokens() -> Representation:
    """Imported on use: building its vocabulary asks spglib for every space-group symbol."""
    from crystalgen.representations.cif_tokens import CifTokens

    return CifTokens()


def _slices() -> Representation:
    """Imported on use: its decoder optimises geometry with torch."""
    from crystalgen.representations.slices import Slices

    return Slices()


def decoder_can_fail(representation: Representation) -> bool:
    """Whether ``representation`` admits encodings that decode to no crystal (see :class:`Representation`)."""
    return bool(getattr(representation, "decoder_can_fail", False))


def _voxel() -> Representation:
    """Imported on use: its decoder needs scipy."""
    from crystalgen.representations.voxel import Voxel

    return Voxel()


def _wyckoff_tensors() -> Representation:
    """Imported on use: it brings torch, which the other representations (and the CLI) do without."""
    from crystalgen.representations.wyckoff_batch import WyckoffTensors

    return WyckoffTensors()


REPRESENTATIONS: dict[str, Callable[[], Representation]] = {
    "lattice-params": LatticeParameters,
    "lattice-logpolar": LatticeLogPolar,
    "wyckoff": Wyckoff,
    "wyckoff-batch": _wyckoff_tensors,
    "cif-p1": P1Cif,
    "cif-symmetric": SymmetricCif,
    "cif-tokens": _cif_tokens,
    "slices": _slices,
    "voxel": _voxel,
    "cell-niggli": lambda: CellChoice("niggli"),
    "cell-primitive": lambda: CellChoice("primitive"),
    "cell-conventional": lambda: CellChoice("conventional"),
}


def get_representation(name: str) -> Representation:
    """Instantiate a registered representation by name."""
    try:
        return REPRESENTATIONS[name]()
    except KeyError:
        raise KeyError(f"unknown representation {name!r}; known: {', '.join(REPRESENTATIONS)}") from None


__all__ = [
    "REPRESENTATIONS",
    "Representation",
    "WyckoffCrystal",
    "WyckoffSite",
    "decoder_can_fail",
    "get_representation",
]
