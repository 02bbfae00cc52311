"""The filter pipeline: candidates in, every stage's columns and a verdict out, written chunk by
chunk so an interrupted run resumes where it stopped.

Every enabled stage is evaluated on every readable candidate (so each column is filled for every
row); a candidate ``passed`` if it passes all of them, and its ``reject_reason`` names the first
stage it failed, in pipeline order. The funnel counts survivors stage after stage in that order.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

import numpy as np

from crystalgen.config_sections import checked_section, read_yaml_mapping
from crystalgen.constants import DEFAULT_MAX_E_ABOVE_HULL
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.executors import Workers, split_evenly
from crystalgen.filters.inputs import CandidateRow
from crystalgen.filters.names import FILTERED_FILE, STAGE_ORDER
from crystalgen.filters.stages import Stage, StageResult, evaluate_part, join_results
from crystalgen.metrics.validity import MIN_DISTANCE, MIN_VOLUME
from crystalgen.progress import progress_bar
from crystalgen.runs import RunDir, atomic_write_text

SUMMARY_FILE = "summary.json"
#: Candidates per chunk: each chunk's rows are written (durably) before the next starts.
CHUNK_ROWS = 256
#: ``reject_reason`` of a row whose structure could not be read.
UNREADABLE = "unreadable"
#: Floor on a wall time used as a divisor (a run with nothing left to do takes ~0 s).
MIN_WALL_S = 1e-9


@dataclass(frozen=True)
class FilterConfig:
    """Which stages run and their thresholds (YAML: ``configs/filters/default.yaml``)."""

    structural: bool = True
    min_distance: float = MIN_DISTANCE
    min_volume: float = MIN_VOLUME
    composition: bool = True
    uniqueness: bool = True
    novelty: bool = True
    stability: bool = True
    surrogate: str = ""  # empty: automatic (see filters.build.surrogate_name)
    max_e_above_hull: float = DEFAULT_MAX_E_ABOVE_HULL
    relax: bool = False
    relax_steps: int = 200
    relax_fmax: float = 0.1  # eV/Å

    @classmethod
    def from_mapping(cls, values: Any) -> "FilterConfig":
        defaults = {f.name: getattr(cls(), f.name) for f in fields(cls)}
        return cls(**checked_section("filter", values, defaults))

    def enabled(self) -> list[str]:
        return [name for name in STAGE_ORDER if getattr(self, name)]


def load_filter_config(path: str | os.PathLike | None, **overrides: Any) -> FilterConfig:
    """A config from YAML (the ``filter:`` mapping or the whole file), with ``overrides`` applied."""
    values: dict[str, Any] = {}
    if path is not None:
        loaded = read_yaml_mapping(path, "a filter config")
        section = loaded.get("filter", loaded)
        if not isinstance(section, dict):
            raise CrystalgenInputError(f"{path}: 'filter' must be a mapping of stage settings, got {section!r}")
        try:  # the file's settings alone first, so that an error in them names the file
            FilterConfig.from_mapping(section)
        except CrystalgenInputError as exc:
            raise CrystalgenInputError(f"{path}: {exc}") from None
        values = dict(section)
    values.update({k: v for k, v in overrides.items() if v is not None})
    return FilterConfig.from_mapping(values)


def output_columns(input_columns: Sequence[str], stages: Sequence[Stage]) -> tuple[str, ...]:
    """The input's columns, then the stages' and the verdict's (a re-filtered file keeps one of each)."""
    added = [*(c for stage in stages for c in stage.columns), "passed", "reject_reason"]
    return (*input_columns, *[c for c in added if c not in input_columns])


def csv_cell(value: Any) -> Any:
    """A value as written to an output CSV: True/False, '' for a non-finite float, plain numbers."""
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (float, np.floating)):
        return "" if not np.isfinite(value) else round(float(value), 6)
    if isinstance(value, (np.integer,)):
        return int(value)
    return value


def run_filter(rows: Sequence[CandidateRow], input_columns: Sequence[str], stages: Sequence[Stage],
               out: str | os.PathLike, settings: dict[str, Any], provenance: dict[str, Any] | None = None,
               workers: Workers | None = None) -> dict[str, Any]:
    """Filter ``rows`` into OUT/filtered.csv (resuming a run with the same settings); returns the
    summary (with ``provenance``, what the stages were built from), also written to OUT/summary.json.

    ``workers``: where the distributable stages run (inline when ``None``). It is not part of the
    run's settings: the same run may be resumed on another executor, with the same result."""
    run = RunDir(out, settings)
    columns = output_columns(input_columns, stages)
    writer = run.csv_writer(FILTERED_FILE, columns)
    if writer.done:
        _restore(rows[:writer.done], stages, Path(out) / FILTERED_FILE)
    width = workers.width if workers is not None and workers.executor is not None else 1
    # a chunk is what is saved at once; with more workers it grows so that every worker has some of it
    chunk_rows = width * min([CHUNK_ROWS, *(s.chunk_rows for s in stages if s.chunk_rows)])
    with run.timed("filter"), progress_bar() as progress:
        task = progress.add_task("filtering", total=len(rows), completed=writer.done)
        for start in range(writer.done, len(rows), chunk_rows):
            chunk = rows[start:start + chunk_rows]
            writer.commit(_filter_chunk(chunk, range(start, start + len(chunk)), stages, workers), len(chunk))
            progress.update(task, completed=start + len(chunk))
    summary = summarise(Path(out) / FILTERED_FILE, [s.name for s in stages], len(rows))
    summary["wall_s"] = dict(run.wall_s)
    summary["structures_per_s"] = len(rows) / max(sum(run.wall_s.values()), MIN_WALL_S)
    summary["executor"] = workers.description if workers is not None else "inline (1 process)"
    summary.update(provenance or {})
    atomic_write_text(Path(out) / SUMMARY_FILE, json.dumps(summary, indent=2))
    return summary


def _evaluate(stage: Stage, crystals: list[Crystal], row_ids: list[int], workers: Workers | None) -> StageResult:
    """``stage.evaluate``, split over the workers when the stage is worth sending to them."""
    if workers is None or workers.executor is None or not stage.distributable or len(crystals) < 2:
        return stage.evaluate(crystals, row_ids)
    pieces = split_evenly(len(crystals), workers.width)
    parts = [[crystals[i] for i in piece] for piece in pieces]
    part_ids = [[row_ids[i] for i in piece] for piece in pieces]
    return join_results(list(workers.executor.map(evaluate_part, [stage.portable(p) for p in parts], parts, part_ids)))


def _filter_chunk(chunk: Sequence[CandidateRow], row_ids: range, stages: Sequence[Stage],
                  workers: Workers | None = None) -> list[dict[str, Any]]:
    readable = [i for i, row in enumerate(chunk) if row.crystal is not None]
    crystals: list[Crystal] = [chunk[i].crystal for i in readable]
    ids = [row_ids[i] for i in readable]
    out = [{**row.values, "passed": "False", "reject_reason": f"{UNREADABLE}: {row.error}"} for row in chunk]
    if not readable:
        return out
    failed_at = np.full(len(readable), "", dtype=object)
    survivors = np.ones(len(readable), dtype=bool)
    for stage in stages:
        chosen = np.flatnonzero(survivors) if stage.only_survivors else np.arange(len(readable))
        result = _evaluate(stage, [crystals[k] for k in chosen], [ids[k] for k in chosen], workers)
        for name, values in result.columns.items():
            for k, value in zip(chosen, values):
                out[readable[k]][name] = csv_cell(value)
        passed = np.zeros(len(readable), dtype=bool)
        passed[chosen] = result.passed
        failed_at[survivors & ~passed] = stage.name
        survivors &= passed
    for j, passed, reason in zip(readable, survivors, failed_at):
        out[j]["passed"], out[j]["reject_reason"] = str(bool(passed)), reason
    return out


def _restore(rows: Sequence[CandidateRow], stages: Sequence[Stage], written: Path) -> None:
    from crystalgen.runs import read_csv_rows

    done = read_csv_rows(written)[:len(rows)]
    readable = [i for i, row in enumerate(rows) if row.crystal is not None]
    for stage in stages:
        stage.restore([rows[i].crystal for i in readable], readable, [done[i] for i in readable])


def summarise(filtered: Path, stage_names: Sequence[str], total: int) -> dict[str, Any]:
    """The funnel (survivors after each stage, in order) and rejections per stage, from OUT/filtered.csv."""
    from crystalgen.runs import read_csv_rows

    reasons = [row["reject_reason"] for row in read_csv_rows(filtered)]
    rejected = {UNREADABLE: sum(r.startswith(UNREADABLE) for r in reasons)}
    rejected.update({name: reasons.count(name) for name in stage_names})
    funnel, remaining = [("input", total)], total - rejected[UNREADABLE]
    funnel.append(("readable", remaining))
    for name in stage_names:
        remaining -= rejected[name]
        funnel.append((name, remaining))
    return {"n": total, "passed": remaining, "funnel": [{"stage": s, "remaining": n} for s, n in funnel],
            "rejected": rejected}


__all__ = ["FILTERED_FILE", "STAGE_ORDER", "FilterConfig", "load_filter_config", "run_filter", "summarise"]
