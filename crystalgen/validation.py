"""Validation of user-supplied targets: elements, formulas, space groups.

Every function raises a :class:`~crystalgen.errors.CrystalgenInputError` subclass whose message
names the offending value, so the CLI can print it as one line.
"""

from __future__ import annotations

import re
from pathlib import Path

from crystalgen.errors import CrystalgenInputError, MalformedFormulaError, SpaceGroupError, UnknownElementError

MIN_SPACEGROUP, MAX_SPACEGROUP = 1, 230
CENTRING_LATTICE_POINTS = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
#: A formula is a sequence of element symbols with optional (possibly fractional) counts and
#: parenthesised groups, e.g. ``SrTiO3``, ``Ca(OH)2``, ``Fe0.5Ni0.5``.
_FORMULA_CHARS = re.compile(r"^[A-Za-z0-9.()\[\] ]+$")
_TOKEN = re.compile(r"([A-Z][a-z]?)(\d*\.?\d*)")


def validate_element(symbol: str) -> str:
    """Return ``symbol`` if it names a real element, else raise :class:`UnknownElementError`."""
    from pymatgen.core.periodic_table import Element

    if not isinstance(symbol, str) or not Element.is_valid_symbol(symbol):
        hint = f" (element symbols are capitalised: {symbol.capitalize()!r})" if (
            isinstance(symbol, str) and Element.is_valid_symbol(symbol.capitalize())) else ""
        raise UnknownElementError(f"unknown element {symbol!r}{hint}")
    return symbol


def parse_formula(formula: str):
    """Parse a formula into a pymatgen ``Composition`` with integer atom counts.

    Raises :class:`MalformedFormulaError` for syntax errors or non-integer counts and
    :class:`UnknownElementError` for symbols that are not elements.
    """
    from pymatgen.core import Composition

    text = (formula or "").strip()
    if not text or not _FORMULA_CHARS.match(text) or not text[0].isupper() and text[0] not in "([":
        raise MalformedFormulaError(f"malformed formula {formula!r}")
    for symbol, count in _TOKEN.findall(text):
        validate_element(symbol)
        if count.strip(".") and float(count) == 0:
            raise MalformedFormulaError(f"formula {formula!r} has a zero count for {symbol}")
    leftover = _TOKEN.sub("", text).replace("(", "").replace(")", "").replace("[", "").replace("]", "")
    if leftover.strip(" 0123456789."):
        raise MalformedFormulaError(f"malformed formula {formula!r}")
    try:
        composition = Composition(text)
    except Exception:
        raise MalformedFormulaError(f"malformed formula {formula!r}") from None
    if composition.num_atoms <= 0:
        raise MalformedFormulaError(f"formula {formula!r} has no atoms")
    for element, amount in composition.items():
        if abs(amount - round(amount)) > 1e-6 or round(amount) < 1:
            raise MalformedFormulaError(
                f"formula {formula!r} has a non-integer count for {element}; give whole atoms per cell"
            )
    return composition


def validate_spacegroup(value: int | str) -> int:
    """Return the space group number as an int in 1-230, else raise :class:`SpaceGroupError`."""
    try:
        number = int(str(value).strip())
    except (TypeError, ValueError):
        raise SpaceGroupError(f"space group must be an integer from 1 to 230, got {value!r}") from None
    if not MIN_SPACEGROUP <= number <= MAX_SPACEGROUP:
        raise SpaceGroupError(f"space group must be from 1 to 230, got {number}")
    return number


def check_spacegroup_compatible(composition, spacegroup: int) -> None:
    """Raise :class:`SpaceGroupError` if no Wyckoff assignment of ``composition`` exists in ``spacegroup``."""
    from pyxtal.symmetry import Group

    group = Group(validate_spacegroup(spacegroup))
    counts = [int(round(n)) for n in composition.values()]
    # pyxtal counts atoms in the conventional cell; a formula may also be given per primitive cell,
    # which a centred lattice (C/A/I: 2, R: 3, F: 4 lattice points) multiplies.
    factor = CENTRING_LATTICE_POINTS.get(group.symbol[0], 1)
    compatible = group.check_compatible(counts)[0] or group.check_compatible([c * factor for c in counts])[0]
    if not compatible:
        raise SpaceGroupError(
            f"space group {spacegroup} is incompatible with {composition.formula.replace(' ', '')}: "
            "no combination of its Wyckoff positions gives these atom counts"
        )


def read_compositions_file(path: Path) -> list[tuple[str, str | None]]:
    """The targets of a compositions file: ``(formula, space group or None)`` per line.

    One composition per line, optionally followed by a space group; ``#`` starts a comment and
    blank lines are ignored. Formulas and space groups are validated here, where the line number
    is known, so that an error says which line to fix.
    """
    from crystalgen.io import read_text_file

    # allow_empty: an empty file gets the same message as one of only comments
    text = read_text_file(path, "a compositions file (one formula per line)", allow_empty=True)
    targets: list[tuple[str, str | None]] = []
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.split("#", 1)[0].split()
        if not fields:
            continue
        if len(fields) > 2:
            raise MalformedFormulaError(f"{path} line {number}: expected a composition and optionally a space group, "
                                        f"got {line.strip()!r}")
        try:
            parse_formula(fields[0])
            if len(fields) == 2:
                validate_spacegroup(fields[1])
        except CrystalgenInputError as exc:
            raise type(exc)(f"{path} line {number}: {exc}") from None
        targets.append((fields[0], fields[1] if len(fields) == 2 else None))
    if not targets:
        raise CrystalgenInputError(f"{path} holds no compositions")
    return targets
