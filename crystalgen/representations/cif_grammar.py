"""Which cif-tokens may come next: the grammar behind constrained decoding.

A :class:`CifDecodingState` follows one sequence token by token. At every position it names the
tokens the canonical CIF allows there, so a sampler that masks everything else can only write
well-formed CIFs with the requested composition:

* the prompt (``data_``, the formula, optionally the space group) is forced;
* the space group must be able to hold the formula: every element's count in the conventional
  cell (the primitive formula times the centring's lattice points) must be a sum of the group's
  Wyckoff multiplicities;
* keywords are forced; a cell length or angle that the crystal family ties to another (cubic
  b = c = a, hexagonal gamma = 120°, ...) is forced to it, digit by digit;
* a site's element must still have atoms left, its multiplicity must fit them and leave a
  remainder the group's multiplicities can still fill, and ``<eos>`` comes exactly when every
  atom is placed.

Multiplicities are treated as reusable, so a remainder that only a second use of a position
without free parameters could fill is allowed; the decoder then reports the overlap. The
coordinates themselves are free: whether an atom sits on a position of the stated multiplicity
is checked when the sequence is decoded (:func:`crystalgen.representations.cif_tokens.expand`).
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from crystalgen.representations.cif_tokens import CENTRING_FACTOR, centring
from crystalgen.representations.cif_vocab import (
    ANGLE_DIGITS,
    CELL_FIELDS,
    COORD_DIGITS,
    DATA,
    EOS,
    LENGTH_DIGITS,
    LOOP,
    MULTIPLICITIES,
    PAD,
    SPACEGROUP,
    Vocabulary,
)
from crystalgen.representations.wyckoff import crystal_family

#: Largest atom count per element in a conventional cell that the feasibility tables cover.
MAX_CONVENTIONAL_COUNT = 1024
#: Most digits of one element's count in a generated formula (up to 99 atoms per primitive cell).
MAX_COUNT_DIGITS = 2
_FIXED_ANGLE = {90: "09000", 120: "12000"}
_PHASES = ("data", "formula", "group", "cell", "loop", "site", "done")


@lru_cache(maxsize=None)
def group_multiplicities(spacegroup: int) -> tuple[int, ...]:
    """The distinct Wyckoff multiplicities of a space group's conventional cell."""
    from pyxtal.symmetry import Group

    return tuple(sorted({w.multiplicity for w in Group(spacegroup).Wyckoff_positions}))


@lru_cache(maxsize=None)
def fillable(spacegroup: int) -> np.ndarray:
    """``fillable[n]``: whether n atoms of one element can be a sum of the group's multiplicities."""
    table = np.zeros(MAX_CONVENTIONAL_COUNT + 1, dtype=bool)
    table[0] = True
    for n in range(1, len(table)):
        table[n] = any(m <= n and table[n - m] for m in group_multiplicities(spacegroup))
    return table


@lru_cache(maxsize=4096)
def groups_for(counts: tuple[int, ...]) -> tuple[int, ...]:
    """Space groups whose conventional cell can hold a primitive cell with these element counts."""
    def ok(group: int) -> bool:
        factor = CENTRING_FACTOR[centring(group)]
        return all(n * factor <= MAX_CONVENTIONAL_COUNT and fillable(group)[n * factor] for n in counts)

    return tuple(g for g in range(1, 231) if ok(g))


def _cell_constraints(spacegroup: int) -> list[int | str | None]:
    """Per cell field: None (free), the index of the field it copies, or the fixed digit string."""
    family = crystal_family(spacegroup)
    free: list[int | str | None] = [None] * 6
    if family == "cubic":
        free[1] = free[2] = 0
    elif family in ("tetragonal", "hexagonal"):
        free[1] = 0
    if family in ("cubic", "tetragonal", "orthorhombic", "hexagonal"):
        free[3:] = [_FIXED_ANGLE[90]] * 3
        if family == "hexagonal":
            free[5] = _FIXED_ANGLE[120]
    elif family == "monoclinic":
        free[3], free[5] = _FIXED_ANGLE[90], _FIXED_ANGLE[90]
    return free


class CifDecodingState:
    """The grammar state of one sequence: :meth:`allowed` the next token ids, :meth:`push` one."""

    def __init__(self, vocabulary: Vocabulary, prompt: list[int], elements: frozenset[str] | None = None):
        """``prompt``: the forced first tokens; ``elements``: the only ones a generated formula may use."""
        self.vocab, self.prompt, self.tokens = vocabulary, list(prompt), []
        self.elements = tuple(e for e in vocabulary.elements if elements is None or e in elements)
        self.phase = "data"
        self.formula: dict[str, int] = {}
        self.count_digits = ""
        self.spacegroup: int | None = None
        self.cell_digits: list[str] = []
        self.field, self.offset = 0, 0
        self.remaining: dict[str, int] = {}
        self.site_element: str | None = None
        self._pending = ""  # the formula element whose count is being read

    # ------------------------------------------------------------------ what may come next
    def allowed(self) -> list[int]:
        if len(self.tokens) < len(self.prompt):
            return [self.prompt[len(self.tokens)]]
        ids = self.vocab.ids
        if self.phase == "data":
            return [ids[DATA]]
        if self.phase == "formula":
            return self._formula_allowed()
        if self.phase == "group":
            return [self.vocab.spacegroup_id(g) for g in groups_for(tuple(sorted(self.formula.values())))]
        if self.phase == "cell":
            return self._cell_allowed()
        if self.phase == "loop":
            return [ids[LOOP]]
        if self.phase == "site":
            return self._site_allowed()
        return [ids[PAD]]

    def _formula_allowed(self) -> list[int]:
        digits = self.vocab.digit_ids()
        unused = [self.vocab.element_id(e) for e in self.elements if e not in self.formula]
        last = self.vocab.tokens[self.tokens[-1]]
        if last == DATA:
            return unused
        if last in self.vocab.element_set:
            return digits[1:]  # a count has no leading zero
        closing = unused + [self.vocab.ids[SPACEGROUP]]
        return (digits if len(self.count_digits) < MAX_COUNT_DIGITS else []) + closing

    def _cell_allowed(self) -> list[int]:
        if self.offset == 0:
            return [self.vocab.ids[CELL_FIELDS[self.field]]]
        rule = _cell_constraints(self.spacegroup)[self.field]
        position = self.offset - 1
        if isinstance(rule, int):
            return [self.vocab.ids[self.cell_digits[rule][position]]]
        if isinstance(rule, str):
            return [self.vocab.ids[rule[position]]]
        digits = self.vocab.digit_ids()
        if self.field >= 3 and position == 0:
            return digits[:2]  # an angle under 200 degrees
        return digits

    def _site_allowed(self) -> list[int]:
        if self.site_element is None:
            left = [self.vocab.element_id(e) for e, n in self.remaining.items() if n > 0]
            return left or [self.vocab.ids[EOS]]
        if self.offset == 0:
            left = self.remaining[self.site_element]
            table = fillable(self.spacegroup)
            return [self.vocab.multiplicity_id(m) for m in group_multiplicities(self.spacegroup)
                    if m in MULTIPLICITIES and m <= left and table[left - m]]
        return self.vocab.digit_ids()

    # ------------------------------------------------------------------ advancing
    def push(self, token_id: int) -> None:
        token = self.vocab.tokens[int(token_id)]
        self.tokens.append(int(token_id))
        if self.phase == "data":
            self.phase = "formula"
        elif self.phase == "formula":
            self._push_formula(token)
        elif self.phase == "group":
            self.spacegroup = self.vocab.spacegroup_number[token]
            factor = CENTRING_FACTOR[centring(self.spacegroup)]
            self.remaining = {e: n * factor for e, n in self.formula.items()}
            self.phase, self.field, self.offset = "cell", 0, 0
        elif self.phase == "cell":
            self._push_cell(token)
        elif self.phase == "loop":
            self.phase = "site"
        elif self.phase == "site":
            self._push_site(token)

    def _push_formula(self, token: str) -> None:
        if token in self.vocab.element_set or token == SPACEGROUP:
            if self.formula:
                self.formula[self._pending] = int(self.count_digits)
            self.count_digits = ""
            self._pending = token
            if token == SPACEGROUP:
                self.phase = "group"
            else:
                self.formula[token] = 0
        else:
            self.count_digits += token

    def _push_cell(self, token: str) -> None:
        if self.offset == 0:
            self.cell_digits.append("")
        else:
            self.cell_digits[-1] += token
        self.offset += 1
        width = LENGTH_DIGITS if self.field < 3 else ANGLE_DIGITS
        if self.offset > width:
            self.field, self.offset = self.field + 1, 0
            if self.field == len(CELL_FIELDS):
                self.phase = "loop"

    def _push_site(self, token: str) -> None:
        if token == EOS:
            self.phase = "done"
        elif self.site_element is None:
            self.site_element, self.offset = token, 0
        elif self.offset == 0:
            self.remaining[self.site_element] -= int(token.split(":")[1])
            self.offset = 1
        else:
            self.offset += 1
            if self.offset > 3 * COORD_DIGITS:
                self.site_element = None

    @property
    def finished(self) -> bool:
        return self.phase == "done"


__all__ = ["CifDecodingState", "fillable", "group_multiplicities", "groups_for"]
