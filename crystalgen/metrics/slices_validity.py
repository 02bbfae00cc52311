"""The checks every generated SLICES sequence must pass, and why one failed.

In order, the first that fails names the cause:

1. ``parse``, ``coverage``, ``periodicity``: the tokens spell a string whose graph covers every
   atom and is connected and 3-periodic (:func:`crystalgen.representations.slices.check_graph`);
2. ``formula``: the atoms are the prompt's (the same element counts per cell);
3. ``geometry``: the bond-length optimisation builds a cell that has not collapsed;
4. ``cell-sanity`` and ``bond-length``: as for CIFs (:mod:`crystalgen.metrics.cif_validity`).

A string states no space group, so there is no space-group check; each decoded crystal carries
the group spglib finds at :data:`~crystalgen.metrics.cif_validity.CHECK_SYMPREC`.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from crystalgen.crystal import Crystal
from crystalgen.metrics.cif_validity import cell_is_sane
from crystalgen.metrics.validity import MIN_DISTANCE, min_interatomic_distance
from crystalgen.representations.lattice import lattice_matrix_to_params
from crystalgen.representations.slices import QuotientGraph, SlicesError, check_graph
from crystalgen.representations.slices_tokens import SlicesVocabulary

CHECKS = ("parse", "coverage", "periodicity", "formula", "geometry", "cell-sanity", "bond-length")


@dataclass
class CheckedSlices:
    """One generated sequence: its crystal when every check passed, else the failing check."""

    text: str | None
    crystal: Crystal | None
    failure: str | None = None


def check_slices_sequences(vocabulary: SlicesVocabulary, sequences: list[list[int]],
                           formulas: list[dict[str, int] | None]) -> list[CheckedSlices]:
    """Decode every sequence (their geometries optimised in one batch) and run every check."""
    from crystalgen.representations.slices_geometry import optimise

    checked: list[CheckedSlices] = []
    graphs: dict[int, QuotientGraph] = {}
    for index, (ids, formula) in enumerate(zip(sequences, formulas)):
        try:
            text = vocabulary.decode_string(ids)
            graph = QuotientGraph.from_string(text)
            check_graph(graph)
        except SlicesError as exc:
            checked.append(CheckedSlices(None, None, exc.cause))
            continue
        checked.append(CheckedSlices(text, None))
        if formula is not None and dict(Counter(graph.elements)) != dict(formula):
            checked[-1].failure = "formula"
        else:
            graphs[index] = graph
    for index, crystal in zip(graphs, optimise(list(graphs.values())) if graphs else []):
        checked[index].failure = _geometry_failure(crystal)
        if checked[index].failure is None:
            checked[index].crystal = crystal
    return checked


def _geometry_failure(crystal: Crystal | None) -> str | None:
    if crystal is None:
        return "geometry"
    if not cell_is_sane(lattice_matrix_to_params(crystal.lattice).tolist()):
        return "cell-sanity"
    if crystal.num_atoms > 1 and min_interatomic_distance(crystal) < MIN_DISTANCE:
        return "bond-length"
    return None


__all__ = ["CHECKS", "CheckedSlices", "check_slices_sequences"]
