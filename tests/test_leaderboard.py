"""``crystalgen leaderboard``: tables built from run folders, provenance, order, staleness, errors, HTML.

The checks read the page back as Markdown tables and compare its cells with the raw ``metrics.json``
values (not with strings built by the same code), so a figure that is mis-read, mis-rounded or lost
fails here.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

import pytest

import crystalgen
from conftest import assert_one_line_error, run_main  # noqa: E402  (shared with the other CLI tests)
from crystalgen.reports.leaderboard import build_leaderboard, render_html, render_markdown, write_leaderboard
from crystalgen.reports.published import PUBLISHED_CSP, PUBLISHED_GEN

REPO_ROOT = Path(crystalgen.__file__).resolve().parents[1]
REAL_REPORTS, REAL_CHECKPOINTS = REPO_ROOT / "docs" / "reports", REPO_ROOT / "checkpoints"
COMMITTED_MD, COMMITTED_HTML = REPO_ROOT / "docs" / "leaderboard.md", REPO_ROOT / "docs" / "leaderboard.html"
STALE = ("{} does not match the run folders and model cards: run `crystalgen leaderboard` from the repository "
         "root and commit docs/leaderboard.md and docs/leaderboard.html")

PERCENT_TOLERANCE = 0.005 + 1e-9  # two decimals
NUMBER_TOLERANCE = 0.00005 + 1e-12  # four decimals
#: Table heading -> (metrics.json key, printed as a percentage), written out here rather than imported.
CSP_CELLS = {"match rate (%)": ("match_rate", True), "RMSE": ("rmse", False)}
GEN_CELLS = {"struct. valid (%)": ("struct_validity", True), "comp. valid (%)": ("comp_validity", True),
             "COV-R (%)": ("cov_recall", True), "COV-P (%)": ("cov_precision", True), "d_rho": ("d_rho", False),
             "d_E": ("d_prop", False), "d_elem": ("d_elem", False), "unique (%)": ("uniqueness", True),
             "novel (%)": ("novelty", True)}
UNIT_SECONDS = {"s": 1.0, "min": 60.0, "h": 3600.0}
LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<target>[^)]+)\)")


# ------------------------------------------------------------------------------ reading the page back
def parse_page(markdown: str) -> dict[str, list[list[dict[str, str]]]]:
    """Section heading -> its tables, each a list of rows keyed by column heading."""
    sections: dict[str, list[list[dict[str, str]]]] = {}
    heading, header, rows = None, None, None
    for line in markdown.splitlines():
        if line.startswith("## "):
            heading, header = line[3:], None
            sections[heading] = []
        elif line.startswith("|") and heading is not None:
            cells = [c.strip().replace("\\|", "|") for c in re.split(r"(?<!\\)\|", line.strip()[1:-1])]
            if header is None:
                header, rows = cells, []
                sections[heading].append(rows)
            elif not set(line) <= set("|-"):
                rows.append(dict(zip(header, cells, strict=True)))
        else:
            header = None
    return sections


def rows_of(sections: dict, heading: str, table: int = 0) -> list[dict[str, str]]:
    assert heading in sections, f"no section {heading!r}; sections: {list(sections)}"
    return sections[heading][table]


def assert_cell(cell: str, value: float | None, is_percent: bool, what: str) -> None:
    if value is None:
        assert cell == "—", f"{what}: {cell!r}, expected a dash"
        return
    expected, tolerance = (100 * value, PERCENT_TOLERANCE) if is_percent else (value, NUMBER_TOLERANCE)
    decimals = 2 if is_percent else 4
    assert re.fullmatch(rf"-?\d+\.\d{{{decimals}}}", cell), f"{what}: {cell!r} is not printed with {decimals} decimals"
    assert abs(float(cell) - expected) <= tolerance, f"{what}: {cell} != {expected}"


def seconds(cell: str) -> float:
    amount, unit = cell.split()
    return float(amount) * UNIT_SECONDS[unit]


def run_folder(row: dict[str, str], page_dir: Path) -> Path:
    """The run folder a row's report link (relative to the page) points into."""
    match = LINK.fullmatch(row["report / source"])
    assert match, f"no report link in {row}"
    target = page_dir / match["target"]
    assert target.is_file() and target.parent.name == match["text"], row
    return target.parent


# ------------------------------------------------------------------------------ fake run folders
def _meta(model: str, family: str, seed: int, wall: dict[str, float], cpu: str, **settings) -> dict:
    return {"model": model, "family": family, "model_protocol": None, "settings": {"seed": seed, **settings},
            "wall_s": wall, "machine": {"cpu": cpu, "cores": 4, "gpu": None}}


def _csp(model: str, family: str, dataset: str, by_k: dict[int, tuple[float, float | None, int]], **meta) -> dict:
    k = max(by_k)
    entries = {str(kk): {"k": kk, "n": n, "match_rate": rate, "rmse": rmse} for kk, (rate, rmse, n) in by_k.items()}
    return {"task": "csp", "dataset": dataset, "protocol": dataset, "split": "test", "k": k, **entries[str(k)],
            "by_k": entries, "full_split": True, "split_size": by_k[k][2], "metadata": _meta(model, family, **meta)}


def _write(folder: Path, metrics: dict | str, report: bool = True) -> None:
    folder.mkdir(parents=True)
    (folder / "metrics.json").write_text(metrics if isinstance(metrics, str) else json.dumps(metrics))
    if report:
        (folder / "report.md").write_text("# report\n")
        (folder / "report.html").write_text("<html></html>")


GEN_FIGURES = {"struct_validity": 0.987, "comp_validity": 0.8123, "cov_recall": 0.995, "cov_precision": 0.97,
               "d_rho": 0.25, "d_prop": None, "d_elem": 0.0312, "uniqueness": 0.999, "novelty": 0.9}
CARD = """---
metrics:
  perov_5_csp_k1_match_rate: 0.6123
---
# alpha-perov_5

- **Family:** diffusion (task: csp)
- **Data protocol:** perov_5 (standard): train on train, select on val, evaluate on test
- **Machine:** Fake CPU (2 cores), no GPU; torch 2.0, Python 3.11
- **Training wall time:** 12.5 min of training steps, summed over resumed
  sessions (data loading not included)
"""


@pytest.fixture
def fake_tree(tmp_path: Path) -> tuple[Path, Path]:
    reports, checkpoints = tmp_path / "reports", tmp_path / "checkpoints"
    _write(reports / "alpha-perov_5-csp", _csp("alpha-perov_5", "diffusion", "perov_5", {1: (0.6123, 0.0456, 3785)},
                                               seed=7, wall={"load": 1.5, "predict": 100.0, "score": 20.5},
                                               cpu="Test CPU"))
    _write(reports / "template-perov_5-csp", _csp("template-perov_5", "template", "perov_5",
                                                  {1: (0.7, 0.1, 3785), 20: (0.99, 0.02, 3785)}, seed=0,
                                                  wall={"predict": 30.0}, cpu="Other CPU"))
    gen = {"task": "gen", "dataset": "mp_20", "protocol": "mp_20_reduced_train", "n_generated": 1000,
           "quick_run": True, **GEN_FIGURES,
           "metadata": _meta("gamma-mp_20-gen", "diffusion", seed=3, wall={"sample": 4000.0}, cpu="Gen CPU")}
    _write(reports / "gamma-mp_20-gen", gen)
    surrogate = {"protocol": "perov_5", "model": "surrogate-perov_5",
                 "properties": {"heat_ref": {"n": 3785, "mae": 0.0846, "mae_of_training_mean": 0.52}},
                 "run": {"wall_s": {"predict": 5.0}, "machine": {"cpu": "Test CPU", "cores": 4, "gpu": None}}}
    _write(reports / "surrogate-perov_5", surrogate)
    (reports / "notes").mkdir()
    (reports / "notes" / "sweep.json").write_text("{}")
    for name, card in (("alpha-perov_5", CARD), ("lonely-model", "# lonely-model\n\n- **Family:** wyckoff\n")):
        (checkpoints / name).mkdir(parents=True)
        (checkpoints / name / "card.md").write_text(card)
    return reports, checkpoints


# ------------------------------------------------------------------------------ tests
def test_fake_runs_give_figures_with_provenance_best_first(fake_tree):
    reports, checkpoints = fake_tree
    page = parse_page(render_markdown(build_leaderboard(reports, checkpoints)))

    csp = rows_of(page, "CSP k=1 — perov_5")
    labels = [row["model"] for row in csp]
    assert labels[:2] == ["crystalgen: template-perov_5 (baseline)", "crystalgen: alpha-perov_5"]
    rates = [float(row["match rate (%)"]) for row in csp]
    assert rates == sorted(rates, reverse=True) and len(rates) == 2 + len(
        [p for p in PUBLISHED_CSP if p.dataset == "perov_5" and p.k == 1])
    alpha = csp[1]
    assert (alpha["protocol"], alpha["n"], alpha["match rate (%)"], alpha["RMSE"]) == ("perov_5", "3785", "61.23",
                                                                                      "0.0456")
    assert (alpha["seed"], alpha["wall time"], alpha["machine"]) == ("7", "2.0 min", "Test CPU (4 cores)")
    assert alpha["report / source"] == "[alpha-perov_5-csp](reports/alpha-perov_5-csp/report.md)"
    diffcsp = next(row for row in csp if row["model"] == "DiffCSP (published)")
    assert diffcsp["match rate (%)"] == "52.02" and "arXiv:2309.04475" in diffcsp["report / source"]
    assert diffcsp["report / source"].startswith("published")

    k20 = rows_of(page, "CSP k=20 — perov_5")
    assert [row["model"] for row in k20] == ["crystalgen: template-perov_5 (baseline)", "DiffCSP (published)"]
    assert "CSP k=20 — carbon_24" not in page  # published rows alone make no table

    gen = rows_of(page, "Generation — mp_20")
    assert [row["model"] for row in gen] == ["DiffCSP (published)", "crystalgen: gamma-mp_20-gen",
                                             "CDVAE (published)"]  # COV-R 99.71 > 99.50 > 99.15
    ours = gen[1]
    assert (ours["COV-R (%)"], ours["comp. valid (%)"], ours["d_E"], ours["d_elem"]) == ("99.50", "81.23", "—",
                                                                                         "0.0312")
    assert (ours["n"], ours["seed"], ours["wall time"], ours["machine"]) == ("1000", "3", "1.11 h", "Gen CPU (4 cores)")
    assert "quick run" in ours["note"]

    prop = rows_of(page, "Property models — perov_5")
    assert (prop[0]["test MAE"], prop[0]["n"], prop[0]["seed"]) == ("0.0846", "3785", "—")

    models = {row["model"]: row for row in rows_of(page, "Shipped models")}
    assert models["alpha-perov_5"]["family"] == "diffusion (task: csp)"
    assert models["alpha-perov_5"]["protocol"] == "perov_5 (standard)"
    assert models["alpha-perov_5"]["training wall time"] == "12.5 min"
    assert models["alpha-perov_5"]["hardware"] == "Fake CPU (2 cores), no GPU"
    assert "alpha-perov_5-csp" in models["alpha-perov_5"]["benchmark reports"]
    assert models["lonely-model"]["benchmark reports"] == "no benchmark report"

    skipped = render_markdown(build_leaderboard(reports, checkpoints)).split("## Not on this page", 1)[1]
    assert "`notes/`: no metrics.json" in skipped and "alpha" not in skipped


def _sun(model: str, requested: int, counts: dict[str, int], valid: int, novel: int) -> dict:
    sun = {t: {"count": c, "share_of_requested": c / requested} for t, c in counts.items()}
    return {"task": "sun", "protocol": "mp_20_reduced_train", "n_requested": requested, "n_valid": valid,
            "n_novel": novel, "sun": sun, "metadata": _meta(model, "diffusion", seed=0, wall={"sun": 60.0}, cpu="c")}


def test_sun_design_and_polymorph_boards_show_their_files_figures(fake_tree):
    reports, checkpoints = fake_tree
    _write(reports / "beta-sun", _sun("beta-mp_20-gen", 100, {"0": 42, "0.1": 63}, valid=99, novel=97))
    _write(reports / "delta-sun", _sun("delta-mp_20-gen", 50, {"0": 30, "0.1": 35}, valid=50, novel=45))
    design = {"dataset": "perov_5", "property": "heat_ref", "n": 100, "valid_share": 0.98,  # the layout without "task"
              "success_rates": {"oracle": {"sr5": 0.77, "sr10": 0.91, "sr15": 0.92},
                                "oracle, unoptimised starts": {"sr5": 0.01, "sr10": 0.06, "sr15": 0.1}},
              "run": {"protocol": "perov_5", "model": "alpha-perov_5", "settings": {"strategy": "refine"},
                      "wall_s": {"optimise": 90.0}, "machine": {"cpu": "c"}}}
    _write(reports / "design-alpha", design)
    csp = _csp("eps-mp_20", "wyckoff", "mp_20", {1: (0.6, 0.04, 9046)}, seed=0, wall={}, cpu="c")
    csp["polymorph"] = {"training_data": "t", "cross_pairs": 12,
                        "all": {"n": 9046, "metre": 0.61, "crmse": 0.21, "match_rate": 0.6, "crmse_own": 0.22},
                        "not_leaked": {"n": 8000, "metre": 0.55, "match_rate": 0.54}}
    _write(reports / "eps-csp", csp)
    page = parse_page(render_markdown(build_leaderboard(reports, checkpoints)))

    sun = rows_of(page, "S.U.N. — mp_20")
    ours = [row for row in sun if row["model"].startswith("crystalgen")]
    assert [row["model"] for row in ours] == ["crystalgen: delta-mp_20-gen", "crystalgen: beta-mp_20-gen"]  # 70 > 63
    assert [(r["S.U.N., E_hull ≤ 0 (%)"], r["S.U.N., E_hull ≤ 0.1 (%)"], r["valid (%)"], r["unique and novel (%)"])
            for r in ours] == [("60.00", "70.00", "100.00", "90.00"), ("42.00", "63.00", "99.00", "97.00")]
    published = [row for row in sun if row["model"].endswith("(published)")]
    assert published and all(row["S.U.N., E_hull ≤ 0 (%)"] == "—" and "not directly comparable" in row["note"]
                             for row in published)

    optimised = rows_of(page, "Design (property optimisation) — perov_5")
    alpha = next(row for row in optimised if row["model"] == "crystalgen: alpha-perov_5")
    assert (alpha["SR5 (%)"], alpha["SR15 (%)"], alpha["SR10 of the starts (%)"], alpha["valid (%)"]) == (
        "77.00", "92.00", "6.00", "98.00")
    assert alpha["protocol"] == "perov_5" and "refine strategy" in alpha["note"]
    assert any(row["model"] == "CDVAE (published)" and row["SR5 (%)"] == "52.00" for row in optimised)

    polymorph = rows_of(page, "Polymorph-aware CSP — mp_20")
    assert len(polymorph) == 1 and polymorph[0]["METRe (%)"] == "61.00"
    assert (polymorph[0]["METRe, unseen compositions (%)"], polymorph[0]["cRMSE"]) == ("55.00", "0.2100")
    assert "8000 of 9046" in polymorph[0]["note"]
    assert rows_of(page, "CSP k=1 — mp_20")[0]["match rate (%)"]  # the same run keeps its usual row


def test_rows_say_where_their_figures_sit_and_cards_keep_whole_bullets(fake_tree):
    reports, checkpoints = fake_tree
    lb = build_leaderboard(reports, checkpoints)
    rows = {(e.run.folder.name, e.detail): e for board in lb.boards for e in board.entries if e.run}
    assert rows["template-perov_5-csp", 20].path == ("by_k", "20")  # docs tables cite by_k.20.match_rate
    assert rows["surrogate-perov_5", "heat_ref"].path == ("properties", "heat_ref")
    assert rows["gamma-mp_20-gen", None].path == ()
    assert rows["alpha-perov_5-csp", 1].run.metrics["metadata"]["settings"]["seed"] == 7
    card = next(card for card in lb.models if card.name == "alpha-perov_5")
    assert card.path == checkpoints / "alpha-perov_5" / "card.md"
    assert card.fields["Training wall time"] == ("12.5 min of training steps, summed over resumed sessions "
                                                 "(data loading not included)")  # its second line joined on


def test_committed_leaderboard_is_not_stale():
    lb = build_leaderboard(REAL_REPORTS, REAL_CHECKPOINTS)
    for path, rendered in ((COMMITTED_MD, render_markdown(lb, REPO_ROOT / "docs")),
                           (COMMITTED_HTML, render_html(lb, REPO_ROOT / "docs"))):
        assert path.is_file(), STALE.format(f"{path.name} is missing; it")
        assert path.read_text(encoding="utf-8") == rendered, STALE.format(path.relative_to(REPO_ROOT))


def test_every_csp_and_gen_figure_equals_its_metrics_json():
    page = parse_page(render_markdown(build_leaderboard(REAL_REPORTS, REAL_CHECKPOINTS), REPO_ROOT / "docs"))
    checked: set[tuple[str, int]] = set()
    for heading, tables in page.items():
        csp = re.fullmatch(r"CSP k=(\d+) — (\S+)", heading)
        if not (csp or heading.startswith("Generation — ")):
            continue
        cells = CSP_CELLS if csp else GEN_CELLS
        for row in tables[0]:
            assert set(cells) <= set(row), f"{heading}: columns {list(row)}"
            if row["model"].endswith("(published)"):
                continue
            folder = run_folder(row, REPO_ROOT / "docs")
            metrics = json.loads((folder / "metrics.json").read_text())
            source = metrics["by_k"][csp[1]] if csp else metrics
            assert heading.endswith(f"— {metrics['dataset']}")
            for title, (key, is_percent) in cells.items():
                assert_cell(row[title], source[key], is_percent, f"{heading} / {folder.name} / {title}")
            assert int(row["n"]) == (source["n"] if csp else metrics["n_generated"])
            meta = metrics["metadata"]
            assert row["protocol"] == metrics["protocol"] and row["seed"] == str(meta["settings"]["seed"])
            assert abs(seconds(row["wall time"]) - sum(meta["wall_s"].values())) <= 0.05 * UNIT_SECONDS["min"]
            assert row["machine"].startswith(meta["machine"]["cpu"])
            checked.add((folder.name, int(csp[1]) if csp else 0))
    expected = set()
    for path in REAL_REPORTS.glob("*/metrics.json"):
        metrics = json.loads(path.read_text())
        if metrics.get("task") == "csp":
            expected |= {(path.parent.name, int(k)) for k in metrics["by_k"]}
        elif metrics.get("task") == "gen":
            expected.add((path.parent.name, 0))
    assert expected and checked == expected  # every CSP (per k) and gen figure is on the page, none invented


def test_published_rows_equal_published_py():
    page = parse_page(render_markdown(build_leaderboard(REAL_REPORTS, REAL_CHECKPOINTS), REPO_ROOT / "docs"))
    for heading, tables in page.items():
        csp = re.fullmatch(r"CSP k=(\d+) — (\S+)", heading)
        gen = re.fullmatch(r"Generation — (\S+)", heading)
        if not (csp or gen):
            continue
        published = ([p for p in PUBLISHED_CSP if p.k == int(csp[1]) and p.dataset == csp[2]] if csp else
                     [p for p in PUBLISHED_GEN if p.dataset == gen[1]])
        rows = [row for row in tables[0] if row["model"].endswith("(published)")]
        assert len(rows) == len(published), heading
        for row in rows:
            name = row["model"].removesuffix(" (published)")
            candidates = [p for p in published if p.model == name]
            key, title = ("match_rate", "match rate (%)") if csp else ("cov_recall", "COV-R (%)")
            assert any(abs(float(row[title]) - getattr(p, key)) <= PERCENT_TOLERANCE for p in candidates), row


@pytest.mark.parametrize("case", ["missing reports", "missing checkpoints", "not json", "no match rate", "bad type"])
def test_bad_input_is_one_line_exit_2(fake_tree, tmp_path, capsys, case):
    reports, checkpoints = fake_tree
    fragment = {"missing reports": "reports directory not found", "missing checkpoints": "checkpoints directory",
                "not json": "malformed", "no match rate": "'match_rate'", "bad type": "expected a number"}[case]
    if case == "missing reports":
        reports = tmp_path / "nowhere"
    elif case == "missing checkpoints":
        checkpoints = tmp_path / "nowhere"
    elif case == "not json":
        _write(reports / "broken-csp", '{"task": "csp", ')
    else:
        metrics = _csp("x", "diffusion", "perov_5", {1: (0.5, 0.1, 10)}, seed=0, wall={}, cpu="c")
        if case == "no match rate":
            del metrics["by_k"]["1"]["match_rate"]
        else:
            metrics["by_k"]["1"]["rmse"] = "0.1"
        _write(reports / "bad-csp", metrics)
    out = tmp_path / "out"
    result = run_main(["leaderboard", "--reports", str(reports), "--checkpoints", str(checkpoints),
                       "--out", str(out)], capsys)
    assert_one_line_error(result, fragment)
    assert not (out / "leaderboard.md").exists()


def test_cli_writes_both_pages_and_html_is_self_contained(fake_tree, tmp_path, capsys):
    reports, checkpoints = fake_tree
    out = tmp_path / "site"
    result = run_main(["leaderboard", "--reports", str(reports), "--checkpoints", str(checkpoints),
                       "--out", str(out)], capsys)
    assert result.returncode == 0, result.stderr
    assert "CSP k=1 — perov_5: 2 crystalgen" in result.stdout and "skipped notes/" in result.stdout
    markdown, page = (out / "leaderboard.md").read_text(), (out / "leaderboard.html").read_text()
    assert markdown == render_markdown(build_leaderboard(reports, checkpoints), out)
    headings = [line[3:] for line in markdown.splitlines() if line.startswith("## ")]
    assert len(headings) >= 6
    for heading in headings:
        assert f"<h2>{html.escape(heading)}</h2>" in page, heading
    assert not re.search(r"<link|<script|@import|(src|href)=\"(https?:)?//", page)
    assert '<a href="../reports/alpha-perov_5-csp/report.html">alpha-perov_5-csp</a>' in page
    assert write_leaderboard(build_leaderboard(reports, checkpoints), out) == [out / "leaderboard.md",
                                                                             out / "leaderboard.html"]
