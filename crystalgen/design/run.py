"""Running a design job (:func:`run_design`): generate, filter, score, rank, relax, report.

The output folder::

    OUT/candidates.csv     every generated candidate (the `crystalgen sample` columns), appended per batch
    OUT/filter/            the filter stage's filtered.csv and funnel (validity, SMACT, constraints, unique, novel)
    OUT/ranked.csv         the survivors, best first by the guiding surrogate, with guide and oracle predictions
    OUT/relaxed.csv        the top candidates relaxed with CHGNet and re-scored (relax_top > 0)
    OUT/cifs/              the hits: survivors that both the surrogate and the oracle call hits
    OUT/summary.json, OUT/report.md, OUT/report.html

Every stage writes as it goes and resumes (``crystalgen.runs``), so re-running the same job into
the same folder continues where an interrupted run stopped and ends with the same files; another
job into that folder is refused. Hits are judged by the oracle; the guiding surrogate only ranks.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.design.job import FROM_SEEDS, DesignJob
from crystalgen.design.objectives import E_HULL, PropertyEvaluator, hits, property_guidance, total_penalty
from crystalgen.errors import CrystalgenInputError
from crystalgen.executors import Workers
from crystalgen.filters.stages import Stage, StageResult
from crystalgen.filters.names import FILTERED_FILE
from crystalgen.filters.pipeline import csv_cell
from crystalgen.runs import RUN_FILE, RunDir, atomic_write_text, read_csv_rows, read_state, write_csv_rows

CANDIDATES_FILE, RANKED_FILE, RELAXED_FILE, SUMMARY_FILE = "candidates.csv", "ranked.csv", "relaxed.csv", "summary.json"
FILTER_DIR, CIFS_DIR = "filter", "cifs"
#: Relaxations between two saves of relaxed.csv.
RELAX_BLOCK = 10
RELAX_STEPS, RELAX_FMAX = 200, 0.1  # as the filter's relax stage (FilterConfig)


class JobConstraints(Stage):
    """The job's element set, composition, space group (spglib, symprec 0.1) and largest atom count."""

    name, columns = "constraints", ("inside_constraints",)

    def __init__(self, job: DesignJob):
        self.target, self.max_atoms = job.constraints.target, job.constraints.max_atoms

    def evaluate(self, crystals, row_ids):
        from crystalgen.representations.cell import space_group_number

        ok = np.ones(len(crystals), dtype=bool)
        for i, crystal in enumerate(crystals):
            if self.target.elements is not None:
                ok[i] &= set(crystal.species) <= self.target.elements
            if self.target.composition is not None:
                ok[i] &= crystal.composition.reduced_composition == self.target.composition.reduced_composition
            if self.target.spacegroup is not None:
                ok[i] &= space_group_number(crystal) == self.target.spacegroup
            if self.max_atoms is not None:
                ok[i] &= crystal.num_atoms <= self.max_atoms
        return StageResult({"inside_constraints": ok}, ok)


@dataclass
class DesignModels:
    """The job's generator, the evaluator that guides and ranks, and the one that judges."""

    generator: Any
    guide: PropertyEvaluator
    judge: PropertyEvaluator
    novelty_protocol: str | None


def load_design_models(job: DesignJob, data_dir: str | os.PathLike | None = None) -> DesignModels:
    """Load and cross-check everything a job needs, so that a bad job fails before any work."""
    from crystalgen.data.protocols import load_training_split
    from crystalgen.design.oracle import check_independent
    from crystalgen.filters.build import HULL_ENERGIES
    from crystalgen.filters.hull import ReferenceHull
    from crystalgen.generators import load_model
    from crystalgen.models.base import PROPERTY
    from crystalgen.models.registry import load_model as load_property_model

    generator = load_model(job.generator, data_dir)
    if not generator.is_fitted:
        raise CrystalgenInputError(f"design job field 'generator': {job.generator!r} is an unfitted family; "
                                   "use a checkpoint (see `crystalgen models`)")
    if job.strategy.name == "latent":
        from crystalgen.design.strategies import check_latent_objectives

        try:
            check_latent_objectives(generator, job.objectives)
        except CrystalgenInputError as exc:
            raise CrystalgenInputError(f"design job field 'strategy': {exc}") from None
    elif job.strategy.name != "screen" and not hasattr(generator, "refine"):
        raise CrystalgenInputError(f"design job field 'strategy': {job.strategy.name} needs a diffusion-family "
                                   f"generator, {job.generator!r} is {generator.family!r}")
    if job.strategy.name != "latent":  # a latent walk is not conditioned: seeds and the filter hold the constraints
        generator.check_target(job.constraints.target)
    surrogate = load_property_model(job.surrogate, data_dir, kind=PROPERTY)
    oracle = load_property_model(job.oracle or f"oracle-{generator.dataset}", data_dir, kind=PROPERTY)
    try:
        check_independent(surrogate, oracle)
    except CrystalgenInputError as exc:
        raise CrystalgenInputError(f"design job field 'oracle': {exc}") from None
    hull, energies = None, {}
    if any(o.property == E_HULL for o in job.objectives):
        for role, model in (("surrogate", surrogate), ("oracle", oracle)):
            energies[role] = next((p for p in model.properties if HULL_ENERGIES.get(p) == "formation"), None)
            if energies[role] is None:
                raise CrystalgenInputError(f"objective 'e_hull': the {role} {model.name!r} predicts no formation energy")
        _, reference = load_training_split(surrogate.protocol, data_dir)
        hull = ReferenceHull.from_crystals(reference, energies["surrogate"], "formation")
    guide = PropertyEvaluator(surrogate, hull, energies.get("surrogate"))
    judge = PropertyEvaluator(oracle, hull, energies.get("oracle"))
    guide.check(job.objectives, "the guiding surrogate")
    judge.check(job.objectives, "the oracle")
    return DesignModels(generator, guide, judge, generator.protocol)


def run_design(job: DesignJob, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               workers: Workers | None = None) -> dict[str, Any]:
    """Run (or resume) ``job`` into ``out``; returns the summary (also OUT/summary.json).

    ``workers``: where novelty and the CHGNet relaxations run (inline when ``None``)."""
    from crystalgen.design.report import design_report
    from crystalgen.reports.document import write_report

    models = load_design_models(job, data_dir)
    run = RunDir(out, job.settings())
    with run.timed("generate"):
        _generate(job, models, run, data_dir)
    with run.timed("filter"):
        funnel = _filter(job, models, run, data_dir, workers)
    with run.timed("score"):
        ranked = _rank(job, models, run.path)
    relaxed = []
    if job.relax_top:
        with run.timed("relax"):
            relaxed = _relax(job, models, run, ranked, workers)
    summary = summarise(job, models, run, funnel, ranked, relaxed)
    atomic_write_text(run.path / SUMMARY_FILE, json.dumps(summary, indent=2))
    write_report(design_report(job, summary, ranked, models, data_dir), run.path)
    return summary


# ---------------------------------------------------------------------------------- generation
def _generate(job: DesignJob, models: DesignModels, run: RunDir, data_dir: str | os.PathLike | None) -> None:
    from crystalgen.cli.sample import SAMPLE_COLUMNS
    from crystalgen.generators import SampleOptions
    from crystalgen.generators.sampling import sample_resumably

    writer = run.csv_writer(CANDIDATES_FILE, SAMPLE_COLUMNS)
    spent, began = run.wall_s.get("generate", 0.0), time.perf_counter()

    def out_of_time() -> bool:
        return job.wall_time_s is not None and spent + time.perf_counter() - began >= job.wall_time_s

    settings = job.strategy.settings
    if job.strategy.name in FROM_SEEDS:
        _optimise(job, models, writer, out_of_time, data_dir)
        return
    guidance = property_guidance(models.guide, job.objectives, settings.strength, settings.uncertainty_weight) \
        if job.strategy.name == "guided" else None
    targets = [job.constraints.target] * job.candidates
    sample_resumably(models.generator, targets, 1, job.seed, writer, _candidate_rows, "generating",
                     SampleOptions(guidance=guidance, batch_size=job.batch_size), stop=out_of_time)


def _candidate_rows(index: int, target: Any, crystals: list[Crystal]) -> list[dict[str, Any]]:
    from crystalgen.representations.cell import space_group_number

    return [{"sample_id": f"c{index:06d}", "target": target.label, "formula": c.formula,
             "spacegroup": space_group_number(c), "num_atoms": c.num_atoms, "template": c.id or "",
             "template_spacegroup": "", "cif": c.to_cif(), "cif_symmetric": ""} for c in crystals]


def retrieve_seeds(job: DesignJob, models: DesignModels, data_dir: str | os.PathLike | None) -> list[Crystal]:
    """Seeds for optimisation: the generator's training structures inside the job's constraints,
    best first by the guiding surrogate, ``job.candidates`` of them (repeated if fewer)."""
    from crystalgen.data.protocols import load_training_split

    _, train = load_training_split(models.generator.protocol, data_dir)
    inside = JobConstraints(job).evaluate(train, range(len(train))).passed
    pool = [c for c, ok in zip(train, inside) if ok]
    if not pool:
        raise CrystalgenInputError("strategy optimise: no training structure lies inside the job's constraints to "
                                   "start from")
    values = models.guide.evaluate(pool)
    penalty = np.nan_to_num(np.asarray(total_penalty(job.objectives, values, models.guide.scales(),
                                                     job.strategy.settings.uncertainty_weight)), nan=np.inf)
    order = np.argsort(penalty, kind="stable")
    return [pool[order[i % len(order)]] for i in range(job.candidates)]


def _optimise(job: DesignJob, models: DesignModels, writer: Any, out_of_time: Any,
              data_dir: str | os.PathLike | None) -> None:
    from crystalgen.design.strategies import optimise_from_seeds, optimise_in_latent_space
    from crystalgen.generators.target import Target

    seeds = retrieve_seeds(job, models, data_dir)
    for first in range(writer.done, len(seeds), job.batch_size):
        if out_of_time():
            break
        block = seeds[first:first + job.batch_size]
        if job.strategy.name == "latent":
            result = optimise_in_latent_space(models.generator, block, models.guide, job.objectives,
                                              job.strategy.settings)
        else:
            result = optimise_from_seeds(models.generator, block, models.guide, job.objectives,
                                         job.strategy.settings, seed=job.seed + first)
        rows = [row for i, best in enumerate(result.best)
                for row in _candidate_rows(first + i, Target(), [best])]
        writer.commit(rows, len(block))


# ---------------------------------------------------------------------------------- filter and rank
def _filter(job: DesignJob, models: DesignModels, run: RunDir, data_dir: str | os.PathLike | None,
            workers: Workers | None) -> dict[str, Any]:
    from crystalgen.cli.filter import filter_candidates
    from crystalgen.data.protocols import load_training_split
    from crystalgen.filters.inputs import read_candidates
    from crystalgen.filters.stages import CompositionValidity, Novelty, StructuralValidity, Uniqueness

    stages: list[Stage] = [StructuralValidity()]
    if job.constraints.smact:
        stages.append(CompositionValidity())
    stages.append(JobConstraints(job))
    if job.constraints.unique:
        stages.append(Uniqueness())
    provenance: dict[str, Any] = {}
    if job.constraints.novel:
        spec, train = load_training_split(models.novelty_protocol, data_dir)
        stages.append(Novelty(train))
        provenance["novelty_reference"] = f"{spec.name} training split ({len(train):,} structures)"
    rows, columns = read_candidates(run.path / CANDIDATES_FILE)
    out = run.path / FILTER_DIR
    if (out / RUN_FILE).is_file() and read_state(out / RUN_FILE).get("settings", {}).get("n") != len(rows):
        shutil.rmtree(out)  # filtered from fewer candidates (a budget-stopped run now resumed): derived, so redone
    return filter_candidates(rows, columns, stages, provenance, out, {"job": job.settings()}, workers)


def _survivors(path: Path) -> list[Crystal]:
    from crystalgen.filters.inputs import read_candidates

    rows, _ = read_candidates(path / FILTER_DIR / FILTERED_FILE)
    survivors = [r for r in rows if r.values.get("passed") == "True" and r.crystal is not None]
    for row in survivors:
        row.crystal.id = row.values["sample_id"]
    return [r.crystal for r in survivors]


def _rank(job: DesignJob, models: DesignModels, path: Path) -> list[dict[str, Any]]:
    """Survivors best first by the guide's pessimistic penalty, with hits by guide and oracle."""
    survivors = _survivors(path)
    scored = score(job, models, survivors)
    order = np.argsort(scored["penalty"], kind="stable")
    ranked = [{"rank": r + 1, **{key: csv_cell(values[i]) for key, values in scored.items()},
               "cif": survivors[i].to_cif()} for r, i in enumerate(order)]
    write_csv_rows(path / RANKED_FILE, ranked, ranked_columns(job))
    cifs = path / CIFS_DIR
    cifs.mkdir(exist_ok=True)
    for row in ranked:
        if row["hit_surrogate"] == row["hit_oracle"] == "True":
            (cifs / f"{row['rank']:04d}-{row['candidate_id']}.cif").write_text(row["cif"])
    return ranked


def ranked_columns(job: DesignJob) -> tuple[str, ...]:
    """ranked.csv's columns: rank, identity, the guide's penalty, per objective property the guide's
    mean and std and the oracle's mean, both verdicts, the CIF."""
    per_property = [c for p in dict.fromkeys(o.property for o in job.objectives)
                    for c in (f"surrogate_{p}", f"surrogate_{p}_std", f"oracle_{p}")]
    return ("rank", "candidate_id", "formula", "num_atoms", "penalty", *per_property, "hit_surrogate", "hit_oracle", "cif")


def score(job: DesignJob, models: DesignModels, crystals: Sequence[Crystal]) -> dict[str, np.ndarray]:
    """Per crystal: the guide's penalty, each objective's property by guide (mean, std) and oracle,
    and whether each calls it a hit."""
    guide, judge = models.guide.evaluate(crystals), models.judge.evaluate(crystals)
    penalty = np.asarray(total_penalty(job.objectives, guide, models.guide.scales(),
                                       job.strategy.settings.uncertainty_weight), dtype=np.float64)
    columns: dict[str, np.ndarray] = {"candidate_id": np.array([c.id or "" for c in crystals], dtype=object),
                                      "formula": np.array([c.formula for c in crystals], dtype=object),
                                      "num_atoms": np.array([c.num_atoms for c in crystals]),
                                      "penalty": np.nan_to_num(penalty, nan=np.inf)}
    for prop in dict.fromkeys(o.property for o in job.objectives):
        columns[f"surrogate_{prop}"], columns[f"surrogate_{prop}_std"] = guide[prop]
        columns[f"oracle_{prop}"] = judge[prop][0]
    columns["hit_surrogate"], columns["hit_oracle"] = hits(job.objectives, guide), hits(job.objectives, judge)
    return columns


# ---------------------------------------------------------------------------------- relaxation
def _relax_one(crystal: Crystal, in_worker: bool = False) -> tuple[Crystal, float] | None:
    from crystalgen.executors import hold_worker_to_one_thread
    from crystalgen.filters.relax import chgnet_relax, worker_chgnet

    if in_worker:
        hold_worker_to_one_thread()
    return chgnet_relax(worker_chgnet(), crystal, RELAX_STEPS, RELAX_FMAX)


def _relax(job: DesignJob, models: DesignModels, run: RunDir, ranked: list[dict[str, Any]],
           workers: Workers | None) -> list[dict[str, str]]:
    """CHGNet-relax the top ``relax_top`` survivors (over ``workers``) and re-score them; resumes per block."""
    top = ranked[:job.relax_top]
    pooled = workers is not None and workers.executor is not None
    relax_many, relax_one = (workers.executor.map, partial(_relax_one, in_worker=True)) if pooled else (map, _relax_one)
    columns = ("rank", "candidate_id", "relaxed", "chgnet_energy_per_atom", "hit_oracle_before",
               "hit_surrogate_after", "hit_oracle_after", "relaxed_cif")
    writer = run.csv_writer(RELAXED_FILE, columns)
    for first in range(writer.done, len(top), RELAX_BLOCK):
        block = top[first:first + RELAX_BLOCK]
        relaxed = list(relax_many(relax_one, [Crystal.from_cif(row["cif"], id=row["candidate_id"]) for row in block]))
        done = [r[0] for r in relaxed if r is not None]
        after = score(job, models, done)
        rows, k = [], 0
        for row, result in zip(block, relaxed):
            entry = {"rank": row["rank"], "candidate_id": row["candidate_id"], "relaxed": csv_cell(result is not None),
                     "hit_oracle_before": row["hit_oracle"], "chgnet_energy_per_atom": "", "hit_surrogate_after": "False",
                     "hit_oracle_after": "False", "relaxed_cif": ""}
            if result is not None:
                entry.update(chgnet_energy_per_atom=round(result[1], 6), hit_surrogate_after=csv_cell(after["hit_surrogate"][k]),
                             hit_oracle_after=csv_cell(after["hit_oracle"][k]), relaxed_cif=result[0].to_cif())
                k += 1
            rows.append(entry)
        writer.commit(rows, len(block))
    return read_csv_rows(run.path / RELAXED_FILE)


# ---------------------------------------------------------------------------------- summary
def summarise(job: DesignJob, models: DesignModels, run: RunDir, funnel: dict[str, Any], ranked: list[dict[str, Any]],
              relaxed: list[dict[str, str]]) -> dict[str, Any]:
    generated = funnel["n"]
    count = {key: sum(r[key] == "True" for r in ranked) for key in ("hit_surrogate", "hit_oracle")}
    both = sum(r["hit_surrogate"] == r["hit_oracle"] == "True" for r in ranked)
    stages = {f["stage"]: f["remaining"] for f in funnel["funnel"]}
    summary = {
        "job": job.name, "generator": job.generator, "guided_by": models.guide.model.name,
        "judged_by": models.judge.model.name, "strategy": job.strategy.name,
        "strategy_settings": vars(job.strategy.settings), "objectives": [o.label for o in job.objectives],
        "target": job.constraints.target.label, "generated": generated, "budget_candidates": job.candidates,
        "funnel": funnel["funnel"], "survivors": len(ranked),
        "validity": {"structural": _share(stages.get("structural"), generated),
                     "smact": _share(stages.get("composition"), stages.get("structural"))},
        "inside_constraints": _share(stages.get("constraints"), stages.get("composition", stages.get("structural"))),
        "hits": {"surrogate": count["hit_surrogate"], "oracle": count["hit_oracle"], "both": both},
        "hit_rate": {"oracle": count["hit_oracle"] / max(generated, 1), "surrogate": count["hit_surrogate"] / max(generated, 1),
                     "both": both / max(generated, 1)},
        "wall_s": dict(run.wall_s),
    }
    if relaxed:
        summary["relaxation"] = {"relaxed": len(relaxed), "converged": sum(r["relaxed"] == "True" for r in relaxed),
                                 "oracle_hits_before": sum(r["hit_oracle_before"] == "True" for r in relaxed),
                                 "oracle_hits_after": sum(r["hit_oracle_after"] == "True" for r in relaxed)}
    return summary


def _share(part: int | None, whole: int | None) -> float | None:
    return None if part is None or not whole else part / whole
