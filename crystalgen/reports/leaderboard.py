"""The leaderboard: every shipped model's benchmark figures, by task and dataset, beside published rows.

:func:`build_leaderboard` reads the run folders' ``metrics.json`` and the checkpoints' ``card.md``;
:func:`write_leaderboard` writes ``leaderboard.md`` and a self-contained ``leaderboard.html`` (through
:mod:`crystalgen.reports.document`). The page holds nothing but what those files say, with provenance.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports.board_rows import (
    BASELINE_FAMILIES, BOARD_SPECS, CSP, METRICS_FILE, PROPERTY, Column, Entry, Run, published_rows, read_metrics,
    run_rows,
)
from crystalgen.reports.document import MISSING, Report, Section, Table, Text, number, percent, to_html, to_markdown
from crystalgen.reports.published import SOURCE

CARD_FILE, REPORT_MD, REPORT_HTML = "card.md", "report.md", "report.html"
MARKDOWN_FILE, HTML_FILE = "leaderboard.md", "leaderboard.html"
#: Datasets in the order of the published tables; any other follows, alphabetically.
DATASET_ORDER = ("perov_5", "carbon_24", "mp_20", "mpts_52")
SECONDS_PER_MINUTE, SECONDS_PER_HOUR = 60.0, 3600.0
PROVENANCE_TITLES = ("seed", "wall time", "machine", "report / source", "note")

_MD_LINK = re.compile(r"\[([^\]]+)\]\(([^)\s]+)\)")
_CARD_TITLE = re.compile(r"^# (.+)$", re.M)
#: "- **Family:** diffusion", with the bullet's indented continuation lines
_CARD_FIELD = re.compile(r"^- \*\*(?P<key>[^*:]+):\*\* ?(?P<value>.*(?:\n  +\S.*)*)", re.M)
_DURATION = re.compile(r"^\s*([\d.,]+\s*(?:s|min|h))\b")
_ON_MACHINE = re.compile(r"\bon (.+?)(?:, Python [\d.]+)?(?: \(|$)")


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
                 sorted(entries + published_rows(task, dataset, detail), key=best_first))


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
        kind, metrics = read_metrics(folder / METRICS_FILE)
        if kind is None:
            skipped.append(f"`{folder.name}/`: " + (f"{METRICS_FILE} of another layout (no task this page "
                                                    "shows)" if (folder / METRICS_FILE).is_file() else
                                                    f"no {METRICS_FILE}"))
            continue
        for key, entry in run_rows(kind, folder, metrics, str(folder / METRICS_FILE)):
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
    figures = [percent(entry.values.get(c.key)) if c.is_percent else number(entry.values.get(c.key)) for c in columns]
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
        "(such as `mp_20_reduced_train`) are not like for like. Rates are percentages. Boards: CSP (k=1, k=20), "
        "polymorph-aware CSP (METRe), generation, S.U.N. (stable, unique, novel), design (property optimisation) "
        "and property models; each board's caption says how its figures were measured.")])]
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
