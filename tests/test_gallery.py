"""The structure gallery: the figure (size, atoms drawn, fewer cells than slots, none) and the
report sections built on it (which structures, their titles, the empty case)."""

from __future__ import annotations

import io

import numpy as np
import pytest

from conftest import make_textbook
from crystalgen.crystal import Crystal
from crystalgen.reports import figures, gallery
from crystalgen.reports.document import Figure, Text

#: matplotlib's tab10 blue, the colour of a cell's first element.
FIRST_ELEMENT_RGB = np.array([31, 119, 180])


def cscl() -> Crystal:
    """Caesium chloride: simple cubic, Cs at the corner, Cl at the body centre (Pm-3m)."""
    return Crystal(np.eye(3) * 4.12, [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [55, 17])


def textbook_cells() -> list[Crystal]:
    return [make_textbook("NaCl"), cscl(), make_textbook("Si")]


def as_cell(crystal: Crystal) -> figures.Cell:
    return crystal.lattice, crystal.cart_coords, crystal.species


def image(png: bytes) -> np.ndarray:
    from PIL import Image

    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def expected_shape(rows: int, columns: int) -> tuple[int, int]:
    width, height = figures.PANEL_SIZE
    return round(height * rows * figures.DPI), round(width * columns * figures.DPI)


def first_element_pixels(pixels: np.ndarray) -> int:
    return int((np.abs(pixels.astype(int) - FIRST_ELEMENT_RGB).sum(axis=-1) < 30).sum())


# ------------------------------------------------------------------------------ figure
def test_gallery_fills_a_grid_of_the_given_columns():
    cells = [as_cell(c) for c in textbook_cells()] * 3  # 9 cells: two full rows of 4, one of 1
    pixels = image(figures.structure_gallery(cells, [f"cell {i}" for i in range(9)], columns=4))
    assert pixels.shape[:2] == expected_shape(rows=3, columns=4)


def test_gallery_of_eight_is_two_rows_of_four_by_default():
    cells = [as_cell(c) for c in textbook_cells()] * 3
    pixels = image(figures.structure_gallery(cells[:8], ["x"] * 8))
    assert pixels.shape[:2] == expected_shape(rows=2, columns=figures.GALLERY_COLUMNS)


def test_gallery_with_fewer_cells_than_a_row_narrows_to_them():
    cells = [as_cell(c) for c in textbook_cells()]
    pixels = image(figures.structure_gallery(cells, ["NaCl", "CsCl", "Si"], columns=4))
    assert pixels.shape[:2] == expected_shape(rows=1, columns=3)


def test_gallery_draws_the_atoms_and_an_empty_panel_draws_none():
    drawn = image(figures.structure_gallery([as_cell(cscl())], ["CsCl"]))
    empty = image(figures.structure_gallery([None], ["failed sample"]))
    assert first_element_pixels(drawn) > 100  # the Cs atom and its legend marker
    assert first_element_pixels(empty) == 0


def test_gallery_refuses_no_cells_and_mismatched_titles():
    with pytest.raises(ValueError, match="at least one cell"):
        figures.structure_gallery([], [])
    with pytest.raises(ValueError, match="2 cells but 1 titles"):
        figures.structure_gallery([as_cell(cscl())] * 2, ["one title"])


def test_structure_row_is_a_one_row_gallery():
    cells = [as_cell(c) for c in textbook_cells()] + [None]
    titles = ["NaCl", "CsCl", "Si", "failed"]
    assert image(figures.structure_row(cells, titles)).shape[:2] == expected_shape(rows=1, columns=4)
    assert figures.structure_row(cells, titles) == figures.structure_gallery(cells, titles, columns=4)


# ------------------------------------------------------------------------------ titles and picks
def test_structure_title_names_formula_space_group_and_atoms():
    nacl, caesium_chloride, si = textbook_cells()
    assert gallery.structure_title(nacl) == "NaCl\nFm-3m (225), 8 atoms"
    assert gallery.structure_title(caesium_chloride) == "CsCl\nPm-3m (221), 2 atoms"
    assert gallery.structure_title(si) == "Si\nFd-3m (227), 8 atoms"


def samples(count: int) -> list[Crystal]:
    crystals = [textbook_cells()[i % 3] for i in range(count)]
    for i, crystal in enumerate(crystals):
        crystal.id = f"s{i:06d}"
    return crystals


@pytest.fixture
def drawn(monkeypatch) -> list[tuple[list, list[str]]]:
    """What the sections asked the figure to draw (cells, titles), instead of drawing it."""
    calls: list[tuple[list, list[str]]] = []

    def record(cells, titles, columns=figures.GALLERY_COLUMNS):
        calls.append((list(cells), list(titles)))
        return b"png"

    monkeypatch.setattr(gallery.figures, "structure_gallery", record)
    return calls


def test_gen_gallery_shows_the_first_valid_samples_in_order(drawn):
    crystals = samples(12)
    valid = [i not in (0, 3) for i in range(12)]  # the first and fourth sample are invalid
    section = gallery.gen_gallery_section(crystals, valid)
    assert section.title == "Gallery"
    [figure] = section.blocks
    assert isinstance(figure, Figure) and figure.name == "gallery"
    shown = ["s000001", "s000002", "s000004", "s000005", "s000006", "s000007", "s000008", "s000009"]
    assert f"The first {gallery.GALLERY_SIZE} structurally valid samples, in sample order ({', '.join(shown)})" \
        in figure.caption
    [(cells, titles)] = drawn
    assert len(cells) == gallery.GALLERY_SIZE
    assert titles[0] == gallery.structure_title(crystals[1])


def test_gen_gallery_with_fewer_valid_samples_than_slots(drawn):
    section = gallery.gen_gallery_section(samples(5), [True, False, True, False, True])
    assert "All 3 structurally valid samples, in sample order (s000000, s000002, s000004)" in section.blocks[0].caption
    assert len(drawn[0][0]) == 3


def test_gen_gallery_without_a_valid_sample_says_so(drawn):
    section = gallery.gen_gallery_section(samples(4), [False] * 4)
    [text] = section.blocks
    assert isinstance(text, Text) and "None of the 4 samples is structurally valid" in text.markdown
    assert drawn == []


def test_csp_pairs_pick_matched_then_unmatched_with_a_proposal_first():
    matched = np.array([False, True, False, True, True, False, False])
    proposals = [None, "p", "p", "p", "p", None, "p"]
    assert gallery.csp_pairs(matched, proposals) == [1, 3, 2, 6]
    assert gallery.csp_pairs(np.array([False, False]), [None, None]) == [0, 1]
    assert gallery.csp_pairs(np.array([], dtype=bool), []) == []


def test_csp_gallery_puts_each_truth_beside_its_proposal(drawn):
    test = samples(4)
    proposals = [test[0], None, test[2], None]
    matched = np.array([True, False, False, False])
    section = gallery.csp_gallery_section(test, proposals, matched, np.array([0.0123, np.nan, np.nan, np.nan]))
    [(cells, titles)] = drawn
    assert titles[0] == "true: s000000\n" + gallery.structure_title(test[0])
    assert titles[1] == "predicted: RMS 0.0123\n" + gallery.structure_title(test[0])
    assert titles[3] == "predicted: no match\n" + gallery.structure_title(test[2])  # a parsed miss first
    assert titles[5] == "predicted: no match\nno parsed proposal" and cells[5] is None
    assert len(cells) == 6  # one matched and two unmatched pairs
    assert "the first 1 matched and the first 2 unmatched" in section.blocks[0].caption
