"""The generated tables of docs/benchmarks.md: regenerating them gives the committed file, and every figure in
them equals the source it links to, re-read here with plain ``json`` and ``published.py``.

The figure check does not use crystalgen's table code: it follows each link of a generated table to its file,
evaluates the key paths of the link's title itself, and compares them with the printed numbers at the printed
precision. A number outside such a link fails it, so no figure can sit in a generated table unchecked.
"""

from __future__ import annotations

import json
import re
from decimal import Decimal
from pathlib import Path

import pytest

import crystalgen
from conftest import assert_one_line_error, run_main  # noqa: E402  (shared with the other CLI tests)
from crystalgen.errors import CrystalgenInputError
from crystalgen.reports import published
from crystalgen.reports.doc_tables import TABLES, fill_doc_tables
from crystalgen.reports.leaderboard import build_leaderboard

REPO_ROOT = Path(crystalgen.__file__).resolve().parents[1]
DOCS = REPO_ROOT / "docs"
BENCHMARKS = DOCS / "benchmarks.md"
REAL_REPORTS, REAL_CHECKPOINTS = DOCS / "reports", REPO_ROOT / "checkpoints"
STALE = ("docs/benchmarks.md's generated tables do not match the run folders and model cards: run "
         "`crystalgen leaderboard` from the repository root and commit docs/benchmarks.md")

GENERATED = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->\n(?P<body>.*?)^<!-- end generated -->$", re.M | re.S)
LINK = re.compile(r'\[(?P<text>[^\]]*)\]\((?P<target>[^)\s]+)(?: "(?P<title>[^"]*)")?\)')
CODE = re.compile(r"`[^`]*`")
NUMBER = re.compile(r"(?P<number>\d+(?:,\d{3})*(?:\.\d+)?(?:e-?\d+)?)(?P<unit>%| ms)?")
PUBLISHED_ROW = re.compile(r"(?P<list>PUBLISHED_\w+)\[(?P<index>\d+)\]\.(?P<key>\w+)")
#: How a printed unit scales a run folder's value (fractions print as percentages, seconds as milliseconds).
UNIT_SCALE = {"%": 100.0, " ms": 1000.0, None: 1.0}
FLOAT_SLACK = 1e-9
MIN_FIGURES = 400  # the committed tables hold about 500; far fewer means the check lost some


# ------------------------------------------------------------------------------ the independent check
def _printed(match: re.Match) -> tuple[float, float]:
    """A printed number and half a unit of its last digit (how far rounding may have moved it)."""
    text = match["number"].replace(",", "")
    return float(text), 0.5 * 10.0 ** Decimal(text).as_tuple().exponent + FLOAT_SLACK


def _json_value(data, expression: str, where: str):
    """A key path (``by_k.1.match_rate``), or a product / ratio of key paths, evaluated with plain Python."""
    terms = re.split(r" ([*/]) ", expression)
    values = []
    for path in terms[::2]:
        value = data
        try:
            for step in path.split("."):
                value = value[int(step)] if isinstance(value, list) else value[step]
        except (KeyError, IndexError, TypeError, ValueError):
            raise AssertionError(f"{where}: the source has no {path!r}") from None
        values.append(value)
    if isinstance(values[0], str):
        return values[0]
    result = float(values[0])
    for op, value in zip(terms[1::2], values[1:]):
        result = result * value if op == "*" else result / value
    return result


def _check_numbers(text: str, expected: list[float], units_scale: bool, where: str) -> int:
    numbers = list(NUMBER.finditer(text))
    assert len(numbers) == len(expected), f"{where}: {len(numbers)} numbers in {text!r}, {len(expected)} keys"
    for match, value in zip(numbers, expected):
        printed, tolerance = _printed(match)
        scale = UNIT_SCALE[match["unit"]] if units_scale else 1.0
        assert abs(printed - scale * value) <= tolerance, (
            f"{where}: printed {match[0]!r}, the source holds {value!r}")
    return len(numbers)


def _check_link(link: re.Match, doc_dir: Path, where: str) -> int:
    """Checks one link of a generated table against its source; returns how many figures it checked."""
    text, target, title = link["text"], link["target"], link["title"]
    where = f"{where}: [{text}]({target})"
    if "protocol.md#" in target:  # published.py's rows: the papers' percentages are not fractions
        rows = [PUBLISHED_ROW.fullmatch(key) for key in title.split(", ")]
        assert all(rows), f"{where}: title {title!r} names no published.py row"
        values = [getattr(getattr(published, r["list"])[int(r["index"])], r["key"]) for r in rows]
        models = {getattr(published, r["list"])[int(r["index"])].model for r in rows}
        named = text.split(" ")[0] if not text[0].isdigit() else None
        assert named is None or {named} == models, f"{where}: names {named}, the rows are of {models}"
        return _check_numbers(text.removeprefix(named or ""), values, False, where)
    source = (doc_dir / target).resolve()
    assert source.is_file(), f"{where}: no such file"
    if target.endswith("report.md"):
        assert text == source.parent.name, f"{where}: a report link must show its run folder's name"
        return 0
    if target.endswith("card.md"):
        card = source.read_text(encoding="utf-8")
        for match in NUMBER.finditer(text):
            assert re.search(rf"(?<!\d)(?<!\d[.,]){re.escape(match[0])}(?!\d|[.,]\d)", card), (
                f"{where}: {match[0]!r} is not in {target}")
        return len(NUMBER.findall(text))
    assert target.endswith(".json") and title, f"{where}: a figure link must name a JSON file and its keys"
    data = json.loads(source.read_text(encoding="utf-8"))
    values = [_json_value(data, expression, where) for expression in title.split(", ")]
    if any(isinstance(v, str) for v in values):
        assert values == [text], f"{where}: shows {text!r}, the source holds {values!r}"
        return 1
    return _check_numbers(text, values, True, where)


def check_figures(markdown: str, doc_dir: Path) -> dict[str, int]:
    """Per generated table, how many figures were checked; AssertionError on the first that is wrong."""
    checked = {}
    for block in GENERATED.finditer(markdown):
        rows = [line for line in block["body"].splitlines() if line.startswith("|")][2:]  # past head and rule
        checked[block["name"]] = 0
        for number, row in enumerate(rows, 1):
            for cell in re.split(r"(?<!\\)\|", row.strip()[1:-1]):
                where = f"table {block['name']}, row {number}"
                checked[block["name"]] += sum(_check_link(link, doc_dir, where) for link in LINK.finditer(cell))
                bare = CODE.sub("", LINK.sub("", cell))
                assert not re.search(r"\d", bare), f"{where}: {cell.strip()!r} has a number outside a source link"
        assert checked[block["name"]], f"table {block['name']} checked no figure"
    return checked


# ------------------------------------------------------------------------------ the committed document
@pytest.fixture(scope="module")
def committed() -> str:
    return BENCHMARKS.read_text(encoding="utf-8")


@pytest.fixture(scope="module")
def real_board():
    return build_leaderboard(REAL_REPORTS, REAL_CHECKPOINTS)


def test_regenerating_the_tables_gives_the_committed_document(committed, real_board):
    assert fill_doc_tables(committed, real_board, DOCS) == committed, STALE


def test_every_figure_of_the_committed_tables_equals_its_source(committed):
    checked = check_figures(committed, DOCS)
    assert set(checked) == set(TABLES), "every table crystalgen can write appears in docs/benchmarks.md once"
    assert sum(checked.values()) >= MIN_FIGURES, checked


def _tamper_figure(doc: str) -> str:
    """The first run-folder figure of a generated table, its last printed digit changed."""
    block = GENERATED.search(doc)
    link = next(m for m in LINK.finditer(doc, block.start()) if m["target"].endswith(".json"))
    number = NUMBER.search(link["text"])
    digit = number.start("number") + len(number["number"]) - 1
    changed = link["text"][:digit] + str((int(link["text"][digit]) + 1) % 10) + link["text"][digit + 1:]
    return doc[:link.start()] + f"[{changed}]" + doc[link.start() + len(link["text"]) + 2:]


TAMPERINGS = {
    "a figure": _tamper_figure,
    "a key": lambda doc: doc.replace('"by_k.1.match_rate, by_k.1.rmse"', '"by_k.20.match_rate, by_k.20.rmse"', 1),
    "a bare number": lambda doc: doc.replace("(full split)", "(full split, 42)", 1),
    "a published figure": lambda doc: doc.replace("[DiffCSP 52.02% /", "[DiffCSP 52.20% /", 1),
    "a card figure": lambda doc: doc.replace("[16,000 of 16,000 steps", "[16,500 of 16,000 steps", 1),
}


@pytest.mark.parametrize("what", list(TAMPERINGS))
def test_a_tampered_copy_fails_both_checks(committed, real_board, what):
    tampered = TAMPERINGS[what](committed)
    assert tampered != committed, f"the tampering of {what} found nothing to change"
    with pytest.raises(AssertionError):
        check_figures(tampered, DOCS)
    assert fill_doc_tables(tampered, real_board, DOCS) == committed  # regenerating repairs it


def test_the_cli_rewrites_a_document_and_leaves_pages_and_documents_alone_on_request(tmp_path, committed,
                                                                                    real_board, capsys):
    doc, out = tmp_path / "benchmarks.md", tmp_path / "site"
    doc.write_text(_tamper_figure(committed), encoding="utf-8")
    args = ["leaderboard", "--reports", str(REAL_REPORTS), "--checkpoints", str(REAL_CHECKPOINTS), "--out", str(out)]
    result = run_main(args + ["--docs", str(doc)], capsys)
    assert result.returncode == 0, result.stderr
    assert doc.read_text(encoding="utf-8") == fill_doc_tables(committed, real_board, tmp_path)
    assert f"rewrote the generated tables of {doc}" in result.stderr and (out / "leaderboard.md").is_file()
    check_figures(doc.read_text(encoding="utf-8"), tmp_path)  # links are relative to the document's folder

    doc.write_text(_tamper_figure(committed), encoding="utf-8")
    assert run_main(args + ["--docs", str(doc), "--no-docs"], capsys).returncode == 0
    assert doc.read_text(encoding="utf-8") == _tamper_figure(committed)  # --no-docs wins over --docs


# ------------------------------------------------------------------------------ errors
def _csp_run(folder: Path, model: str, ks: tuple[int, ...] = (1,)) -> None:
    folder.mkdir(parents=True)
    by_k = {str(k): {"k": k, "n": 10, "match_rate": 0.5, "rmse": 0.1} for k in ks}
    (folder / "metrics.json").write_text(json.dumps({
        "task": "csp", "dataset": "perov_5", "protocol": "perov_5", "by_k": by_k, "full_split": True,
        "targets_without_prediction": 0, "metadata": {"model": model, "family": "diffusion",
                                                      "wall_s": {"predict": 1.0, "score": 2.0}}}))
    (folder / "report.md").write_text("# report\n")


@pytest.mark.parametrize("case", ["unknown table", "not closed", "stray end", "no card", "missing document"])
def test_bad_documents_are_one_line_exit_2_and_write_nothing(tmp_path, capsys, case):
    reports, checkpoints, out = tmp_path / "reports", tmp_path / "checkpoints", tmp_path / "out"
    _csp_run(reports / "diffusion-perov_5-csp", "diffusion-perov_5")  # a run whose model has no card
    checkpoints.mkdir()
    marker, end = "<!-- generated: {} -->\n", "<!-- end generated -->\n"
    text, fragment = {
        "unknown table": (marker.format("no-such-table") + end, "unknown generated table 'no-such-table'"),
        "not closed": (marker.format("csp-diffusion") + marker.format("csp-template") + end + end, "is not closed"),
        "stray end": (end, "0 '<!-- generated: NAME -->' markers but 1"),
        "no card": (marker.format("csp-diffusion") + end, "no model card for 'diffusion-perov_5'"),
        "missing document": (None, "document not found"),
    }[case]
    doc = tmp_path / "doc.md"
    if text is not None:
        doc.write_text("# Doc\n\n" + text, encoding="utf-8")
    result = run_main(["leaderboard", "--reports", str(reports), "--checkpoints", str(checkpoints),
                       "--out", str(out), "--docs", str(doc)], capsys)
    assert_one_line_error(result, fragment)
    assert not (out / "leaderboard.md").exists()
    assert text is None or doc.read_text(encoding="utf-8") == "# Doc\n\n" + text


def test_a_table_lists_the_runs_that_exist_and_names_what_one_lacks(tmp_path):
    reports, checkpoints = tmp_path / "reports", tmp_path / "checkpoints"
    _csp_run(reports / "template-perov_5-csp", "template-perov_5", ks=(1, 20))
    checkpoints.mkdir()
    doc = "<!-- generated: csp-template -->\n<!-- end generated -->\n"
    filled = fill_doc_tables(doc, build_leaderboard(reports, checkpoints), tmp_path)
    rows = [line for line in filled.splitlines() if line.startswith("| `")]
    assert len(rows) == 1 and "[template-perov_5-csp](reports/template-perov_5-csp/report.md)" in rows[0]
    assert check_figures(filled, tmp_path) == {"csp-template": 8}  # n, two rates, two RMSEs, no-proposal, 2 walls

    _csp_run(reports / "template-mp_20-csp", "template-mp_20")  # the table cites k=20, which this run lacks
    with pytest.raises(CrystalgenInputError, match="'template-mp_20-csp' for 20"):
        fill_doc_tables(doc, build_leaderboard(reports, checkpoints), tmp_path)
