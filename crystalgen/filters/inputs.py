"""Candidates for the filter: the rows of a samples CSV (with a ``cif`` column, as ``crystalgen
sample`` writes) or the CIF files of a folder. An unreadable structure becomes a rejected row,
not an error, so one corrupt CIF does not stop a batch."""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.runs import CSV_FIELD_LIMIT

CIF_COLUMN = "cif"
FILE_COLUMN = "file"
CIF_SUFFIXES = (".cif", ".mcif")
#: Longest parse error kept in ``reject_reason``.
ERROR_CHARS = 200


@dataclass
class CandidateRow:
    values: dict[str, str]  # the input's own columns, copied to the output
    crystal: Crystal | None
    error: str = ""  # why ``crystal`` is None


def _parse(text: str, label: str) -> tuple[Crystal | None, str]:
    try:
        return Crystal.from_cif(text, id=label), ""
    except (CrystalgenInputError, ValueError) as exc:
        return None, " ".join(str(exc).split())[:ERROR_CHARS]


def read_candidates(path: str | os.PathLike) -> tuple[list[CandidateRow], tuple[str, ...]]:
    """The candidates in a CSV file or a folder of CIFs, and the input columns to carry over."""
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CIF_SUFFIXES)
        if not files:
            raise CrystalgenInputError(f"no CIF files (*.cif) in {path}")
        rows = [CandidateRow({FILE_COLUMN: p.name}, *_parse(p.read_text(errors="replace"), p.stem)) for p in files]
        return rows, (FILE_COLUMN,)
    if not path.is_file():
        raise CrystalgenInputError(f"file not found: {path}")
    if path.suffix.lower() in CIF_SUFFIXES:
        crystal, error = _parse(path.read_text(errors="replace"), path.stem)
        if crystal is None:
            raise CrystalgenInputError(f"{path}: not a readable CIF ({error})")
        return [CandidateRow({FILE_COLUMN: path.name}, crystal)], (FILE_COLUMN,)
    csv.field_size_limit(CSV_FIELD_LIMIT)
    try:
        with open(path, newline="") as handle:
            reader = csv.DictReader(handle)
            columns = tuple(reader.fieldnames or ())
            records = list(reader)
    except (UnicodeDecodeError, csv.Error) as exc:
        raise CrystalgenInputError(f"{path}: not a readable CSV ({exc})") from None
    if CIF_COLUMN not in columns:
        raise CrystalgenInputError(f"{path}: no '{CIF_COLUMN}' column (columns: {', '.join(columns) or 'none'}); "
                                   "give a samples CSV from `crystalgen sample` or a folder of CIF files")
    from crystalgen.data.loading import parse_cifs

    values = [{c: record.get(c) or "" for c in columns} for record in records]
    parsed = parse_cifs([v[CIF_COLUMN] for v in values], label="reading candidates")  # in parallel for big inputs
    rows = [CandidateRow(v, None, " ".join(p.split())[:ERROR_CHARS]) if isinstance(p, str)
            else CandidateRow(v, Crystal(*p, id=f"row{number}")) for number, (v, p) in enumerate(zip(values, parsed))]
    return rows, columns
