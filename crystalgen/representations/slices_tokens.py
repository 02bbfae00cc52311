"""SLICES strings as token ids, and the grammar that constrained decoding follows.

A token sequence is the canonical string of :mod:`crystalgen.representations.slices`, one token
per word, between a start token and ``<eos>``, with ``<edges>`` after the atoms::

    <slices> Na Cl <edges> n0 n1 --o n0 n1 -o- ... n0 n1 oo- <eos>

Node indices (``n0`` ... ``n39``) are tokens of their own, so they can never be confused with
anything else and cost one position each; each of the 27 image labels is one token.

:class:`SlicesDecodingState` names, at every position, the tokens the canonical form allows, so
a masked sampler writes only strings that parse and cover every atom:

* atoms come in order of atomic number (the canonical order refines it, never breaks it), and
  only from the element set when one is given; a composition prompt forces them;
* every edge is ``i <= j``, edges come in strictly increasing (i, j, label) order, a loop
  ``i == i`` has its first non-zero offset positive, and no earlier atom may be left uncovered
  (an edge can only cover atoms at or after its ``i``), so ``<eos>`` comes once every atom is on
  an edge.

Whether the graph is 3-periodic, and whether a geometry can be built for it, is checked when the
sequence is decoded (:mod:`crystalgen.metrics.slices_validity`).
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from crystalgen.constants import MAX_Z
from crystalgen.representations.slices import OFFSET_SYMBOLS, QuotientGraph, SlicesError

PAD, START, EDGES, EOS = "<pad>", "<slices>", "<edges>", "<eos>"
#: Most atoms a tokenised string may have (mp_20 primitive cells have up to 20).
MAX_NODES = 40
NODE_PREFIX = "n"
#: The 27 image labels in the canonical edge order (offset -1 < 0 < +1 on each axis).
LABELS = tuple("".join(s) for s in itertools.product(sorted(OFFSET_SYMBOLS, key=OFFSET_SYMBOLS.get), repeat=3))


def _loop_label(label: str) -> bool:
    """A loop i -> i is written with its first non-zero offset positive (so never ``ooo``)."""
    first = label.lstrip("o")
    return bool(first) and first[0] == "+"


class SlicesVocabulary:
    """SLICES token strings <-> integer ids (PAD is id 0)."""

    def __init__(self) -> None:
        from pymatgen.core.periodic_table import Element

        self.elements = tuple(Element.from_Z(z).symbol for z in range(1, MAX_Z + 1))
        self.nodes = tuple(f"{NODE_PREFIX}{k}" for k in range(MAX_NODES))
        self.tokens = (PAD, START, EDGES, EOS, *self.elements, *self.nodes, *LABELS)
        self.ids = {token: i for i, token in enumerate(self.tokens)}
        self.element_ids = [self.ids[e] for e in self.elements]
        self.node_ids = [self.ids[n] for n in self.nodes]
        self.label_ids = [self.ids[label] for label in LABELS]
        # lookups by token, so that decoding never searches a list per token
        self.atomic_number = {e: z for z, e in enumerate(self.elements, start=1)}
        self.node_index = {n: k for k, n in enumerate(self.nodes)}
        self.label_index = {label: k for k, label in enumerate(LABELS)}

    def __len__(self) -> int:
        return len(self.tokens)

    def id(self, token: str) -> int:
        return self.ids[token]

    def encode_string(self, text: str) -> list[int]:
        """Token ids of a SLICES string (as :class:`~crystalgen.representations.slices.Slices` writes it)."""
        return self.graph_ids(QuotientGraph.from_string(text))

    def graph_ids(self, graph: QuotientGraph) -> list[int]:
        """Token ids of a labelled quotient graph, in the order of its canonical string."""
        if len(graph.elements) > MAX_NODES:
            raise SlicesError("encode", f"{len(graph.elements)} atoms; slices tokens hold at most {MAX_NODES}")
        ids = [self.ids[START], *(self.ids[e] for e in graph.elements), self.ids[EDGES]]
        for (i, j), offset in zip(graph.edges.tolist(), graph.offsets.tolist()):
            label = 9 * (offset[0] + 1) + 3 * (offset[1] + 1) + (offset[2] + 1)  # LABELS is in this order
            ids += [self.node_ids[i], self.node_ids[j], self.label_ids[label]]
        return ids + [self.ids[EOS]]

    def decode_string(self, ids: list[int]) -> str:
        """The SLICES string of a token sequence; raises :class:`SlicesError` ('parse') if it is not one."""
        tokens = [self.tokens[int(i)] for i in ids if int(i) != 0]
        if not tokens or tokens[0] != START:
            raise SlicesError("parse", f"a slices sequence starts with {START}")
        if EOS not in tokens:
            raise SlicesError("parse", "the sequence ended before <eos>")
        body = tokens[1:tokens.index(EOS)]
        if EDGES not in body:
            raise SlicesError("parse", f"no {EDGES} token after the atoms")
        split = body.index(EDGES)
        edges = [str(self.node_index[t]) if t in self.node_index else t for t in body[split + 1:]]
        return " ".join(body[:split] + edges)


@lru_cache(maxsize=1)
def slices_vocabulary() -> SlicesVocabulary:
    return SlicesVocabulary()


class SlicesDecodingState:
    """The grammar state of one SLICES sequence: :meth:`allowed` the next token ids, :meth:`push` one."""

    def __init__(self, vocabulary: SlicesVocabulary, prompt: list[int], elements: frozenset[str] | None = None,
                 max_atoms: int = MAX_NODES):
        """``prompt``: the forced first tokens; ``elements``: the only ones sampled atoms may be;
        ``max_atoms``: the most atoms a sampled string may have."""
        self.vocab, self.prompt, self.tokens = vocabulary, list(prompt), []
        self.elements = [z for z, e in enumerate(vocabulary.elements, start=1) if elements is None or e in elements]
        self.max_atoms = min(max_atoms, MAX_NODES)
        self.atoms: list[int] = []  # atomic numbers
        self.phase = "start"
        self.covered: set[int] = set()
        self.last: tuple[int, int, int] | None = None  # the previous edge (i, j, label index)
        self.edge: list[int] = []  # the edge being written

    # ------------------------------------------------------------------ what may come next
    def allowed(self) -> list[int]:
        if len(self.tokens) < len(self.prompt):
            return [self.prompt[len(self.tokens)]]
        ids = self.vocab.ids
        if self.phase == "start":
            return [ids[START]]
        if self.phase == "atoms":
            return self._atoms_allowed()
        if self.phase == "edges":
            return self._edges_allowed()
        return [ids[PAD]]

    def _atoms_allowed(self) -> list[int]:
        ids = self.vocab.element_ids
        more = [ids[z - 1] for z in self.elements if not self.atoms or z >= self.atoms[-1]]
        done = [self.vocab.ids[EDGES]] if self.atoms else []
        return done + (more if len(self.atoms) < self.max_atoms else [])

    def _labels_after(self, i: int, j: int) -> list[int]:
        """Label indices an edge (i, j) may take after the previous edge."""
        start = self.last[2] + 1 if self.last is not None and self.last[:2] == (i, j) else 0
        return [k for k in range(start, len(LABELS)) if i != j or _loop_label(LABELS[k])]

    def _js_after(self, i: int) -> list[int]:
        low = self.last[1] if self.last is not None and self.last[0] == i else i
        return [j for j in range(low, len(self.atoms)) if self._labels_after(i, j)]

    def _edges_allowed(self) -> list[int]:
        node = self.vocab.node_ids
        if len(self.edge) == 0:
            low = self.last[0] if self.last is not None else 0
            uncovered = [a for a in range(len(self.atoms)) if a not in self.covered]
            high = uncovered[0] if uncovered else len(self.atoms) - 1
            options = [node[i] for i in range(low, high + 1) if self._js_after(i)]
            return options + ([self.vocab.ids[EOS]] if not uncovered else [])
        if len(self.edge) == 1:
            return [node[j] for j in self._js_after(self.edge[0])]
        return [self.vocab.label_ids[k] for k in self._labels_after(*self.edge)]

    # ------------------------------------------------------------------ advancing
    def push(self, token_id: int) -> None:
        token = self.vocab.tokens[int(token_id)]
        self.tokens.append(int(token_id))
        if self.phase == "start":
            self.phase = "atoms"
        elif self.phase == "atoms":
            if token == EDGES:
                self.phase = "edges"
            else:
                self.atoms.append(self.vocab.atomic_number[token])
        elif self.phase == "edges":
            if token == EOS:
                self.phase = "done"
            elif len(self.edge) < 2:
                self.edge.append(self.vocab.node_index[token])
            else:
                i, j = self.edge
                self.last, self.edge = (i, j, self.vocab.label_index[token]), []
                self.covered.update((i, j))

    @property
    def finished(self) -> bool:
        return self.phase == "done"


__all__ = ["EDGES", "EOS", "LABELS", "MAX_NODES", "PAD", "START", "SlicesDecodingState", "SlicesVocabulary",
           "slices_vocabulary"]
