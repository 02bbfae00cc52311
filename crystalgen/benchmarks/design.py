"""``crystalgen benchmark design``: the CDVAE property-optimisation protocol, judged by the oracle.

Start structures are drawn from the test split (seeded), optimised from seeds toward a lower
property value with the guiding surrogate (a diffusion model refines them,
:func:`~crystalgen.design.strategies.optimise_from_seeds`; a model with a property head on a latent
space follows its gradient there, :func:`~crystalgen.design.strategies.optimise_in_latent_space`), and each start's best valid result (chosen by the surrogate) is then
predicted by the independent oracle. SR5 / SR10 / SR15 are the shares of starts whose result the
oracle puts below the protocol training split's 5th / 10th / 15th percentile of the property; a
start with no valid result counts as a failure. The report also gives the same shares for the
unoptimised starts (what optimisation adds) and as the guiding surrogate sees them (what a
benchmark judged by its own guide would claim).

Starts are optimised in blocks; each finished block is appended to ``optimised.csv``, so an
interrupted run resumes after the last block with the same results.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crystalgen.benchmarks.common import BenchmarkModel, metadata_section, resolve_protocol, run_metadata
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.reports.document import Figure, Report, Section, Table, Text, number, percent, write_report
from crystalgen.reports.published import published_optimisation
from crystalgen.runs import RunDir, atomic_write_text, read_csv_rows

METRICS_FILE, RESULTS_FILE = "metrics.json", "optimised.csv"
#: The property each dataset's protocol optimises (CDVAE, Table 4), always minimised.
OPTIMISED_PROPERTY = {"perov_5": "heat_ref", "carbon_24": "energy_per_atom", "mp_20": "formation_energy_per_atom"}
PERCENTILES = (5, 10, 15)
#: Starts per optimisation call; also how often results are committed to disk.
BLOCK = 25
COLUMNS = ("start_id", "start_formula", "best_formula", "changed", "valid", "guide_start", "guide_best",
           "oracle_start", "oracle_best", "cif")


@dataclass(frozen=True)
class DesignBenchmarkSettings:
    model: str
    dataset: str
    surrogate: str | None = None  # default surrogate-<dataset>
    oracle: str | None = None  # default oracle-<dataset>
    protocol: str | None = None
    starts: int = 100
    strength: float = 1.0
    start_time: float = 0.3
    iterations: int = 4
    proposals: int = 4
    seed: int = 0
    #: Latent-space optimisation only: Adam steps, learning rate and decodes along each path.
    steps: int = 100
    lr: float = 0.05
    decodes: int = 5

    def __post_init__(self) -> None:
        if self.dataset not in OPTIMISED_PROPERTY:
            raise CrystalgenInputError(f"the optimisation protocol covers {', '.join(OPTIMISED_PROPERTY)}, "
                                       f"not {self.dataset!r}")
        if self.starts < 1:
            raise CrystalgenInputError(f"--starts must be at least 1, got {self.starts}")


def choose_starts(test: list[Crystal], count: int, seed: int) -> list[Crystal]:
    """``count`` test structures drawn without replacement (seeded), in test-split order."""
    if count > len(test):
        raise CrystalgenInputError(f"--starts {count} exceeds the {len(test):,} test structures")
    picked = np.sort(np.random.default_rng(seed).choice(len(test), size=count, replace=False))
    return [test[i] for i in picked]


def success_rates(values: np.ndarray, thresholds: np.ndarray) -> list[float]:
    """Share of ``values`` below each threshold; NaN (no valid result) counts as a failure."""
    values = np.asarray(values, dtype=np.float64)
    return [float(np.mean(np.nan_to_num(values, nan=np.inf) < t)) for t in thresholds]


def run_design_benchmark(settings: DesignBenchmarkSettings, out: str | os.PathLike,
                         data_dir: str | os.PathLike | None = None) -> dict[str, Any]:
    from crystalgen.design.objectives import Objective, PropertyEvaluator
    from crystalgen.design.oracle import check_independent
    from crystalgen.design.strategies import (LatentSettings, OptimiseSettings, optimise_from_seeds,
                                              optimise_in_latent_space)
    from crystalgen.models.registry import PROPERTY, load_model

    began = time.perf_counter()
    prop = OPTIMISED_PROPERTY[settings.dataset]
    bench = _optimiser(settings, prop, data_dir)
    in_latent_space = not hasattr(bench.model, "refine")
    optimise = (LatentSettings(settings.steps, settings.lr, settings.decodes) if in_latent_space else
                OptimiseSettings(settings.strength, settings.start_time, settings.iterations, settings.proposals))
    guide = load_model(settings.surrogate or f"surrogate-{settings.dataset}", data_dir, kind=PROPERTY)
    oracle = load_model(settings.oracle or f"oracle-{settings.dataset}", data_dir, kind=PROPERTY)
    for role, model in (("guiding surrogate", guide), ("oracle", oracle)):
        if prop not in model.properties:
            raise CrystalgenInputError(f"the {role} {model.name!r} does not predict {prop}")
    check_independent(guide, oracle)
    run = RunDir(out, {**asdict(settings), "protocol": bench.protocol.name, "surrogate": guide.name,
                       "oracle": oracle.name})
    data = bench.protocol.load(data_dir)
    starts = choose_starts(data.test, settings.starts, settings.seed)
    evaluator, objectives = PropertyEvaluator(guide), [Objective(prop, "minimise")]
    writer = run.csv_writer(RESULTS_FILE, COLUMNS)
    run.add_time("load", time.perf_counter() - began)
    with run.timed("optimise"):
        for first in range(writer.done, len(starts), BLOCK):
            block = starts[first:first + BLOCK]
            result = (optimise_in_latent_space(bench.model, block, evaluator, objectives, optimise) if in_latent_space
                      else optimise_from_seeds(bench.model, block, evaluator, objectives, optimise,
                                               seed=settings.seed + first))
            writer.commit(_rows(block, result, guide, oracle, prop), len(block))
    rows = read_csv_rows(run.path / RESULTS_FILE)
    training = np.array([c.properties.get(prop, np.nan) for c in data.train], dtype=np.float64)
    metrics = {"task": "design", "protocol": bench.protocol.name, **_metrics(rows, training, prop, settings.dataset)}
    metrics["run"] = run_metadata(run, bench, {"settings": {"seed": settings.seed, "surrogate (guides)": guide.name,
                                                            "oracle (judges)": oracle.name,
                                                            "strategy": "latent" if in_latent_space else "refine",
                                                            **asdict(optimise)}})
    atomic_write_text(run.path / METRICS_FILE, json.dumps(metrics, indent=2))
    write_report(_report(metrics, rows, training, bench.card), run.path)
    return metrics


def _optimiser(settings: DesignBenchmarkSettings, prop: str, data_dir: str | os.PathLike | None) -> BenchmarkModel:
    """The fitted model that optimises the starts (a diffusion model, or a latent-space model with
    a ``prop`` head), with its evaluation protocol."""
    from crystalgen.generators import load_model
    from crystalgen.models.store import resolve_checkpoint

    model = load_model(settings.model, data_dir)
    if not model.is_fitted or not (hasattr(model, "refine") or getattr(model, "latent_property_name", None) == prop):
        raise CrystalgenInputError(f"model {settings.model!r} cannot optimise from seeds; use a fitted "
                                   f"diffusion-family checkpoint, or a voxel checkpoint with a {prop} head "
                                   "(see `crystalgen models`)")
    return BenchmarkModel(model.name, model, resolve_checkpoint(settings.model),
                          resolve_protocol(model, settings.dataset, settings.protocol))


def _rows(block: list[Crystal], result: Any, guide: Any, oracle: Any, prop: str) -> list[dict[str, Any]]:
    valid = np.isfinite(result.best_penalty)
    guide_start, guide_best = (guide.predict(c)[prop][0] for c in (block, result.best))
    oracle_start, oracle_best = (oracle.predict(c)[prop][0] for c in (block, result.best))
    return [{"start_id": start.id, "start_formula": start.formula, "best_formula": best.formula,
             "changed": int(best is not start), "valid": int(ok), "guide_start": float(gs),
             "guide_best": float(gb) if ok else "", "oracle_start": float(os_), "oracle_best": float(ob) if ok else "",
             "cif": best.to_cif() if ok else ""}
            for start, best, ok, gs, gb, os_, ob in zip(block, result.best, valid, guide_start, guide_best,
                                                         oracle_start, oracle_best)]


def _column(rows: list[dict[str, str]], name: str) -> np.ndarray:
    return np.array([float(r[name]) if r[name] != "" else np.nan for r in rows], dtype=np.float64)


def _metrics(rows: list[dict[str, str]], training: np.ndarray, prop: str, dataset: str) -> dict[str, Any]:
    thresholds = np.nanpercentile(training, PERCENTILES)
    judged = {"oracle": _column(rows, "oracle_best"), "guiding surrogate": _column(rows, "guide_best"),
              "oracle, unoptimised starts": _column(rows, "oracle_start")}
    metrics: dict[str, Any] = {
        "dataset": dataset, "property": prop, "n": len(rows),
        "training_percentiles": dict(zip((f"p{p}" for p in PERCENTILES), thresholds.tolist())),
        "valid_share": float(np.mean(_column(rows, "valid"))), "changed_share": float(np.mean(_column(rows, "changed"))),
        "success_rates": {label: dict(zip((f"sr{p}" for p in PERCENTILES), success_rates(v, thresholds)))
                          for label, v in judged.items()},
        "oracle_mean": {"starts": float(np.nanmean(judged["oracle, unoptimised starts"])),
                        "optimised": float(np.nanmean(judged["oracle"]))},
    }
    for row in published_optimisation(dataset):
        metrics["success_rates"][f"oracle, at {row.model}'s published percentiles"] = dict(
            zip((f"sr{p}" for p in PERCENTILES), success_rates(judged["oracle"], np.array(row.percentile_values))))
    return metrics


def _report(metrics: dict[str, Any], rows: list[dict[str, str]], training: np.ndarray, card: str) -> Report:
    from crystalgen.reports.figures import compare_histogram

    prop, dataset = metrics["property"], metrics["dataset"]
    guide, oracle = metrics["run"]["settings"]["surrogate (guides)"], metrics["run"]["settings"]["oracle (judges)"]
    percentiles = " / ".join(number(v) for v in metrics["training_percentiles"].values())
    table = [[label, *(percent(sr) for sr in rates.values())] for label, rates in metrics["success_rates"].items()]
    table += [[f"{row.model}, published (its own property model, full training split)",
               *(percent(sr) for sr in row.success_rates)] for row in published_optimisation(dataset)]
    published = "; ".join(f"{row.model}'s: {' / '.join(f'{v:g}' for v in row.percentile_values)}"
                          for row in published_optimisation(dataset))
    summary = Section("Success rates", [
        Text(f"{metrics['n']} test starts of {dataset}, optimised to minimise `{prop}` by {metrics['run']['model']}, "
             f"guided and selected by **{guide}**, judged by the oracle **{oracle}** (another architecture). SR5 / "
             f"SR10 / SR15: the share of starts whose best valid result lies below the training split's 5th / 10th "
             f"/ 15th percentile ({percentiles}; {published or 'no published values'}). A start with no valid "
             f"result is a failure. Valid results: {percent(metrics['valid_share'])}%; changed by optimisation: "
             f"{percent(metrics['changed_share'])}%."),
        Table(["judged by", "SR5 (%)", "SR10 (%)", "SR15 (%)"], table),
        Text("The unoptimised row is what the starts score before any optimisation: the protocol's floor. The "
             "guiding-surrogate row is the optimiser's view of itself; the gap to the oracle row is how much of "
             "the apparent success exploits the surrogate's errors.")])
    figure = compare_histogram(training, _column(rows, "oracle_best"), f"{prop} (oracle)", "training split",
                               "optimised, oracle")
    starts = compare_histogram(_column(rows, "oracle_start"), _column(rows, "oracle_best"), f"{prop} (oracle)",
                               "starts, oracle", "optimised, oracle")
    distributions = Section("Distributions", [Figure("optimised_vs_training", figure, "Optimised against training"),
                                              Figure("optimised_vs_starts", starts, "Optimised against the starts")])
    return Report(f"Design benchmark: {metrics['run']['model']} on {dataset}",
                  [summary, distributions, metadata_section(metrics["run"], card)])
