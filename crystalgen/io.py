"""Reading the files the CLI is given, and reading and writing structures in the formats it speaks.

Every reader of a user's file gets its bytes from :func:`read_file_bytes` and its text from
:func:`decode_text` (:func:`read_text_file` does both), so a file that is missing, a folder,
unreadable, binary, empty, a truncated or corrupt gzip, or not UTF-8 gives the same one-line
:class:`~crystalgen.errors.CrystalgenInputError`, naming the file and the problem, whichever
command reads it. :func:`read_csv_table` adds the checks of a CSV (a quote never closed, a ragged
row, a missing column).

Formats: ``cif`` (P1, exact cell), ``cif-symmetric`` (conventional cell + space group),
``poscar``, ``extxyz``, ``wyckoff-json``, ``cif-tokens`` (the token strings of
:mod:`crystalgen.representations.cif_tokens`, separated by spaces) and ``slices``
(:mod:`crystalgen.representations.slices`; reading one rebuilds the geometry from the graph). Reading picks the format from
the file name.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import stat
import warnings
import zlib
from pathlib import Path

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError, StructureParseError, first_line

FORMATS = ("cif", "cif-symmetric", "poscar", "extxyz", "wyckoff-json", "cif-tokens", "slices")
FILE_EXTENSIONS = {"cif": ".cif", "cif-symmetric": ".cif", "poscar": ".vasp", "extxyz": ".extxyz", "wyckoff-json": ".json",
                   "cif-tokens": ".tokens", "slices": ".slices"}
#: What a file of each format is called in error messages ("expected a CIF").
FORMAT_NOUNS = {"cif": "a CIF", "cif-symmetric": "a CIF", "poscar": "a POSCAR", "extxyz": "an extxyz file",
                "wyckoff-json": "a Wyckoff JSON file", "cif-tokens": "a cif-tokens file",
                "slices": "a SLICES file"}
POSCAR_NAMES = ("POSCAR", "CONTCAR")

GZIP_MAGIC = b"\x1f\x8b"
#: Leading bytes of binary files that end up where text is expected, and what to call them.
BINARY_SIGNATURES = {
    b"\x89PNG\r\n\x1a\n": "PNG image",
    b"\xff\xd8\xff": "JPEG image",
    b"%PDF-": "PDF document",
    b"PK\x03\x04": "zip archive",
    b"\x7fELF": "executable",
    b"SQLite format 3\x00": "SQLite database",
}
#: Bytes looked at to tell binary data from text: any header, and cheap on a big file.
SNIFF_BYTES = 8192
#: Text may hold a stray control character; past this share of them the file is binary data.
MAX_CONTROL_SHARE = 0.05
_TEXT_CONTROLS = frozenset(b"\t\n\r\f\v\b\x1b")
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


# ---------------------------------------------------------------------------------- bytes and text
def read_file_bytes(path: str | os.PathLike, what: str) -> bytes:
    """The bytes of a regular file; ``what`` ("a CIF") names what was expected in the error."""
    path = Path(path)
    try:
        mode = path.stat().st_mode
        if stat.S_ISDIR(mode):
            raise CrystalgenInputError(f"{path}: is a directory, expected {what}")
        if not (stat.S_ISREG(mode) or stat.S_ISFIFO(mode)):  # a pipe ends (`<(zcat x.gz)`); /dev/zero does not
            raise CrystalgenInputError(f"{path}: not a regular file, expected {what}")
        return path.read_bytes()
    except FileNotFoundError:
        raise CrystalgenInputError(f"file not found: {path}") from None
    except PermissionError:
        raise CrystalgenInputError(f"{path}: permission denied") from None
    except OSError as exc:
        raise CrystalgenInputError(f"{path}: cannot read ({exc.strerror or first_line(exc)})") from None


def gunzip(data: bytes, path: str | os.PathLike) -> bytes:
    """Decompressed gzip data; ``path`` is only for the error message."""
    try:
        return gzip.decompress(data)
    except EOFError:
        raise CrystalgenInputError(f"{path}: truncated gzip (the compressed data ends early)") from None
    except (gzip.BadGzipFile, zlib.error) as exc:
        raise CrystalgenInputError(f"{path}: corrupt gzip ({first_line(exc)})") from None


def _binary_kind(head: bytes) -> str | None:
    """What binary data ``head`` starts, or ``None`` when it looks like text."""
    for signature, name in BINARY_SIGNATURES.items():
        if head.startswith(signature):
            return name
    controls = sum(1 for byte in head if (byte < 0x20 and byte not in _TEXT_CONTROLS) or byte == 0x7F)
    if b"\x00" in head or controls > MAX_CONTROL_SHARE * len(head):
        return "data"
    return None


def decode_text(data: bytes, path: str | os.PathLike, what: str, allow_empty: bool = False) -> str:
    """The UTF-8 text of a file's bytes, gunzipped first if they are gzip (named ``.gz`` or not)."""
    if data.startswith(GZIP_MAGIC):
        data = gunzip(data, path)
    elif data.strip() and Path(path).name.lower().endswith(".gz"):
        raise CrystalgenInputError(f"{path}: not a gzip file, though its name ends in .gz")
    if data.startswith(_UTF16_BOMS):
        raise CrystalgenInputError(f"{path}: UTF-16 text, not UTF-8; save it as UTF-8")
    kind = _binary_kind(data[:SNIFF_BYTES])
    if kind:
        detail = "" if kind == "data" else f" ({kind})"
        raise CrystalgenInputError(f"{path}: binary file{detail}, expected {what}")
    try:
        text = data.decode("utf-8-sig")  # -sig: a byte-order mark must not become part of the first field
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        raise CrystalgenInputError(f"{path}: not UTF-8 text (byte 0x{data[exc.start]:02x} on line {line}); "
                                   "save it as UTF-8") from None
    if not allow_empty and not text.strip():
        raise CrystalgenInputError(f"{path}: empty file, expected {what}")
    return text


def read_text_file(path: str | os.PathLike, what: str, allow_empty: bool = False) -> str:
    """The UTF-8 text of a file (see :func:`read_file_bytes` and :func:`decode_text`)."""
    return decode_text(read_file_bytes(path, what), path, what, allow_empty)


def read_csv_table(path: str | os.PathLike, what: str, required: str, hint: str = ""
                   ) -> tuple[tuple[str, ...], list[dict[str, str]]]:
    """The header and rows of a CSV file that must have a ``required`` column.

    Beyond :func:`read_text_file`'s checks: a quoted field never closed (a file cut short inside
    a CIF), a row with more or fewer fields than the header, and a missing ``required`` column are
    one-line errors; ``hint`` is appended to the last.
    """
    import csv

    from crystalgen.runs import CSV_FIELD_LIMIT

    csv.field_size_limit(CSV_FIELD_LIMIT)
    reader = csv.reader(io.StringIO(read_text_file(path, what), newline=""), strict=True)
    header: tuple[str, ...] = ()
    records: list[dict[str, str]] = []
    end = 0
    try:
        for row in reader:
            start, end = end + 1, reader.line_num
            if not row:  # a blank line
                continue
            if not header:
                header = tuple(row)
            elif len(row) != len(header):
                raise CrystalgenInputError(f"{path}: line {start} has {len(row)} fields, the header has {len(header)}")
            else:
                records.append(dict(zip(header, row)))
    except csv.Error as exc:
        if "end of data" in str(exc):
            raise CrystalgenInputError(f"{path}: the row starting on line {end + 1} opens a quote that is never "
                                       "closed; is the file truncated?") from None
        raise CrystalgenInputError(f"{path}: malformed CSV in the row starting on line {end + 1} ({exc})") from None
    if required not in header:
        columns = ", ".join(header) or "none"
        advice = f"; {hint}" if hint else ""
        raise CrystalgenInputError(f"{path}: no '{required}' column (columns: {columns}){advice}")
    return header, records


# ---------------------------------------------------------------------------------- structures
def guess_format(path: str | os.PathLike) -> str:
    """The input format implied by a file name."""
    name = Path(path).name
    lower = name.lower()
    if lower.endswith(".cif"):
        return "cif"
    if lower.endswith((".vasp", ".poscar")) or name.startswith(POSCAR_NAMES):
        return "poscar"
    if lower.endswith((".extxyz", ".xyz")):
        return "extxyz"
    if lower.endswith(".json"):
        return "wyckoff-json"
    if lower.endswith(".tokens"):
        return "cif-tokens"
    if lower.endswith(".slices"):
        return "slices"
    raise CrystalgenInputError(
        f"cannot tell the format of {name!r}: use .cif, .vasp/POSCAR/CONTCAR, .extxyz/.xyz, .json, .tokens or .slices"
    )


def parse_crystal(text: str, fmt: str, id: str | None = None) -> Crystal:
    """Parse structure text in one of :data:`FORMATS`."""
    if fmt in ("cif", "cif-symmetric"):
        crystal = Crystal.from_cif(text, id=id)
        _check_formula_sum(text, crystal)
        return crystal
    if fmt == "poscar":
        return Crystal.from_poscar(text, id=id)
    if fmt == "extxyz":
        from ase.io import read

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = read(io.StringIO(text), format="extxyz")
        except Exception as exc:
            raise StructureParseError(f"could not parse extxyz: {first_line(exc)}") from None
        return Crystal.from_ase(atoms, id=id)
    if fmt == "wyckoff-json":
        from crystalgen.representations.wyckoff import WyckoffCrystal, decode_wyckoff

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StructureParseError(f"could not parse Wyckoff JSON: {exc}") from None
        if not isinstance(data, dict):
            kind = {list: "a list", str: "a string", bool: "true/false", type(None): "null"}.get(type(data), "a number")
            raise StructureParseError(f"could not parse Wyckoff JSON: expected an object, not {kind}")
        crystal = decode_wyckoff(WyckoffCrystal.from_dict(data))
        crystal.id = crystal.id or id
        return crystal
    if fmt == "cif-tokens":
        from crystalgen.representations.cif_tokens import CifTokens

        tokens = CifTokens()
        crystal = tokens.decode(tokens.vocabulary.ids_of(text.split()))
        crystal.id = id
        return crystal
    if fmt == "slices":
        from crystalgen.representations.slices import Slices

        crystal = Slices().decode(text)
        crystal.id = id
        return crystal
    raise CrystalgenInputError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def format_crystal(crystal: Crystal, fmt: str) -> str:
    """Write a crystal as text in one of :data:`FORMATS`."""
    if fmt == "cif":
        return crystal.to_cif()
    if fmt == "cif-symmetric":
        from crystalgen.representations.cif import to_symmetric_cif

        return to_symmetric_cif(crystal)
    if fmt == "poscar":
        return crystal.to_poscar()
    if fmt == "extxyz":
        from ase.io import write

        buffer = io.StringIO()
        write(buffer, crystal.to_ase(), format="extxyz")
        return buffer.getvalue()
    if fmt == "wyckoff-json":
        from crystalgen.representations.wyckoff import encode_wyckoff

        return json.dumps(encode_wyckoff(crystal).to_dict(), indent=2) + "\n"
    if fmt == "cif-tokens":
        from crystalgen.representations.cif_tokens import CifTokens

        tokens = CifTokens()
        return " ".join(tokens.vocabulary.strings(tokens.encode(crystal))) + "\n"
    if fmt == "slices":
        from crystalgen.representations.slices import Slices

        return Slices().encode(crystal) + "\n"
    raise CrystalgenInputError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


_FORMULA_SUM = re.compile(r"^\s*_chemical_formula_sum\s+(?:'([^']*)'|\"([^\"]*)\"|(\S+))", re.MULTILINE)
_DATA_BLOCK = re.compile(r"^\s*data_", re.MULTILINE)


def _check_formula_sum(text: str, crystal: Crystal) -> None:
    """A CIF cut short between two atom lines still parses, with atoms missing; the formula it
    declares gives it away. Only the first data block is checked: it is the one that was parsed."""
    from pymatgen.core import Composition

    blocks = _DATA_BLOCK.split(text)
    match = _FORMULA_SUM.search(blocks[1] if len(blocks) > 1 else text)
    if not match:
        return
    declared = next(group for group in match.groups() if group is not None)
    try:
        expected = Composition(declared).reduced_formula
    except Exception:  # '?' or a formula pymatgen cannot read says nothing about the atoms
        return
    if expected != crystal.formula:
        raise StructureParseError(f"its atoms ({crystal.composition.formula.replace(' ', '')}) do not match its "
                                  f"_chemical_formula_sum ({declared}); is the file truncated?")


def read_crystal_file(path: str | os.PathLike, fmt: str | None = None) -> Crystal:
    """Read one structure file; the format comes from the name unless ``fmt`` is given."""
    path = Path(path)
    try:
        fmt = fmt or guess_format(path)
    except CrystalgenInputError:
        read_file_bytes(path, "a structure file")  # "file not found" is the bigger problem than the name
        raise
    try:
        text = read_text_file(path, FORMAT_NOUNS.get(fmt, "a structure file"))
    except CrystalgenInputError as exc:  # a structure file that cannot be read is one that cannot be parsed
        raise StructureParseError(str(exc)) from None
    try:
        return parse_crystal(text, fmt, id=path.stem)
    except CrystalgenInputError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def write_crystal_file(crystal: Crystal, path: str | os.PathLike, fmt: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_crystal(crystal, fmt))
    return path
