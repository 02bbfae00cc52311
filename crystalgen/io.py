"""Reading and writing single structure files in the formats the CLI speaks.

Formats: ``cif`` (P1, exact cell), ``cif-symmetric`` (conventional cell + space group),
``poscar``, ``extxyz`` and ``wyckoff-json``. Reading picks the format from the file name.
"""

from __future__ import annotations

import io
import json
import os
import warnings
from pathlib import Path

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError, StructureParseError

FORMATS = ("cif", "cif-symmetric", "poscar", "extxyz", "wyckoff-json")
FILE_EXTENSIONS = {"cif": ".cif", "cif-symmetric": ".cif", "poscar": ".vasp", "extxyz": ".extxyz", "wyckoff-json": ".json"}
POSCAR_NAMES = ("POSCAR", "CONTCAR")


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
    raise CrystalgenInputError(
        f"cannot tell the format of {name!r}: use .cif, .vasp/POSCAR/CONTCAR, .extxyz/.xyz or .json"
    )


def parse_crystal(text: str, fmt: str, id: str | None = None) -> Crystal:
    """Parse structure text in one of :data:`FORMATS`."""
    if fmt in ("cif", "cif-symmetric"):
        return Crystal.from_cif(text, id=id)
    if fmt == "poscar":
        return Crystal.from_poscar(text, id=id)
    if fmt == "extxyz":
        from ase.io import read

        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                atoms = read(io.StringIO(text), format="extxyz")
        except Exception as exc:
            raise StructureParseError(f"could not parse extxyz: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}") from None
        return Crystal.from_ase(atoms, id=id)
    if fmt == "wyckoff-json":
        from crystalgen.representations.wyckoff import WyckoffCrystal, decode_wyckoff

        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            raise StructureParseError(f"could not parse Wyckoff JSON: {exc}") from None
        if not isinstance(data, dict):
            raise StructureParseError("could not parse Wyckoff JSON: expected an object")
        crystal = decode_wyckoff(WyckoffCrystal.from_dict(data))
        crystal.id = crystal.id or id
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
    raise CrystalgenInputError(f"unknown format {fmt!r}; formats: {', '.join(FORMATS)}")


def read_crystal_file(path: str | os.PathLike, fmt: str | None = None) -> Crystal:
    """Read one structure file; the format comes from the name unless ``fmt`` is given."""
    path = Path(path)
    if not path.is_file():
        raise CrystalgenInputError(f"file not found: {path}")
    fmt = fmt or guess_format(path)
    try:
        text = path.read_text()
    except UnicodeDecodeError:
        raise StructureParseError(f"{path} is not a text file") from None
    try:
        return parse_crystal(text, fmt, id=path.stem)
    except CrystalgenInputError as exc:
        raise type(exc)(f"{path}: {exc}") from None


def write_crystal_file(crystal: Crystal, path: str | os.PathLike, fmt: str) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(format_crystal(crystal, fmt))
    return path
