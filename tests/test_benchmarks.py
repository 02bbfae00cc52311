"""``crystalgen benchmark csp|gen``, their resumable run folders, and the matching shortcuts CSP scoring uses.

The benchmarks run in-process on a fake perov_5 (``synthetic_perov_dir``: five training
perovskites, four test structures) with a template model fitted on it. Figures are checked against
an independent re-scoring with pymatgen's public ``StructureMatcher.get_rms_dist``, which is how the
project's CSP numbers are checked.
"""

from __future__ import annotations

import base64
import functools
import json
import math
import os
import platform
import re
import shutil
import subprocess
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from conftest import MATCHER_KWARGS, Result, assert_one_line_error, cli_in_process, isolated_cache, make_random, read_rows, run_main
from crystalgen import Crystal
from crystalgen.runs import ResumableCsv, RunDir, read_csv_rows
from crystalgen.errors import CrystalgenInputError
from crystalgen.models.store import CARD_FILE, card_metrics
from crystalgen.metrics.csp import CspConfig, csp_rms_matrix, proposal_rms
from crystalgen.metrics.matching import reduce_for_matching, rms_distance, rms_distance_reduced

K = 2
TEST_IDS = ["te-SrTiO3", "te-BaTiO3", "te-ZnO", "te-NaCl"]
REPORT_FILES = ("report.md", "report.html")


def csp_args(ckpt: Path, data: Path, out: Path, *extra: str, k: int = K) -> list[str]:
    return ["benchmark", "csp", "--model", str(ckpt), "--dataset", "perov_5", "--data-dir", str(data),
            "--k", str(k), "--out", str(out), "--workers", "1", *extra]


@dataclass
class Run:
    out: Path
    result: Result

    @property
    def metrics(self) -> dict:
        return json.loads((self.out / "metrics.json").read_text())


@pytest.fixture(scope="module")
def csp_run(synthetic_template_ckpt, synthetic_perov_dir, tmp_path_factory) -> Run:
    """One uninterrupted ``benchmark csp --k 2`` run, shared by the tests that only read it."""
    out = tmp_path_factory.mktemp("csp") / "run"
    with isolated_cache(tmp_path_factory.mktemp("csp-cache")):
        result = cli_in_process(csp_args(synthetic_template_ckpt, synthetic_perov_dir, out))
    assert result.returncode == 0, result.stderr
    return Run(out, result)


# ------------------------------------------------------------------------------ independent scoring
@functools.lru_cache(maxsize=None)
def _matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**MATCHER_KWARGS)


def _structure(cif: str):
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return Structure.from_str(cif, fmt="cif")


def independent_csp_scores(test_csv: Path, predictions_csv: Path, k: int) -> dict[str, float]:
    """Best ``get_rms_dist(pred, gt)[0]`` over each test structure's ranks < k (NaN: no match), from the files alone."""
    rows = read_rows(predictions_csv)
    truth = pd.read_csv(test_csv)
    best = {}
    for material_id, gt_cif in zip(truth["material_id"], truth["cif"]):
        gt = _structure(gt_cif)
        distances = []
        for row in rows:
            if row["material_id"] == material_id and int(row["rank"]) < k:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    found = _matcher().get_rms_dist(_structure(row["cif"]), gt)
                if found is not None:
                    distances.append(found[0])
        best[material_id] = min(distances) if distances else math.nan
    return best


# ------------------------------------------------------------------------------ csp: outputs
def test_csp_predictions_file(csp_run):
    text = (csp_run.out / "predictions.csv").read_text()
    assert text.splitlines()[0] == "material_id,rank,cif"
    rows = read_csv_rows(csp_run.out / "predictions.csv")
    by_id: dict[str, list[int]] = {}
    for row in rows:
        by_id.setdefault(row["material_id"], []).append(int(row["rank"]))
    # ZnO (Zn2O2) has no template of its stoichiometry; NaCl's 8 atoms exceed the model's 5.
    assert by_id == {"te-SrTiO3": [0, 1], "te-BaTiO3": [0, 1]}
    for row in rows:
        crystal = Crystal.from_cif(row["cif"])
        assert crystal.formula == row["material_id"].removeprefix("te-") and crystal.num_atoms == 5


def test_csp_metrics_file(csp_run):
    metrics = csp_run.metrics
    assert {"match_rate", "rmse", "n", "by_k"} <= set(metrics)
    assert set(metrics["by_k"]) == {"1", "2"}
    assert metrics["n"] == 4 and metrics["k"] == K and metrics["split_size"] == 4 and metrics["full_split"] is True
    assert metrics["task"] == "csp" and metrics["dataset"] == "perov_5" and metrics["protocol"] == "perov_5"
    assert metrics["targets_without_prediction"] == 2
    assert metrics["targets_refused_by_model"] == 1
    assert metrics["first_proposal_unparsable"] == 0
    assert set(metrics["metadata"]["wall_s"]) == {"load", "predict", "score", "polymorph", "report"}
    # The headline is the k=2 entry.
    assert metrics["match_rate"] == metrics["by_k"]["2"]["match_rate"]
    assert metrics["rmse"] == metrics["by_k"]["2"]["rmse"]
    # The CLI prints one line per k.
    assert "k=1: match rate 50.00%" in csp_run.result.stdout
    assert "k=2: match rate 50.00%" in csp_run.result.stdout


def test_csp_polymorph_figures_split_by_leakage(csp_run, synthetic_perov_dir):
    def reduced_formulas(split: str) -> dict[str, str]:
        table = pd.read_csv(synthetic_perov_dir / "perov_5" / f"{split}.csv")
        return {i: _structure(cif).composition.reduced_formula for i, cif in zip(table["material_id"], table["cif"])}

    seen = set(reduced_formulas("train").values())
    leaked = {i for i, formula in reduced_formulas("test").items() if formula in seen}
    assert leaked == {"te-SrTiO3", "te-BaTiO3"}  # precondition: the fixture has both kinds
    per_structure = pd.read_csv(csp_run.out / "per_structure.csv").set_index("material_id")["matched_k1"]
    polymorph = csp_run.metrics["polymorph"]
    assert polymorph["k"] == 1 and polymorph["cross_pairs"] == 0  # no two test structures share a composition
    for part, members in (("leaked", leaked), ("not_leaked", set(per_structure.index) - leaked)):
        assert polymorph[part]["n"] == len(members)
        assert polymorph[part]["match_rate"] == pytest.approx(per_structure[sorted(members)].mean())
    assert polymorph["all"]["match_rate"] == csp_run.metrics["by_k"]["1"]["match_rate"] == polymorph["all"]["metre"]
    assert json.loads((csp_run.out / "polymorph.json").read_text()) == polymorph
    assert "## Polymorph-aware figures" in (csp_run.out / "report.md").read_text()


def test_csp_polymorph_stage_says_when_metre_is_skipped(synthetic_template_ckpt, synthetic_perov_dir, tmp_path,
                                                         capsys, monkeypatch):
    import crystalgen.benchmarks.csp_polymorph as stage

    monkeypatch.setattr(stage, "MAX_CROSS_PAIRS", -1)  # even no extra pair is too many
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, tmp_path / "out", k=1), capsys)
    assert result.returncode == 0, result.stderr
    polymorph = json.loads((tmp_path / "out" / "metrics.json").read_text())["polymorph"]
    assert "METRe not computed" in polymorph["metre_skipped"]
    assert polymorph["all"]["metre"] is None and polymorph["all"]["crmse"] is None
    assert polymorph["all"]["match_rate"] == 0.5 and polymorph["leaked"]["match_rate"] == 1.0
    assert "METRe not computed" in (tmp_path / "out" / "report.md").read_text()


def test_csp_template_first_proposal_matches_a_training_copy(csp_run, synthetic_perov_dir):
    """te-SrTiO3 is a copy of tr-SrTiO3: the template's first proposal must match it, at rms ~0."""
    per = {row["material_id"]: row for row in read_csv_rows(csp_run.out / "per_structure.csv")}
    assert per["te-SrTiO3"]["matched_k1"] == "1" and per["te-SrTiO3"]["best_rank_k1"] == "0"
    assert float(per["te-SrTiO3"]["rms_k1"]) < 1e-6
    # Cubic BaTiO3 matches its tetragonal template at k=1 with a real distance; rank 1 (from cubic SrTiO3) is closer.
    assert per["te-BaTiO3"]["matched_k1"] == "1" and float(per["te-BaTiO3"]["rms_k1"]) > 1e-3
    assert per["te-BaTiO3"]["best_rank_k2"] == "1" and float(per["te-BaTiO3"]["rms_k2"]) < 1e-6
    assert per["te-ZnO"]["matched_k2"] == "0" and per["te-NaCl"]["matched_k2"] == "0"
    assert per["te-ZnO"]["crystal_system"] == "hexagonal" and per["te-NaCl"]["crystal_system"] == "cubic"


@pytest.mark.parametrize("k", [1, 2])
def test_csp_metrics_agree_with_independent_rescoring(csp_run, synthetic_perov_dir, k):
    best = independent_csp_scores(synthetic_perov_dir / "perov_5" / "test.csv", csp_run.out / "predictions.csv", k)
    assert list(best) == TEST_IDS
    matched = [v for v in best.values() if not math.isnan(v)]
    entry = csp_run.metrics["by_k"][str(k)]
    assert entry["n"] == 4 and entry["n_matched"] == len(matched) == 2
    assert entry["match_rate"] == len(matched) / len(best) == 0.5
    assert entry["rmse"] == float(np.mean(matched))  # exactly: same pymatgen steps on the same files


def test_csp_per_structure_agrees_with_independent_rescoring(csp_run, synthetic_perov_dir):
    best = independent_csp_scores(synthetic_perov_dir / "perov_5" / "test.csv", csp_run.out / "predictions.csv", K)
    per = {row["material_id"]: row for row in read_csv_rows(csp_run.out / "per_structure.csv")}
    for material_id, value in best.items():
        if math.isnan(value):
            assert per[material_id]["rms_k2"] == "" and per[material_id]["best_rank_k2"] == "-1"
        else:
            assert float(per[material_id]["rms_k2"]) == pytest.approx(value, abs=1e-6)


def test_csp_metrics_file_is_strict_json(csp_run):
    def reject(token):
        raise ValueError(f"non-standard JSON token {token}")

    json.loads((csp_run.out / "metrics.json").read_text(), parse_constant=reject)


def test_csp_report_files(csp_run):
    md = (csp_run.out / "report.md").read_text()
    page = (csp_run.out / "report.html").read_text()
    for text in (md, page):
        assert "DiffCSP (published)" in text and "CDVAE (published)" in text and "FlowMM (published)" in text
        assert "52.02" in text and "98.60" in text  # DiffCSP perov_5 k=1 and k=20
        assert "crystalgen: tpl (this run)" in text
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=Path(__file__).parent, capture_output=True, text=True)
    if head.returncode == 0:
        assert head.stdout.strip() in md and head.stdout.strip() in page
    assert f"{os.cpu_count()} cores" in md and f"Python {platform.python_version()}" in md
    assert "A test model." in md  # the card, verbatim
    assert "**k=1: match rate 50.00%** (2 of 4)" in md
    # Markdown links each figure, which write_report saved.
    figure_names = re.findall(r"\]\(figures/([\w-]+)\.png\)", md)
    assert {"rmse_histogram", "density", "gallery"} <= set(figure_names)
    # SrTiO3 and BaTiO3 match at k=1; ZnO and NaCl got no proposal, so their panels stay empty.
    assert "the first 2 matched and the first 2 unmatched (those with a parsed proposal first) test structures" in md
    for name in figure_names:
        assert (csp_run.out / "figures" / f"{name}.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_csp_report_html_is_self_contained(csp_run):
    page = (csp_run.out / "report.html").read_text()
    assert page.startswith("<!DOCTYPE html>")
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert "<script" not in page.lower() and "<link" not in page.lower() and "@import" not in page
    sources = re.findall(r"""<img[^>]*\ssrc="([^"]*)\"""", page)
    assert len(sources) == len(list((csp_run.out / "figures").glob("*.png"))) >= 4
    figures = {p.read_bytes() for p in (csp_run.out / "figures").glob("*.png")}
    for src in sources:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]) in figures
    assert '<tr class="highlight"><td>crystalgen: tpl (this run)' in page


# ------------------------------------------------------------------------------ csp: resuming
def _copy_run(run: Run, tmp_path: Path) -> Path:
    out = tmp_path / "run"
    shutil.copytree(run.out, out)
    return out


COMPARED = ("n", "k", "match_rate", "rmse", "n_matched", "by_k", "targets_without_prediction",
            "first_proposal_unparsable", "d_rho_first_proposal", "split_size", "full_split")


def test_csp_resume_after_losing_reports_and_a_torn_tail(csp_run, synthetic_template_ckpt, synthetic_perov_dir,
                                                       tmp_path, capsys):
    out = _copy_run(csp_run, tmp_path)
    progress = json.loads((out / "predictions.progress.json").read_text())
    assert progress == {"done": 4, "bytes": (out / "predictions.csv").stat().st_size}
    for name in ("metrics.json", *REPORT_FILES):
        (out / name).unlink()
    with open(out / "predictions.csv", "a") as handle:  # a half-written block after the committed bytes
        handle.write('te-ZnO,0,"# generated using pymatgen\ndata_Zn\n_cell_length_a 3.2')
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, out), capsys)
    assert result.returncode == 0, result.stderr
    assert (out / "predictions.csv").read_bytes() == (csp_run.out / "predictions.csv").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    for key in COMPARED:
        assert metrics[key] == csp_run.metrics[key], key
    assert all((out / name).is_file() for name in REPORT_FILES)
    # Wall times add up over sessions.
    assert metrics["metadata"]["wall_s"]["predict"] >= csp_run.metrics["metadata"]["wall_s"]["predict"]


def test_csp_resume_after_an_interrupted_predict_stage(csp_run, synthetic_template_ckpt, synthetic_perov_dir,
                                                       tmp_path, capsys, monkeypatch):
    """Commit one target per block, interrupt on the third model call, tear the tail, resume: same files, same figures."""
    import crystalgen.generators.sampling as sampling_module
    from crystalgen.generators import TemplateGenerator

    monkeypatch.setattr(sampling_module, "SAMPLE_BATCH", 1)
    real_sample, calls, interrupt = TemplateGenerator.sample, [], [True]

    def interrupting_sample(self, targets, n=1, seed=0, options=None):
        calls.append([t.label for t in targets])
        if len(calls) == 3 and interrupt[0]:
            raise KeyboardInterrupt
        return real_sample(self, targets, n, seed, options)

    monkeypatch.setattr(TemplateGenerator, "sample", interrupting_sample)
    out = tmp_path / "run"
    args = csp_args(synthetic_template_ckpt, synthetic_perov_dir, out)
    first = run_main(args, capsys)
    assert first.returncode == 130 and first.stderr.strip().endswith("interrupted"), first.stderr
    progress = json.loads((out / "predictions.progress.json").read_text())
    assert progress["done"] == 2 and progress["bytes"] == (out / "predictions.csv").stat().st_size
    assert not (out / "metrics.json").exists() and not (out / "scores.safetensors").exists()
    committed = (out / "predictions.csv").read_bytes()
    assert committed == (csp_run.out / "predictions.csv").read_bytes()  # SrTiO3 and BaTiO3 are all there is
    with open(out / "predictions.csv", "a") as handle:
        handle.write('te-ZnO,0,"torn')

    interrupt[0] = False
    second = run_main(args, capsys)
    assert second.returncode == 0, second.stderr
    # The resumed session started at the third target (ZnO); NaCl (8 atoms) is refused without a model call.
    assert calls == [["Sr1Ti1O3"], ["Ba1Ti1O3"], ["Zn2O2"], ["Zn2O2"]]
    assert (out / "predictions.csv").read_bytes() == (csp_run.out / "predictions.csv").read_bytes()
    metrics = json.loads((out / "metrics.json").read_text())
    for key in (*COMPARED, "targets_refused_by_model"):
        assert metrics[key] == csp_run.metrics[key], key
    assert json.loads((out / "run.json").read_text())["started_commit"] == metrics["metadata"]["started_commit"]


def test_csp_resume_keeps_the_refused_count(csp_run, synthetic_template_ckpt, synthetic_perov_dir, tmp_path, capsys):
    out = _copy_run(csp_run, tmp_path)
    (out / "metrics.json").unlink()
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, out), capsys)
    assert result.returncode == 0, result.stderr
    assert json.loads((out / "metrics.json").read_text())["targets_refused_by_model"] == 1


def test_csp_rerun_with_other_settings_is_refused(csp_run, synthetic_template_ckpt, synthetic_perov_dir, tmp_path,
                                                  capsys):
    out = _copy_run(csp_run, tmp_path)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, out, k=3), capsys)
    assert_one_line_error(result, "other settings", "k: 2 -> 3", "--out")
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, out, "--seed", "1"), capsys)
    assert_one_line_error(result, "seed: 0 -> 1")


# ------------------------------------------------------------------------------ csp: model card, errors
@pytest.fixture
def own_ckpt(synthetic_template_ckpt, tmp_path) -> Path:
    return Path(shutil.copytree(synthetic_template_ckpt, tmp_path / "ckpt"))


def test_update_card_refuses_a_limited_run(own_ckpt, synthetic_perov_dir, tmp_path, capsys):
    card = (own_ckpt / CARD_FILE).read_text()
    result = run_main(csp_args(own_ckpt, synthetic_perov_dir, tmp_path / "out", "--limit", "2", "--update-card", k=1),
                      capsys)
    assert_one_line_error(result, "--update-card", "--limit")
    assert (own_ckpt / CARD_FILE).read_text() == card
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    assert metrics["n"] == 2 and metrics["full_split"] is False and metrics["split_size"] == 4
    assert "the first 2 of 4 structures" in (tmp_path / "out" / "report.md").read_text()


def test_update_card_writes_full_run_figures(own_ckpt, synthetic_perov_dir, tmp_path, capsys):
    result = run_main(csp_args(own_ckpt, synthetic_perov_dir, tmp_path / "out", "--update-card"), capsys)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((tmp_path / "out" / "metrics.json").read_text())
    card = (own_ckpt / CARD_FILE).read_text()
    assert card.startswith("---\n") and "# card\n\nA test model.\n" in card
    section = card.split("## Measured CSP metrics", 1)[1]
    assert f"| perov_5 | perov_5 (test, n={metrics['n']}) | 1 | {100 * metrics['by_k']['1']['match_rate']:.2f} |" in section
    values = card_metrics(card)
    assert values == {
        "perov_5_csp_k1_match_rate": 0.5,
        "perov_5_csp_k1_rmse": round(metrics["by_k"]["1"]["rmse"], 6),
        "perov_5_csp_k2_match_rate": 0.5,
        "perov_5_csp_k2_rmse": round(metrics["by_k"]["2"]["rmse"], 6),
        "perov_5_csp_n": 4,
    }
    assert values["perov_5_csp_k1_rmse"] > 0.001  # BaTiO3's first proposal is the tetragonal template


def test_unfitted_family_is_refused(synthetic_perov_dir, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_main(["benchmark", "csp", "--model", "template", "--dataset", "perov_5", "--data-dir",
                       str(synthetic_perov_dir), "--out", "out", "--workers", "1"], capsys)
    assert_one_line_error(result, "'template'", "unfitted")
    result = run_main(["benchmark", "gen", "--model", "template", "--dataset", "perov_5", "--data-dir",
                       str(synthetic_perov_dir), "-n", "2", "--out", "out-gen", "--workers", "1"], capsys)
    assert_one_line_error(result, "'template'", "unfitted")
    assert not (tmp_path / "out").exists() and not (tmp_path / "out-gen").exists()


def test_unknown_model_and_foreign_protocol_are_refused(synthetic_template_ckpt, synthetic_perov_dir, tmp_path,
                                                        capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_main(["benchmark", "csp", "--model", "no-such-model", "--dataset", "perov_5", "--out", "o"], capsys)
    assert_one_line_error(result, "no-such-model")
    result = run_main(csp_args(synthetic_template_ckpt, synthetic_perov_dir, tmp_path / "o", "--protocol", "mp_20"),
                      capsys)
    assert_one_line_error(result, "mp_20", "perov_5")


# ------------------------------------------------------------------------------ gen
@pytest.fixture(scope="module")
def gen_run(synthetic_template_ckpt, synthetic_perov_dir, tmp_path_factory) -> Run:
    out = tmp_path_factory.mktemp("gen") / "run"
    with isolated_cache(tmp_path_factory.mktemp("gen-cache")):
        result = cli_in_process(["benchmark", "gen", "--model", str(synthetic_template_ckpt), "--dataset", "perov_5",
                                 "--data-dir", str(synthetic_perov_dir), "-n", "5", "--out", str(out),
                                 "--workers", "1"])
    assert result.returncode == 0, result.stderr
    return Run(out, result)


def test_gen_samples_are_training_copies(gen_run, synthetic_perov_dir):
    rows = read_csv_rows(gen_run.out / "samples.csv")
    assert (gen_run.out / "samples.csv").read_text().splitlines()[0] == "sample_id,formula,num_atoms,template_spacegroup,cif"
    assert [r["sample_id"] for r in rows] == [f"s{i:06d}" for i in range(5)]
    train = pd.read_csv(synthetic_perov_dir / "perov_5" / "train.csv")
    train_crystals = {c.formula: c for c in (Crystal.from_cif(t) for t in train["cif"])}
    for row in rows:
        sample = Crystal.from_cif(row["cif"])
        assert sample.formula == row["formula"] and sample.num_atoms == int(row["num_atoms"]) == 5
        template = train_crystals[sample.formula]
        np.testing.assert_allclose(sample.lattice, template.lattice, atol=1e-6)
        np.testing.assert_allclose(sample.frac_coords, template.frac_coords, atol=1e-6)


def test_gen_metrics(gen_run):
    metrics = gen_run.metrics
    formulas = [r["formula"] for r in read_csv_rows(gen_run.out / "samples.csv")]
    assert metrics["n_generated"] == metrics["n_requested"] == 5 and metrics["n_unparsable"] == 0
    assert metrics["n_without_sample"] == 0 and metrics["fingerprint_method"] == "fast"
    assert metrics["n_test"] == 4 and metrics["quick_run"] is True
    assert metrics["novelty"] == 0.0  # every sample is a training structure
    assert metrics["details"]["novelty"]["n_train"] == 5
    assert metrics["struct_validity"] == 1.0 and metrics["comp_validity"] == 1.0
    # The five training perovskites differ in composition, so a sample is unique iff its formula is.
    assert metrics["uniqueness"] == len(set(formulas)) / 5
    for name in ("cov_recall", "cov_precision"):
        assert 0.0 <= metrics[name] <= 1.0
    # d_E: the shipped surrogate-perov_5's heat_ref on the samples against the test structures
    assert metrics["d_prop"] is not None and metrics["d_prop"] > 0.0
    assert "struct_validity 100.00%" in gen_run.result.stdout and "novelty 0.00%" in gen_run.result.stdout


def test_gen_report(gen_run):
    md = (gen_run.out / "report.md").read_text()
    page = (gen_run.out / "report.html").read_text()
    assert "DiffCSP (published)" in md and "CDVAE (published)" in md
    assert "memorisation reference" in md
    assert "`heat_ref` as predicted by `surrogate-perov_5`" in md
    assert not re.search(r"""(?:src|href)\s*=\s*["']?\s*(?:https?:)?//""", page, re.IGNORECASE)
    assert all(s.startswith("data:image/png;base64,") for s in re.findall(r'<img[^>]*\ssrc="([^"]*)"', page))
    assert {p.stem for p in (gen_run.out / "figures").glob("*.png")} == {"gallery", "density", "num_elements",
                                                                          "num_atoms"}
    # Five valid samples, fewer than the gallery's slots: all of them, in sample order.
    gallery = md.split("## Gallery", 1)[1].split("\n## ", 1)[0]
    assert "![All 5 structurally valid samples, in sample order (s000000, s000001, s000002, s000003, s000004)" \
        in gallery and "](figures/gallery.png)" in gallery


def test_gen_rerun_resumes_and_other_settings_are_refused(gen_run, synthetic_template_ckpt, synthetic_perov_dir,
                                                          tmp_path, capsys):
    out = _copy_run(gen_run, tmp_path)
    args = ["benchmark", "gen", "--model", str(synthetic_template_ckpt), "--dataset", "perov_5", "--data-dir",
            str(synthetic_perov_dir), "-n", "5", "--out", str(out), "--workers", "1"]
    assert_one_line_error(run_main([*args[:-2], "--seed", "1", *args[-2:]], capsys), "seed: 0 -> 1")
    assert_one_line_error(run_main([a if a != "5" else "6" for a in args], capsys), "n: 5 -> 6")
    (out / "metrics.json").unlink()
    result = run_main(args, capsys)
    assert result.returncode == 0, result.stderr
    assert (out / "samples.csv").read_bytes() == (gen_run.out / "samples.csv").read_bytes()  # nothing re-sampled
    metrics = json.loads((out / "metrics.json").read_text())
    for key in ("n_generated", "struct_validity", "comp_validity", "cov_recall", "cov_precision", "d_rho", "d_elem",
                "uniqueness", "novelty"):
        assert metrics[key] == gen_run.metrics[key], key


def test_gen_update_card_records_the_figures(gen_run, own_ckpt, synthetic_perov_dir, tmp_path, capsys):
    args = ["benchmark", "gen", "--model", str(own_ckpt), "--dataset", "perov_5", "--data-dir",
            str(synthetic_perov_dir), "-n", "5", "--update-card", "--out", str(tmp_path / "out"), "--workers", "1"]
    with isolated_cache(tmp_path / "cache"):
        result = run_main(args, capsys)
    assert result.returncode == 0, result.stderr
    card = (own_ckpt / CARD_FILE).read_text()
    values = card_metrics(card)
    assert values["perov_5_gen_n"] == 5
    assert values["perov_5_gen_struct_validity"] == round(gen_run.metrics["struct_validity"], 6)
    assert values["perov_5_gen_novelty"] == 0.0  # template samples are training copies
    assert "## Measured generation metrics" in card and "a quick run" in card
    assert "# card\n\nA test model.\n" in card  # the body is kept


def test_d_e_uses_the_datasets_shipped_surrogate(nacl):
    from crystalgen.benchmarks.gen import surrogate_property
    from crystalgen.surrogate.predictor import load_surrogate

    predict, note = surrogate_property("mp_20")
    expected = load_surrogate("surrogate-mp_20").predict([nacl])["formation_energy_per_atom"][0]
    np.testing.assert_allclose(predict([nacl]), expected)
    assert "`formation_energy_per_atom` as predicted by `surrogate-mp_20`" in note
    predict, note = surrogate_property("no_such_dataset")
    assert predict is None and "no `surrogate-no_such_dataset`" in note


# ------------------------------------------------------------------------------ rundir
def test_resumable_csv_commit_reopen_and_torn_tail(tmp_path):
    path, progress = tmp_path / "out.csv", tmp_path / "out.progress.json"
    writer = ResumableCsv(path, ("a", "b"), progress)
    assert writer.done == 0 and path.read_bytes() == b"a,b\r\n"
    assert json.loads(progress.read_text()) == {"done": 0, "bytes": 5}
    writer.commit([{"a": 1, "b": "x,y"}, {"a": 2, "b": "z"}], finished=3)
    assert writer.done == 3
    committed = path.read_bytes()
    assert committed == b'a,b\r\n1,"x,y"\r\n2,z\r\n'
    assert json.loads(progress.read_text()) == {"done": 3, "bytes": len(committed)}

    again = ResumableCsv(path, ("a", "b"), progress)  # reopen: nothing lost, no second header
    assert again.done == 3 and path.read_bytes() == committed
    with open(path, "ab") as handle:
        handle.write(b'3,"half a ro')
    torn = ResumableCsv(path, ("a", "b"), progress)
    assert torn.done == 3 and path.read_bytes() == committed
    torn.commit([{"a": 3, "b": "w"}], finished=1)
    assert torn.done == 4
    assert read_csv_rows(path) == [{"a": "1", "b": "x,y"}, {"a": "2", "b": "z"}, {"a": "3", "b": "w"}]
    assert json.loads(progress.read_text()) == {"done": 4, "bytes": path.stat().st_size}


def test_resumable_csv_restarts_when_progress_cannot_be_trusted(tmp_path):
    path, progress = tmp_path / "out.csv", tmp_path / "out.progress.json"
    ResumableCsv(path, ("a",), progress).commit([{"a": 1}, {"a": 2}], finished=2)
    path.write_text("a\n")  # shorter than the committed length: the file was replaced
    restarted = ResumableCsv(path, ("a",), progress)
    assert restarted.done == 0 and read_csv_rows(path) == []
    restarted.commit([{"a": 5}], finished=1)
    progress.unlink()  # no record of what was committed
    fresh = ResumableCsv(path, ("a",), progress)
    assert fresh.done == 0 and read_csv_rows(path) == [] and path.read_bytes() == b"a\r\n"


def test_run_dir_settings_and_wall_time(tmp_path):
    run = RunDir(tmp_path / "r", {"k": 1, "model": "m"})
    assert run.resumed is False
    run.add_time("predict", 1.5)
    with pytest.raises(CrystalgenInputError, match=r"k: 1 -> 2"):
        RunDir(tmp_path / "r", {"k": 2, "model": "m"})
    with pytest.raises(CrystalgenInputError, match=r"extra: None -> 'x'"):
        RunDir(tmp_path / "r", {"k": 1, "model": "m", "extra": "x"})
    again = RunDir(tmp_path / "r", {"k": 1, "model": "m"})
    assert again.resumed is True and again.started_commit == run.started_commit
    again.add_time("predict", 2.25)
    assert json.loads((tmp_path / "r" / "run.json").read_text())["wall_s"] == {"predict": 3.75}
    writer = again.csv_writer("predictions.csv", ("x",))
    assert writer.progress_path == tmp_path / "r" / "predictions.progress.json"


# ------------------------------------------------------------------------------ matching shortcuts
def _perturbed(crystal: Crystal, sigma: float, seed: int) -> Crystal:
    rng = np.random.default_rng(seed)
    cart = crystal.cart_coords + rng.normal(0.0, sigma, crystal.cart_coords.shape)
    return Crystal(crystal.lattice, cart @ np.linalg.inv(crystal.lattice), crystal.atomic_numbers)


def _supercell(crystal: Crystal, scale=(2, 1, 1)) -> Crystal:
    structure = crystal.to_structure()
    structure.make_supercell(list(scale))
    return Crystal.from_structure(structure)


def _random(sg: int, species, counts, seed: int) -> Crystal:
    try:
        return make_random(sg, species, counts, seed)
    except Exception as exc:  # as in conftest: say why instead of failing on pyxtal
        pytest.skip(f"pyxtal could not make space group {sg}: {exc}")


def _pairs(nacl, si, zno):
    sg62 = _random(62, ("Ca", "O"), (4, 4), 1)
    sg148 = _random(148, ("Ni", "Ti", "O"), (6, 6, 18), 3)
    sg14 = _random(14, ("Na", "Cl"), (4, 4), 1)
    cscl_type = Crystal(np.eye(3) * 3.0, [[0, 0, 0], [0.5, 0.5, 0.5]], [11, 17])
    return {
        # name: (pred, target, must they match?)
        "identical": (nacl, nacl.copy(), True),
        "perturbed": (_perturbed(nacl, 0.02, 0), nacl, True),
        "supercell": (_supercell(nacl), nacl, True),
        "zno-perturbed-supercell": (_perturbed(_supercell(zno, (1, 1, 2)), 0.03, 1), zno, True),
        "random-perturbed": (_perturbed(sg62, 0.05, 2), sg62, True),
        "random-supercell": (_supercell(sg148, (1, 1, 2)), sg148, True),
        "other-structure": (sg14, nacl, None),
        "cscl-type-vs-rock-salt": (cscl_type, nacl, False),
        "other-composition": (si, nacl, False),
    }


def test_reduced_matching_equals_get_rms_dist(nacl, si, zno, matcher):
    outcomes = {}
    for name, (pred, target, should_match) in _pairs(nacl, si, zno).items():
        direct = rms_distance(pred, target)
        reduced = rms_distance_reduced(reduce_for_matching(pred), reduce_for_matching(target))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            public = matcher.get_rms_dist(pred.to_structure(), target.to_structure())
        public = math.nan if public is None else public[0]
        assert (math.isnan(direct) and math.isnan(reduced) and math.isnan(public)) or direct == reduced == public, (
            name, direct, reduced, public)
        if should_match is not None:
            assert (not math.isnan(direct)) == should_match, name
        outcomes[name] = direct
    assert outcomes["identical"] < 1e-8 < outcomes["perturbed"]


def test_reduce_for_matching_gives_the_primitive_niggli_cell(nacl):
    reduced = reduce_for_matching(_supercell(nacl, (2, 2, 1)))
    assert len(reduced) == 2  # the rock-salt primitive cell
    assert reduce_for_matching(nacl.to_structure()).lattice.abc == pytest.approx(reduced.lattice.abc)


# ------------------------------------------------------------------------------ proposal_rms
def test_proposal_rms_parses_cif_text_and_misses_on_garbage(nacl, si):
    perturbed = _perturbed(nacl, 0.02, 3)
    cif = perturbed.to_cif()
    expected = rms_distance(Crystal.from_cif(cif), nacl)
    assert 1e-4 < expected < 0.5
    assert proposal_rms(cif, nacl) == expected
    assert proposal_rms(cif, nacl, gt_reduced=reduce_for_matching(nacl)) == expected
    assert proposal_rms(Crystal.from_cif(cif), nacl) == expected
    for miss in ("not a CIF at all", "", "data_x\n_cell_length_a 5\n", si.to_cif(), None):
        assert math.isnan(proposal_rms(miss, nacl)), repr(miss)[:40]


def test_csp_matrix_with_cif_text_proposals(nacl, si):
    perturbed = _perturbed(nacl, 0.02, 4)
    matrix = csp_rms_matrix([nacl, si], [["garbage", perturbed.to_cif(), None], [si.to_cif()]], k=3, workers=1,
                            show_progress=False)
    assert matrix.rms.shape == (2, 3)
    assert math.isnan(matrix.rms[0, 0]) and math.isnan(matrix.rms[0, 2]) and math.isnan(matrix.rms[1, 1])
    assert matrix.rms[0, 1] == rms_distance(Crystal.from_cif(perturbed.to_cif()), nacl)
    assert matrix.rms[1, 0] < 1e-8
    result = matrix.result(1)
    assert result.n_matched == 1 and list(result.matched) == [False, True]
    assert matrix.result(3).best_index.tolist() == [1, 0]
    assert CspConfig().matcher.stol == MATCHER_KWARGS["stol"]
