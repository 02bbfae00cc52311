"""``crystalgen filter``: validity, uniqueness, novelty and stability verdicts for candidates."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from rich.console import Console

from crystalgen.cli.data import data_dir_option
from crystalgen.cli.workers import with_workers_options
from crystalgen.constants import DEFAULT_MAX_E_ABOVE_HULL
from crystalgen.filters.names import FILTERED_FILE, STAGE_ORDER

if TYPE_CHECKING:
    from crystalgen.executors import Workers
    from crystalgen.filters.pipeline import FilterConfig
    from crystalgen.filters.inputs import CandidateRow
    from crystalgen.filters.stages import Stage

FUNNEL_FILE = "funnel.png"
SUMMARY_MARKDOWN = "summary.md"

filter_options = [
    click.option("--filter-config", "filter_config", type=click.Path(dir_okay=False, path_type=Path), default=None,
                 help="Filter YAML (stages and thresholds), e.g. configs/filters/default.yaml."),
    click.option("--surrogate", default=None,
                 help="Surrogate checkpoint for the stability stage (default: the filter config's, else surrogate-mp_20; "
                      "with `sample --filter`, the generator's dataset's when shipped)."),
    click.option("--max-e-hull", "max_e_above_hull", type=float, default=None,
                 help=f"Stability threshold: estimated energy above the hull, eV/atom (default {DEFAULT_MAX_E_ABOVE_HULL})."),
    click.option("--skip", "skip", multiple=True, type=click.Choice(STAGE_ORDER[:-1]),
                 help="Switch a stage off (repeatable)."),
    click.option("--relax", is_flag=True, default=None,
                 help="Also relax survivors with CHGNet and re-check them (needs the 'relax' extra)."),
]


def with_filter_options(command: Callable) -> Callable:
    for option in reversed(filter_options):
        command = option(command)
    return command


def filter_config_from_options(filter_config: Path | None, surrogate: str | None, max_e_above_hull: float | None,
                               skip: tuple[str, ...], relax: bool | None) -> FilterConfig:
    from crystalgen.filters.pipeline import load_filter_config

    overrides: dict[str, Any] = {"surrogate": surrogate, "max_e_above_hull": max_e_above_hull, "relax": relax or None}
    overrides.update({stage: False for stage in skip})
    return load_filter_config(filter_config, **overrides)


@click.command(name="filter")
@click.argument("source", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--protocol", "-p", default=None,
              help="Novelty is against this protocol's training split (default: the surrogate's protocol).")
@with_filter_options
@with_workers_options
@data_dir_option
def filter_command(source: Path, out: Path, protocol: str | None, filter_config: Path | None, surrogate: str | None,
                   max_e_above_hull: float | None, skip: tuple[str, ...], relax: bool | None, workers: int | None,
                   scheduler: str | None, data_dir: str | None) -> None:
    """Filter candidate crystals: SOURCE is a samples CSV (with a 'cif' column) or a folder of CIFs.

    Writes OUT/filtered.csv (every input column, then valid_struct, valid_comp, is_unique,
    duplicate_of, is_novel, pred_<property> and its _std, e_above_hull_est and its _std, passed,
    reject_reason), OUT/summary.json, OUT/summary.md and the funnel plot OUT/funnel.png.
    Re-running the same command resumes, on the same or another executor (--workers, --scheduler):
    novelty and the CHGNet relaxation are spread over it, the other stages run here.

    \b
    Example:
      crystalgen filter samples/samples.csv --out filtered/
      crystalgen filter samples/samples.csv --relax --scheduler tcp://head-node:8786 --out filtered/
    """
    from crystalgen.executors import open_workers
    from crystalgen.filters.build import build_stages
    from crystalgen.filters.inputs import read_candidates

    config = filter_config_from_options(filter_config, surrogate, max_e_above_hull, skip, relax)
    rows, columns = read_candidates(source)
    stages, provenance = build_stages(config, protocol, data_dir)
    with open_workers(workers, scheduler) as pool:
        summary = filter_candidates(rows, columns, stages, provenance, out,
                                    {"source": str(source), "filter": asdict(config), "protocol": protocol}, pool)
    print_summary(summary, out)


def filter_candidates(rows: Sequence[CandidateRow], columns: Sequence[str], stages: Sequence[Stage],
                      provenance: dict[str, Any], out: Path, settings: dict[str, Any],
                      workers: Workers | None = None) -> dict[str, Any]:
    """Run built stages on candidates into OUT, and write the summary and funnel plot."""
    from crystalgen.filters.pipeline import run_filter

    summary = run_filter(rows, columns, stages, out, {**settings, "n": len(rows)}, provenance, workers)
    _write_summary(summary, out)
    return summary


def _write_summary(summary: dict[str, Any], out: Path) -> None:
    from crystalgen.reports.figures import funnel_plot
    from crystalgen.runs import atomic_write_text

    funnel = summary["funnel"]
    (out / FUNNEL_FILE).write_bytes(funnel_plot([f["stage"] for f in funnel], [f["remaining"] for f in funnel]))
    lines = ["# Filter summary", "", "| stage | remaining | rejected here |", "|---|---|---|"]
    previous = summary["n"]
    for step in funnel:
        lines.append(f"| {step['stage']} | {step['remaining']:,} | {previous - step['remaining']:,} |")
        previous = step["remaining"]
    lines += ["", f"{summary['passed']:,} of {summary['n']:,} passed.", ""]
    for key in ("novelty_reference", "surrogate", "hull_reference"):
        if key in summary:
            lines.append(f"- {key.replace('_', ' ')}: {summary[key]}")
    wall = sum(summary["wall_s"].values())
    lines.append(f"- wall time: {wall:.1f} s ({summary['structures_per_s']:.1f} structures/s)")
    atomic_write_text(out / SUMMARY_MARKDOWN, "\n".join(lines) + "\n")


def print_summary(summary: dict[str, Any], out: Path) -> None:
    console = Console(stderr=True, highlight=False)
    console.print(" -> ".join(f"{f['stage']} {f['remaining']}" for f in summary["funnel"]))
    console.print(f"{summary['passed']} of {summary['n']} passed; wrote {out / FILTERED_FILE}")
