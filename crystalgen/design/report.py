"""The design job's report: the job, the funnel, hit rates by guide and by oracle, property
distributions against the training set, the top candidates with a picture of each, relaxation."""

from __future__ import annotations

import os
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.reports.document import Figure, Report, Section, Table, Text, number, percent

#: Candidates pictured and tabled in the report.
TOP_SHOWN = 12
#: Training structures the oracle predicts for a derived property's reference distribution.
REFERENCE_SAMPLE = 1000


def design_report(job: Any, summary: dict[str, Any], ranked: list[dict[str, str]], models: Any,
                  data_dir: str | os.PathLike | None) -> Report:
    from crystalgen.reports.figures import funnel_plot

    s = summary
    settings = ", ".join(f"{k} {v:g}" for k, v in s["strategy_settings"].items()) if s["strategy"] != "screen" else "none"
    job_section = Section("Job", [Table(["field", "value"], [
        ["objectives", "; ".join(s["objectives"])], ["constraints", _constraints(job)],
        ["generator", s["generator"]], ["strategy", f"{s['strategy']} ({settings})"],
        ["guides and ranks", s["guided_by"]], ["judges hits (never guides)", s["judged_by"]],
        ["budget", f"{s['budget_candidates']:,} candidates" + (f", {job.wall_time_s:g} s" if job.wall_time_s else "")],
        ["generated", f"{s['generated']:,}"], ["seed", str(job.seed)]])])
    funnel = s["funnel"]
    funnel_section = Section("Funnel", [
        Figure("funnel", funnel_plot([f["stage"] for f in funnel], [f["remaining"] for f in funnel]),
               "Candidates left after each stage"),
        Text(f"Structural validity {_pct(s['validity']['structural'])}, SMACT validity of the structurally valid "
             f"{_pct(s['validity']['smact'])}, inside the constraints {_pct(s['inside_constraints'])}.")])
    hits = s["hits"]
    hit_section = Section("Hits", [
        Text("A hit meets every objective's hit rule. Rates are per generated candidate, counting only survivors "
             "of the funnel. The oracle's figure is the one to trust: the surrogate chose and ranked these "
             "candidates, so its own verdict is optimistic. `cifs/` holds the candidates both call hits."),
        Table(["judged by", "hits", "hit rate (%)"],
              [[f"oracle ({s['judged_by']})", f"{hits['oracle']:,}", percent(s["hit_rate"]["oracle"])],
               [f"guiding surrogate ({s['guided_by']})", f"{hits['surrogate']:,}", percent(s["hit_rate"]["surrogate"])],
               ["both", f"{hits['both']:,}", percent(s["hit_rate"]["both"])]])])
    sections = [job_section, funnel_section, hit_section, _distributions(job, ranked, models, data_dir),
                _top(ranked, job)]
    if "relaxation" in s:
        r = s["relaxation"]
        sections.append(Section("CHGNet relaxation of the top candidates", [Text(
            f"The top {r['relaxed']} by the surrogate, relaxed with CHGNet and re-scored: {r['converged']} relaxed, "
            f"oracle hits {r['oracle_hits_before']} before and {r['oracle_hits_after']} after relaxation.")]))
    wall = ", ".join(f"{k} {v:.1f} s" for k, v in s["wall_s"].items())
    sections.append(Section("Run", [Text(f"Wall time: {wall}.")]))
    return Report(f"Design job: {s['job']}", sections)


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{percent(x)}%"


def _constraints(job: Any) -> str:
    c = job.constraints
    parts = [c.target.label] if c.target.label else []
    parts += [f"at most {c.max_atoms} atoms"] if c.max_atoms else []
    parts += [name for name, on in (("SMACT-valid", c.smact), ("unique", c.unique), ("novel", c.novel)) if on]
    return ", ".join(parts) or "none"


def _distributions(job: Any, ranked: list[dict[str, str]], models: Any, data_dir: str | os.PathLike | None) -> Section:
    from crystalgen.data.protocols import load_training_split
    from crystalgen.reports.figures import compare_histogram

    _, train = load_training_split(models.guide.model.protocol, data_dir)
    blocks: list = [Text("Each objective's property over the survivors as the oracle predicts it, against the training "
                         "split: the dataset's own values where it has the property, else the oracle's prediction for "
                         f"{REFERENCE_SAMPLE:,} training structures drawn at random.")]
    sample = [train[i] for i in np.random.default_rng(0).permutation(len(train))[:REFERENCE_SAMPLE]]
    predicted = None
    for prop in dict.fromkeys(o.property for o in job.objectives):
        if all(prop in c.properties for c in train):
            reference = np.array([c.properties[prop] for c in train], dtype=np.float64)
        else:
            predicted = predicted or models.judge.evaluate(sample)
            reference = predicted[prop][0]
        values = np.array([float(r[f"oracle_{prop}"] or "nan") for r in ranked], dtype=np.float64)
        blocks.append(Figure(f"distribution_{prop}", compare_histogram(reference, values, f"{prop} (oracle)",
                                                                      "training split", "survivors"), prop))
    return Section("Property distributions", blocks)


def _top(ranked: list[dict[str, str]], job: Any) -> Section:
    from crystalgen.reports.figures import structure_picture

    props = list(dict.fromkeys(o.property for o in job.objectives))
    rows, figures = [], []
    for row in ranked[:TOP_SHOWN]:
        crystal = Crystal.from_cif(row["cif"], id=row["candidate_id"])
        rows.append([row["rank"], row["candidate_id"], row["formula"], *(
            f"{number(float(row[f'surrogate_{p}'] or 'nan'), 3)} / {number(float(row[f'oracle_{p}'] or 'nan'), 3)}"
            for p in props), row["hit_surrogate"], row["hit_oracle"]])
        figures.append(Figure(f"top_{row['rank']}", structure_picture(crystal.lattice, crystal.cart_coords,
                                                                      crystal.species, f"#{row['rank']} {row['formula']}"),
                              f"#{row['rank']} {row['formula']} ({row['candidate_id']})"))
    table = Table(["rank", "candidate", "formula", *(f"{p}: surrogate / oracle" for p in props), "surrogate hit",
                   "oracle hit"], rows)
    return Section(f"Top {min(TOP_SHOWN, len(ranked))} candidates by the surrogate", [table, *figures])
