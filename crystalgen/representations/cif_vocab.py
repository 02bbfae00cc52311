"""The fixed vocabulary of the ``cif-tokens`` representation, and tokens <-> :class:`CanonicalCif`.

A token sequence reads like the canonical CIF, one token per meaningful unit::

    data_ Ba 1 Ti 1 O 3 _symmetry_space_group_name_H-M sg:Pm-3m
    _cell_length_a 0 4 0 0 0  ...  _cell_angle_gamma 0 9 0 0 0
    loop_ Ba mult:1 5 0 0 0 5 0 0 0 5 0 0 0  Ti mult:1 ...  <eos>

* **Keywords** are tokens of their own (``data_``, the six cell fields, ``loop_``).
* **Element symbols** are tokens; **space-group symbols** are separate tokens (``sg:Pm`` the group
  is not ``Pm`` the element), and so are **site multiplicities** (``mult:4``), so that decoding
  can mask them as a whole.
* **Numbers are digit tokens of a fixed width**, the decimal point implied by the field: cell
  lengths 5 digits (``04000`` is 4.000 Å), angles 5 digits (``09000`` is 90.00°), fractional
  coordinates 4 digits (``5000`` is 0.5000). A fixed width means a number can never be malformed
  and costs no punctuation tokens; the formula's counts are plain digits.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from crystalgen.constants import MAX_Z

PAD, EOS = "<pad>", "<eos>"
DATA, SPACEGROUP, LOOP = "data_", "_symmetry_space_group_name_H-M", "loop_"
CELL_FIELDS = ("_cell_length_a", "_cell_length_b", "_cell_length_c",
               "_cell_angle_alpha", "_cell_angle_beta", "_cell_angle_gamma")
DIGITS = tuple("0123456789")
#: Digits per number and the power of ten that scales it: lengths in mÅ, angles in 1/100 degree.
LENGTH_DIGITS, LENGTH_SCALE = 5, 1000
ANGLE_DIGITS, ANGLE_SCALE = 5, 100
COORD_DIGITS, COORD_SCALE = 4, 10_000
#: Every multiplicity a Wyckoff position of a conventional cell can have.
MULTIPLICITIES = (1, 2, 3, 4, 6, 8, 9, 12, 16, 18, 24, 32, 36, 48, 64, 96, 192)
SG_PREFIX, MULT_PREFIX = "sg:", "mult:"


class CifTokenError(ValueError):
    """A token sequence that is not a canonical CIF (an unknown token, a field out of place)."""


@dataclass(frozen=True)
class CanonicalSite:
    element: str
    multiplicity: int
    frac: tuple[float, float, float]


@dataclass(frozen=True)
class CanonicalCif:
    """The canonical symmetric description: formula of the primitive cell, group, conventional cell, asymmetric unit."""

    formula: tuple[tuple[str, int], ...]
    spacegroup: int
    cell: tuple[float, float, float, float, float, float]
    sites: tuple[CanonicalSite, ...]


@lru_cache(maxsize=1)
def spacegroup_symbols() -> tuple[str, ...]:
    """Hermann-Mauguin short symbol of each group 1-230 in spglib's default setting (index 0 is group 1)."""
    import spglib

    symbols: dict[int, str] = {}
    for hall in range(1, 531):
        kind = spglib.get_spacegroup_type(hall)
        symbols.setdefault(kind.number, kind.international_short)
    return tuple(symbols[n] for n in range(1, 231))


class Vocabulary:
    """Token strings <-> integer ids."""

    def __init__(self) -> None:
        from pymatgen.core.periodic_table import Element

        self.elements = tuple(Element.from_Z(z).symbol for z in range(1, MAX_Z + 1))
        self.spacegroups = tuple(SG_PREFIX + s for s in spacegroup_symbols())
        self.multiplicities = tuple(f"{MULT_PREFIX}{m}" for m in MULTIPLICITIES)
        self.tokens = (PAD, EOS, DATA, SPACEGROUP, *CELL_FIELDS, LOOP, *DIGITS, *self.elements, *self.spacegroups,
                       *self.multiplicities)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.element_set = frozenset(self.elements)
        self.spacegroup_number = {token: n for n, token in enumerate(self.spacegroups, start=1)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        try:
            return self.ids[token]
        except KeyError:
            raise CifTokenError(f"unknown token {token!r}") from None

    def ids_of(self, strings: list[str]) -> list[int]:
        """Token ids of token strings; an unknown one is a parse failure of the sequence."""
        from crystalgen.representations.cif_tokens import CifDecodeError

        try:
            return [self.id(s) for s in strings]
        except CifTokenError as exc:
            raise CifDecodeError("parse", str(exc)) from None

    def element_id(self, symbol: str) -> int:
        return self.ids[symbol]

    def spacegroup_id(self, number: int) -> int:
        return self.ids[self.spacegroups[number - 1]]

    def multiplicity_id(self, multiplicity: int) -> int:
        return self.ids[f"{MULT_PREFIX}{multiplicity}"]

    def digit_ids(self) -> list[int]:
        return [self.ids[d] for d in DIGITS]

    # ------------------------------------------------------------------ CanonicalCif <-> tokens
    def encode(self, cif: CanonicalCif) -> list[int]:
        tokens = [DATA]
        for element, count in cif.formula:
            tokens += [element, *str(count)]
        tokens += [SPACEGROUP, self.spacegroups[cif.spacegroup - 1]]
        for name, value in zip(CELL_FIELDS, cif.cell):
            width, scale = (LENGTH_DIGITS, LENGTH_SCALE) if "length" in name else (ANGLE_DIGITS, ANGLE_SCALE)
            tokens += [name, *_fixed_digits(value, width, scale)]
        tokens.append(LOOP)
        for site in cif.sites:
            tokens += [site.element, f"{MULT_PREFIX}{site.multiplicity}"]
            for x in site.frac:
                tokens += _fixed_digits(x % 1.0, COORD_DIGITS, COORD_SCALE, wrap=True)
        tokens.append(EOS)
        return [self.id(t) for t in tokens]

    def decode(self, ids: list[int]) -> CanonicalCif:
        """Parse a token sequence (up to its ``<eos>``) back into a :class:`CanonicalCif`."""
        tokens = [self._token(i) for i in ids]
        if EOS in tokens:
            tokens = tokens[: tokens.index(EOS)]
        reader = _Reader(tokens)
        reader.expect(DATA)
        formula = []
        while reader.peek() in self.element_set:
            element = reader.take()
            formula.append((element, reader.integer()))
        if not formula:
            raise CifTokenError("the formula after data_ is empty")
        reader.expect(SPACEGROUP)
        group = reader.take()
        if not group.startswith(SG_PREFIX):
            raise CifTokenError(f"expected a space-group symbol, got {group!r}")
        cell = []
        for name in CELL_FIELDS:
            reader.expect(name)
            width, scale = (LENGTH_DIGITS, LENGTH_SCALE) if "length" in name else (ANGLE_DIGITS, ANGLE_SCALE)
            cell.append(reader.fixed(width) / scale)
        reader.expect(LOOP)
        sites = []
        while not reader.done():
            element = reader.take()
            if element not in self.element_set:
                raise CifTokenError(f"expected an element symbol to start a site, got {element!r}")
            multiplicity = reader.take()
            if not multiplicity.startswith(MULT_PREFIX):
                raise CifTokenError(f"expected a site multiplicity after {element}, got {multiplicity!r}")
            frac = tuple(reader.fixed(COORD_DIGITS) / COORD_SCALE for _ in range(3))
            sites.append(CanonicalSite(element, int(multiplicity[len(MULT_PREFIX):]), frac))
        if not sites:
            raise CifTokenError("the atom-site loop is empty")
        return CanonicalCif(tuple(formula), self.spacegroup_number[group], tuple(cell), tuple(sites))

    def _token(self, i: int) -> str:
        if not 0 <= int(i) < len(self.tokens):
            raise CifTokenError(f"unknown token id {i}")
        return self.tokens[int(i)]

    def strings(self, ids: list[int]) -> list[str]:
        return [self._token(i) for i in ids]


def _fixed_digits(value: float, width: int, scale: int, wrap: bool = False) -> list[str]:
    number = int(round(value * scale))
    if wrap:
        number %= scale
    if not 0 <= number < 10**width:
        raise CifTokenError(f"{value:g} does not fit {width} digits at 1/{scale}")
    return list(f"{number:0{width}d}")


class _Reader:
    def __init__(self, tokens: list[str]):
        self.tokens, self.i = tokens, 0

    def done(self) -> bool:
        return self.i >= len(self.tokens)

    def peek(self) -> str | None:
        return None if self.done() else self.tokens[self.i]

    def take(self) -> str:
        if self.done():
            raise CifTokenError("the sequence ends in the middle of a field")
        self.i += 1
        return self.tokens[self.i - 1]

    def expect(self, token: str) -> None:
        got = self.take()
        if got != token:
            raise CifTokenError(f"expected {token!r}, got {got!r}")

    def integer(self) -> int:
        digits = ""
        while self.peek() in DIGITS:
            digits += self.take()
        if not digits or int(digits) < 1:
            raise CifTokenError("an element count in the formula is missing or zero")
        return int(digits)

    def fixed(self, width: int) -> int:
        digits = [self.take() for _ in range(width)]
        if any(d not in DIGITS for d in digits):
            raise CifTokenError(f"expected {width} digits, got {' '.join(digits)!r}")
        return int("".join(digits))


@lru_cache(maxsize=1)
def vocabulary() -> Vocabulary:
    return Vocabulary()
