"""``crystalgen.reports.document``: a report as data, written as Markdown (+ figures/) and one self-contained HTML file."""

from __future__ import annotations

import base64
import re

import pytest

from crystalgen.reports.document import (
    Figure,
    Preformatted,
    Report,
    Section,
    Table,
    Text,
    to_html,
    to_markdown,
    write_report,
)

#: A real (1x1 pixel) PNG, and bytes that are not one: the writer must copy both verbatim.
TINY_PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5ErkJggg=="
)
OTHER_BYTES = bytes(range(256))


@pytest.fixture
def report() -> Report:
    return Report("Results <v1> & more", [
        Section("Summary", [
            Text("**Match rate 50%** for `tpl` <b>not bold</b> & co.\n\n- first point\n- second `x<y`\n"
                 "  continued\n\nclosing paragraph"),
            Preformatted("---\nmetrics:\n  a: 1\n---\n<card> ```fenced``` & stuff"),
        ]),
        Section("Tables & figures", [
            Table(["model", "rate | %", "note"],
                  [["crystalgen: tpl (this run)", "50.00", "a|b"], ["DiffCSP (published)", "52.02", "x<y\nsecond line"]],
                  caption="Caption with <angle> brackets"),
            Figure("rate_plot", TINY_PNG, "Rate by group."),
            Figure("no_caption", OTHER_BYTES),
        ]),
    ])


def test_markdown(report):
    md = to_markdown(report)
    lines = md.splitlines()
    assert lines[0] == "# Results <v1> & more"
    assert "## Summary" in lines and "## Tables & figures" in lines
    assert "**Match rate 50%** for `tpl` <b>not bold</b> & co." in lines
    # Preformatted text holding ``` gets a four-backtick fence, and its content verbatim.
    start = lines.index("````")
    assert lines[start + 1 : start + 5] == ["---", "metrics:", "  a: 1", "---"]
    assert lines[start + 6] == "````"
    # Table: pipes in cells are escaped, newlines folded, one separator cell per column.
    assert "| model | rate \\| % | note |" in lines
    assert "|---|---|---|" in lines
    assert "| crystalgen: tpl (this run) | 50.00 | a\\|b |" in lines
    assert "| DiffCSP (published) | 52.02 | x<y second line |" in lines
    assert "Caption with <angle> brackets" in lines
    # Figures are linked from figures/NAME.png; alt text is the caption, else the name.
    assert "![Rate by group.](figures/rate_plot.png)" in lines and "*Rate by group.*" in lines
    assert "![no_caption](figures/no_caption.png)" in lines
    # Every table row has as many unescaped separators as the header.
    table_rows = [line for line in lines if line.startswith("| ")]
    assert len(table_rows) == 3
    assert {len(re.findall(r"(?<!\\)\|", row)) for row in table_rows} == {4}


def test_html_escapes_and_formats(report):
    page = to_html(report)
    assert page.startswith("<!DOCTYPE html>") and page.rstrip().endswith("</body></html>")
    assert "<title>Results &lt;v1&gt; &amp; more</title>" in page
    assert "<h1>Results &lt;v1&gt; &amp; more</h1>" in page
    assert "<h2>Tables &amp; figures</h2>" in page
    assert "<b>" not in page and "&lt;b&gt;not bold&lt;/b&gt;" in page
    assert "<p><strong>Match rate 50%</strong> for <code>tpl</code> &lt;b&gt;not bold&lt;/b&gt; &amp; co.</p>" in page
    assert "<ul><li>first point</li><li>second <code>x&lt;y</code> continued</li></ul>" in page
    assert "<p>closing paragraph</p>" in page
    assert "<pre>---\nmetrics:\n  a: 1\n---\n&lt;card&gt; ```fenced``` &amp; stuff</pre>" in page
    assert "<th>rate | %</th>" in page and "<td>a|b</td>" in page and "<td>x&lt;y\nsecond line</td>" in page
    assert '<p class="caption">Caption with &lt;angle&gt; brackets</p>' in page
    # crystalgen's own rows are highlighted, others not.
    assert '<tr class="highlight"><td>crystalgen: tpl (this run)</td>' in page
    assert "<tr><td>DiffCSP (published)</td>" in page
    # Nothing but the document's own tags: no unescaped '<' from the content.
    tags = set(re.findall(r"<(/?[a-zA-Z0-9!]+)", page))
    assert tags <= {"!DOCTYPE", "html", "/html", "head", "/head", "meta", "title", "/title", "style", "/style",
                    "body", "/body", "h1", "/h1", "h2", "/h2", "p", "/p", "ul", "/ul", "li", "/li", "strong",
                    "/strong", "code", "/code", "pre", "/pre", "table", "/table", "thead", "/thead", "tbody",
                    "/tbody", "tr", "/tr", "th", "/th", "td", "/td", "figure", "/figure", "img", "figcaption",
                    "/figcaption"}


def test_html_embeds_figures_and_loads_nothing(report):
    page = to_html(report)
    sources = re.findall(r'<img alt="([^"]*)" src="([^"]*)">', page)
    assert [alt for alt, _ in sources] == ["Rate by group.", "no_caption"]
    assert [base64.b64decode(src.removeprefix("data:image/png;base64,")) for _, src in sources] == [TINY_PNG, OTHER_BYTES]
    assert all(src.startswith("data:image/png;base64,") for _, src in sources)
    assert "<figcaption>Rate by group.</figcaption>" in page
    assert page.count("<figcaption>") == 1
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?\s*(?:https?:)?//", page)
    assert "http://" not in page and "https://" not in page


def test_write_report(report, tmp_path):
    md_path, html_path = write_report(report, tmp_path / "out")
    assert md_path == tmp_path / "out" / "report.md" and html_path == tmp_path / "out" / "report.html"
    assert md_path.read_text() == to_markdown(report)
    assert html_path.read_text() == to_html(report)
    assert sorted(p.name for p in (tmp_path / "out" / "figures").iterdir()) == ["no_caption.png", "rate_plot.png"]
    assert (tmp_path / "out" / "figures" / "rate_plot.png").read_bytes() == TINY_PNG
    assert (tmp_path / "out" / "figures" / "no_caption.png").read_bytes() == OTHER_BYTES
    # Rewriting (a resumed benchmark) replaces the files.
    report.sections[1].blocks[2] = Figure("no_caption", TINY_PNG)
    write_report(report, tmp_path / "out")
    assert (tmp_path / "out" / "figures" / "no_caption.png").read_bytes() == TINY_PNG


def test_empty_report(tmp_path):
    empty = Report("Nothing")
    assert to_markdown(empty).splitlines()[0] == "# Nothing"
    assert "<h2>" not in to_html(empty)
    write_report(empty, tmp_path)
    assert (tmp_path / "figures").is_dir() and list((tmp_path / "figures").iterdir()) == []


@pytest.mark.filterwarnings("ignore:invalid value encountered in divide:RuntimeWarning")
def test_real_figures_are_png(tmp_path):
    import numpy as np

    from crystalgen.reports import figures

    png = figures.rmse_histogram({1: np.array([0.01, np.nan, 0.05]), 20: np.array([0.01, 0.02, 0.03])})
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    png = figures.compare_histogram([1.0, 2.0, 3.0], [2.0, 2.5], "density", "test", "samples")
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    # What a run where nothing matched, or no proposal parsed, draws.
    assert figures.rmse_histogram({1: np.array([np.nan, np.nan])})[:4] == b"\x89PNG"
    assert figures.compare_histogram([1.0, 2.0], [], "density", "test", "first proposals")[:4] == b"\x89PNG"
    assert figures.compare_histogram([2, 3], [], "elements", "test", "samples", discrete=True)[:4] == b"\x89PNG"
    breakdowns = {1: {"cubic": {"n": 2, "match_rate": 0.5}}, 2: {"cubic": {"n": 2, "match_rate": 1.0}}}
    assert figures.rate_by_group(breakdowns, "crystal system", ["triclinic", "cubic"])[:4] == b"\x89PNG"
