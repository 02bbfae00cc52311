"""``crystalgen data``: list, inspect, verify and fetch benchmark datasets."""

from __future__ import annotations

from collections import Counter

import click
import numpy as np
from rich.console import Console
from rich.table import Table

from crystalgen.data import DATASETS, fetch_split, get_dataset, list_protocols, load_protocol, load_split, resolve_data_dir
from crystalgen.data.files import DATA_DIR_ENV, find_split_file, verify_split
from crystalgen.validation import parse_formula, validate_spacegroup

EXIT_VERIFY_FAILED = 1
#: How many of the most common elements / space groups `data info` prints.
TOP_N = 8

data_dir_option = click.option(
    "--data-dir",
    type=click.Path(file_okay=False, path_type=str),
    default=None,
    help=f"Data directory (default: ${DATA_DIR_ENV}, then ~/.cache/crystalgen/data).",
)


def _console() -> Console:
    return Console(highlight=False)


@click.group()
def data() -> None:
    """Benchmark datasets: list, info, verify, fetch, find, protocols."""


@data.command("list")
@data_dir_option
def list_datasets(data_dir: str | None) -> None:
    """List the registered datasets and which splits are present locally."""
    console = _console()
    root = resolve_data_dir(data_dir)
    table = Table(title=f"datasets (data directory: {root})")
    for column in ("dataset", "max atoms", "splits (rows)", "description"):
        table.add_column(column)
    for spec in DATASETS.values():
        splits = []
        for split in spec.splits.values():
            present = find_split_file(spec.name, split.name, data_dir) is not None
            rows = f"{split.rows:,}" if split.rows else "?"
            splits.append(f"{'present' if present else 'missing'}  {split.name} ({rows})")
        table.add_row(spec.name, str(spec.max_atoms), "\n".join(splits), spec.description)
    console.print(table)


@data.command("protocols")
def list_protocol_configs() -> None:
    """List the named data protocols in configs/data/."""
    console = _console()
    for name in list_protocols():
        console.print(f"[bold]{name}[/bold]: {load_protocol(name).describe()}")


@data.command("info")
@click.argument("dataset")
@click.option("--split", "splits", multiple=True, help="Split(s) to describe (default: all present).")
@data_dir_option
def info(dataset: str, splits: tuple[str, ...], data_dir: str | None) -> None:
    """Statistics of a dataset's splits: atoms per cell, elements, space groups, properties."""
    console = _console()
    spec = get_dataset(dataset)
    wanted = list(splits) or [s for s in spec.splits if find_split_file(dataset, s, data_dir)]
    console.print(f"[bold]{spec.name}[/bold]: {spec.description}")
    if not wanted:
        console.print(f"no split is present under {resolve_data_dir(data_dir)}; try `crystalgen data fetch {dataset}`")
        return
    for split in wanted:
        crystals = load_split(dataset, split, data_dir)
        atoms = np.array([c.num_atoms for c in crystals])
        elements = Counter(sym for c in crystals for sym in set(c.species))
        console.print(f"\n[bold]{split}[/bold]: {len(crystals):,} structures; atoms per cell "
                      f"min {atoms.min()}, median {int(np.median(atoms))}, max {atoms.max()}")
        console.print(f"  {len(elements)} elements; most common: "
                      + ", ".join(f"{e} ({n})" for e, n in elements.most_common(TOP_N)))
        groups = Counter(int(c.properties["spacegroup.number"]) for c in crystals if "spacegroup.number" in c.properties)
        if groups:
            console.print(f"  {len(groups)} space groups; most common: "
                          + ", ".join(f"{g} ({n})" for g, n in groups.most_common(TOP_N)))
        for name in spec.properties:
            values = np.array([c.properties[name] for c in crystals if name in c.properties])
            if len(values):
                console.print(f"  {name}: n={len(values):,} mean {values.mean():.4g} std {values.std():.4g} "
                              f"min {values.min():.4g} max {values.max():.4g}")
    used_by = [p for p in list_protocols() if load_protocol(p).dataset == dataset]
    console.print(f"\nprotocols: {', '.join(used_by)}")


@data.command("verify")
@click.argument("datasets", nargs=-1)
@data_dir_option
def verify(datasets: tuple[str, ...], data_dir: str | None) -> int:
    """Check every present split against its pinned checksum (exit 1 on a mismatch)."""
    console = _console()
    names = list(datasets) or list(DATASETS)
    failed = 0
    for name in names:
        for split in get_dataset(name).splits:
            result = verify_split(name, split, data_dir)
            if result.status == "missing" and not datasets:
                continue
            failed += not result.ok
            style = "green" if result.ok else "red"
            console.print(f"[{style}]{result.status:>10}[/{style}]  {name}/{split}  {result.detail}")
    if failed:
        console.print(f"[red]{failed} split(s) failed verification[/red]")
        return EXIT_VERIFY_FAILED
    return 0


@data.command("fetch")
@click.argument("dataset")
@click.option("--split", "splits", multiple=True, help="Split(s) to fetch (default: all downloadable).")
@click.option("--force", is_flag=True, help="Download even if a file is already present.")
@data_dir_option
def fetch(dataset: str, splits: tuple[str, ...], force: bool, data_dir: str | None) -> None:
    """Download splits from the canonical CDVAE repository and verify their checksums."""
    console = _console()
    spec = get_dataset(dataset)
    wanted = list(splits) or [s.name for s in spec.splits.values() if s.url]
    for split in wanted:
        path = fetch_split(dataset, split, data_dir, force=force)
        console.print(f"{dataset}/{split}: {path}")


@data.command("find")
@click.argument("dataset")
@click.option("--formula", help="Composition to look for, e.g. SrTiO3 (matched by reduced formula).")
@click.option("--spacegroup", help="Space group number, 1-230.")
@click.option("--split", "splits", multiple=True, help="Split(s) to search (default: all present).")
@data_dir_option
def find(dataset: str, formula: str | None, spacegroup: str | None, splits: tuple[str, ...], data_dir: str | None) -> None:
    """Find dataset structures by formula and/or space group."""
    from crystalgen.representations.cell import space_group_number

    if not formula and not spacegroup:
        raise click.UsageError("give --formula and/or --spacegroup")
    reduced = parse_formula(formula).reduced_formula if formula else None
    number = validate_spacegroup(spacegroup) if spacegroup else None
    spec = get_dataset(dataset)
    wanted = list(splits) or [s for s in spec.splits if find_split_file(dataset, s, data_dir)]
    hits = 0
    for split in wanted:
        for crystal in load_split(dataset, split, data_dir):
            if reduced and crystal.formula != reduced:
                continue
            group = int(crystal.properties.get("spacegroup.number") or space_group_number(crystal))
            if number and group != number:
                continue
            hits += 1
            # plain echo, not rich, which would expand the tabs: rows are meant for cut -f
            click.echo(f"{split}\t{crystal.id}\t{crystal.formula}\tspacegroup {group}\t{crystal.num_atoms} atoms")
    click.echo(f"{hits} match(es)")
