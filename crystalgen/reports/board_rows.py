"""How benchmark run folders become leaderboard rows: each task's columns, figures and published rows.

A run folder's ``metrics.json`` names its task (``csp``, ``gen``, ``sun``), or is recognised by its
layout (property-model reports by ``properties``, design benchmarks by ``success_rates``);
:func:`run_rows` turns it into (board key, :class:`Entry`) pairs, :func:`published_rows` gives a
board's published rows. Every number comes from the files; nothing here computes a metric.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports.published import (
    CSP_PAPERS, GEN_PAPERS, PUBLISHED_CSP, PUBLISHED_GEN, PUBLISHED_SUN, published_optimisation,
)

METRICS_FILE = "metrics.json"
CSP, GEN, SUN, DESIGN, PROPERTY = "csp", "gen", "sun", "design", "property"
#: The board of polymorph-aware CSP figures (METRe, cRMSE), read from CSP runs.
POLYMORPH = "csp_polymorph"
#: Families whose checkpoints are reference methods rather than models: labelled "(baseline)".
BASELINE_FAMILIES = frozenset({"template"})
#: How a benchmark's sampler description marks a no-model control run: labelled "(control)".
CONTROL_PREFIX = "control:"
CRYSTALGEN_PREFIX = "crystalgen: "  # document.py highlights the rows that start so in the HTML
PUBLISHED_SCALE = 100.0  # published.py holds rates as percentages, the rows here fractions
#: The E_hull thresholds (eV/atom) a S.U.N. run reports, as its metrics.json keys them.
SUN_THRESHOLDS = ("0", "0.1")
#: The only published criterion that matches a column of the S.U.N. board.
SUN_PUBLISHED_CRITERION = "E_hull <= 0.1 eV/atom"

_NUMBER, _INT = ((int, float), "a number"), ((int,), "an integer")  # (accepted types, what the error says)
_TEXT, _MAPPING = ((str,), "text"), ((dict,), "a mapping")

@dataclass(frozen=True)
class Column:
    """One figure of a table: its key in ``metrics.json``, its heading, how it prints, whether it must be there."""
    key: str
    title: str
    is_percent: bool = False
    required: bool = False


CSP_COLUMNS = (Column("match_rate", "match rate (%)", True, True), Column("rmse", "RMSE"))
GEN_COLUMNS = (Column("struct_validity", "struct. valid (%)", True, True),
               Column("comp_validity", "comp. valid (%)", True),
               Column("cov_recall", "COV-R (%)", True, True), Column("cov_precision", "COV-P (%)", True, True),
               Column("d_rho", "d_rho"), Column("d_prop", "d_E"), Column("d_elem", "d_elem"),
               Column("uniqueness", "unique (%)", True), Column("novelty", "novel (%)", True))
PROPERTY_COLUMNS = (Column("mae", "test MAE", required=True), Column("mae_of_training_mean", "MAE of training mean"))
SUN_COLUMNS = (Column("sun_0", "S.U.N., E_hull ≤ 0 (%)", True, True),
               Column("sun_0.1", "S.U.N., E_hull ≤ 0.1 (%)", True, True),
               Column("valid", "valid (%)", True), Column("novel", "unique and novel (%)", True))
POLYMORPH_COLUMNS = (Column("metre", "METRe (%)", True), Column("crmse", "cRMSE"),
                     Column("match_rate", "match rate (%)", True, True), Column("crmse_own", "cRMSE of the match rate"),
                     Column("unseen_metre", "METRe, unseen compositions (%)", True),
                     Column("unseen_match_rate", "match rate, unseen compositions (%)", True))
DESIGN_COLUMNS = (Column("sr5", "SR5 (%)", True, True), Column("sr10", "SR10 (%)", True, True),
                  Column("sr15", "SR15 (%)", True, True), Column("sr10_unoptimised", "SR10 of the starts (%)", True),
                  Column("valid_share", "valid (%)", True))
#: Per task, in page order: columns, sort keys ((key, higher is better), ...), heading and caption templates.
BOARD_SPECS = {
    CSP: (CSP_COLUMNS, (("match_rate", True), ("rmse", False)), "CSP k={detail} — {dataset}",
          "CSP on the {dataset} test split, k={detail} proposals per composition; best first by match rate, "
          "then RMSE. Published rows: {source}."),
    POLYMORPH: (POLYMORPH_COLUMNS, (("metre", True), ("crmse", False)), "Polymorph-aware CSP — {dataset}",
                "k=1 first proposals on the {dataset} test split, scored with METRe (a test structure counts if any "
                "proposal made for its composition matches it) and cRMSE (unmatched ones count as stol); *unseen "
                "compositions* are test structures whose reduced composition is absent from the model's training "
                "data, a split without polymorph leakage (docs/polymorph.md). Best first by METRe."),
    GEN: (GEN_COLUMNS, (("cov_recall", True),), "Generation — {dataset}",
          "Generation against the {dataset} test split; best first by COV-R. crystalgen's d_E uses its surrogate, "
          "the published d_E the authors' model: compare d_E between crystalgen rows only. Published rows: {source}."),
    SUN: (SUN_COLUMNS, (("sun_0.1", True), ("sun_0", True)), "S.U.N. — {dataset}",
          "Stable, unique and novel share of all requested samples, relaxed with CHGNet, E_hull against each run's "
          "reference hull (docs/sun.md); best first by the share at E_hull ≤ 0.1 eV/atom. Published rows use other "
          "hulls, relaxers and training data: not directly comparable."),
    DESIGN: (DESIGN_COLUMNS, (("sr5", True), ("sr10", True), ("sr15", True)), "Design (property optimisation) — {dataset}",
             "The CDVAE optimisation protocol on {dataset} test starts, minimising `{detail}`: the share of starts "
             "whose best valid result an independent oracle puts below the training split's 5th / 10th / 15th "
             "percentile; best first by SR5. The published row is judged by its own property model."),
    PROPERTY: (PROPERTY_COLUMNS, (("mae", False),), "Property models — {dataset}",
               "`{detail}` on the {dataset} test split; best (lowest) test MAE first. The MAE of training mean "
               "is that of always predicting the training-set mean."),
}



@dataclass(frozen=True)
class Run:
    """One benchmark run folder: where a crystalgen figure comes from."""
    folder: Path
    model: str
    family: str | None
    seed: int | None
    wall_s: float | None  # summed over the run's stages
    machine: str | None
    sampler: str = ""
    metrics: dict = field(default_factory=dict, compare=False, repr=False)  # the parsed metrics.json


@dataclass
class Entry:
    """One table row: a crystalgen run's figures (``run`` set) or a published row (``source`` set)."""
    label: str
    values: dict[str, float | None]
    protocol: str
    n: int | None = None
    run: Run | None = None
    source: str = ""
    note: str = ""
    detail: Any = None  # what the row is of: k (CSP), the property (property, design), POLYMORPH
    path: tuple[str, ...] = ()  # where ``values`` sit in the run's metrics.json: ("by_k", "1"), ("properties", name)


# ---------------------------------------------------------------------------------- reading
def _field(mapping: Any, key: str, where: str, kind: tuple[tuple[type, ...], str] = _NUMBER,
           required: bool = True) -> Any:
    """``mapping[key]`` checked against ``kind``; a one-line error naming the file when it is wrong."""
    value = mapping.get(key) if isinstance(mapping, dict) else None
    if value is None:
        if required:
            raise CrystalgenInputError(f"{where}: no {key!r}")
        return None
    if isinstance(value, bool) or not isinstance(value, kind[0]):
        raise CrystalgenInputError(f"{where}: {key!r} is {value!r}, expected {kind[1]}")
    return value


def read_json(path: Path) -> Any:
    """A JSON file's contents; a one-line error naming the file when it cannot be read or parsed."""
    try:
        return json.loads(path.read_bytes())
    except OSError as exc:
        raise CrystalgenInputError(f"cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:  # not JSON, or not UTF-8
        raise CrystalgenInputError(f"malformed {path}: {exc}") from None


def read_metrics(path: Path) -> tuple[str | None, Any]:
    """The task of a ``metrics.json`` (None if unrecognised or absent) and its contents."""
    if not path.is_file():
        return None, None
    metrics = read_json(path)
    if not isinstance(metrics, dict):
        return None, metrics
    if metrics.get("task") in (CSP, GEN, SUN, DESIGN):
        return metrics["task"], metrics
    # reports that name no task are known by their layout
    if isinstance(metrics.get("properties"), dict):
        return PROPERTY, metrics
    return (DESIGN if isinstance(metrics.get("success_rates"), dict) else None), metrics


def _metadata(metrics: dict, where: str) -> dict:
    # `benchmark csp|gen|sun` keep their provenance under "metadata", `benchmark surrogate|design` under "run"
    return _field(metrics, "metadata", where, _MAPPING, False) or _field(metrics, "run", where, _MAPPING, False) or {}


def _protocol(metrics: dict, where: str) -> str:
    """The evaluation protocol; design reports name it only in their provenance."""
    return _field(metrics, "protocol", where, _TEXT, False) or _field(_metadata(metrics, where), "protocol", where, _TEXT)


def _run(folder: Path, metrics: dict, where: str) -> Run:
    meta = _metadata(metrics, where)
    settings = _field(meta, "settings", where, _MAPPING, False) or {}
    stages = _field(meta, "wall_s", where, _MAPPING, False)
    wall = None if stages is None else sum(_field(stages, stage, where) for stage in stages)
    machine = _field(meta, "machine", where, _MAPPING, False) or {}
    cpu, cores, gpu = (machine.get(key) for key in ("cpu", "cores", "gpu"))
    described = cpu and f"{cpu}" + (f" ({cores} cores)" if cores else "") + (f", GPU {gpu}" if gpu else "")
    model = _field(meta, "model", where, _TEXT, False) or _field(metrics, "model", where, _TEXT, False) or folder.name
    return Run(folder, model, _field(meta, "family", where, _TEXT, False), _field(settings, "seed", where, _INT, False),
               wall, described, _field(settings, "sampler", where, _TEXT, False) or "", metrics)


def _dataset(metrics: dict, where: str) -> str:
    if "dataset" in metrics:
        return _field(metrics, "dataset", where, _TEXT)
    protocol = _protocol(metrics, where)  # surrogate reports name only their protocol
    from crystalgen.data.protocols import load_protocol

    try:
        return load_protocol(protocol).dataset
    except CrystalgenInputError:  # a protocol this checkout does not ship: group the run under its name
        return protocol


def _values(mapping: Any, columns: tuple[Column, ...], where: str) -> dict[str, float | None]:
    return {c.key: _field(mapping, c.key, where, _NUMBER, c.required) for c in columns}


@dataclass(frozen=True)
class _RunContext:
    """What every row of one run folder shares."""
    run: Run
    dataset: str
    protocol: str
    label: str
    notes: tuple[str, ...]
    where: str


def run_rows(kind: str, folder: Path, metrics: dict, where: str) -> list[tuple[tuple, Entry]]:
    """Each (board key, row) that one run folder of task ``kind`` contributes."""
    run = _run(folder, metrics, where)
    control = run.sampler.startswith(CONTROL_PREFIX)
    label = CRYSTALGEN_PREFIX + run.model + (" (baseline)" if run.family in BASELINE_FAMILIES else
                                             " (control)" if control else "")
    context = _RunContext(run, _dataset(metrics, where), _protocol(metrics, where), label,
                          (run.sampler,) if control else (), where)
    return _ROWS_OF_TASK[kind](context, metrics)


def _gen_rows(ctx: _RunContext, metrics: dict) -> list[tuple[tuple, Entry]]:
    notes = list(ctx.notes)
    notes += [f"quick run: {metrics.get('n_generated')} samples"] if metrics.get("quick_run") else []
    missing = metrics.get("n_without_sample")
    notes += [f"{missing} of {metrics.get('n_requested')} requests gave no sample"] if missing else []
    return [((GEN, ctx.dataset, 0), Entry(ctx.label, _values(metrics, GEN_COLUMNS, ctx.where), ctx.protocol,
                                          _field(metrics, "n_generated", ctx.where, _INT), ctx.run,
                                          note="; ".join(notes)))]


def _property_rows(ctx: _RunContext, metrics: dict) -> list[tuple[tuple, Entry]]:
    rows = []
    for name, figures in _field(metrics, "properties", ctx.where, _MAPPING).items():
        here = f"{ctx.where} ({name})"
        rows.append(((PROPERTY, ctx.dataset, name), Entry(
            ctx.label, _values(figures, PROPERTY_COLUMNS, here), ctx.protocol, _field(figures, "n", here, _INT),
            ctx.run, detail=name, path=("properties", name))))
    return rows


def _csp_rows(ctx: _RunContext, metrics: dict) -> list[tuple[tuple, Entry]]:
    by_k = _field(metrics, "by_k", ctx.where, _MAPPING, False)
    paths = {k: ("by_k", k) for k in by_k} if by_k else {str(_field(metrics, "k", ctx.where, _INT)): ()}
    by_k = by_k or {k: metrics for k in paths}
    rows = []
    for k, figures in by_k.items():
        here = f"{ctx.where} (by_k {k})"
        if not str(k).isdigit():
            raise CrystalgenInputError(f"{here}: k is not a whole number")
        n = _field(figures, "n", here, _INT)
        rows.append(((CSP, ctx.dataset, int(k)), Entry(ctx.label, _values(figures, CSP_COLUMNS, here), ctx.protocol,
                                                       n, ctx.run, note="; ".join(_subset(metrics, n) + list(ctx.notes)),
                                                       detail=int(k), path=paths[k])))
    polymorph = _field(metrics, "polymorph", ctx.where, _MAPPING, False)
    if polymorph is not None:
        rows.append(_polymorph_row(ctx, metrics, polymorph))
    return rows


def _subset(metrics: dict, n: int) -> list[str]:
    return [] if metrics.get("full_split", True) else [
        f"first {n} of {metrics.get('split_size', '?')} test structures (--limit)"]


def _polymorph_row(ctx: _RunContext, metrics: dict, polymorph: dict) -> tuple[tuple, Entry]:
    here = f"{ctx.where} (polymorph)"
    every = _field(polymorph, "all", here, _MAPPING)
    unseen = _field(polymorph, "not_leaked", here, _MAPPING, False) or {}
    values = {"metre": _field(every, "metre", here, _NUMBER, False), "crmse": _field(every, "crmse", here, _NUMBER, False),
              "match_rate": _field(every, "match_rate", here), "crmse_own": _field(every, "crmse_own", here),
              "unseen_metre": _field(unseen, "metre", here, _NUMBER, False),
              "unseen_match_rate": _field(unseen, "match_rate", here, _NUMBER, False)}
    n = _field(every, "n", here, _INT)
    notes = _subset(metrics, n) + list(ctx.notes) + [
        f"unseen compositions: {unseen.get('n', 0)} of {n} test structures"] + (
        [str(polymorph["metre_skipped"])] if polymorph.get("metre_skipped") else [])
    # its own detail, so that a docs table asking a run folder for its k=1 row gets the usual one
    return ((POLYMORPH, ctx.dataset, POLYMORPH), Entry(ctx.label, values, ctx.protocol, n, ctx.run,
                                                      note="; ".join(notes), detail=POLYMORPH,
                                                      path=("polymorph", "all")))


def _sun_rows(ctx: _RunContext, metrics: dict) -> list[tuple[tuple, Entry]]:
    requested = _field(metrics, "n_requested", ctx.where, _INT)
    by_threshold = _field(metrics, "sun", ctx.where, _MAPPING)
    values = {f"sun_{t}": _field(_field(by_threshold, t, ctx.where, _MAPPING), "share_of_requested", ctx.where)
              for t in SUN_THRESHOLDS}
    values["valid"] = _field(metrics, "n_valid", ctx.where, _INT) / requested if requested else None
    values["novel"] = _field(metrics, "n_novel", ctx.where, _INT) / requested if requested else None
    return [((SUN, ctx.dataset, 0), Entry(ctx.label, values, ctx.protocol, requested, ctx.run, note="; ".join(ctx.notes),
                                          path=("sun",)))]


def _design_rows(ctx: _RunContext, metrics: dict) -> list[tuple[tuple, Entry]]:
    rates = _field(metrics, "success_rates", ctx.where, _MAPPING)
    here = f"{ctx.where} (success_rates)"
    values = _values(_field(rates, "oracle", here, _MAPPING), DESIGN_COLUMNS[:3], here)
    starts = _field(rates, "oracle, unoptimised starts", here, _MAPPING, False) or {}
    values["sr10_unoptimised"] = _field(starts, "sr10", here, _NUMBER, False)
    values["valid_share"] = _field(metrics, "valid_share", ctx.where, _NUMBER, False)
    settings = (_field(metrics, "run", ctx.where, _MAPPING, False) or {}).get("settings", {})
    notes = [f"{settings.get('strategy', 'refine')} strategy, guided by {settings.get('surrogate (guides)', '?')}, "
             f"judged by {settings.get('oracle (judges)', '?')}"]
    prop = _field(metrics, "property", ctx.where, _TEXT)
    return [((DESIGN, ctx.dataset, prop), Entry(ctx.label, values, ctx.protocol, _field(metrics, "n", ctx.where, _INT),
                                                ctx.run, note="; ".join(notes), detail=prop,
                                                path=("success_rates", "oracle")))]


_ROWS_OF_TASK = {CSP: _csp_rows, GEN: _gen_rows, PROPERTY: _property_rows, SUN: _sun_rows, DESIGN: _design_rows}


def published_rows(task: str, dataset: str, detail: Any) -> list[Entry]:
    """The published rows of one board (none for property models and polymorph-aware CSP)."""
    if task == SUN:
        return [Entry(f"{p.model} (published)", {"sun_0.1": p.percent / PUBLISHED_SCALE}, "MP-20 full train",
                      note=f"not directly comparable: {p.protocol}", source=p.source)
                for p in PUBLISHED_SUN if dataset == "mp_20" and p.stable == SUN_PUBLISHED_CRITERION]
    if task == DESIGN:
        return [Entry(f"{p.model} (published)", dict(zip(("sr5", "sr10", "sr15"), p.success_rates)),
                      f"{dataset} full train", note="judged by its own property model", source="CDVAE, Table 4")
                for p in published_optimisation(dataset)]
    rows = ([p for p in PUBLISHED_CSP if p.dataset == dataset and p.k == detail] if task == CSP else
            [p for p in PUBLISHED_GEN if p.dataset == dataset] if task == GEN else [])
    entries = []
    for p in rows:
        values = {c.key: getattr(p, c.key, None) for c in BOARD_SPECS[task][0]}
        values.update({c.key: values[c.key] / PUBLISHED_SCALE for c in BOARD_SPECS[task][0]
                       if c.is_percent and values[c.key] is not None})
        entries.append(Entry(f"{p.model} (published)", values, f"{dataset} full train", note=getattr(p, "note", ""),
                             source=(CSP_PAPERS if task == CSP else GEN_PAPERS).get(p.model, "docs/protocol.md")))
    return entries
