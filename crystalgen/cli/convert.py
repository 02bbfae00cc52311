"""``crystalgen convert``: between CIF, symmetric CIF, POSCAR, extxyz and Wyckoff JSON."""

from __future__ import annotations

import re
from pathlib import Path

import click
from rich.progress import track

from crystalgen.errors import CrystalgenInputError
from crystalgen.io import FILE_EXTENSIONS, FORMATS, format_crystal, parse_crystal, read_crystal_file, read_csv_table

EXIT_SOME_ROWS_FAILED = 1
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._-]+")


@click.command()
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--to", "fmt", type=click.Choice(FORMATS), default="cif", show_default=True, help="Output format.")
@click.option("--from", "input_fmt", type=click.Choice(FORMATS), default=None, help="Input format (default: from the file name).")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Output file (single input; default stdout) or folder (CSV input; required).")
def convert(source: Path, fmt: str, input_fmt: str | None, out: Path | None) -> int:
    """Convert SOURCE, a structure file or a CSV with a 'cif' column, to another format.

    \b
    Examples:
      crystalgen convert NaCl.cif --to wyckoff-json
      crystalgen convert POSCAR --to cif-symmetric --out NaCl_sym.cif
      crystalgen convert samples.csv --to poscar --out poscars/
    """
    if not source.exists():  # before any usage error about --out: the file is the bigger problem
        raise CrystalgenInputError(f"file not found: {source}")
    if source.suffix.lower() == ".csv" or source.name.lower().endswith(".csv.gz"):
        return _convert_csv(source, fmt, out)
    crystal = read_crystal_file(source, input_fmt)
    text = format_crystal(crystal, fmt)
    if out is None:
        click.echo(text, nl=False)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text)
        click.echo(f"wrote {out}", err=True)
    return 0


def _convert_csv(source: Path, fmt: str, out: Path | None) -> int:
    if out is None:
        raise click.UsageError("--out FOLDER is required when converting a CSV")
    columns, rows = read_csv_table(source, "a CSV with a 'cif' column", "cif")
    ids = [row["material_id"] for row in rows] if "material_id" in columns else [str(i) for i in range(len(rows))]
    out.mkdir(parents=True, exist_ok=True)
    failures = []
    for row_id, cif in track(list(zip(ids, (row["cif"] for row in rows))), description="converting", transient=True):
        name = _UNSAFE_FILENAME.sub("_", row_id) or "row"
        try:
            crystal = parse_crystal(cif, "cif", id=row_id)
            (out / f"{name}{FILE_EXTENSIONS[fmt]}").write_text(format_crystal(crystal, fmt))
        except CrystalgenInputError as exc:
            failures.append((row_id, str(exc)))
    click.echo(f"converted {len(rows) - len(failures)} of {len(rows)} rows into {out}", err=True)
    if failures:
        for row_id, message in failures[:5]:
            click.echo(f"  failed {row_id}: {message}", err=True)
        return EXIT_SOME_ROWS_FAILED
    return 0
