"""Candidates for the filter: the rows of a samples CSV (with a ``cif`` column, as ``crystalgen
sample`` writes) or the CIF files of a folder. An unreadable structure becomes a rejected row,
not an error, so one corrupt CIF does not stop a batch."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError, one_line
from crystalgen.io import parse_crystal, read_csv_table, read_text_file

CIF_COLUMN = "cif"
FILE_COLUMN = "file"
CIF_SUFFIXES = (".cif", ".mcif")
#: Longest parse error kept in ``reject_reason``.
ERROR_CHARS = 200
CSV_NOUN = "a samples CSV (with a 'cif' column)"
CSV_HINT = "give a samples CSV from `crystalgen sample` or a folder of CIF files"


@dataclass
class CandidateRow:
    values: dict[str, str]  # the input's own columns, copied to the output
    crystal: Crystal | None
    error: str = ""  # why ``crystal`` is None


def _parse(text: str, label: str) -> tuple[Crystal | None, str]:
    try:
        return parse_crystal(text, "cif", id=label), ""
    except (CrystalgenInputError, ValueError) as exc:
        return None, one_line(str(exc))[:ERROR_CHARS]


def _read_cif(path: Path) -> tuple[Crystal | None, str]:
    """A folder's CIF: a file that cannot be read is a rejected row like one that cannot be parsed."""
    try:
        text = read_text_file(path, "a CIF")
    except CrystalgenInputError as exc:
        return None, one_line(str(exc))[:ERROR_CHARS]
    return _parse(text, path.stem)


def read_candidates(path: str | os.PathLike) -> tuple[list[CandidateRow], tuple[str, ...]]:
    """The candidates in a CSV file or a folder of CIFs, and the input columns to carry over."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CIF_SUFFIXES)
        if not files:
            raise CrystalgenInputError(f"no CIF files (*.cif) in {path}")
        rows = [CandidateRow({FILE_COLUMN: p.name}, *_read_cif(p)) for p in files]
        return rows, (FILE_COLUMN,)
    if path.suffix.lower() in CIF_SUFFIXES:
        text = read_text_file(path, "a CIF")  # a file that cannot be read is an error, not a rejected row
        crystal, error = _parse(text, path.stem)
        if crystal is None:
            raise CrystalgenInputError(f"{path}: not a readable CIF ({error})")
        return [CandidateRow({FILE_COLUMN: path.name}, crystal)], (FILE_COLUMN,)
    columns, values = read_csv_table(path, CSV_NOUN, CIF_COLUMN, hint=CSV_HINT)
    from crystalgen.data.loading import parse_cifs

    parsed = parse_cifs([v[CIF_COLUMN] for v in values], label="reading candidates")  # in parallel for big inputs
    rows = [CandidateRow(v, None, one_line(p)[:ERROR_CHARS]) if isinstance(p, str)
            else CandidateRow(v, Crystal(*p, id=f"row{number}")) for number, (v, p) in enumerate(zip(values, parsed))]
    return rows, columns
