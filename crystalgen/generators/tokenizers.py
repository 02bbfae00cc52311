"""The tokenizations the autoregressive family trains on, behind one small interface.

A tokenizer turns a crystal into token ids, writes the prompt of a target, follows the grammar
while a sequence is decoded (``allowed()`` / ``push()`` / ``finished``), and checks decoded
sequences, naming the first check each one fails:

* ``cif-tokens``: canonical symmetric CIFs (:mod:`crystalgen.representations.cif_tokens`); the
  prompt is the formula and optionally a space group; checks of
  :mod:`crystalgen.metrics.cif_validity`;
* ``slices``: SLICES-style strings (:mod:`crystalgen.representations.slices_tokens`); the prompt
  is the atoms of a composition; a string states no space group; checks of
  :mod:`crystalgen.metrics.slices_validity`.
"""

from __future__ import annotations

from typing import Any, Protocol

from crystalgen.crystal import Crystal


class DecodingState(Protocol):
    finished: bool

    def allowed(self) -> list[int]: ...

    def push(self, token_id: int) -> None: ...


class CheckedSequence(Protocol):
    crystal: Crystal | None
    failure: str | None


class Tokenizer(Protocol):
    name: str
    #: Target conditions the prompt can carry (beyond an element set, which masking serves).
    conditions: frozenset[str]
    vocabulary: Any

    def encode(self, crystal: Crystal) -> list[int]: ...

    def prompt(self, composition: dict[str, int] | None, spacegroup: int | None) -> list[int]: ...

    def decoding_state(self, prompt: list[int], elements: frozenset[str] | None, max_atoms: int) -> DecodingState: ...

    def check(self, sequences: list[list[int]], formulas: list[dict[str, int] | None]) -> list[CheckedSequence]: ...

    def stated_spacegroup(self, checked: CheckedSequence) -> int | None: ...


class CifTokenizer:
    name = "cif-tokens"
    conditions = frozenset({"composition", "spacegroup"})

    def __init__(self) -> None:
        from crystalgen.representations.cif_tokens import CifTokens

        self.representation = CifTokens()
        self.vocabulary = self.representation.vocabulary

    def encode(self, crystal: Crystal) -> list[int]:
        return self.representation.encode(crystal)

    def prompt(self, composition: dict[str, int] | None, spacegroup: int | None) -> list[int]:
        """``data_`` alone, or ``data_``, the formula (pymatgen's element order), the space-group
        keyword and the group if given."""
        from crystalgen.representations.cif_tokens import formula_order
        from crystalgen.representations.cif_vocab import DATA, SPACEGROUP

        if composition is None:
            return [self.vocabulary.id(DATA)]
        tokens = [DATA]
        for element, count in formula_order(composition):
            tokens += [element, *str(count)]
        ids = [self.vocabulary.id(t) for t in tokens + [SPACEGROUP]]
        return ids + ([self.vocabulary.spacegroup_id(spacegroup)] if spacegroup is not None else [])

    def decoding_state(self, prompt: list[int], elements: frozenset[str] | None, max_atoms: int) -> DecodingState:
        from crystalgen.representations.cif_grammar import CifDecodingState

        return CifDecodingState(self.vocabulary, prompt, elements)

    def check(self, sequences: list[list[int]], formulas: list[dict[str, int] | None]) -> list[CheckedSequence]:
        from crystalgen.metrics.cif_validity import check_sequence

        return [check_sequence(self.vocabulary, ids, formula) for ids, formula in zip(sequences, formulas)]

    def stated_spacegroup(self, checked: CheckedSequence) -> int | None:
        return checked.cif.spacegroup


class SlicesTokenizer:
    name = "slices"
    conditions = frozenset({"composition"})

    def __init__(self) -> None:
        from crystalgen.representations.slices_tokens import slices_vocabulary

        self.vocabulary = slices_vocabulary()

    def encode(self, crystal: Crystal) -> list[int]:
        from crystalgen.representations.slices import encode_graph

        return self.vocabulary.graph_ids(encode_graph(crystal))

    def prompt(self, composition: dict[str, int] | None, spacegroup: int | None) -> list[int]:
        """The start token, and a composition's atoms in order of atomic number (as the canonical string lists them)."""
        from pymatgen.core.periodic_table import Element

        from crystalgen.representations.slices_tokens import EDGES, START

        if composition is None:
            return [self.vocabulary.id(START)]
        atoms = sorted((e for e, n in composition.items() for _ in range(n)), key=lambda e: Element(e).Z)
        return [self.vocabulary.id(t) for t in (START, *atoms, EDGES)]

    def decoding_state(self, prompt: list[int], elements: frozenset[str] | None, max_atoms: int) -> DecodingState:
        from crystalgen.representations.slices_tokens import SlicesDecodingState

        return SlicesDecodingState(self.vocabulary, prompt, elements, max_atoms)

    def check(self, sequences: list[list[int]], formulas: list[dict[str, int] | None]) -> list[CheckedSequence]:
        from crystalgen.metrics.slices_validity import check_slices_sequences

        return check_slices_sequences(self.vocabulary, sequences, formulas)

    def stated_spacegroup(self, checked: CheckedSequence) -> int | None:
        return None


TOKENIZERS: dict[str, type] = {"cif-tokens": CifTokenizer, "slices": SlicesTokenizer}


def build_tokenizer(name: str) -> Tokenizer:
    from crystalgen.errors import CrystalgenInputError

    if name not in TOKENIZERS:
        raise CrystalgenInputError(f"unknown tokenizer {name!r}; choose from {', '.join(TOKENIZERS)}")
    return TOKENIZERS[name]()


__all__ = ["CifTokenizer", "SlicesTokenizer", "TOKENIZERS", "Tokenizer", "build_tokenizer"]
