"""Design job files, the job runner (filter, rank, judge, resume) and the optimisation benchmark."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from crystalgen.design.job import STRATEGIES, load_job, parse_job
from crystalgen.errors import CrystalgenInputError

REPO = Path(__file__).resolve().parents[1]
JOBS = sorted((REPO / "configs" / "design").glob("*.yaml"))
BASE = {"generator": "diffusion-perov_5-gen", "surrogate": "surrogate-perov_5",
        "objectives": {"heat_ref": {"minimise": True, "hit_below": 0.612}}}


# ------------------------------------------------------------------ job files
@pytest.mark.parametrize("path", JOBS, ids=[p.stem for p in JOBS])
def test_shipped_jobs_parse(path):
    job = load_job(path)
    assert job.objectives and job.strategy.name in STRATEGIES and job.candidates >= 1


def test_job_defaults_and_strategies():
    job = parse_job(BASE)
    assert job.strategy.name == "screen" and job.strategy.settings.strength == 0
    guided = parse_job({**BASE, "strategy": {"name": "guided", "strength": 2.5}})
    assert guided.strategy.settings.strength == 2.5
    optimise = parse_job({**BASE, "strategy": {"name": "optimise", "iterations": 2}, "constraints": {"elements": "Sr-Ti-O"}})
    assert optimise.strategy.settings.iterations == 2 and optimise.constraints.target.elements == {"Sr", "Ti", "O"}
    assert parse_job({**BASE, "budget": {"wall_time_s": 10}}).settings() == job.settings()  # a wall time may change on resume


@pytest.mark.parametrize("change, message", [
    ({"generator": None}, "missing field 'generator'"),
    ({"colour": "red"}, "unknown field.*colour"),
    ({"objectives": {}}, "objectives"),
    ({"objectives": {"heat_ref": "often"}}, "heat_ref"),
    ({"strategy": "anneal"}, "strategy"),
    ({"strategy": {"name": "screen", "strength": 1}}, "strength"),
    ({"strategy": {"name": "guided", "strength": -1}}, "strength"),
    ({"budget": {"candidates": 0}}, "budget.candidates"),
    ({"budget": {"wall_time_s": "soon"}}, "budget.wall_time_s"),
    ({"constraints": {"elements": "Li-Xx"}}, "constraints"),
    ({"constraints": {"max_atoms": 2.5}}, "constraints.max_atoms"),
    ({"constraints": {"smact": "yes"}}, "constraints.smact"),
    ({"relax_top": -1}, "relax_top"),
])
def test_bad_job_fields_are_named(change, message):
    spec = {**BASE, **change}
    spec = {k: v for k, v in spec.items() if v is not None}
    with pytest.raises(CrystalgenInputError, match=message):
        parse_job(spec)


def test_cli_bad_job_is_one_line_exit_2(tmp_path):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump({**BASE, "budget": {"candidates": -3}}))
    proc = subprocess.run([sys.executable, "-m", "crystalgen", "design", "--job", str(path), "--out", str(tmp_path / "o")],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert proc.returncode == 2 and "budget.candidates" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_constraint_stage(nacl, srtio3):
    from crystalgen.design.run import JobConstraints

    def passed(constraints, crystals):
        return JobConstraints(parse_job({**BASE, "constraints": constraints})).evaluate(crystals, range(2)).passed.tolist()

    assert passed({"elements": "Na-Cl"}, [nacl, srtio3]) == [True, False]
    assert passed({"composition": "SrTiO3"}, [nacl, srtio3]) == [False, True]
    assert passed({"spacegroup": 225}, [nacl, srtio3]) == [True, False]
    assert passed({"max_atoms": 5}, [nacl, srtio3]) == [False, True]


def test_the_oracle_must_not_be_the_guide(data_dir):
    from crystalgen.design.run import load_design_models

    with pytest.raises(CrystalgenInputError, match="another architecture"):
        load_design_models(parse_job({**BASE, "oracle": "surrogate-perov_5"}), data_dir)
    with pytest.raises(CrystalgenInputError, match="band_gap"):
        load_design_models(parse_job({**BASE, "objectives": {"band_gap": "min"}}), data_dir)


# ------------------------------------------------------------------ running a job
def _job(**change):
    return parse_job({**BASE, "strategy": {"name": "guided", "strength": 1.0}, "budget": {"candidates": 16}, **change})


def _design_cli(job: dict, out: Path, data_dir: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    path = tmp_path / f"{out.name}.yaml"
    path.write_text(yaml.safe_dump(job))
    return subprocess.run([sys.executable, "-m", "crystalgen", "design", "--job", str(path), "--out", str(out),
                           "--data-dir", str(data_dir)], capture_output=True, text=True, cwd=REPO, timeout=900)


def test_job_runs_resumes_and_judges_with_the_oracle(data_dir, tmp_path):
    """A job stopped by its wall-time budget after the first batch, then resumed without one, ends
    with the same files as an uninterrupted run (each run in a fresh process, as a user's would).
    Screened, because guided draws are not yet bit-identical across a resume (docs/design.md)."""
    from crystalgen.design.run import Crystal, read_csv_rows

    job = {**BASE, "strategy": "screen", "budget": {"candidates": 16, "batch_size": 8},
           "constraints": {"elements": "Sr-Ba-Ti-Zr-O", "novel": False}}
    whole, resumed = tmp_path / "whole", tmp_path / "resumed"
    assert _design_cli(job, whole, data_dir, tmp_path).returncode == 0
    stopped = _design_cli({**job, "budget": {"candidates": 16, "batch_size": 8, "wall_time_s": 0.5}}, resumed, data_dir, tmp_path)
    assert stopped.returncode == 0, stopped.stderr
    assert json.loads((resumed / "candidates.progress.json").read_text())["done"] == 8  # one batch, then the budget
    assert _design_cli(job, resumed, data_dir, tmp_path).returncode == 0
    for name in ("candidates.csv", "ranked.csv", "summary.json"):
        a, b = (whole / name).read_text(), (resumed / name).read_text()
        if name == "summary.json":
            a, b = ({k: v for k, v in json.loads(t).items() if k != "wall_s"} for t in (a, b))
        assert a == b, name
    summary = json.loads((whole / "summary.json").read_text())
    assert summary["generated"] == 16 and summary["inside_constraints"] == 1.0  # the element set is masked in
    ranked = read_csv_rows(whole / "ranked.csv")
    penalties = [float(r["penalty"] or "inf") for r in ranked]
    assert penalties == sorted(penalties)
    assert all(set(Crystal.from_cif(r["cif"]).species) <= {"Sr", "Ba", "Ti", "Zr", "O"} for r in ranked)
    assert summary["hits"]["oracle"] == sum(float(r["oracle_heat_ref"]) <= 0.612 for r in ranked)
    assert len(list((whole / "cifs").glob("*.cif"))) == summary["hits"]["both"]
    assert (whole / "report.html").stat().st_size > 10_000
    other = _design_cli({**job, "seed": 1}, whole, data_dir, tmp_path)
    assert other.returncode == 2 and "other settings" in other.stderr


def test_optimise_strategy_starts_from_retrieved_seeds(data_dir, tmp_path):
    from crystalgen.design.run import load_design_models, retrieve_seeds, run_design

    job = parse_job({**BASE, "strategy": {"name": "optimise", "iterations": 1, "proposals": 2}, "budget": {"candidates": 4},
                     "constraints": {"novel": False, "elements": "Sr-Ti-O"}})
    seeds = retrieve_seeds(job, load_design_models(job, data_dir), data_dir)
    assert len(seeds) == 4
    summary = run_design(job, tmp_path / "opt", data_dir)
    assert summary["generated"] == 4 and summary["strategy"] == "optimise"


def test_latent_strategy_runs_a_voxel_job_and_refuses_other_generators(data_dir, tmp_path):
    from crystalgen.design.run import load_design_models, run_design

    spec = {**BASE, "generator": "voxel-perov_5", "strategy": {"name": "latent", "steps": 10, "decodes": 2},
            "budget": {"candidates": 4}, "constraints": {"novel": False, "elements": "Sr-Ti-O"}}
    job = parse_job(spec)
    assert job.strategy.settings.steps == 10 and not hasattr(job.strategy.settings, "strength")
    summary = run_design(job, tmp_path / "latent", data_dir)
    assert summary["generated"] == 4 and summary["strategy"] == "latent"
    with pytest.raises(CrystalgenInputError, match="field 'strategy'.*no property head on a latent space"):
        load_design_models(parse_job({**spec, "generator": "diffusion-perov_5-gen"}), data_dir)
    with pytest.raises(CrystalgenInputError, match="predicts heat_ref only, not density"):
        load_design_models(parse_job({**spec, "objectives": {"density": "max"}}), data_dir)
    with pytest.raises(CrystalgenInputError, match="strength"):
        parse_job({**spec, "strategy": {"name": "latent", "strength": 1.0}})


# ------------------------------------------------------------------ the optimisation benchmark
def test_success_rates_count_missing_results_as_failures():
    from crystalgen.benchmarks.design import success_rates

    assert success_rates(np.array([0.1, 0.5, np.nan, 2.0]), np.array([0.2, 1.0, 3.0])) == [0.25, 0.5, 0.75]


def test_design_benchmark_small_run(data_dir, tmp_path):
    from crystalgen.benchmarks.design import DesignBenchmarkSettings, run_design_benchmark

    settings = DesignBenchmarkSettings("diffusion-perov_5-gen", "perov_5", starts=4, iterations=1, proposals=2)
    metrics = run_design_benchmark(settings, tmp_path / "b", data_dir)
    assert metrics["n"] == 4 and metrics["training_percentiles"]["p5"] == pytest.approx(0.4392, abs=1e-3)
    for rates in metrics["success_rates"].values():
        assert all(0.0 <= v <= 1.0 for v in rates.values()) and rates["sr5"] <= rates["sr10"] <= rates["sr15"]
    assert metrics["run"]["settings"]["oracle (judges)"] == "oracle-perov_5"
    with pytest.raises(CrystalgenInputError, match="not 'mpts_52'|covers"):
        DesignBenchmarkSettings("diffusion-perov_5-gen", "mpts_52")


def test_design_benchmark_optimises_a_voxel_model_in_its_latent_space(data_dir, tmp_path):
    from crystalgen.benchmarks.design import DesignBenchmarkSettings, run_design_benchmark

    settings = DesignBenchmarkSettings("voxel-perov_5", "perov_5", starts=4, steps=10, decodes=2)
    metrics = run_design_benchmark(settings, tmp_path / "b", data_dir)
    assert metrics["n"] == 4 and metrics["run"]["settings"]["strategy"] == "latent"
    assert metrics["run"]["settings"]["steps"] == 10
    with pytest.raises(CrystalgenInputError, match="voxel checkpoint with a formation_energy_per_atom head"):
        run_design_benchmark(DesignBenchmarkSettings("voxel-perov_5", "mp_20", starts=4), tmp_path / "c", data_dir)
