"""``crystalgen design``: run a property-guided design job file."""

from __future__ import annotations

from pathlib import Path

import click

from crystalgen.cli.data import data_dir_option
from crystalgen.cli.workers import with_workers_options


@click.command()
@click.option("--job", "job_file", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Design job YAML (see configs/design/).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Output folder; re-running the same job there resumes.")
@with_workers_options
@data_dir_option
def design(job_file: Path, out: Path, workers: int | None, scheduler: str | None, data_dir: str | None) -> None:
    """Generate candidates toward property objectives, filter and rank them, and judge hits with the oracle.

    The job file names the objectives (surrogate properties, e_hull, density), the constraints
    (element set, composition, space group, largest atom count, SMACT, uniqueness, novelty), the
    generator, the strategy (screen, guided, optimise or latent), the budget and a seed; see
    docs/design.md. Writes OUT/candidates.csv, OUT/filter/, OUT/ranked.csv, OUT/cifs/ (the hits),
    OUT/summary.json, OUT/report.md and a self-contained OUT/report.html. Novelty and the CHGNet
    relaxations run over --workers local processes or a Dask cluster (--scheduler).

    \b
    Example:
      crystalgen design --job configs/design/band-gap-mp_20.yaml --out runs/band-gap
    """
    from rich.console import Console

    from crystalgen.design.job import load_job
    from crystalgen.design.run import run_design
    from crystalgen.executors import open_workers

    job = load_job(job_file)
    with open_workers(workers, scheduler) as pool:
        summary = run_design(job, out, data_dir, pool)
    console = Console(highlight=False)
    rate = summary["hit_rate"]
    console.print(f"{summary['generated']:,} generated, {summary['survivors']:,} survived the filters; hits by the "
                  f"oracle {summary['hits']['oracle']:,} ({100 * rate['oracle']:.2f}%), by the surrogate "
                  f"{summary['hits']['surrogate']:,} ({100 * rate['surrogate']:.2f}%)")
    console.print(f"report: {out / 'report.html'}")
