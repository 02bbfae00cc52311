"""``crystalgen filter`` and ``crystalgen sample --filter``: verdicts on deliberately broken
candidates, the output columns, the funnel, resuming an interrupted run, switching stages off, and
one-line errors for bad inputs.

Data-free: the stability stage runs a tiny surrogate (three training steps) whose reference hull
comes from a fake mp_20 (``surrogate_helpers.write_fake_mp20``); novelty is measured against that
fake mp_20 too. One test uses the real perov_5 training split when the data directory is present.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.filters.hull import ReferenceHull
from crystalgen.filters.inputs import read_candidates
from crystalgen.filters.pipeline import STAGE_ORDER, FilterConfig, load_filter_config, output_columns, run_filter
from crystalgen.filters.stages import CompositionValidity, Stage, StageResult, StructuralValidity, Uniqueness
from crystalgen.runs import read_csv_rows
from crystalgen.models import save_model
from crystalgen.surrogate.predictor import load_surrogate

from conftest import assert_one_line_error, cli_in_process, isolated_cache, make_textbook, run_main, write_dataset
from conftest import synthetic_perov_splits
from surrogate_helpers import ENERGY, FAKE_HULL, TINY_CONFIG, fake_mp20_splits, fit_tiny_surrogate, magnesia, write_fake_mp20

#: Columns ``crystalgen filter`` adds with every stage but novelty on, in order.
ADDED = ("valid_struct", "valid_comp", "is_unique", "duplicate_of", f"pred_{ENERGY}", f"pred_{ENERGY}_std",
         "e_above_hull_est", "e_above_hull_std", "passed", "reject_reason")
#: Input columns: the cif column deliberately not last.
INPUT_COLUMNS = ("sample_id", "note", "cif", "score")
CORRUPT_CIF = "data_broken\n_cell_length_a 5.0\nthis is not a CIF loop\n"
EXIT_INTERRUPTED = 130


# ------------------------------------------------------------------------------ candidates
def squeezed_nacl() -> Crystal:
    """Rock salt with one Na moved to 0.1 Å from another: the composition is fine, the geometry is not."""
    crystal = make_textbook("NaCl")
    frac = crystal.frac_coords.copy()
    frac[1] = frac[0] + np.array([0.1 / 5.64, 0.0, 0.0])
    return Crystal(crystal.lattice, frac, crystal.atomic_numbers, id="squeezed")


def fluorite_nacl2() -> Crystal:
    """NaCl2 in the fluorite structure (primitive cell, a = 6.5 Å): a sound geometry (shortest
    distance 2.8 Å) for a formula no oxidation states balance."""
    a = 6.5
    lattice = np.array([[0, a / 2, a / 2], [a / 2, 0, a / 2], [a / 2, a / 2, 0]])
    return Crystal(lattice, [[0, 0, 0], [0.25, 0.25, 0.25], [0.75, 0.75, 0.75]], [11, 17, 17], id="NaCl2")


def shifted(crystal: Crystal, by=(0.13, 0.27, 0.41)) -> Crystal:
    """The same crystal with every atom translated: another CIF text, the same structure."""
    return Crystal(crystal.lattice, (crystal.frac_coords + np.array(by)) % 1.0, crystal.atomic_numbers)


#: (sample_id, note, crystal or None for a corrupt CIF, expected reject_reason); passed == (reason == "").
CASES = [
    ("s0", "rock salt", lambda: make_textbook("NaCl"), ""),
    ("s1", "perovskite", lambda: make_textbook("SrTiO3"), ""),
    ("s2", "two atoms 0.1 A apart", squeezed_nacl, "structural"),
    ("s3", "charge imbalanced", fluorite_nacl2, "composition"),
    ("s4", "s0 translated", lambda: shifted(make_textbook("NaCl")), "uniqueness"),
    ("s5", "corrupt", None, "unreadable"),
    ("s6", "wurtzite", lambda: make_textbook("ZnO"), ""),
    ("s7", "s1 again", lambda: make_textbook("SrTiO3"), "uniqueness"),
]
DUPLICATE_OF = {4: 0, 7: 1}
#: The reference hull at each readable candidate's composition (one compound per fake system).
HULL_AT = {0: FAKE_HULL["NaCl"], 1: FAKE_HULL["SrTiO3"], 2: FAKE_HULL["NaCl"], 3: -2.0 * (1 / 3) / (1 / 2),
           4: FAKE_HULL["NaCl"], 6: FAKE_HULL["ZnO"], 7: FAKE_HULL["SrTiO3"]}


def case_crystals() -> list[Crystal | None]:
    return [make() if make else None for _, _, make, _ in CASES]


def write_candidates_csv(path: Path, crystals: list[Crystal | None] | None = None) -> Path:
    crystals = case_crystals() if crystals is None else crystals
    with open(path, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(INPUT_COLUMNS)
        for i, ((sample_id, note, _, _), crystal) in enumerate(zip(CASES, crystals)):
            writer.writerow([sample_id, note, crystal.to_cif() if crystal else CORRUPT_CIF, f"{0.5 * i:.1f}"])
    return path


# ------------------------------------------------------------------------------ shared inputs
@pytest.fixture(scope="module")
def fake_mp20(tmp_path_factory) -> Path:
    return write_fake_mp20(tmp_path_factory.mktemp("fake-mp20"))


@pytest.fixture(scope="module")
def tiny_ckpt(tmp_path_factory) -> Path:
    """A surrogate fitted for three steps on the textbook crystals, with protocol mp_20 (the fake one)."""
    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "steps": 3}}
    return save_model(fit_tiny_surrogate(config), tmp_path_factory.mktemp("ckpt") / "tiny", "# tiny\n")


@pytest.fixture(scope="module")
def candidates_csv(tmp_path_factory) -> Path:
    return write_candidates_csv(tmp_path_factory.mktemp("inputs") / "candidates.csv")


def filter_args(source: Path, out: Path, ckpt: Path, data: Path, *extra: str) -> list[str]:
    return ["filter", str(source), "--out", str(out), "--surrogate", str(ckpt), "--data-dir", str(data), *extra]


def rows_of(out: Path) -> list[dict[str, str]]:
    return read_csv_rows(out / "filtered.csv")


def header_of(out: Path) -> list[str]:
    with open(out / "filtered.csv", newline="") as handle:
        return next(csv.reader(handle))


@pytest.fixture(scope="module")
def standard_run(candidates_csv, tiny_ckpt, fake_mp20, tmp_path_factory) -> Path:
    """Every stage but novelty, a threshold every candidate meets (so stability rejects nothing)."""
    out = tmp_path_factory.mktemp("filter") / "out"
    with isolated_cache(tmp_path_factory.mktemp("cache")):
        result = cli_in_process(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty",
                                            "--max-e-hull", "100"))
    assert result.returncode == 0, result.stderr
    return out


# ------------------------------------------------------------------------------ verdicts
def test_verdicts_on_good_and_broken_candidates(standard_run):
    rows = rows_of(standard_run)
    assert [r["sample_id"] for r in rows] == [c[0] for c in CASES]
    for i, (row, (sample_id, note, _, reason)) in enumerate(zip(rows, CASES)):
        if reason == "unreadable":
            assert row["passed"] == "False" and row["reject_reason"].startswith("unreadable"), row["reject_reason"]
            assert all(row[c] == "" for c in ADDED[:-2]), row  # nothing to say about an unreadable row
            continue
        assert row["reject_reason"] == reason, (sample_id, note, row["reject_reason"])
        assert row["passed"] == str(reason == ""), sample_id
        assert row["valid_struct"] == str(reason != "structural"), sample_id
        assert row["valid_comp"] == str(reason != "composition"), sample_id
        if reason in ("structural", "composition"):  # uniqueness only looks at rows that passed the stages before it
            assert row["is_unique"] == row["duplicate_of"] == "", sample_id
            continue
        assert row["is_unique"] == str(i not in DUPLICATE_OF), sample_id
        assert int(row["duplicate_of"]) == DUPLICATE_OF.get(i, -1), sample_id


def test_corrupt_row_says_why(standard_run):
    row = rows_of(standard_run)[5]
    assert row["reject_reason"].startswith("unreadable: ") and len(row["reject_reason"]) > len("unreadable: ")
    assert "\n" not in row["reject_reason"]


def test_every_input_column_is_kept_in_order_and_the_documented_columns_added(standard_run, candidates_csv):
    assert header_of(standard_run) == [*INPUT_COLUMNS, *ADDED]
    assert "is_novel" not in header_of(standard_run)  # novelty skipped
    original = read_csv_rows(candidates_csv)
    rows = rows_of(standard_run)
    assert len(rows) == len(original)
    for before, after in zip(original, rows):
        assert {c: after[c] for c in INPUT_COLUMNS} == before  # the CIF text included, untouched


def test_stability_columns_are_the_surrogate_against_the_reference_hull(standard_run, tiny_ckpt):
    rows = rows_of(standard_run)
    crystals = case_crystals()
    readable = [i for i, c in enumerate(crystals) if c is not None]
    mean, std = load_surrogate(tiny_ckpt).predict([crystals[i] for i in readable])[ENERGY]
    for k, i in enumerate(readable):  # filled for every readable row, whatever earlier stages said
        row = rows[i]
        assert float(row[f"pred_{ENERGY}"]) == pytest.approx(mean[k], abs=2e-6)
        assert float(row[f"pred_{ENERGY}_std"]) == pytest.approx(std[k], abs=2e-6)
        assert float(row["e_above_hull_est"]) == pytest.approx(mean[k] - HULL_AT[i], abs=5e-6), i
        assert float(row["e_above_hull_std"]) == pytest.approx(std[k], abs=2e-6)


def test_summary_funnel_agrees_with_the_csv(standard_run):
    summary = json.loads((standard_run / "summary.json").read_text())
    rows = rows_of(standard_run)
    reasons = [r["reject_reason"] for r in rows]
    assert summary["n"] == len(rows) == 8
    assert summary["passed"] == sum(r["passed"] == "True" for r in rows) == 3
    assert summary["rejected"] == {"unreadable": 1, "structural": 1, "composition": 1, "uniqueness": 2,
                                   "stability": 0}
    assert summary["rejected"]["unreadable"] == sum(r.startswith("unreadable") for r in reasons)
    funnel = [(f["stage"], f["remaining"]) for f in summary["funnel"]]
    assert funnel == [("input", 8), ("readable", 7), ("structural", 6), ("composition", 5), ("uniqueness", 3),
                      ("stability", 3)]
    assert summary["structures_per_s"] > 0 and "filter" in summary["wall_s"]
    markdown = (standard_run / "summary.md").read_text()
    assert "| uniqueness | 3 | 2 |" in markdown and "| stability | 3 | 0 |" in markdown
    assert "3 of 8 passed." in markdown
    assert "- surrogate: tiny" in markdown
    assert "- hull reference: 5 mp_20 training structures' formation_energy_per_atom (formation energies)" in markdown
    assert (standard_run / "funnel.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_stability_threshold_rejects_what_is_above_it(standard_run, candidates_csv, tiny_ckpt, fake_mp20, tmp_path,
                                                      capsys):
    rows = rows_of(standard_run)
    good = [i for i, case in enumerate(CASES) if case[3] == ""]
    above = sorted(float(rows[i]["e_above_hull_est"]) for i in good)
    threshold = (above[0] + above[1]) / 2  # one good candidate below, two above
    out = tmp_path / "strict"
    result = run_main(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty",
                                  "--max-e-hull", repr(threshold)), capsys)
    assert result.returncode == 0, result.stderr
    strict = rows_of(out)
    for i in good:
        below = float(strict[i]["e_above_hull_est"]) <= threshold
        assert strict[i]["passed"] == str(below) and strict[i]["reject_reason"] == ("" if below else "stability")
    for i, case in enumerate(CASES):  # earlier reasons win
        if case[3]:
            assert strict[i]["reject_reason"].startswith(case[3])
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] == 1 and summary["rejected"]["stability"] == 2
    assert "1 of 8 passed" in result.stderr


# ------------------------------------------------------------------------------ resuming
def test_rerunning_a_finished_run_changes_nothing(standard_run, candidates_csv, tiny_ckpt, fake_mp20, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(standard_run, out)
    before = (out / "filtered.csv").read_bytes()
    result = run_main(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--max-e-hull",
                                  "100"), capsys)
    assert result.returncode == 0, result.stderr
    assert (out / "filtered.csv").read_bytes() == before  # no row written twice
    assert json.loads((out / "summary.json").read_text())["n"] == 8


def test_rerunning_with_other_settings_is_refused(standard_run, candidates_csv, tiny_ckpt, fake_mp20, tmp_path, capsys):
    out = tmp_path / "copy"
    shutil.copytree(standard_run, out)
    result = run_main(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--max-e-hull",
                                  "0.5"), capsys)
    assert_one_line_error(result, "holds a run with other settings")


def test_interrupted_run_resumes_to_the_same_result(standard_run, candidates_csv, tiny_ckpt, fake_mp20, tmp_path,
                                                     monkeypatch, capsys):
    """Chunks of two rows (one worker: more would widen the chunks); the stability stage is
    interrupted on the third chunk. The resumed run keeps the two finished chunks, drops a torn
    half-row, and still finds that rows 4 and 7 duplicate rows 0 and 1 of the earlier session: the
    same file as an uninterrupted run."""
    import crystalgen.filters.pipeline as pipeline
    from crystalgen.filters.stages import Stability

    monkeypatch.setattr(pipeline, "CHUNK_ROWS", 2)
    original = Stability.evaluate
    calls = []

    def interrupted_on_the_third_chunk(self, crystals, row_ids):
        calls.append(list(row_ids))
        if len(calls) == 3:
            raise KeyboardInterrupt
        return original(self, crystals, row_ids)

    monkeypatch.setattr(Stability, "evaluate", interrupted_on_the_third_chunk)
    out = tmp_path / "out"
    args = filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--max-e-hull", "100",
                       "--workers", "1")
    first = run_main(args, capsys)
    assert first.returncode == EXIT_INTERRUPTED and "interrupted" in first.stderr
    assert calls == [[0, 1], [2, 3], [4]]  # row 5 is unreadable: not given to the stages
    assert json.loads((out / "filtered.progress.json").read_text())["done"] == 4
    assert [r["sample_id"] for r in rows_of(out)] == ["s0", "s1", "s2", "s3"]
    with open(out / "filtered.csv", "a") as handle:  # a chunk half written when the power went
        handle.write('s4,"s0 translated","data_')
    monkeypatch.setattr(Stability, "evaluate", original)
    second = run_main(args, capsys)
    assert second.returncode == 0, second.stderr
    resumed = rows_of(out)
    assert [r["sample_id"] for r in resumed] == [c[0] for c in CASES]
    assert (resumed[4]["is_unique"], resumed[4]["duplicate_of"]) == ("False", "0")  # across the resume
    assert (resumed[7]["is_unique"], resumed[7]["duplicate_of"]) == ("False", "1")
    assert (out / "filtered.csv").read_bytes() == (standard_run / "filtered.csv").read_bytes()
    summary = json.loads((out / "summary.json").read_text())
    assert summary["funnel"] == json.loads((standard_run / "summary.json").read_text())["funnel"]


# ------------------------------------------------------------------------------ stages on and off
@pytest.mark.parametrize("skipped, gone, now_passing", [
    ("composition", ("valid_comp",), {3}),
    ("uniqueness", ("is_unique", "duplicate_of"), {4, 7}),
    ("structural", ("valid_struct",), set()),  # the squeezed NaCl is a duplicate-free valid composition ...
])
def test_skip_switches_a_stage_off(skipped, gone, now_passing, candidates_csv, tiny_ckpt, fake_mp20, tmp_path, capsys):
    out = tmp_path / "out"
    result = run_main(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--skip", skipped,
                                  "--max-e-hull", "100"), capsys)
    assert result.returncode == 0, result.stderr
    header = header_of(out)
    assert header == [*INPUT_COLUMNS, *(c for c in ADDED if c not in gone)]
    rows = rows_of(out)
    assert skipped not in {r["reject_reason"] for r in rows}
    expected_passing = {i for i, case in enumerate(CASES) if case[3] == ""} | now_passing
    if skipped == "structural":
        expected_passing.add(2)  # ... so without the structural stage it passes
    assert {i for i, r in enumerate(rows) if r["passed"] == "True"} == expected_passing
    summary = json.loads((out / "summary.json").read_text())
    assert skipped not in [f["stage"] for f in summary["funnel"]] and skipped not in summary["rejected"]


def test_filter_config_file_switches_stages_and_sets_thresholds(candidates_csv, tiny_ckpt, fake_mp20, tmp_path,
                                                                capsys):
    config = tmp_path / "filter.yaml"
    config.write_text("filter:\n  novelty: false\n  stability: false\n  min_distance: 0.05\n"
                      f"  surrogate: {tiny_ckpt}\n")
    out = tmp_path / "out"
    result = run_main(["filter", str(candidates_csv), "--out", str(out), "--filter-config", str(config)], capsys)
    assert result.returncode == 0, result.stderr
    rows = rows_of(out)
    assert header_of(out) == [*INPUT_COLUMNS, "valid_struct", "valid_comp", "is_unique", "duplicate_of", "passed",
                              "reject_reason"]
    assert rows[2]["valid_struct"] == "True"  # 0.1 Å is allowed with min_distance 0.05
    assert [r["passed"] for r in rows] == ["True", "True", "True", "False", "False", "False", "True", "False"]


def test_the_shipped_default_filter_config_is_the_default():
    path = Path(__file__).resolve().parents[1] / "configs" / "filters" / "default.yaml"
    assert load_filter_config(path) == FilterConfig()
    assert load_filter_config(path, max_e_above_hull=0.2, novelty=False) == FilterConfig(max_e_above_hull=0.2,
                                                                                         novelty=False)
    assert FilterConfig().enabled() == ["structural", "composition", "uniqueness", "novelty", "stability"]
    assert FilterConfig(relax=True, novelty=False).enabled() == ["structural", "composition", "uniqueness",
                                                                 "stability", "relax"]
    assert STAGE_ORDER[-1] == "relax"


@pytest.mark.parametrize("text, fragment", [
    ("filter:\n  novelty: maybe\n", "filter.novelty must be true or false"),
    ("filter:\n  max_e_above_hull: -0.1\n", "filter.max_e_above_hull must be >= 0"),
    ("filter:\n  max_e_hull: 0.1\n", "unknown filter settings: max_e_hull"),
    ("- a\n- b\n", "a filter config is a YAML mapping"),
    ("filter: [unclosed\n", "not valid YAML"),
])
def test_bad_filter_config_is_a_one_line_error(text, fragment, candidates_csv, tmp_path, capsys):
    config = tmp_path / "filter.yaml"
    config.write_text(text)
    result = run_main(["filter", str(candidates_csv), "--out", str(tmp_path / "out"), "--filter-config", str(config)],
                      capsys)
    assert_one_line_error(result, fragment)


# ------------------------------------------------------------------------------ novelty
def test_novelty_against_a_protocol_training_split(candidates_csv, tiny_ckpt, fake_mp20, tmp_path, capsys):
    """The fake mp_20 trains on NaCl, MgO, ZnO, SrTiO3 and Si: every good candidate is a training copy."""
    out = tmp_path / "out"
    result = run_main(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--max-e-hull", "100"), capsys)
    assert result.returncode == 0, result.stderr
    header = header_of(out)
    assert header.index("is_novel") == header.index("duplicate_of") + 1  # novelty comes after uniqueness
    rows = rows_of(out)
    novel = {i: r["is_novel"] for i, r in enumerate(rows) if r["is_novel"]}
    assert novel == {0: "False", 1: "False", 2: "True", 3: "True", 4: "False", 6: "False", 7: "False"}
    assert [r["reject_reason"].split(":")[0] for r in rows] == ["novelty", "novelty", "structural", "composition",
                                                                "uniqueness", "unreadable", "novelty", "uniqueness"]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["passed"] == 0 and summary["rejected"]["novelty"] == 3
    assert "- novelty reference: mp_20 training split (5 structures)" in (out / "summary.md").read_text()


def test_novelty_needs_a_protocol(candidates_csv, tmp_path, capsys):
    """Without --protocol, novelty compares with the surrogate's training protocol; a surrogate that
    records none (fitted outside `crystalgen train`) leaves nothing to compare with."""
    config = {**TINY_CONFIG, "training": {**TINY_CONFIG["training"], "steps": 1}}
    no_protocol = save_model(fit_tiny_surrogate(config, protocol=None), tmp_path / "ckpt", "# card\n")
    result = run_main(["filter", str(candidates_csv), "--out", str(tmp_path / "out"), "--skip", "stability",
                       "--surrogate", str(no_protocol)], capsys)
    assert_one_line_error(result, "the novelty stage needs --protocol")


@pytest.mark.slow
def test_novelty_against_the_real_perov_5(data_dir, tmp_path, capsys):
    """A cubic SrTiO3 perovskite is in perov_5's training split; NaCl2 in fluorite is not.

    Parsing perov_5's training split takes most of a minute on 2 cores, once per session: the
    data-directory tests share one cache, so test_template's slow perov_5 test then finds it parsed."""
    source = tmp_path / "in.csv"
    with open(source, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["id", "cif"])
        writer.writerow(["SrTiO3", make_textbook("SrTiO3").to_cif()])
        writer.writerow(["NaCl2", fluorite_nacl2().to_cif()])
    out = tmp_path / "out"
    result = run_main(["filter", str(source), "--out", str(out), "--protocol", "perov_5", "--skip", "stability",
                       "--skip", "composition", "--data-dir", str(data_dir)], capsys)
    assert result.returncode == 0, result.stderr
    assert [r["is_novel"] for r in rows_of(out)] == ["False", "True"]


# ------------------------------------------------------------------------------ other inputs
def test_a_folder_of_cifs(tiny_ckpt, fake_mp20, tmp_path, capsys):
    folder = tmp_path / "cifs"
    folder.mkdir()
    (folder / "b_nacl.cif").write_text(make_textbook("NaCl").to_cif())
    (folder / "a_mgo.cif").write_text(magnesia().to_cif())
    (folder / "c_broken.cif").write_text(CORRUPT_CIF)
    (folder / "d_nacl_again.CIF").write_text(shifted(make_textbook("NaCl")).to_cif())
    (folder / "notes.txt").write_text("not a structure")
    out = tmp_path / "out"
    result = run_main(filter_args(folder, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--max-e-hull", "100"),
                      capsys)
    assert result.returncode == 0, result.stderr
    assert header_of(out) == ["file", *ADDED]
    rows = rows_of(out)
    assert [r["file"] for r in rows] == ["a_mgo.cif", "b_nacl.cif", "c_broken.cif", "d_nacl_again.CIF"]
    assert [r["passed"] for r in rows] == ["True", "True", "False", "False"]
    assert rows[2]["reject_reason"].startswith("unreadable")
    assert rows[3]["duplicate_of"] == "1"  # row index in the input, here the sorted folder


def test_a_single_cif_file(tiny_ckpt, fake_mp20, tmp_path, capsys):
    path = tmp_path / "zno.cif"
    path.write_text(make_textbook("ZnO").to_cif())
    out = tmp_path / "out"
    result = run_main(filter_args(path, out, tiny_ckpt, fake_mp20, "--skip", "novelty", "--max-e-hull", "100"), capsys)
    assert result.returncode == 0, result.stderr
    assert [(r["file"], r["passed"]) for r in rows_of(out)] == [("zno.cif", "True")]


@pytest.mark.parametrize("make_source, fragment", [
    (lambda tmp: tmp / "missing.csv", "file not found"),
    (lambda tmp: _write(tmp / "no_cif.csv", "id,structure\n1,abc\n"), "no 'cif' column (columns: id, structure)"),
    (lambda tmp: _write(tmp / "empty.csv", ""), "empty.csv: empty file"),
    (lambda tmp: _write(tmp / "header_only.csv", "id,structure\n"), "no 'cif' column (columns: id, structure)"),
    (lambda tmp: _mkdir(tmp / "empty_folder"), "no CIF files"),
    (lambda tmp: _write(tmp / "bad.cif", CORRUPT_CIF), "not a readable CIF"),
    (lambda tmp: _write_bytes(tmp / "binary.csv", b"cif\n\xff\xfe\x00garbage\n"), "binary.csv: binary file"),
    (lambda tmp: _write_bytes(tmp / "latin1.csv", b"cif\ncaf\xe9\n"), "latin1.csv: not UTF-8 text"),
])
def test_bad_inputs_are_one_line_errors(make_source, fragment, tmp_path, capsys):
    source = make_source(tmp_path)
    result = run_main(["filter", str(source), "--out", str(tmp_path / "out"), "--skip", "novelty", "--skip",
                       "stability"], capsys)
    assert_one_line_error(result, fragment)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def _write_bytes(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def test_unknown_surrogate_is_a_one_line_error(candidates_csv, tmp_path, capsys):
    result = run_main(["filter", str(candidates_csv), "--out", str(tmp_path / "out"), "--skip", "novelty",
                       "--surrogate", str(tmp_path / "nope")], capsys)
    assert_one_line_error(result, "unknown property model")


def test_a_surrogate_without_a_protocol_is_a_one_line_error(candidates_csv, fake_mp20, tmp_path, capsys):
    ckpt = save_model(fit_tiny_surrogate({**TINY_CONFIG, "training": {"steps": 1, "batch_size": 4}},
                                             protocol=None), tmp_path / "ckpt", "# no protocol\n")
    result = run_main(filter_args(candidates_csv, tmp_path / "out", ckpt, fake_mp20, "--skip", "novelty"), capsys)
    assert_one_line_error(result, "protocol")


def test_refiltering_a_filtered_csv_keeps_column_names_unique(standard_run, tiny_ckpt, fake_mp20, tmp_path, capsys):
    out = tmp_path / "again"
    result = run_main(filter_args(standard_run / "filtered.csv", out, tiny_ckpt, fake_mp20, "--skip", "novelty",
                                  "--max-e-hull", "100"), capsys)
    assert result.returncode == 0, result.stderr
    header = header_of(out)
    assert len(header) == len(set(header)), header


# ------------------------------------------------------------------------------ the pipeline itself
class Flag(Stage):
    """A stage whose verdict is given per row id; records what it was shown."""

    def __init__(self, name: str, failing: set[int], only_survivors: bool = False):
        self.name, self.columns, self.failing, self.only_survivors = name, (f"{name}_ok",), failing, only_survivors
        self.seen: list[int] = []

    def evaluate(self, crystals, row_ids):
        self.seen += list(row_ids)
        ok = np.array([i not in self.failing for i in row_ids], dtype=bool)
        return StageResult({f"{self.name}_ok": ok}, ok)


def test_pipeline_reason_is_the_first_failed_stage_and_survivor_stages_see_survivors(tmp_path, monkeypatch):
    import crystalgen.filters.pipeline as pipeline

    monkeypatch.setattr(pipeline, "CHUNK_ROWS", 3)
    rows, columns = read_candidates(write_candidates_csv(tmp_path / "in.csv"))
    first, second = Flag("first", {1, 3}), Flag("second", {1, 2, 6})
    expensive = Flag("expensive", {7}, only_survivors=True)
    summary = run_filter(rows, columns, [first, second, expensive], tmp_path / "out", {"test": 1})
    out = rows_of(tmp_path / "out")
    assert [r["reject_reason"].split(":")[0] for r in out] == ["", "first", "second", "first", "", "unreadable",
                                                               "second", "expensive"]
    assert first.seen == second.seen == [0, 1, 2, 3, 4, 6, 7]  # every readable row
    assert expensive.seen == [0, 4, 7]  # only those that passed everything before
    assert [r["expensive_ok"] for r in out] == ["True", "", "", "", "True", "", "", "False"]
    assert [r["second_ok"] for r in out] == ["True", "False", "False", "True", "True", "", "False", "True"]
    assert [f["remaining"] for f in summary["funnel"]] == [8, 7, 5, 3, 2]
    assert summary["passed"] == 2


def test_validity_and_uniqueness_stages_directly():
    crystals = [make_textbook("NaCl"), squeezed_nacl(), fluorite_nacl2(), shifted(make_textbook("NaCl")),
                make_textbook("Si")]
    structural = StructuralValidity().evaluate(crystals, range(5))
    assert structural.passed.tolist() == [True, False, True, True, True]
    composition = CompositionValidity().evaluate(crystals, range(5))
    assert composition.passed.tolist() == [True, True, False, True, True]
    uniqueness = Uniqueness()
    first = uniqueness.evaluate(crystals[:2], [10, 11])
    later = uniqueness.evaluate(crystals[2:], [12, 13, 14])  # state carries across chunks
    assert first.columns["duplicate_of"].tolist() == [-1, -1]
    assert later.columns["duplicate_of"].tolist() == [-1, 10, -1]
    restored = Uniqueness()  # rebuilt from rows a previous session wrote
    restored.restore(crystals[:2], [10, 11], [{"is_unique": "True"}, {"is_unique": "True"}])
    assert restored.evaluate([crystals[3]], [13]).columns["duplicate_of"].tolist() == [10]


def test_output_columns_do_not_repeat_input_columns():
    stages = [StructuralValidity(), Uniqueness()]
    assert output_columns(("id", "cif"), stages) == ("id", "cif", "valid_struct", "is_unique", "duplicate_of",
                                                     "passed", "reject_reason")
    assert output_columns(("valid_struct", "cif"), stages) == ("valid_struct", "cif", "is_unique", "duplicate_of",
                                                               "passed", "reject_reason")


def test_hull_helper_matches_the_fake_reference():
    """Guards HULL_AT above: the fake training set's hull at the candidates' compositions."""
    from surrogate_helpers import fake_mp20_splits

    hull = ReferenceHull.from_crystals(fake_mp20_splits()["train"], ENERGY)
    crystals = case_crystals()
    for i, expected in HULL_AT.items():
        assert hull.hull_energy_per_atom(crystals[i]) == pytest.approx(expected, abs=1e-9), i


# ------------------------------------------------------------------------------ sample --filter
@pytest.fixture(scope="module")
def perov_and_mp20(tmp_path_factory) -> Path:
    """One data directory with the fake perov_5 (for the template sampler) and the fake mp_20 (for the hull)."""
    root = write_dataset(tmp_path_factory.mktemp("both"), "perov_5", synthetic_perov_splits())
    return write_fake_mp20(root)


def test_sample_with_filter(synthetic_template_ckpt, perov_and_mp20, tiny_ckpt, tmp_path, capsys):
    out = tmp_path / "samples"
    result = run_main(["sample", "--model", str(synthetic_template_ckpt), "-c", "SrTiO3", "-c", "NaCl2", "-n", "2",
                       "--out", str(out), "--data-dir", str(perov_and_mp20), "--filter", "--surrogate",
                       str(tiny_ckpt), "--max-e-hull", "100"], capsys)
    assert result.returncode == 0, result.stderr
    samples = read_csv_rows(out / "samples.csv")
    assert len(samples) >= 2
    filtered = rows_of(out / "filter")
    sample_columns = list(samples[0])
    assert header_of(out / "filter") == [*sample_columns, "valid_struct", "valid_comp", "is_unique", "duplicate_of",
                                         "is_novel", *ADDED[4:]]
    assert [{c: r[c] for c in sample_columns} for r in filtered] == samples
    # the template model copies training perovskites: novelty against its protocol (perov_5) says so
    for row in filtered:
        if row["formula"] == "SrTiO3":
            assert row["is_novel"] == "False" and row["passed"] == "False"
    summary = json.loads((out / "filter" / "summary.json").read_text())
    assert summary["n"] == len(samples)
    assert "- novelty reference: perov_5 training split (5 structures)" in (out / "filter" / "summary.md").read_text()
    assert f"{summary['passed']} of {len(samples)} passed" in " ".join(result.stderr.split())


def test_sample_with_filter_refuses_a_bad_filter_option_before_sampling(synthetic_template_ckpt, perov_and_mp20,
                                                                        tmp_path, capsys):
    config = tmp_path / "filter.yaml"
    config.write_text("filter:\n  min_distance: -1\n")
    out = tmp_path / "samples"
    result = run_main(["sample", "--model", str(synthetic_template_ckpt), "-c", "SrTiO3", "--out", str(out),
                       "--data-dir", str(perov_and_mp20), "--filter", "--filter-config", str(config)], capsys)
    assert_one_line_error(result, "filter.min_distance must be > 0")
    assert not (out / "samples.csv").exists()


# ------------------------------------------------------------------------------ the CHGNet stage
def test_relax_stage_relaxes_survivors_and_caches_its_reference(candidates_csv, tiny_ckpt, fake_mp20, tmp_path):
    pytest.importorskip("chgnet", reason="the relax stage needs the 'relax' extra (CHGNet)")
    out = tmp_path / "out"
    with isolated_cache(tmp_path / "cache") as cache:
        result = cli_in_process(filter_args(candidates_csv, out, tiny_ckpt, fake_mp20, "--skip", "novelty",
                                            "--max-e-hull", "100", "--relax"))
        assert result.returncode == 0, result.stderr
        reference = list((Path(cache) / "crystalgen" / "chgnet").glob("*.csv"))
    rows = rows_of(out)
    header = header_of(out)
    assert header[-7:] == ["relaxed_valid_struct", "chgnet_energy_per_atom", "e_above_hull_chgnet", "relax_s",
                           "relaxed_cif", "passed", "reject_reason"]
    relaxed = [r for r in rows if r["relaxed_cif"]]
    # only candidates that survived every earlier stage are relaxed; the others keep their first reason
    assert relaxed and all(r["reject_reason"] in ("", "relax") for r in relaxed)
    assert all(not r["relaxed_cif"] for r in rows if r["reject_reason"] not in ("", "relax"))
    for row in relaxed:
        energy = float(row["chgnet_energy_per_atom"])
        assert -15 < energy < 0  # CHGNet total energies of ordinary solids, eV/atom
        assert Crystal.from_cif(row["relaxed_cif"]).num_atoms > 0
        assert float(row["relax_s"]) > 0
    # the reference (the fake protocol's 5 training structures) is evaluated once and cached with its cost
    assert len(reference) == 1
    assert len(read_csv_rows(reference[0])) == len(fake_mp20_splits()["train"])
    cost = json.loads(reference[0].with_suffix(".cost.json").read_text())
    assert cost["structures"] == len(fake_mp20_splits()["train"]) and cost["seconds"] > 0
