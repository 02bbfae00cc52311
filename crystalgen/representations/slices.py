"""SLICES-style strings: a crystal's labelled quotient graph as text (written in-house; SLICES itself is
LGPL-2.1 and pins old pymatgen and TensorFlow, so none of its code is used).

**Graph.** The crystal is reduced to its primitive cell (spglib), then Niggli-reduced. Atom i bonds to every periodic image of
atom j no farther than ``(1 + BOND_TOLERANCE)`` times i's nearest-neighbour distance (and j to i
alike, so the rule is symmetric): each atom's first coordination shell. This radius rule, rather
than CrystalNN, is used because it needs no oxidation states or Voronoi cells, is vectorised over
all pairs, is the same for metals, ionic and covalent solids, and gives the decoder a bond length
to aim at for every edge. An edge is (i, j, image), the image of j that i bonds to, as an integer
offset per lattice vector in {-1, 0, +1}.

**String.** Element symbols of the atoms, then per edge ``i j abc`` with ``a, b, c`` each one of
``-``, ``o``, ``+`` (offsets -1, 0, +1), for example rock salt::

    Na Cl 0 1 --o 0 1 -o- 0 1 -oo 0 1 o-- 0 1 o-o 0 1 oo-

Where the first shells leave the graph disconnected or less than 3-periodic (layers or chains
held by van der Waals contacts), the next-shortest contacts are added, shortest first and equal
lengths together, until it is 3-periodic (the fewest such, found by bisection).

**Canonical form.** Atoms are ordered by colour refinement (Weisfeiler-Lehman on element, then the
multiset of neighbour colours), ties kept in the cell's order; atoms stay in the Niggli cell's
[0, 1) range, which fixes the image labels; each edge is written once with ``i <= j`` (a loop,
``i == j``, with its first non-zero offset positive), and edges are sorted.

**Validity** (:func:`check_graph`): the string parses, every atom is on an edge, and the graph
is connected and 3-periodic (its cycles' net offsets span three dimensions). A string that
fails raises :class:`SlicesError` naming the cause, as a hand-edited one would.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.representations.base import DecodeFailure

#: An atom bonds to neighbours up to this fraction beyond its nearest-neighbour distance.
BOND_TOLERANCE = 0.2
#: Contacts whose lengths differ by less than this (Å) are added to a graph together.
CONTACT_TIE = 1e-3
OFFSET_SYMBOLS = {"-": -1, "o": 0, "+": 1}
_SYMBOL_OF = {v: k for k, v in OFFSET_SYMBOLS.items()}
_LABEL = re.compile(r"^[-o+]{3}$")
#: Images searched for bonds, per lattice vector (a bond found beyond +-1 cannot be written).
SEARCH_IMAGES = 2
#: Colour-refinement rounds; enough for the longest chain of distinct environments in a 20-atom cell.
_REFINEMENT_ROUNDS = 8


class SlicesError(DecodeFailure):
    """A SLICES string or graph that describes no crystal; ``cause`` says which check failed."""

    CAUSES = ("parse", "coverage", "periodicity", "encode", "geometry")


@dataclass(frozen=True)
class QuotientGraph:
    """Atoms (element symbols) and undirected edges (i, j, offset of j's image) of a periodic graph."""

    elements: tuple[str, ...]
    edges: np.ndarray  # (E, 2) int
    offsets: np.ndarray  # (E, 3) int

    def to_string(self) -> str:
        parts = list(self.elements)
        for (i, j), offset in zip(self.edges.tolist(), self.offsets.tolist()):
            parts += [str(i), str(j), "".join(_SYMBOL_OF[o] for o in offset)]
        return " ".join(parts)

    @classmethod
    def from_string(cls, text: str) -> "QuotientGraph":
        from pymatgen.core.periodic_table import Element

        words = text.split()
        elements = []
        while words and not words[0].lstrip("-").isdigit():
            symbol = words.pop(0)
            if not Element.is_valid_symbol(symbol):
                raise SlicesError("parse", f"{symbol!r} is not an element symbol")
            elements.append(symbol)
        if not elements:
            raise SlicesError("parse", "no atoms before the edges")
        if len(words) % 3:
            raise SlicesError("parse", "edges come as 'i j abc' triples; the last one is incomplete")
        edges, offsets = [], []
        for k in range(0, len(words), 3):
            i, j, label = words[k:k + 3]
            if not (i.isdigit() and j.isdigit()) or max(int(i), int(j)) >= len(elements):
                raise SlicesError("parse", f"edge {i} {j}: atom indices must be 0-{len(elements) - 1}")
            if not _LABEL.match(label):
                raise SlicesError("parse", f"edge {i} {j}: image label {label!r} is not three of '-', 'o', '+'")
            edges.append((int(i), int(j)))
            offsets.append([OFFSET_SYMBOLS[c] for c in label])
        return cls(tuple(elements), np.array(edges, dtype=int).reshape(-1, 2), np.array(offsets, dtype=int).reshape(-1, 3))


def check_graph(graph: QuotientGraph) -> None:
    """Raise :class:`SlicesError` unless every atom is on an edge and the graph is connected and 3-periodic."""
    n = len(graph.elements)
    if not len(graph.edges):
        raise SlicesError("coverage", "the string has no edges")
    missing = sorted(set(range(n)) - set(graph.edges.ravel().tolist()))
    if missing:
        raise SlicesError("coverage", f"atoms {missing} are on no edge")
    loops = (graph.edges[:, 0] == graph.edges[:, 1]) & ~graph.offsets.any(axis=1)
    if loops.any():
        raise SlicesError("parse", "an atom bonds to itself in the same cell")
    potential, cycles = _spanning_tree(graph)
    if potential is None:
        raise SlicesError("periodicity", "the graph is not connected")
    if np.linalg.matrix_rank(cycles) < 3 if len(cycles) else True:
        raise SlicesError("periodicity", "the graph is not 3-periodic (its cycles do not span three directions)")


def _spanning_tree(graph: QuotientGraph) -> tuple[np.ndarray | None, np.ndarray]:
    """Integer image of each atom reached along a spanning tree from atom 0 (None if disconnected),
    and the net offset of the cycle each non-tree edge closes."""
    n = len(graph.elements)
    neighbours: list[list[tuple[int, np.ndarray, int]]] = [[] for _ in range(n)]
    for k, ((i, j), offset) in enumerate(zip(graph.edges.tolist(), graph.offsets)):
        neighbours[i].append((j, offset, k))
        neighbours[j].append((i, -offset, k))
    potential = np.full((n, 3), np.iinfo(np.int64).min, dtype=np.int64)
    potential[0] = 0
    tree_edges, stack = set(), [0]
    while stack:
        i = stack.pop()
        for j, offset, k in neighbours[i]:
            if potential[j, 0] == np.iinfo(np.int64).min:
                potential[j] = potential[i] + offset
                tree_edges.add(k)
                stack.append(j)
    if (potential[:, 0] == np.iinfo(np.int64).min).any():
        return None, np.zeros((0, 3))
    rest = [k for k in range(len(graph.edges)) if k not in tree_edges]
    i, j = graph.edges[rest, 0], graph.edges[rest, 1]
    return potential, potential[i] + graph.offsets[rest] - potential[j]


def contacts(crystal: Crystal, tolerance: float = BOND_TOLERANCE) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every directed atom pair (i, j, image offset in {-1, 0, 1}^3) with its length, and whether the
    radius rule makes it a bond (see the module docstring)."""
    reach = range(-SEARCH_IMAGES, SEARCH_IMAGES + 1)
    images = np.array([[a, b, c] for a in reach for b in reach for c in reach])
    frac = crystal.frac_coords
    delta = frac[None, :, None, :] + images[None, None, :, :] - frac[:, None, None, :]  # (i, j, image, 3)
    distance = np.linalg.norm(delta @ crystal.lattice, axis=-1)
    same = (np.arange(len(frac))[:, None, None] == np.arange(len(frac))[None, :, None]) & ~images.any(axis=1)
    distance[same] = np.inf
    nearest = distance.min(axis=(1, 2))
    bonded = (distance <= nearest[:, None, None] * (1 + tolerance)) | \
             (distance <= nearest[None, :, None] * (1 + tolerance))
    if np.abs(images[np.nonzero(bonded)[2]]).max() > 1:
        raise SlicesError("encode", "a bond reaches beyond the neighbouring cells, which image labels cannot say")
    writable = np.abs(images).max(axis=1) <= 1
    i, j, image = np.nonzero(np.isfinite(distance) & writable[None, None, :])
    return np.stack([i, j], axis=1), images[image], distance[i, j, image], bonded[i, j, image]


def _colour_order(elements: list[int], i: np.ndarray, j: np.ndarray) -> np.ndarray:
    """Atom order by colour refinement: element, then the multiset of neighbour colours, repeated."""
    colours = np.asarray(elements)
    for _ in range(_REFINEMENT_ROUNDS):
        signatures = [(colours[a], tuple(sorted(colours[j[i == a]].tolist()))) for a in range(len(colours))]
        ranks = {s: r for r, s in enumerate(sorted(set(signatures)))}
        refined = np.array([ranks[s] for s in signatures])
        stable = len(set(refined.tolist())) == len(set(colours.tolist()))
        colours = refined
        if stable:
            break
    return np.argsort(colours, kind="stable")


def encode_graph(crystal: Crystal) -> QuotientGraph:
    """The canonical labelled quotient graph of ``crystal`` (see the module docstring)."""
    from crystalgen.representations.cell import niggli_cell, primitive_cell

    cell = niggli_cell(primitive_cell(crystal.right_handed()))
    pairs, offsets, distance, bonded = contacts(cell)
    order = _colour_order(cell.atomic_numbers.tolist(), pairs[bonded, 0], pairs[bonded, 1])
    symbols = tuple(cell.species[k] for k in order)
    graph = _canonical_graph(symbols, order, pairs[bonded], offsets[bonded])
    try:
        check_graph(graph)
        return graph
    except SlicesError as exc:
        if exc.cause != "periodicity":
            raise
    # the fewest next-shortest contacts (all of one length together) that make the graph 3-periodic
    extra = np.flatnonzero(~bonded)[np.argsort(distance[~bonded], kind="stable")]
    low, high = 1, len(extra)

    def with_first(k: int) -> QuotientGraph:
        k = int(np.searchsorted(distance[extra], distance[extra[k - 1]] + CONTACT_TIE, side="right"))
        chosen = np.concatenate([np.flatnonzero(bonded), extra[:k]])
        return _canonical_graph(symbols, order, pairs[chosen], offsets[chosen])

    if not _periodic(with_first(high)):
        raise SlicesError("periodicity", "no set of contacts within the neighbouring cells is 3-periodic")
    while low < high:
        middle = (low + high) // 2
        low, high = (low, middle) if _periodic(with_first(middle)) else (middle + 1, high)
    return with_first(low)


def _periodic(graph: QuotientGraph) -> bool:
    try:
        check_graph(graph)
        return True
    except SlicesError:
        return False


def _canonical_graph(symbols: tuple[str, ...], order: np.ndarray, pairs: np.ndarray, offsets: np.ndarray) -> QuotientGraph:
    rank = np.empty_like(order)
    rank[order] = np.arange(len(order))
    i, j = rank[pairs[:, 0]], rank[pairs[:, 1]]
    flip = (i > j) | ((i == j) & (_first_nonzero(offsets) < 0))
    i, j = np.where(flip, j, i), np.where(flip, i, j)
    offsets = np.where(flip[:, None], -offsets, offsets)
    unique = np.unique(np.concatenate([np.stack([i, j], axis=1), offsets], axis=1), axis=0)
    return QuotientGraph(symbols, unique[:, :2], unique[:, 2:])


def _first_nonzero(offsets: np.ndarray) -> np.ndarray:
    nonzero = offsets != 0
    first = np.argmax(nonzero, axis=1)
    return np.where(nonzero.any(axis=1), offsets[np.arange(len(offsets)), first], 0)


class Slices:
    """Crystal <-> SLICES-style string (see the module docstring).

    ``decoder_can_fail``: a string may not describe a 3-periodic graph, and the geometry is
    rebuilt from the graph alone (:mod:`crystalgen.representations.slices_geometry`), so a decoded
    crystal is an approximation whose match rate ``bench/slices_roundtrip.py`` measures.
    """

    name = "slices"
    decoder_can_fail = True

    def encode(self, crystal: Crystal) -> str:
        return encode_graph(crystal).to_string()

    def decode(self, encoded: str) -> Crystal:
        return self.decode_many([encoded])[0]

    def decode_many(self, strings: list[str]) -> list[Crystal]:
        """Decode many strings in one batched optimisation; raises on the first invalid one."""
        from crystalgen.representations.slices_geometry import optimise

        graphs = [QuotientGraph.from_string(s) for s in strings]
        for graph in graphs:
            check_graph(graph)
        crystals = optimise(graphs)
        if any(c is None for c in crystals):
            raise SlicesError("geometry", "the cell collapsed while the geometry was optimised")
        return crystals


__all__ = ["BOND_TOLERANCE", "QuotientGraph", "Slices", "SlicesError", "check_graph", "contacts", "encode_graph"]
