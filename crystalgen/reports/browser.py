"""Open a self-contained HTML page (a report, the leaderboard) in headless Chromium and check it.

Why a real browser: a report's figures are base64 ``data:`` URIs and its sections are plain
``<h2>`` headings, so a truncated or corrupt PNG, or a section the HTML writer dropped, is still
well-formed text that no string check notices. Only a browser's decoder and DOM say whether each
``<img>`` actually decoded (``complete && naturalWidth > 0``) and which headings the reader sees.
The expected headings come from the Markdown written beside the page (``report.md`` for
``report.html``, ``leaderboard.md`` for ``leaderboard.html``): both are rendered from the same
:class:`~crystalgen.reports.document.Report`, so they must agree.

Chromium is driven through Selenium and the system's ``chromedriver`` (Debian: ``apt-get install -y
chromium chromium-driver``); nothing is downloaded at run time.
"""

from __future__ import annotations

import base64
import math
import re
import shutil
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Iterator, Sequence

from crystalgen.errors import CrystalgenInputError

if TYPE_CHECKING:
    from selenium.webdriver.remote.webdriver import WebDriver

APT_INSTALL = "apt-get install -y chromium chromium-driver"
PIP_INSTALL = 'pip install -e ".[browser]"'
#: Debian names the binary ``chromium``; Ubuntu and others ``chromium-browser``.
CHROMIUM_NAMES = ("chromium", "chromium-browser")
CHROMEDRIVER_NAME = "chromedriver"
#: Wide enough that tables do not wrap: the reports' body is capped at 60rem.
WINDOW_WIDTH_PX, WINDOW_HEIGHT_PX = 1280, 900
PAGE_LOAD_TIMEOUT_S = 60
#: Chromium renders nothing past its maximum texture size; longer pages are cut there.
MAX_SCREENSHOT_HEIGHT_PX = 16384
#: Chrome's log level for console errors and uncaught exceptions.
SEVERE = "SEVERE"
_MARKDOWN_HEADING = re.compile(r"^(#{1,2}) (.+?)\s*$")
_FENCE = re.compile(r"^(`{3,})")

# Resolves once every <img> has either loaded or failed, so the counts below are final.
_WAIT_FOR_IMAGES_JS = """
const done = arguments[arguments.length - 1];
Promise.all(Array.from(document.images, img => img.complete ? null :
    new Promise(settle => { img.onload = settle; img.onerror = settle; }))).then(() => done(null));
"""
# A section is empty when nothing with text or an image lies between its <h2> and the next heading.
_INSPECT_JS = """
const headings = Array.from(document.querySelectorAll('h1, h2'), h => h.textContent.trim());
const images = Array.from(document.images);
const emptySections = [];
for (const h2 of document.querySelectorAll('h2')) {
    let node = h2.nextElementSibling, filled = false;
    while (node && !/^H[12]$/.test(node.tagName) && !filled) {
        filled = node.textContent.trim() !== '' || node.querySelector('img') !== null || node.tagName === 'IMG';
        node = node.nextElementSibling;
    }
    if (!filled) emptySections.push(h2.textContent.trim());
}
return {title: document.title, headings: headings, images: images.length,
        broken: images.filter(img => !(img.complete && img.naturalWidth > 0)).length,
        emptySections: emptySections};
"""


@dataclass(frozen=True)
class PageCheck:
    """What headless Chromium saw on one page; :attr:`passed` is the verdict."""

    page: Path
    title: str
    headings: list[str]  # the rendered <h1>/<h2> texts, in page order
    missing_headings: list[str]  # in the Markdown twin but not on the rendered page
    images: int
    broken_images: int
    empty_sections: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    screenshot: Path | None = None

    @property
    def passed(self) -> bool:
        return bool(self.title) and not (self.missing_headings or self.broken_images
                                         or self.empty_sections or self.console_errors)


def missing_requirements() -> str | None:
    """Why headless Chromium cannot run here (with the install command), or None when it can."""
    try:
        import selenium  # noqa: F401
    except ImportError:
        return f"selenium not installed: {PIP_INSTALL}"
    found = {"chromium": _chromium_binary(), CHROMEDRIVER_NAME: shutil.which(CHROMEDRIVER_NAME)}
    missing = [name for name, path in found.items() if path is None]
    return f"{' and '.join(missing)} not installed: {APT_INSTALL}" if missing else None


def _chromium_binary() -> str | None:
    return next((path for path in map(shutil.which, CHROMIUM_NAMES) if path), None)


@contextmanager
def headless_chromium() -> Iterator[WebDriver]:
    """One headless Chromium session, reusable across pages (starting Chromium costs about a second)."""
    reason = missing_requirements()
    if reason:
        raise CrystalgenInputError(f"cannot check pages in a browser: {reason}")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = _chromium_binary()
    # --no-sandbox: CI and containers run as root, where Chromium's sandbox refuses to start.
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     f"--window-size={WINDOW_WIDTH_PX},{WINDOW_HEIGHT_PX}"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(shutil.which(CHROMEDRIVER_NAME)))
    try:
        driver.set_page_load_timeout(PAGE_LOAD_TIMEOUT_S)
        driver.set_script_timeout(PAGE_LOAD_TIMEOUT_S)
        yield driver
    finally:
        driver.quit()


def markdown_headings(markdown: str) -> list[str]:
    """The ``#`` and ``##`` headings of a Markdown text, skipping fenced blocks (a model card may hold some)."""
    headings, fence = [], None
    for line in markdown.splitlines():
        opening = _FENCE.match(line)
        if fence is None and opening:
            fence = opening.group(1)
        elif fence is not None:
            fence = None if line.strip() == fence else fence
        elif match := _MARKDOWN_HEADING.match(line):
            headings.append(match.group(2))
    return headings


def markdown_twin(html_path: str | Path) -> Path:
    """The Markdown file written beside an HTML page from the same report (same stem, ``.md``)."""
    twin = Path(html_path).with_suffix(".md")
    if not twin.is_file():
        raise CrystalgenInputError(f"{html_path}: no {twin.name} beside it to take the expected headings from")
    return twin


def check_page(html_path: str | Path, screenshot_path: str | Path | None = None,
               expected_headings: Sequence[str] | None = None, driver: WebDriver | None = None) -> PageCheck:
    """Load ``html_path`` in headless Chromium and check its images, headings and console.

    ``expected_headings`` defaults to those of the page's Markdown twin (:func:`markdown_twin`).
    A full-page PNG goes to ``screenshot_path`` when given. Pass ``driver`` (from
    :func:`headless_chromium`) to check many pages with one browser.
    """
    page = Path(html_path).resolve()
    if not page.is_file():
        raise CrystalgenInputError(f"{html_path}: no such page")
    if expected_headings is None:
        expected_headings = markdown_headings(markdown_twin(page).read_text())
    if driver is None:
        with headless_chromium() as own_driver:
            return check_page(page, screenshot_path, expected_headings, own_driver)

    driver.get_log("browser")  # drop what an earlier page logged
    driver.get(page.as_uri())
    driver.execute_async_script(_WAIT_FOR_IMAGES_JS)
    seen = driver.execute_script(_INSPECT_JS)
    errors = [entry["message"] for entry in driver.get_log("browser") if entry["level"] == SEVERE]
    shot = None
    if screenshot_path is not None:
        shot = Path(screenshot_path)
        shot.parent.mkdir(parents=True, exist_ok=True)
        shot.write_bytes(full_page_png(driver))
    return PageCheck(page=page, title=seen["title"], headings=seen["headings"],
                     missing_headings=list((Counter(expected_headings) - Counter(seen["headings"])).elements()),
                     images=seen["images"], broken_images=seen["broken"],
                     empty_sections=seen["emptySections"], console_errors=errors, screenshot=shot)


def full_page_png(driver: WebDriver) -> bytes:
    """A PNG of the whole page, not just the window (Chrome's WebDriver screenshot stops at the fold)."""
    size = driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
    clip = {"x": 0, "y": 0, "width": math.ceil(size["width"]), "scale": 1,
            "height": min(math.ceil(size["height"]), MAX_SCREENSHOT_HEIGHT_PX)}
    shot = driver.execute_cdp_cmd("Page.captureScreenshot",
                                  {"format": "png", "captureBeyondViewport": True, "clip": clip})
    return base64.b64decode(shot["data"])
