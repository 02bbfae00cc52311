"""A report as plain data (sections of text, tables and figures), written as Markdown and HTML.

``report.md`` links its figures from ``figures/*.png``; ``report.html`` embeds them (base64), has
its styles inline and loads nothing from the network, so it can be mailed or archived as one
file. Text blocks use a small Markdown subset: paragraphs, ``- `` bullet lists, ``**bold**`` and
```code```.
"""

from __future__ import annotations

import base64
import html
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

FIGURES_DIR = "figures"


@dataclass
class Text:
    markdown: str


@dataclass
class Preformatted:
    """Verbatim text, e.g. a model card."""

    text: str


@dataclass
class Table:
    columns: list[str]
    rows: list[list[str]]
    caption: str = ""


@dataclass
class Figure:
    name: str  # file stem, e.g. "rmse_histogram"
    png: bytes
    caption: str = ""


Block = Text | Preformatted | Table | Figure


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)


@dataclass
class Report:
    title: str
    sections: list[Section] = field(default_factory=list)


# ---------------------------------------------------------------------------------- numbers
MISSING = "—"


def _missing(x: float | None) -> bool:
    return x is None or (isinstance(x, float) and math.isnan(x))


def percent(x: float | None) -> str:
    """A fraction as a percentage with two decimals; a dash when missing."""
    return MISSING if _missing(x) else f"{100 * x:.2f}"


def number(x: float | None, digits: int = 4) -> str:
    return MISSING if _missing(x) else f"{x:.{digits}f}"


# ---------------------------------------------------------------------------------- markdown
def _md_cell(value: str) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def table_markdown(table: Table) -> str:
    """A Markdown table (caption not included)."""
    lines = ["| " + " | ".join(_md_cell(c) for c in table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in table.rows]
    return "\n".join(lines)


def to_markdown(report: Report) -> str:
    lines = [f"# {report.title}", ""]
    for section in report.sections:
        lines += [f"## {section.title}", ""]
        for block in section.blocks:
            if isinstance(block, Text):
                lines += [block.markdown.strip(), ""]
            elif isinstance(block, Preformatted):
                fence = "````" if "```" in block.text else "```"
                lines += [fence, block.text, fence, ""]
            elif isinstance(block, Table):
                if block.caption:
                    lines += [block.caption, ""]
                lines += [table_markdown(block), ""]
            else:
                lines += [f"![{block.caption or block.name}]({FIGURES_DIR}/{block.name}.png)", ""]
                if block.caption:
                    lines += [f"*{block.caption}*", ""]
    return "\n".join(lines)


# ---------------------------------------------------------------------------------- html
_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 60rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
table { border-collapse: collapse; margin: 0.5rem 0 1.5rem; font-size: 0.92rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.6rem; text-align: left; }
th { background: #f2f2f2; }
tr.highlight td { background: #fff6d8; font-weight: 600; }
figure { margin: 1rem 0 2rem; } figure img { max-width: 100%; }
figcaption, .caption { color: #555; font-size: 0.9rem; }
code { background: #f4f4f4; padding: 0 0.2rem; }
pre { background: #f7f7f7; padding: 0.8rem; overflow-x: auto; white-space: pre-wrap; font-size: 0.85rem; }
"""
_BOLD = re.compile(r"\*\*(.+?)\*\*")
_CODE = re.compile(r"`([^`]+)`")

#: Table rows whose first cell starts with this are highlighted (crystalgen's own rows).
HIGHLIGHT_PREFIX = "crystalgen"


def _inline(text: str) -> str:
    escaped = html.escape(text)
    return _BOLD.sub(r"<strong>\1</strong>", _CODE.sub(r"<code>\1</code>", escaped))


def _text_html(markdown: str) -> str:
    out, bullets, paragraph = [], [], []

    def flush() -> None:
        if paragraph:
            out.append(f"<p>{_inline(' '.join(paragraph))}</p>")
            paragraph.clear()
        if bullets:
            out.append("<ul>" + "".join(f"<li>{_inline(b)}</li>" for b in bullets) + "</ul>")
            bullets.clear()

    for line in markdown.strip().splitlines():
        stripped = line.strip()
        if not stripped:
            flush()
        elif stripped.startswith("- "):
            if paragraph:
                flush()
            bullets.append(stripped[2:])
        elif bullets and line.startswith("  "):  # continuation of a bullet
            bullets[-1] += " " + stripped
        else:
            if bullets:
                flush()
            paragraph.append(stripped)
    flush()
    return "\n".join(out)


def _table_html(table: Table) -> str:
    head = "".join(f"<th>{_inline(c)}</th>" for c in table.columns)
    body = []
    for row in table.rows:
        cls = ' class="highlight"' if row and str(row[0]).startswith(HIGHLIGHT_PREFIX) else ""
        body.append(f"<tr{cls}>" + "".join(f"<td>{_inline(str(c))}</td>" for c in row) + "</tr>")
    caption = f'<p class="caption">{_inline(table.caption)}</p>' if table.caption else ""
    return f"{caption}<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(report: Report) -> str:
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{html.escape(report.title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(report.title)}</h1>",
    ]
    for section in report.sections:
        parts.append(f"<h2>{html.escape(section.title)}</h2>")
        for block in section.blocks:
            if isinstance(block, Text):
                parts.append(_text_html(block.markdown))
            elif isinstance(block, Preformatted):
                parts.append(f"<pre>{html.escape(block.text)}</pre>")
            elif isinstance(block, Table):
                parts.append(_table_html(block))
            else:
                data = base64.b64encode(block.png).decode("ascii")
                caption = f"<figcaption>{_inline(block.caption)}</figcaption>" if block.caption else ""
                alt = html.escape(block.caption or block.name)
                parts.append(f'<figure><img alt="{alt}" src="data:image/png;base64,{data}">{caption}</figure>')
    parts.append("</body></html>")
    return "\n".join(parts)


def write_report(report: Report, out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``report.md`` (+ ``figures/``) and the self-contained ``report.html``."""
    out = Path(out_dir)
    figures = out / FIGURES_DIR
    figures.mkdir(parents=True, exist_ok=True)
    for section in report.sections:
        for block in section.blocks:
            if isinstance(block, Figure):
                (figures / f"{block.name}.png").write_bytes(block.png)
    md_path, html_path = out / "report.md", out / "report.html"
    md_path.write_text(to_markdown(report))
    html_path.write_text(to_html(report))
    return md_path, html_path
