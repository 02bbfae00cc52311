"""The leaderboard: every shipped model's benchmark figures, by task and dataset, beside published rows.

:func:`build_leaderboard` reads the run folders' ``metrics.json`` and the checkpoints' ``card.md``;
:func:`write_leaderboard` writes ``leaderboard.md`` and a self-contained ``leaderboard.html`` (through
:mod:`crystalgen.reports.document`). The page holds nothing but what those files say, with provenance.
"""

from __future__ import annotations

import json
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports.document import MISSING, Report, Section, Table, Text, number, percent, to_html, to_markdown
from crystalgen.reports.published import CSP_PAPERS, GEN_PAPERS, PUBLISHED_CSP, PUBLISHED_GEN, SOURCE

METRICS_FILE, CARD_FILE = "metrics.json", "card.md"
REPORT_MD, REPORT_HTML = "report.md", "report.html"
MARKDOWN_FILE, HTML_FILE = "leaderboard.md", "leaderboard.html"
CSP, GEN, PROPERTY = "csp", "gen", "property"
#: Datasets in the order of the published tables; any other follows, alphabetically.
DATASET_ORDER = ("perov_5", "carbon_24", "mp_20", "mpts_52")
#: Families whose checkpoints are reference methods rather than models: labelled "(baseline)".
BASELINE_FAMILIES = frozenset({"template"})
#: How a benchmark's sampler description marks a no-model control run: labelled "(control)".
CONTROL_PREFIX = "control:"
CRYSTALGEN_PREFIX = "crystalgen: "  # document.py highlights the rows that start so in the HTML
PUBLISHED_SCALE = 100.0  # published.py holds rates as percentages, the rows here fractions
SECONDS_PER_MINUTE, SECONDS_PER_HOUR = 60.0, 3600.0
PROVENANCE_TITLES = ("seed", "wall time", "machine", "report / source", "note")

_NUMBER, _INT = ((int, float), "a number"), ((int,), "an integer")  # (accepted types, what the error says)
_TEXT, _MAPPING = ((str,), "text"), ((dict,), "a mapping")
_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CARD_TITLE = re.compile(r"^# (.+)$", re.M)
#: "- **Family:** diffusion", with the bullet's indented continuation lines
_CARD_FIELD = re.compile(r"^- \*\*(?P<key>[^*:]+):\*\* ?(?P<value>.*(?:\n  +\S.*)*)", re.M)
_DURATION = re.compile(r"^\s*([\d.,]+\s*(?:s|min|h))\b")
_ON_MACHINE = re.compile(r"\bon (.+?)(?:, Python [\d.]+)?(?: \(|$)")


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
#: Per task, in page order: columns, sort keys ((key, higher is better), ...), heading and caption templates.
BOARD_SPECS = {
    CSP: (CSP_COLUMNS, (("match_rate", True), ("rmse", False)), "CSP k={detail} — {dataset}",
          "CSP on the {dataset} test split, k={detail} proposals per composition; best first by match rate, "
          "then RMSE. Published rows: {source}."),
    GEN: (GEN_COLUMNS, (("cov_recall", True),), "Generation — {dataset}",
          "Generation against the {dataset} test split; best first by COV-R. crystalgen's d_E uses its surrogate, "
          "the published d_E the authors' model: compare d_E between crystalgen rows only. Published rows: {source}."),
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
    detail: Any = None  # what the row is of: k (CSP), the property (property models)
    path: tuple[str, ...] = ()  # where ``values`` sit in the run's metrics.json: ("by_k", "1"), ("properties", name)


@dataclass
class Board:
    """One table, its rows best first; boards with the same ``section`` share a heading."""
    section: str
    title: str
    columns: tuple[Column, ...]
    caption: str
    entries: list[Entry]


@dataclass(frozen=True)
class ModelCard:
    """What the page shows of a shipped checkpoint's ``card.md``."""
    name: str
    family: str | None
    protocol: str | None
    wall_time: str | None
    hardware: str | None
    path: Path | None = None
    fields: dict[str, str] = field(default_factory=dict, compare=False, repr=False)  # every bullet, as one line


@dataclass
class Leaderboard:
    """The page's tables, the shipped models and what was skipped."""
    reports_dir: Path
    boards: list[Board]
    models: list[ModelCard]
    skipped: list[str]

    def runs_of(self, model: str) -> list[Run]:
        """The run folders the tables cite for ``model``, by folder name."""
        runs = {e.run for board in self.boards for e in board.entries if e.run and e.run.model == model}
        return sorted(runs, key=lambda run: run.folder.name)


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


def _read_metrics(path: Path) -> tuple[str | None, Any]:
    """The task of a ``metrics.json`` (csp, gen, property; None if unrecognised or absent) and its contents."""
    if not path.is_file():
        return None, None
    metrics = read_json(path)
    if isinstance(metrics, dict) and metrics.get("task") in (CSP, GEN):
        return metrics["task"], metrics
    # property-model reports name no task: their per-property figures identify them
    return (PROPERTY if isinstance(metrics, dict) and isinstance(metrics.get("properties"), dict) else None), metrics


def _run(folder: Path, metrics: dict, where: str) -> Run:
    # `benchmark csp|gen` keep their provenance under "metadata", `benchmark surrogate` under "run"
    meta = _field(metrics, "metadata", where, _MAPPING, False) or _field(metrics, "run", where, _MAPPING, False) or {}
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
    protocol = _field(metrics, "protocol", where, _TEXT)  # surrogate reports name only their protocol
    from crystalgen.data.protocols import load_protocol

    try:
        return load_protocol(protocol).dataset
    except CrystalgenInputError:  # a protocol this checkout does not ship: group the run under its name
        return protocol


def _values(mapping: Any, columns: tuple[Column, ...], where: str) -> dict[str, float | None]:
    return {c.key: _field(mapping, c.key, where, _NUMBER, c.required) for c in columns}


def _figures(kind: str, folder: Path, metrics: dict, where: str) -> list[tuple[tuple, Entry]]:
    """Each (table key, row) that one run folder contributes."""
    run, dataset = _run(folder, metrics, where), _dataset(metrics, where)
    protocol = _field(metrics, "protocol", where, _TEXT)
    control = run.sampler.startswith(CONTROL_PREFIX)
    label = CRYSTALGEN_PREFIX + run.model + (" (baseline)" if run.family in BASELINE_FAMILIES else
                                             " (control)" if control else "")
    notes = [run.sampler] if control else []
    if kind == GEN:
        notes += [f"quick run: {metrics.get('n_generated')} samples"] if metrics.get("quick_run") else []
        missing = metrics.get("n_without_sample")
        notes += [f"{missing} of {metrics.get('n_requested')} requests gave no sample"] if missing else []
        return [((GEN, dataset, 0), Entry(label, _values(metrics, GEN_COLUMNS, where), protocol,
                                          _field(metrics, "n_generated", where, _INT), run, note="; ".join(notes)))]
    if kind == PROPERTY:
        return [((PROPERTY, dataset, name), Entry(label, _values(figures, PROPERTY_COLUMNS, f"{where} ({name})"),
                                                   protocol, _field(figures, "n", f"{where} ({name})", _INT), run,
                                                   detail=name, path=("properties", name)))
                for name, figures in _field(metrics, "properties", where, _MAPPING).items()]
    by_k = _field(metrics, "by_k", where, _MAPPING, False)
    paths = {k: ("by_k", k) for k in by_k} if by_k else {str(_field(metrics, "k", where, _INT)): ()}
    by_k = by_k or {k: metrics for k in paths}
    rows = []
    for k, figures in by_k.items():
        here = f"{where} (by_k {k})"
        if not str(k).isdigit():
            raise CrystalgenInputError(f"{here}: k is not a whole number")
        n = _field(figures, "n", here, _INT)
        subset = [] if metrics.get("full_split", True) else [
            f"first {n} of {metrics.get('split_size', '?')} test structures (--limit)"]
        rows.append(((CSP, dataset, int(k)), Entry(label, _values(figures, CSP_COLUMNS, here), protocol, n, run,
                                                   note="; ".join(subset + notes), detail=int(k), path=paths[k])))
    return rows


def _published(task: str, dataset: str, detail: Any) -> list[Entry]:
    """The published rows of one table (none for property models)."""
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


def _board(task: str, dataset: str, detail: Any, entries: list[Entry]) -> Board:
    """One table, published rows beside crystalgen's, sorted best first."""
    columns, order, section, caption = BOARD_SPECS[task]
    section = section.format(dataset=dataset, detail=detail)

    def best_first(entry: Entry) -> tuple:
        key: list = []
        for name, higher in order:
            value = entry.values.get(name)
            missing = value is None or math.isnan(value)  # missing figures sort last
            key += [missing, 0.0 if missing else -value if higher else value]
        return (*key, entry.label, entry.run.folder.name if entry.run else "")

    return Board(section, f"{section}: {detail}" if task == PROPERTY else section, columns,
                 caption.format(dataset=dataset, detail=detail, source=SOURCE),
                 sorted(entries + _published(task, dataset, detail), key=best_first))


def _read_card(path: Path) -> ModelCard:
    text = path.read_text(encoding="utf-8", errors="replace")  # a card is prose: an odd byte is shown, not fatal
    fields: dict[str, str] = {}
    for match in _CARD_FIELD.finditer(text):
        fields.setdefault(match["key"], " ".join(match["value"].split()))
    name = _CARD_TITLE.search(text)
    # trained models say "Training wall time" and "Machine"; the template baseline "Fit wall time: ... on <machine>"
    wall_text = fields.get("Training wall time") or fields.get("Fit wall time") or ""
    wall, on_machine = _DURATION.match(wall_text), _ON_MACHINE.search(wall_text)
    hardware = fields["Machine"].split(";")[0] if "Machine" in fields else on_machine and on_machine[1]
    protocol = fields.get("Data protocol")
    return ModelCard(name[1].strip() if name else path.parent.name, fields.get("Family"),
                     protocol and protocol.split(":")[0], wall and wall[1], hardware, path, fields)


def _board_order(key: tuple) -> tuple:
    task, dataset, detail = key  # CSP boards by k first (every k=1 table, then k=20), then by dataset
    return (list(BOARD_SPECS).index(task), detail if task == CSP else 0,
            DATASET_ORDER.index(dataset) if dataset in DATASET_ORDER else len(DATASET_ORDER), dataset, str(detail))


def build_leaderboard(reports_dir: str | os.PathLike, checkpoints_dir: str | os.PathLike) -> Leaderboard:
    """Every recognisable run folder under ``reports_dir`` and every model card under ``checkpoints_dir``."""
    for path, what in ((reports_dir, "reports"), (checkpoints_dir, "checkpoints")):
        if not Path(path).is_dir():
            raise CrystalgenInputError(f"{what} directory not found: {path}")
    rows: dict[tuple, list[Entry]] = {}
    skipped = []
    for folder in sorted(p for p in Path(reports_dir).iterdir() if p.is_dir() and not p.name.startswith(".")):
        kind, metrics = _read_metrics(folder / METRICS_FILE)
        if kind is None:
            skipped.append(f"`{folder.name}/`: " + (f"{METRICS_FILE} of another layout (no csp/gen task, no "
                                                    "properties)" if (folder / METRICS_FILE).is_file() else
                                                    f"no {METRICS_FILE}"))
            continue
        for key, entry in _figures(kind, folder, metrics, str(folder / METRICS_FILE)):
            rows.setdefault(key, []).append(entry)
    boards = [_board(*key, rows[key]) for key in sorted(rows, key=_board_order)]
    folders = sorted(p for p in Path(checkpoints_dir).iterdir() if p.is_dir() and not p.name.startswith("."))
    skipped += [f"`{p.name}/` (checkpoints): no {CARD_FILE}" for p in folders if not (p / CARD_FILE).is_file()]
    return Leaderboard(Path(reports_dir), boards, [_read_card(p / CARD_FILE) for p in folders
                                                   if (p / CARD_FILE).is_file()], skipped)


# ---------------------------------------------------------------------------------- rendering
def _duration(seconds: float | None) -> str:
    return (MISSING if seconds is None else f"{seconds:.1f} s" if seconds < SECONDS_PER_MINUTE else
            f"{seconds / SECONDS_PER_MINUTE:.1f} min" if seconds < SECONDS_PER_HOUR else
            f"{seconds / SECONDS_PER_HOUR:.2f} h")


def _linker(out_dir: Path, report_file: str) -> Callable[[Path], str]:
    """A Markdown link from ``out_dir`` to a run folder's report (``report_file``, else ``report.md``)."""
    def link(folder: Path) -> str:
        target = folder / report_file if (folder / report_file).is_file() else folder / REPORT_MD
        if not target.is_file():
            return f"`{folder.name}`"
        return f"[{folder.name}]({Path(os.path.relpath(target.resolve(), out_dir.resolve())).as_posix()})"
    return link


def _row(entry: Entry, columns: tuple[Column, ...], link: Callable[[Path], str]) -> list[str]:
    figures = [percent(entry.values[c.key]) if c.is_percent else number(entry.values[c.key]) for c in columns]
    run = entry.run
    provenance = ([MISSING] * 3 + [f"published: {entry.source}"] if run is None else
                  [MISSING if run.seed is None else str(run.seed), _duration(run.wall_s), run.machine or MISSING,
                   link(run.folder)])
    return [entry.label, entry.protocol, MISSING if entry.n is None else str(entry.n), *figures, *provenance,
            entry.note]


def _models_section(lb: Leaderboard, link: Callable[[Path], str]) -> Section:
    rows = []
    for card in lb.models:
        baseline = bool(card.family) and card.family.split(" (")[0] in BASELINE_FAMILIES
        reports = ", ".join(link(run.folder) for run in lb.runs_of(card.name))
        rows.append([card.name, (card.family or MISSING) + (" (baseline)" if baseline else ""),
                     card.protocol or MISSING, card.wall_time or MISSING, card.hardware or MISSING,
                     reports or "no benchmark report"])
    return Section("Shipped models", [Table(
        ["model", "family", "protocol", "training wall time", "hardware", "benchmark reports"], rows,
        caption="From each checkpoint's `card.md`: family, data protocol, training (or fit) wall time, machine.")])


def _report(lb: Leaderboard, out_dir: str | os.PathLike | None, report_file: str) -> Report:
    link = _linker(Path(out_dir) if out_dir is not None else lb.reports_dir.parent, report_file)
    sections = [Section("About this page", [Text(
        "Generated by `crystalgen leaderboard` from the run folders' `metrics.json` and the checkpoints' `card.md`; "
        "do not edit it by hand. `crystalgen:` rows are this toolkit's runs with their provenance (protocol, n, "
        "seed, wall time summed over the run's stages, machine, run report); `(baseline)` marks the template "
        "baseline, `(control)` a no-model control. `(published)` rows are the papers' figures (docs/protocol.md, "
        "section 5) for models trained on the full training splits, so crystalgen rows from a reduced protocol "
        "(such as `mp_20_reduced_train`) are not like for like. Rates are percentages.")])]
    for board in lb.boards:
        columns = ["model", "protocol", "n", *(c.title for c in board.columns), *PROVENANCE_TITLES]
        table = Table(columns, [_row(e, board.columns, link) for e in board.entries], caption=board.caption)
        if sections[-1].title == board.section:
            sections[-1].blocks.append(table)
        else:
            sections.append(Section(board.section, [table]))
    sections.append(_models_section(lb, link))
    if lb.skipped:
        sections.append(Section("Not on this page", [Text(
            "Folders without a recognisable benchmark `metrics.json` (other studies, raw JSON):\n\n"
            + "\n".join(f"- {reason}" for reason in lb.skipped))]))
    return Report("crystalgen leaderboard", sections)


def render_markdown(lb: Leaderboard, out_dir: str | os.PathLike | None = None) -> str:
    """The page as Markdown, linking reports relative to ``out_dir`` (default: the reports folder's parent)."""
    return to_markdown(_report(lb, out_dir, REPORT_MD))


def render_html(lb: Leaderboard, out_dir: str | os.PathLike | None = None) -> str:
    """The page as one self-contained HTML file (inline styles, no scripts), linking the runs' ``report.html``."""
    # document.py prints Markdown links as text: make them HTML links
    return _MD_LINK.sub(r'<a href="\2">\1</a>', to_html(_report(lb, out_dir, REPORT_HTML)))


def write_leaderboard(lb: Leaderboard, out_dir: str | os.PathLike) -> list[Path]:
    """Write ``leaderboard.md`` and ``leaderboard.html`` into ``out_dir``; returns their paths."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / MARKDOWN_FILE).write_text(render_markdown(lb, out), encoding="utf-8")
    (out / HTML_FILE).write_text(render_html(lb, out), encoding="utf-8")
    return [out / MARKDOWN_FILE, out / HTML_FILE]
