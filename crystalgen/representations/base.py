"""The contract every representation follows."""

from __future__ import annotations

from typing import Any, ClassVar, Protocol, runtime_checkable

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError


class DecodeFailure(CrystalgenInputError):
    """An encoding that describes no crystal. ``cause`` is one of the subclass's :attr:`CAUSES`, and
    the message starts with it (``"multiplicity: ..."``), so failures can be counted by cause."""

    CAUSES: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cause: str, detail: str | None = None):
        if detail is None:  # re-raised with a prefix (a file name, say): the cause is inside the message
            message, cause = cause, next((c for c in self.CAUSES if f"{c}: " in cause), "parse")
        else:
            message = f"{cause}: {detail}"
        super().__init__(message)
        self.cause = cause


@runtime_checkable
class Representation(Protocol):
    """An invertible encoding of a crystal.

    ``decode(encode(c))`` must describe the same crystal as ``c`` up to rotation, cell choice and
    atom order, as judged by pymatgen's StructureMatcher. ``bench/roundtrip.py`` measures how
    often that holds on real data; ``tests/test_representations.py`` checks it on textbook
    crystals.

    Some representations have encodings that describe no crystal: token sequences, SLICES strings
    and voxel images, above all generated ones. Such a representation sets the class attribute
    ``decoder_can_fail = True``. Its ``decode`` raises a :class:`DecodeFailure` naming the cause
    when an encoding describes no crystal, and the round-trip benchmark and every sampler that
    uses it count those failures by cause. A decoder that rebuilds geometry the encoding does not
    store (SLICES keeps only the bond graph) also returns crystals that are only close to the
    original; its round-trip benchmark reports how often they still match. Without the
    attribute, the promise is exact inversion of every encoding ``encode`` makes.
    """

    name: str

    def encode(self, crystal: Crystal) -> Any: ...

    def decode(self, encoded: Any) -> Crystal: ...
