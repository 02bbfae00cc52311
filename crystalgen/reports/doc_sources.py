"""What the generated tables of the docs (:mod:`crystalgen.reports.doc_tables`) are built from.

:class:`Sources` holds the leaderboard's loaded run folders and model cards; every figure it writes into a table
is a link naming its source, so a reader (and tests/test_doc_tables.py) can follow it back:

* a JSON file of a run folder, the link titled with the key path of each number it shows (``by_k.1.match_rate``;
  ``a / b`` is a ratio of two keys, ``a * b / c`` a product);
* a row of :mod:`crystalgen.reports.published`, linked to docs/protocol.md and titled ``PUBLISHED_CSP[3].rmse``;
* a model card, linked to its ``card.md``, quoting the card's own figures.
"""

from __future__ import annotations

import operator
import os
import re
from pathlib import Path
from typing import Any, Callable, NoReturn, Sequence

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports import published
from crystalgen.reports.document import MISSING
from crystalgen.reports.board_rows import METRICS_FILE, Entry, read_json
from crystalgen.reports.leaderboard import REPORT_MD, Leaderboard

#: Beside the reports folder, where published.py's rows are listed with their papers.
PROTOCOL_DOC, PUBLISHED_ANCHOR = "protocol.md", "#5-published-figures"
PUBLISHED_LISTS = ("PUBLISHED_CSP", "PUBLISHED_GEN")
PERCENT, MS_PER_S = 100.0, 1000.0
_OPERATORS = {"*": operator.mul, "/": operator.truediv}
_OPERATOR = re.compile(r" ([*/]) ")
_CARD_TRAINING = re.compile(r"(?P<steps>[\d,]+ of [\d,]+ steps)(?P<unfinished>.*?unfinished)?.*?batch (?P<batch>\d+)"
                            r".*?(?P<structures>[\d,]+) training structures \((?:about )?(?P<epochs>[\d.]+) epochs")
_CARD_THROUGHPUT = re.compile(r"^[\d,.]+ structures/s")

Format = Callable[[Any], str]
Figure = tuple[str, Format]  # (key path expression, how its value prints)


def printed(template: str, scale: float | None = None) -> Format:
    """How a value prints: ``template`` filled with the value (times ``scale``, if given; counts stay whole)."""
    return lambda x: template.format(x if scale is None else scale * x)


#: The formats of the tables' figures. Run folders hold rates as fractions (``pct`` shows percentages),
#: published.py as percentages already (``published_percent``).
pct, published_percent = printed("{:.2f}%", PERCENT), printed("{:.2f}%")
plain, count = printed("{:.4f}"), printed("{:,}")
seconds, tenths, milliseconds = printed("{:,.0f} s"), printed("{:,.1f} s"), printed("{:.1f} ms", MS_PER_S)
per_second, threshold = printed("{:.1f}/s"), printed("{:g}")


def text(x: str) -> str:
    return x


def counted(label: str) -> Format:
    """A count followed by what it counts (``32 overlap``)."""
    return lambda n: f"{n:,} {label}"


class Sources:
    """What the tables read: the leaderboard's run folders, its model cards, links relative to the doc."""

    def __init__(self, lb: Leaderboard, doc_dir: Path):
        self.lb, self.doc_dir, self.table = lb, doc_dir, ""
        self.entries: dict[str, list[Entry]] = {}
        for board in lb.boards:
            for entry in board.entries:
                if entry.run:
                    self.entries.setdefault(entry.run.folder.name, []).append(entry)
        self.cards = {card.name: card for card in lb.models}

    def fail(self, message: str) -> NoReturn:
        raise CrystalgenInputError(f"docs table {self.table!r}: {message}")

    def has(self, folder: str) -> bool:
        return folder in self.entries

    def entry(self, folder: str, detail: Any = None) -> Entry:
        """The leaderboard row of run folder ``folder`` (for ``detail``: k, or a property)."""
        rows = [e for e in self.entries.get(folder, []) if detail is None or e.detail == detail]
        if not rows:
            self.fail(f"cites run folder {folder!r}" + ("" if detail is None else f" for {detail!r}") +
                      f", which is not among the csp, gen and property runs of {self.lb.reports_dir}")
        return rows[0]

    def link(self, target: Path) -> str:
        return Path(os.path.relpath(target.resolve(), self.doc_dir.resolve())).as_posix()

    def report(self, folder: str) -> str:
        """The run folder's name, linked to its report."""
        return f"[{folder}]({self.link(self.entry(folder).run.folder / REPORT_MD)})"

    def value(self, data: Any, expression: str, where: Path) -> Any:
        """The number (or text) a key path expression names in ``data``; None where the file holds null."""
        terms = _OPERATOR.split(expression)
        values = [self._lookup(data, path, where) for path in terms[::2]]
        if any(v is None for v in values):
            return None
        result = values[0]
        for op, v in zip(terms[1::2], values[1:]):
            result = _OPERATORS[op](result, v)
        return result

    def _lookup(self, data: Any, path: str, where: Path) -> Any:
        value = data
        for step in path.split("."):
            if isinstance(value, list) and step.isdigit() and int(step) < len(value):
                value = value[int(step)]
            elif isinstance(value, dict) and step in value:
                value = value[step]
            else:
                self.fail(f"{where} has no {path!r}")
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float, str))):
            self.fail(f"{where}: {path!r} is {value!r}, not a number or text")
        return value

    def cite(self, target: Path, data: Any, figures: Sequence[Figure], layout: str = " / ") -> str:
        """One link to ``target`` showing ``figures`` of its ``data``, titled with their key paths.

        ``layout`` joins the figures, or places them where it has ``{}``.
        """
        shown, keys = [], []
        for expression, fmt in figures:
            value = self.value(data, expression, target)
            shown.append(MISSING if value is None else fmt(value))
            keys += [] if value is None else [expression]
        joined = layout.format(*shown) if "{}" in layout else layout.join(shown)
        return f'[{joined}]({self.link(target)} "{", ".join(keys)}")' if keys else joined

    def _data(self, folder: str, file: str) -> tuple[Path, Any]:
        run = self.entry(folder).run
        return run.folder / file, run.metrics if file == METRICS_FILE else read_json(run.folder / file)

    def run(self, folder: str, *figures: Figure, layout: str = " / ", file: str = METRICS_FILE) -> str:
        """Figures of a run folder's ``metrics.json`` (or of another JSON ``file`` in it)."""
        return self.cite(*self._data(folder, file), figures, layout)

    def number(self, folder: str, expression: str) -> Any:
        """One value of a run folder's ``metrics.json``, for a table's layout rather than its cells."""
        where, data = self._data(folder, METRICS_FILE)
        return self.value(data, expression, where)

    def keys(self, folder: str, path: str) -> list[str]:
        """The keys (or list positions) at ``path`` of a run folder's ``metrics.json``; none where it is absent."""
        value: Any = self.entry(folder).run.metrics
        for step in path.split("."):
            value = value.get(step) if isinstance(value, dict) else None
        if isinstance(value, dict):
            return list(value)
        return [str(i) for i in range(len(value))] if isinstance(value, list) else []

    def prefix(self, folder: str, detail: Any) -> str:
        """Where a row's figures sit in its metrics.json, as a key path prefix (``by_k.1.``)."""
        return "".join(f"{step}." for step in self.entry(folder, detail).path)

    def card(self, model: str) -> str:
        """A model's training, from its card: steps x batch, epochs, wall time, throughput; linked to the card."""
        card = self.cards.get(model) or self.fail(f"no model card for {model!r}")
        training = _CARD_TRAINING.search(card.fields.get("Training", ""))
        throughput = _CARD_THROUGHPUT.match(card.fields.get("Training throughput", ""))
        parts = [f"{training['steps']}{' (unfinished)' if training['unfinished'] else ''} x {training['batch']}, "
                 f"{training['epochs']} epochs of {training['structures']}"] if training else ["fit"]
        parts += [card.wall_time or MISSING] + ([throughput[0]] if throughput else [])
        return f"[{', '.join(parts)}]({self.link(card.path)})" if card.path else ", ".join(parts)

    def published(self, rows: Sequence[Any], figures: Sequence[tuple[str, Format]], label: bool = True) -> str:
        """Published rows, each ``MODEL a / b``, linked to docs/protocol.md and titled with their published.py rows."""
        target, cells = self.link(self.lb.reports_dir.parent / PROTOCOL_DOC) + PUBLISHED_ANCHOR, []
        for row in rows:
            name = next(name for name in PUBLISHED_LISTS if row in getattr(published, name))
            at = f"{name}[{getattr(published, name).index(row)}]"
            values = [(key, fmt, getattr(row, key)) for key, fmt in figures]
            shown = " / ".join(MISSING if value is None else fmt(value) for _, fmt, value in values)
            title = ", ".join(f"{at}.{key}" for key, _, value in values if value is not None)
            shown = f"{row.model} {shown}" if label else shown
            cells.append(f'[{shown}]({target} "{title}")' if title else shown)
        return ", ".join(cells) or MISSING


def published_csp(dataset: str, k: int = 1) -> list[Any]:
    """The published CSP rows of a dataset at ``k`` proposals, made without a given template."""
    return [p for p in published.PUBLISHED_CSP if p.dataset == dataset and p.k == k and not p.note]
