"""The contract every representation follows."""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

from crystalgen.crystal import Crystal


@runtime_checkable
class Representation(Protocol):
    """An invertible encoding of a crystal.

    ``decode(encode(c))`` must describe the same crystal as ``c`` up to rotation, cell choice and
    atom order, as judged by pymatgen's StructureMatcher. ``bench/roundtrip.py`` measures how
    often that holds on real data; ``tests/test_representations.py`` checks it on textbook
    crystals.
    """

    name: str

    def encode(self, crystal: Crystal) -> Any: ...

    def decode(self, encoded: Any) -> Crystal: ...
