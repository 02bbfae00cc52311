"""Galleries of structures for the benchmark reports: which structures to show, their titles, and
the report section that shows them.

The picks are deterministic (first in file order, never random), so a re-run of the same
benchmark draws the same gallery and a reader can find each pictured structure in the run's files.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from crystalgen.constants import SYMPREC
from crystalgen.crystal import Crystal
from crystalgen.reports import figures
from crystalgen.reports.document import Figure, Section, Text

#: Samples pictured in a generation report: two full rows of the gallery.
GALLERY_SIZE = 2 * figures.GALLERY_COLUMNS
#: Test structures pictured in a CSP report per outcome (matched, unmatched), each as a
#: (true, predicted) pair of panels, so that both outcomes fill one gallery row.
CSP_PAIRS_PER_OUTCOME = figures.GALLERY_COLUMNS // 2
GALLERY_SECTION = "Gallery"
GALLERY_FIGURE = "gallery"


def structure_title(crystal: Crystal) -> str:
    """Formula, space group (spglib at ``SYMPREC``) and atom count, on two lines."""
    from crystalgen.representations.cell import space_group_number
    from crystalgen.representations.cif_vocab import spacegroup_symbols

    number = space_group_number(crystal, SYMPREC)
    return f"{crystal.formula}\n{spacegroup_symbols()[number - 1]} ({number}), {crystal.num_atoms} atoms"


def _cell(crystal: Crystal) -> figures.Cell:
    return crystal.lattice, crystal.cart_coords, crystal.species


def first_valid(samples: Sequence[Crystal], valid: Sequence[bool], size: int = GALLERY_SIZE) -> list[Crystal]:
    """The first ``size`` samples (in sample order) that ``valid`` marks as valid."""
    return [crystal for crystal, ok in zip(samples, valid) if ok][:size]


def gen_gallery_section(samples: Sequence[Crystal], struct_valid: Sequence[bool]) -> Section:
    """The first structurally valid samples, pictured; a sentence instead when none is valid."""
    shown = first_valid(samples, struct_valid)
    if not shown:
        return Section(GALLERY_SECTION, [Text(f"None of the {len(samples)} samples is structurally valid: there "
                                              "is no structure to show.")])
    ids = ", ".join(c.id or "?" for c in shown)
    which = (f"The first {len(shown)} structurally valid samples" if len(shown) == GALLERY_SIZE
             else f"All {len(shown)} structurally valid samples")
    caption = (f"{which}, in sample order ({ids}): reduced formula, space group (spglib, symprec {SYMPREC:g}) and "
               "atoms in the cell as sampled.")
    png = figures.structure_gallery([_cell(c) for c in shown], [structure_title(c) for c in shown])
    return Section(GALLERY_SECTION, [Figure(GALLERY_FIGURE, png, caption)])


def csp_pairs(matched: np.ndarray, proposals: Sequence[Crystal | None],
              per_outcome: int = CSP_PAIRS_PER_OUTCOME) -> list[int]:
    """Indices of the test structures to picture: the first ``per_outcome`` matched, then the first
    ``per_outcome`` unmatched, those with a parsed proposal to show before those without."""
    hits = [i for i, ok in enumerate(matched) if ok][:per_outcome]
    misses = sorted((i for i, ok in enumerate(matched) if not ok), key=lambda i: proposals[i] is None)
    return hits + misses[:per_outcome]


def csp_gallery_section(test: Sequence[Crystal], first_proposals: Sequence[Crystal | None], matched: np.ndarray,
                        rms: np.ndarray) -> Section:
    """True structures beside the model's first proposals (k=1), matched ones then unmatched ones."""
    picked = csp_pairs(matched, first_proposals)
    if not picked:
        return Section(GALLERY_SECTION, [Text("No test structure to show.")])
    cells: list[figures.Cell | None] = []
    titles: list[str] = []
    for i in picked:
        truth, proposal = test[i], first_proposals[i]
        cells.append(_cell(truth))
        titles.append(f"true: {truth.id or f'test {i}'}\n{structure_title(truth)}")
        verdict = f"RMS {rms[i]:.4f}" if matched[i] else "no match"
        cells.append(None if proposal is None else _cell(proposal))
        titles.append(f"predicted: {verdict}\n" + ("no parsed proposal" if proposal is None
                                                   else structure_title(proposal)))
    n_hits = int(sum(bool(matched[i]) for i in picked))
    outcomes = " and ".join(f"the first {count} {outcome}" for count, outcome in
                            ((n_hits, "matched"), (len(picked) - n_hits, "unmatched (those with a parsed proposal "
                                                                         "first)")) if count)
    caption = (f"Each test structure (left) beside the model's first proposal for its composition (right, the k=1 "
               f"prediction): {outcomes} test structures in split order. RMS distance of the match normalised by "
               f"(V/N)^(1/3); space groups from spglib at symprec {SYMPREC:g}.")
    png = figures.structure_gallery(cells, titles)
    return Section(GALLERY_SECTION, [Figure(GALLERY_FIGURE, png, caption)])
