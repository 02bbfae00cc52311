"""``crystalgen.reports.browser``: pages opened in headless Chromium pass only with decoded images and every section."""

from __future__ import annotations

import io
from pathlib import Path

import pytest

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports import browser
from crystalgen.reports.document import Figure, Report, Section, Table, Text, to_html, to_markdown, write_report

DOCS = Path(__file__).resolve().parents[1] / "docs"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: How many shipped reports the last test opens (the smallest with figures: the whole set is bench/'s job).
SHIPPED_REPORTS_CHECKED = 3


@pytest.fixture(scope="module")
def driver():
    reason = browser.missing_requirements()
    if reason:
        pytest.skip(reason)
    with browser.headless_chromium() as session:
        yield session


def figure_png() -> bytes:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(2, 1.5), dpi=50)
    ax.plot([0, 1, 2], [1, 0, 1])
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    plt.close(fig)
    return buffer.getvalue()


def small_report(png: bytes) -> Report:
    return Report("Browser check <demo> & co", [
        Section("Summary", [Text("**Match rate 50%** for `tpl`.\n\n- one\n- two")]),
        Section("Table & figure", [Table(["model", "rate"], [["crystalgen: tpl", "50.00"]], caption="rates"),
                                   Figure("curve", png, caption="a curve")]),
        Section("Run metadata", [Text("seed 0")]),
    ])


def write_page(folder: Path, report: Report, html: str | None = None) -> Path:
    """``report.md`` from ``report`` and ``report.html`` from ``html`` (default: the same report)."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "report.md").write_text(to_markdown(report))
    page = folder / "report.html"
    page.write_text(html if html is not None else to_html(report))
    return page


def test_markdown_headings_skip_fenced_blocks() -> None:
    markdown = "# Title\n\n## One\n\n````\n## inside a model card\n```\n## still inside\n````\n\n## Two\n"
    assert browser.markdown_headings(markdown) == ["Title", "One", "Two"]


def test_missing_chromium_is_an_input_error_naming_apt(monkeypatch) -> None:
    monkeypatch.setattr(browser.shutil, "which", lambda name: None)
    reason = browser.missing_requirements()
    assert reason is not None and browser.APT_INSTALL in reason
    with pytest.raises(CrystalgenInputError, match="apt-get install"):
        with browser.headless_chromium():
            pass


def test_page_without_markdown_twin_is_an_input_error(tmp_path: Path) -> None:
    page = tmp_path / "lonely.html"
    page.write_text("<html><title>t</title><h1>t</h1></html>")
    with pytest.raises(CrystalgenInputError, match="lonely.md"):
        browser.check_page(page)


def test_built_report_passes_with_a_screenshot(driver, tmp_path: Path) -> None:
    report = small_report(figure_png())
    _, page = write_report(report, tmp_path / "run")
    check = browser.check_page(page, tmp_path / "shot.png", driver=driver)
    assert check.passed, check
    assert check.title == report.title
    assert check.headings == [report.title] + [section.title for section in report.sections]
    assert (check.images, check.broken_images) == (1, 0)
    assert check.screenshot is not None and check.screenshot.read_bytes().startswith(PNG_SIGNATURE)


def _broken_image(report: Report) -> tuple[Report, str]:
    # A PNG signature followed by junk: valid base64 in a valid data: URI, but no image to decode.
    figure = next(block for block in report.sections[1].blocks if isinstance(block, Figure))
    figure.png = PNG_SIGNATURE + b"not a png at all"
    return report, to_html(report)


def _missing_section(report: Report) -> tuple[Report, str]:
    return report, to_html(Report(report.title, report.sections[:-1]))


def _empty_section(report: Report) -> tuple[Report, str]:
    padded = Report(report.title, report.sections + [Section("Nothing here")])
    return padded, to_html(padded)


def _script_error(report: Report) -> tuple[Report, str]:
    return report, to_html(report).replace("</body>", "<script>throw new Error('boom')</script></body>")


@pytest.mark.parametrize("spoil, failed_check", [
    (_broken_image, lambda check: check.broken_images == 1),
    (_missing_section, lambda check: check.missing_headings == ["Run metadata"]),
    (_empty_section, lambda check: check.empty_sections == ["Nothing here"]),
    (_script_error, lambda check: any("boom" in message for message in check.console_errors)),
], ids=["broken-image", "missing-section", "empty-section", "script-error"])
def test_spoilt_page_fails(driver, tmp_path: Path, spoil, failed_check) -> None:
    report, html = spoil(small_report(figure_png()))
    check = browser.check_page(write_page(tmp_path, report, html), driver=driver)
    assert not check.passed
    assert failed_check(check), check


def _smallest_reports_with_figures(count: int) -> list[Path]:
    with_figures = [page for page in DOCS.glob("reports/*/report.html") if "<img" in page.read_text()]
    return sorted(with_figures, key=lambda page: page.stat().st_size)[:count]


def test_shipped_leaderboard_and_reports_pass(driver) -> None:
    reports = _smallest_reports_with_figures(SHIPPED_REPORTS_CHECKED)
    assert len(reports) == SHIPPED_REPORTS_CHECKED
    pages = [DOCS / "leaderboard.html", *reports]
    leaderboard, *report_checks = [browser.check_page(page, driver=driver) for page in pages]
    for check in [leaderboard, *report_checks]:
        assert check.passed, check
        assert len(check.headings) > 1, check
    assert all(check.images > 0 for check in report_checks)
