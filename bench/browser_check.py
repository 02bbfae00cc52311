"""Every shipped HTML page, opened in headless Chromium: decoded images, expected sections, screenshots.

    python bench/browser_check.py --out /tmp/crystalgen-screens

Checks ``docs/leaderboard.html`` and every ``docs/reports/*/report.html`` with
:func:`crystalgen.reports.browser.check_page`: each ``<img>`` decoded (``complete && naturalWidth >
0``), the rendered ``<h1>``/``<h2>`` headings include every heading of the page's Markdown twin, no
section is empty, the console logged no error. Writes one full-page PNG per page under ``--out``
(``leaderboard.png``, ``<report folder>.png``), prints a table and exits 1 when any page fails.
Needs ``apt-get install -y chromium chromium-driver`` and the ``browser`` extra.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from crystalgen.reports.browser import PageCheck, check_page, headless_chromium, missing_requirements

REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = "/tmp/crystalgen-screens"
PASSED, FAILED = "ok", "FAIL"
#: The CLI's exit status for bad input or a missing tool (1 is kept for "a page failed").
EXIT_CANNOT_CHECK = 2


def shipped_pages(docs: Path) -> dict[str, Path]:
    """Screenshot name -> page: the leaderboard, then the reports by folder name."""
    pages = {"leaderboard": docs / "leaderboard.html"}
    pages.update((html.parent.name, html) for html in sorted(docs.glob("reports/*/report.html")))
    return pages


def problems(check: PageCheck) -> str:
    """What is wrong with a page, in a few words; empty when it passed."""
    found = []
    if not check.title:
        found.append("no <title>")
    if check.broken_images:
        found.append(f"{check.broken_images} broken image(s)")
    if check.missing_headings:
        found.append("missing: " + "; ".join(check.missing_headings))
    if check.empty_sections:
        found.append("empty: " + "; ".join(check.empty_sections))
    if check.console_errors:
        found.append(f"{len(check.console_errors)} console error(s): {check.console_errors[0]}")
    return ", ".join(found)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=Path, default=REPO / "docs", help="folder holding leaderboard.html and reports/")
    parser.add_argument("--out", type=Path, default=Path(DEFAULT_OUT), help="folder for the screenshots")
    args = parser.parse_args()

    reason = missing_requirements()
    if reason:
        print(f"browser_check: {reason}", file=sys.stderr)
        sys.exit(EXIT_CANNOT_CHECK)
    start = time.perf_counter()
    pages, failures = shipped_pages(args.docs), 0
    print(f"{'page':<34} {'status':<6} {'headings':>8} {'images':>9} {'seconds':>7}  problems")
    with headless_chromium() as driver:
        for name, page in pages.items():
            page_start = time.perf_counter()
            check = check_page(page, args.out / f"{name}.png", driver=driver)
            failures += not check.passed
            images = f"{check.images - check.broken_images}/{check.images}"
            print(f"{name:<34} {PASSED if check.passed else FAILED:<6} {len(check.headings):>8} {images:>9} "
                  f"{time.perf_counter() - page_start:>7.2f}  {problems(check)}")
    print(f"\n{len(pages) - failures}/{len(pages)} pages passed in {time.perf_counter() - start:.1f} s; "
          f"screenshots in {args.out}")
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    main()
