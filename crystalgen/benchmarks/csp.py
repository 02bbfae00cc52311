"""``crystalgen benchmark csp``: predict every test composition, score, and report.

Stages, each resumable:

1. **predict**: k proposals per test structure (its composition as the target), appended to
   ``predictions.csv`` (``material_id, rank, cif``) in blocks;
2. **score**: the (n, k) matrix of RMS distances to the ground truths is filled in blocks of
   ``SCORE_BLOCK`` test structures and saved to ``scores.safetensors`` after each block; the CIFs
   are parsed from ``predictions.csv`` in the workers, so the figures are those of the file an
   independent scorer would read;
3. **polymorph**: METRe and cRMSE of the first proposals, overall and by polymorph leakage, saved to
   ``polymorph.json`` (:mod:`crystalgen.benchmarks.csp_polymorph`);
4. **report**: ``metrics.json``, ``per_structure.csv``, ``report.md`` and ``report.html``.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from crystalgen.benchmarks.csp_polymorph import POLYMORPH_FILE, polymorph_figures, polymorph_section
from crystalgen.benchmarks.steps_curve import steps_curve_section
from crystalgen.constants import MATCHER_ANGLE_TOL, MATCHER_LTOL, MATCHER_STOL
from crystalgen.benchmarks.common import (
    BenchmarkModel,
    load_benchmark_model,
    metadata_section,
    run_metadata,
    run_provenance,
    update_card,
)
from crystalgen.generators.sampling import sample_resumably
from crystalgen.runs import RunDir, atomic_write_text, read_csv_rows
from crystalgen.crystal import Crystal
from crystalgen.data import load_split
from crystalgen.data.loading import parse_cifs
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Generator, SampleOptions, Target
from crystalgen.models import Capabilities, list_models
from crystalgen.executors import open_workers
from crystalgen.metrics._pool import MATCHING_MODULES
from crystalgen.metrics._util import json_float
from crystalgen.metrics.csp import UNKNOWN_SYSTEM, CspConfig, CspMatrix, csp_rms_matrix
from crystalgen.metrics.distribution import densities, num_elements, wasserstein
from crystalgen.progress import progress_bar
from crystalgen.reports import figures
from crystalgen.reports.document import Figure, Report, Section, Table, Text, number, percent, write_report
from crystalgen.reports.gallery import csp_gallery_section
from crystalgen.reports.published import SOURCE, published_csp

PREDICTIONS_FILE, SCORES_FILE, METRICS_FILE, PER_STRUCTURE_FILE = (
    "predictions.csv", "scores.safetensors", "metrics.json", "per_structure.csv",
)
PREDICTION_COLUMNS = ("material_id", "rank", "cif")
#: Test structures scored between two saves of the score matrix.
SCORE_BLOCK = 512
CRYSTAL_SYSTEMS = (
    "triclinic", "monoclinic", "orthorhombic", "tetragonal", "trigonal", "hexagonal", "cubic", UNKNOWN_SYSTEM,
)


@dataclass(frozen=True)
class CspBenchmarkSettings:
    model: str
    dataset: str
    protocol: str | None = None
    limit: int | None = None
    k: int = 1
    seed: int = 0
    require_smact: bool = False
    #: Override of the model's sampler steps (diffusion models).
    sampler_steps: int | None = None
    #: Sampler steps at which a k=1 match-rate curve is measured on the first ``curve_limit`` structures.
    steps_curve: tuple[int, ...] = ()
    curve_limit: int | None = None
    #: Override of where a template-based model takes its templates (e.g. the random-placement control).
    template_source: str | None = None


def card_metric_keys(dataset: str, k: int) -> tuple[str, str]:
    """Front-matter keys under which a card records CSP figures, e.g. ``mp_20_csp_k1_match_rate``."""
    return f"{dataset}_csp_k{k}_match_rate", f"{dataset}_csp_k{k}_rmse"


# ---------------------------------------------------------------------------------- stages
def _material_ids(test: list[Crystal]) -> list[str]:
    return [c.id if c.id else f"test-{i}" for i, c in enumerate(test)]


def csp_targets(test: list[Crystal], capabilities: Capabilities) -> list[Target]:
    """Each test structure's composition, plus what the model requires of every target (the ground
    truth's space group, for a model that needs one)."""
    if "spacegroup" not in capabilities.requires:
        return [Target.from_crystal(c) for c in test]
    from crystalgen.representations.cell import space_group_number

    return [Target.from_crystal(c, int(c.properties.get("spacegroup.number") or space_group_number(c))) for c in test]


def predict(run: RunDir, bench: BenchmarkModel, test: list[Crystal], ids: list[str], k: int, seed: int) -> int:
    writer = run.csv_writer(PREDICTIONS_FILE, PREDICTION_COLUMNS)
    targets = csp_targets(test, bench.model.capabilities)

    def rows_for(index: int, _target: Target, crystals: list[Crystal]) -> list[dict[str, Any]]:
        return [{"material_id": ids[index], "rank": rank, "cif": c.to_cif()} for rank, c in enumerate(crystals[:k])]

    return len(sample_resumably(bench.model, targets, k, seed, writer, rows_for, f"predicting (k={k})", bench.options))


def read_predictions(path: Path, ids: list[str], k: int) -> list[list[str | None]]:
    """CIF texts per test structure in rank order, padded with ``None`` (a miss) up to k."""
    by_id: dict[str, dict[int, str]] = defaultdict(dict)
    for row in read_csv_rows(path):
        try:
            rank = int(row["rank"])
        except (TypeError, ValueError):
            continue
        if 0 <= rank < k:
            by_id[row["material_id"]][rank] = row["cif"]
    return [[by_id.get(i, {}).get(rank) for rank in range(k)] for i in ids]


def _load_scores(path: Path, k: int) -> tuple[np.ndarray, np.ndarray]:
    if not path.is_file():
        return np.zeros((0, k)), np.zeros(0, dtype=np.int64)
    from safetensors.numpy import load_file

    tensors = load_file(str(path))
    return tensors["rms"].reshape(-1, k), tensors["system"]


def _save_scores(path: Path, rms: np.ndarray, systems: np.ndarray) -> None:
    from safetensors.numpy import save_file

    tmp = path.with_name(f".{path.name}.tmp")
    save_file({"rms": np.ascontiguousarray(rms), "system": np.ascontiguousarray(systems)}, str(tmp))
    os.replace(tmp, path)


def score(run: RunDir, test: list[Crystal], predictions: list[list[str | None]], k: int, config: CspConfig,
          workers: int | None, scheduler: str | None = None) -> CspMatrix:
    """The RMS matrix, matched over ``workers`` local processes or a Dask cluster at ``scheduler``."""
    path = run.path / SCORES_FILE
    rms, systems = _load_scores(path, k)
    if len(rms) < len(test):
        with open_workers(workers, scheduler, MATCHING_MODULES) as opened, progress_bar() as progress:
            task = progress.add_task(f"matching (k={k})", total=len(test) * k, completed=len(rms) * k)
            for start in range(len(rms), len(test), SCORE_BLOCK):
                stop = min(start + SCORE_BLOCK, len(test))
                block = csp_rms_matrix(test[start:stop], predictions[start:stop], k, config, opened.width,
                                       opened.executor, progress, show_progress=False)
                codes = np.array([CRYSTAL_SYSTEMS.index(s) for s in block.crystal_system], dtype=np.int64)
                rms, systems = np.concatenate([rms, block.rms]), np.concatenate([systems, codes])
                _save_scores(path, rms, systems)
                progress.update(task, completed=stop * k)
    return CspMatrix(
        rms=rms,
        num_atoms=np.array([c.num_atoms for c in test], dtype=np.int64),
        crystal_system=[CRYSTAL_SYSTEMS[int(i)] for i in systems],
        ids=[c.id for c in test],
    )


# ---------------------------------------------------------------------------------- entry point
def run_csp_benchmark(settings: CspBenchmarkSettings, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                      workers: int | None = None, update_card: bool = False, scheduler: str | None = None
                      ) -> dict[str, Any]:
    """Run (or resume) a CSP benchmark into ``out``; returns what ``metrics.json`` holds. Matching
    runs over ``workers`` local processes, or a Dask cluster at ``scheduler``; neither is part of
    the run's settings, so a run may be resumed on the other."""
    start = time.perf_counter()
    bench = load_benchmark_model(settings.model, settings.dataset, settings.protocol, "csp", data_dir)
    if update_card and (settings.sampler_steps is not None or settings.template_source is not None):
        raise CrystalgenInputError("--update-card records the checkpoint's own sampler; drop --sampler-steps "
                                   "and --template-source")
    if settings.sampler_steps is not None or settings.steps_curve:
        _require_sampler_steps(bench.model)  # refuse before any work, not after the main run
    bench.options = SampleOptions(sampler_steps=settings.sampler_steps, template_source=settings.template_source)
    bench.model.check_options(bench.options)
    run = RunDir(out, {**settings.__dict__, "steps_curve": list(settings.steps_curve),
                       "protocol": bench.protocol.name})
    test = load_split(settings.dataset, bench.protocol.test, data_dir)
    run.add_time("load", time.perf_counter() - start)
    full_split = len(test)
    test = test[: settings.limit] if settings.limit else test
    ids = _material_ids(test)
    k = settings.k

    with run.timed("predict"):
        refused = predict(run, bench, test, ids, k, settings.seed)
    predictions = read_predictions(run.path / PREDICTIONS_FILE, ids, k)
    config = CspConfig(require_smact=settings.require_smact)
    with run.timed("score"):
        matrix = score(run, test, predictions, k, config, workers, scheduler)
    ks = sorted({1, k})
    results = {kk: matrix.result(kk) for kk in ks}
    first = [p[0] for p in predictions]
    with run.timed("polymorph"):
        polymorph = polymorph_figures(run.path / POLYMORPH_FILE, bench, test, first, matrix.rms[:, 0], config,
                                      workers, scheduler, data_dir)
    curve = [_curve_point(settings, steps, Path(out), data_dir, workers, scheduler) for steps in settings.steps_curve]
    with run.timed("report"):
        parsed = _parse_rank0(first)
        metrics = _metrics(run, bench, settings, results, predictions, refused, full_split, parsed, test)
        metrics["steps_curve"] = curve
        metrics["polymorph"] = polymorph
        _write_per_structure(run.path / PER_STRUCTURE_FILE, test, ids, results)
        report = build_csp_report(bench, settings, metrics, results, test, parsed)
        write_report(report, run.path)
    metrics["metadata"]["wall_s"] = dict(run.wall_s)  # now including the report stage
    atomic_write_text(run.path / METRICS_FILE, json.dumps(metrics, indent=2))
    if update_card:
        _update_card(bench, settings, metrics, full_split)
    return metrics


def _require_sampler_steps(model: Generator) -> None:
    if "sampler_steps" not in model.capabilities.options:
        raise CrystalgenInputError(f"model {model.name!r} ({model.family}) has no sampler steps to set")


#: Where the steps curve's sub-runs go inside a benchmark folder.
STEPS_CURVE_DIR = "steps_curve"


def _curve_point(settings: CspBenchmarkSettings, steps: int, out: Path, data_dir, workers,
                 scheduler: str | None) -> dict[str, Any]:
    """A k=1 sub-benchmark at ``steps`` sampler steps (itself resumable) and its headline figures."""
    sub = CspBenchmarkSettings(settings.model, settings.dataset, settings.protocol, settings.curve_limit, 1,
                               settings.seed, settings.require_smact, sampler_steps=steps,
                               template_source=settings.template_source)
    metrics = run_csp_benchmark(sub, out / STEPS_CURVE_DIR / f"steps-{steps}", data_dir, workers, scheduler=scheduler)
    predict_s = metrics["metadata"]["wall_s"].get("predict", float("nan"))
    return {"steps": steps, "n": metrics["n"], "match_rate": metrics["match_rate"], "rmse": metrics["rmse"],
            "predict_s": predict_s, "structures_per_s": metrics["n"] / predict_s if predict_s else None}


def _parse_rank0(cifs: list[str | None]) -> list[Crystal | None]:
    present = [i for i, c in enumerate(cifs) if c is not None]
    rows = parse_cifs([cifs[i] for i in present], label="parsing first proposals") if present else []
    out: list[Crystal | None] = [None] * len(cifs)
    for i, row in zip(present, rows):
        if not isinstance(row, str):
            out[i] = Crystal(*row)
    return out


def _metrics(run: RunDir, bench: BenchmarkModel, settings: CspBenchmarkSettings, results: dict, predictions: list,
             refused: int, full_split: int, parsed: list[Crystal | None], test: list[Crystal]) -> dict[str, Any]:
    headline = results[settings.k]
    by_k = {}
    for kk, result in results.items():
        entry = result.to_dict(per_structure=False)
        entry["breakdown"] = {"crystal_system": result.breakdown("crystal_system"),
                              "num_atoms": result.breakdown("num_atoms")}
        by_k[str(kk)] = entry
    valid_first = [c for c in parsed if c is not None]
    return {
        "task": "csp",
        "dataset": settings.dataset,
        "protocol": bench.protocol.name,
        "split": bench.protocol.test,
        "n": headline.n,
        "k": settings.k,
        "match_rate": json_float(headline.match_rate),
        "rmse": json_float(headline.rmse),
        "n_matched": headline.n_matched,
        "by_k": by_k,
        "full_split": settings.limit is None or settings.limit >= full_split,
        "split_size": full_split,
        "targets_without_prediction": int(sum(all(p is None for p in preds) for preds in predictions)),
        "targets_refused_by_model": refused,
        "first_proposal_unparsable": int(sum(p[0] is not None for p in predictions) - len(valid_first)),
        "sampling_report": bench.model.sampling_report(),
        "d_rho_first_proposal": json_float(wasserstein(densities(valid_first), densities(test))) if valid_first else None,
        "counting": (
            f"StructureMatcher(stol={MATCHER_STOL:g}, ltol={MATCHER_LTOL:g}, angle_tol={MATCHER_ANGLE_TOL:g}); "
            "missing, unparsable and structurally invalid "
            "proposals are misses; ground truths are not filtered"
            + ("; SMACT-invalid proposals are also misses (published-code behaviour)" if settings.require_smact else "")
        ),
        "metadata": run_metadata(run, bench, {"settings": {
            "limit": settings.limit, "k": settings.k, "seed": settings.seed, "require_smact": settings.require_smact,
            "sampler": bench.model.describe_sampling(bench.options),
        }}),
    }


def _write_per_structure(path: Path, test: list[Crystal], ids: list[str], results: dict) -> None:
    ks = sorted(results)
    columns = ["material_id", "formula", "num_atoms", "crystal_system"]
    for kk in ks:
        columns += [f"matched_k{kk}", f"rms_k{kk}", f"best_rank_k{kk}"]
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        first = results[ks[0]]
        for i, crystal in enumerate(test):
            row: list[Any] = [ids[i], crystal.formula, crystal.num_atoms, first.crystal_system[i]]
            for kk in ks:
                r = results[kk]
                row += [int(r.matched[i]), "" if np.isnan(r.rms[i]) else f"{r.rms[i]:.6f}", int(r.best_index[i])]
            writer.writerow(row)
    os.replace(tmp, path)


def _update_card(bench: BenchmarkModel, settings: CspBenchmarkSettings, metrics: dict, full_split: int) -> None:
    """Record full-split figures in the checkpoint card's front matter (never partial runs)."""
    if not metrics["full_split"]:
        raise CrystalgenInputError("--update-card needs a run on the full test split (no --limit)")
    values = {}
    for kk, entry in metrics["by_k"].items():
        rate_key, rmse_key = card_metric_keys(settings.dataset, int(kk))
        values[rate_key] = round(entry["match_rate"], 6) if entry["match_rate"] is not None else None
        values[rmse_key] = round(entry["rmse"], 6) if entry["rmse"] is not None else None
    values[f"{settings.dataset}_csp_n"] = metrics["n"]
    update_card(bench, CARD_SECTION, values, _card_text(settings, metrics))


#: The card section ``--update-card`` (re)writes.
CARD_SECTION = "Measured CSP metrics"


def _card_text(settings: CspBenchmarkSettings, metrics: dict) -> str:
    meta = metrics["metadata"]
    rows = [f"| {settings.dataset} | {meta['protocol']} ({metrics['split']}, n={entry['n']}) | {kk} | "
            f"{percent(entry['match_rate'])} | {number(entry['rmse'])} |" for kk, entry in metrics["by_k"].items()]
    return "\n".join([
        "| dataset | protocol (split, n) | k | match rate (%) | RMSE |",
        "|---|---|---|---|---|",
        *rows,
        "",
        f"Measured with `crystalgen benchmark csp --model {settings.model} --dataset {settings.dataset} "
        f"--k {settings.k} --update-card` (crystalgen {meta['crystalgen_version']}, commit "
        f"{meta['started_commit'][:12]}). {metrics['counting']}. {run_provenance(meta)}",
    ])


# ---------------------------------------------------------------------------------- report
def template_baseline_rows(dataset: str, exclude: str | None) -> list[list[str]]:
    """Rows for the shipped template checkpoint(s) of this dataset, from their cards' measured figures."""
    rows = []
    for info in list_models():
        if not info.baseline or info.dataset != dataset or info.path is None or info.name == exclude:
            continue
        found = False
        for kk in (1, 20):
            rate_key, rmse_key = card_metric_keys(dataset, kk)
            if info.metrics.get(rate_key) is not None:
                found = True
                rows.append([f"template baseline ({info.name})", info.protocol or "", str(kk),
                             percent(info.metrics[rate_key]), number(info.metrics.get(rmse_key)),
                             f"from its card, n={info.metrics.get(f'{dataset}_csp_n', '?')}"])
        if not found:
            rows.append([f"template baseline ({info.name})", info.protocol or "", "—", "not measured", "—",
                         f"run `crystalgen benchmark csp --model {info.name} --dataset {dataset} --k 20 "
                         f"--update-card`"])
    return rows


def build_csp_report(bench: BenchmarkModel, settings: CspBenchmarkSettings, metrics: dict, results: dict,
                     test: list[Crystal], first_proposals: list[Crystal | None]) -> Report:
    k, dataset = settings.k, settings.dataset
    head = results[k]
    reduced = bench.protocol.name != dataset
    scope = (f"the full `{bench.protocol.test}` split of {dataset} ({head.n} structures)" if metrics["full_split"]
             else f"the first {head.n} of {metrics['split_size']} structures of the `{bench.protocol.test}` split "
                  f"of {dataset} (--limit; not comparable with full-split figures)")
    headline = "; ".join(f"**k={kk}: match rate {percent(r.match_rate)}%** ({r.n_matched} of {r.n}), **RMSE {number(r.rmse)}**"
                         for kk, r in sorted(results.items()))
    summary = [
        f"{headline}. Model `{bench.name}`, on {scope}.",
        "",
        f"- Evaluation protocol: `{bench.protocol.name}` ({bench.protocol.describe()}).",
        f"- Model trained on: `{bench.model.protocol or 'unknown'}`"
        + ("" if bench.trained_on_protocol else " (**not** the evaluation protocol)") + ".",
        f"- Counting: {metrics['counting']}.",
        f"- Test structures without any prediction: {metrics['targets_without_prediction']} "
        f"(refused by the model: {metrics['targets_refused_by_model']}); unparsable first proposals: "
        f"{metrics['first_proposal_unparsable']}.",
    ]
    checks = metrics.get("sampling_report")
    if checks:
        failures = ", ".join(f"{cause} {count}" for cause, count in checks.get("failures", {}).items()) or "none"
        summary.append(f"- Samples drawn in the run's last session: {checks.get('total')}, of which "
                       f"{checks.get('valid')} passed every check; failures by cause: {failures}.")
    if k > 1:
        summary.append(f"- k=1 scores the first of the {k} proposals of each test structure; k={k} the best of all.")
    if reduced:
        summary.append(f"- crystalgen's rows use the `{bench.protocol.name}` protocol, which trains on less data than "
                       "the published models (full training split); the published figures are not like for like.")

    rows = [[f"crystalgen: {bench.name} (this run)", bench.protocol.name, str(kk), percent(r.match_rate), number(r.rmse),
             f"n={r.n}"] for kk, r in sorted(results.items())]
    if not bench.model.capabilities.baseline:
        rows += template_baseline_rows(dataset, exclude=bench.name)
    rows += [[f"{p.model} (published)", f"{dataset} full train", str(p.k), f"{p.match_rate:.2f}", number(p.rmse),
              p.note] for p in published_csp(dataset)]
    table = Table(["model", "training data / protocol", "k", "match rate (%)", "RMSE", "note"], rows,
                  caption=f"CSP on {dataset}. Published rows: {SOURCE}.")

    sections = [
        Section("Summary", [Text("\n".join(summary))]),
        Section("Compared with published figures", [table]),
        *([section] if (section := polymorph_section(metrics.get("polymorph"))) else []),
        csp_gallery_section(test, first_proposals, results[1].matched, results[1].rms),
        Section("RMS distance of matched structures", [
            Figure("rmse_histogram", figures.rmse_histogram({kk: r.rms for kk, r in results.items()}),
                   "Best-match RMS distance per matched test structure."),
        ]),
    ]
    for by, label, title in (("num_atoms", "atoms in the test cell", "Match rate by number of atoms"),
                             ("crystal_system", "crystal system of the test structure", "Match rate by crystal system")):
        breakdowns = {kk: r.breakdown(by) for kk, r in results.items()}
        order = [s for s in CRYSTAL_SYSTEMS if s in breakdowns[k]] if by == "crystal_system" else None
        labels = order if order is not None else list(breakdowns[k])
        table_rows = [[lab, str(breakdowns[k][lab]["n"])]
                      + [f"{percent(breakdowns[kk][lab]['match_rate'])} / {number(breakdowns[kk][lab]['rmse'])}"
                         for kk in sorted(results)] for lab in labels]
        sections.append(Section(title, [
            Figure(f"match_rate_by_{by}", figures.rate_by_group(breakdowns, label, order), f"{title} ({label})."),
            Table([label, "n", *[f"k={kk}: match % / RMSE" for kk in sorted(results)]], table_rows),
        ]))
    if metrics.get("steps_curve"):
        sections.append(steps_curve_section(metrics["steps_curve"], STEPS_CURVE_DIR))
    valid_first = [c for c in first_proposals if c is not None]
    sections.append(Section("Distributions against the test set", [
        Text(f"First proposal of each test structure ({len(valid_first)} parsed) against the test structures. "
             f"Wasserstein distance of densities: {number(metrics['d_rho_first_proposal'])} g/cm³. In CSP the "
             "composition is given, so the element counts agree by construction; a mismatch would flag a bug."),
        Figure("density", figures.compare_histogram(densities(test), densities(valid_first), "density (g/cm³)",
                                                    "test", "first proposals"), "Density."),
        Figure("num_elements", figures.compare_histogram(num_elements(test), num_elements(valid_first),
                                                         "distinct elements", "test", "first proposals",
                                                         discrete=True), "Number of distinct elements."),
    ]))
    sections.append(metadata_section(metrics["metadata"], bench.card))
    return Report(f"CSP benchmark: {bench.name} on {dataset} (k={k})", sections)
