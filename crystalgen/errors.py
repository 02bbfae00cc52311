"""Exceptions that carry a message meant for the person at the keyboard.

Anything raised as :class:`CrystalgenInputError` (or a subclass) is reported by the CLI as a
single line on stderr with exit code 2 and no traceback. Everything else is a bug and keeps its
traceback.
"""

from __future__ import annotations


class CrystalgenInputError(ValueError):
    """Bad input from the user: a file, a formula, a space group, a dataset name."""


class UnknownElementError(CrystalgenInputError):
    """A formula or structure names an element that does not exist."""


class MalformedFormulaError(CrystalgenInputError):
    """A formula string cannot be parsed."""


class SpaceGroupError(CrystalgenInputError):
    """A space group number outside 1-230, or one incompatible with a composition."""


class StructureParseError(CrystalgenInputError):
    """A CIF, POSCAR or other structure file cannot be read."""


class DatasetError(CrystalgenInputError):
    """An unknown dataset, split or protocol, or a dataset file that is missing or corrupt."""


def first_line(exc: BaseException) -> str:
    """The first non-empty line of an exception's message, or its type name when the message is empty."""
    for line in str(exc).splitlines():
        if line.strip():
            return line.strip()
    return type(exc).__name__


def one_line(message: str) -> str:
    """``message`` with its line breaks and runs of white space folded into single spaces."""
    return " ".join(str(message).split())
