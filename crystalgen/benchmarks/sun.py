"""``crystalgen benchmark sun``: sample from scratch, then S.U.N. (``metrics.sun``) and a report.

Sampling resumes (``samples.csv`` is appended per sample) and so does the S.U.N. pipeline
(``filter/filtered.csv`` is committed every few relaxations); the CHGNet energies of the reference
structures are cached per protocol, so only the first run on a protocol pays for them.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgen.benchmarks.common import BenchmarkModel, load_benchmark_model, metadata_section, run_metadata
from crystalgen.benchmarks.gen import SAMPLES_FILE, generate
from crystalgen.errors import CrystalgenInputError
from crystalgen.executors import Workers
from crystalgen.metrics.sun import SunConfig, SunResult, threshold_key
from crystalgen.reports import figures
from crystalgen.reports.published import PUBLISHED_SUN
from crystalgen.reports.document import MISSING, Figure, Report, Section, Table, Text, number, percent, write_report
from crystalgen.runs import RunDir, atomic_write_text

METRICS_FILE = "metrics.json"
#: The S.U.N. pipeline's own run folder inside the benchmark's (filtered.csv, summary.json).
FILTER_DIR = "filter"
DEFAULT_SUN_SAMPLES = 100


NOT_COMPARABLE = ("not directly comparable: their hull is the DFT Materials Project hull (or the authors' own), "
                  "this one is CHGNet's over the protocol's own structures; their models trained on full MP-20; "
                  "other relaxers, sample counts and novelty references. MatterGen's two rows (42.3 and 3.42) "
                  "show how far the protocol alone moves the figure.")


@dataclass(frozen=True)
class SunBenchmarkSettings:
    model: str
    n: int = DEFAULT_SUN_SAMPLES
    seed: int = 0
    config: SunConfig = field(default_factory=SunConfig)


def load_sun_model(name: str, data_dir: str | os.PathLike | None) -> BenchmarkModel:
    """A generator checkpoint with the protocol it was trained under (S.U.N. is measured there)."""
    from crystalgen.data import load_protocol
    from crystalgen.models.store import read_checkpoint, resolve_checkpoint

    folder = resolve_checkpoint(name)
    if folder is None:
        raise CrystalgenInputError(f"unknown model {name!r}: S.U.N. needs a shipped or saved generator checkpoint "
                                   "(see `crystalgen models`)")
    protocol = read_checkpoint(folder, weights=False).config.get("protocol")
    if not isinstance(protocol, str):
        raise CrystalgenInputError(f"checkpoint {folder} records no training protocol, so it has no reference set")
    spec = load_protocol(protocol)
    return load_benchmark_model(name, spec.dataset, spec.name, "gen", data_dir)


def run_sun_benchmark(settings: SunBenchmarkSettings, out: str | os.PathLike,
                      data_dir: str | os.PathLike | None = None, workers: Workers | None = None) -> dict[str, Any]:
    """Run (or resume) the S.U.N. benchmark into ``out``; returns what ``metrics.json`` holds. The
    relaxations run over ``workers`` (inline when ``None``), which is not part of the run's settings."""
    from crystalgen.filters.inputs import read_candidates
    from crystalgen.metrics.sun import (chgnet_relaxation, describe_hull, evaluate_sun, load_sun_reference,
                                        reference_e_above_hull, sun_stages)

    if settings.n < 1:
        raise CrystalgenInputError(f"-n must be at least 1, got {settings.n}")
    start = time.perf_counter()
    bench = load_sun_model(settings.model, data_dir)
    reference = load_sun_reference(bench.protocol, data_dir)
    run = RunDir(out, {"model": settings.model, "protocol": bench.protocol.name, "n": settings.n,
                       "seed": settings.seed, **settings.config.settings()})
    run.add_time("load", time.perf_counter() - start)
    with run.timed("sample"):
        generate(run, bench, settings.n, settings.seed)
    rows, columns = read_candidates(run.path / SAMPLES_FILE)
    with run.timed("reference"):
        relaxation = chgnet_relaxation(reference, settings.config)
        known = reference_e_above_hull(reference, relaxation)
        hull = describe_hull(reference, relaxation, settings.config, known)
    stages = sun_stages(settings.config, reference.crystals, relaxation)
    with run.timed("sun"):
        result = evaluate_sun(rows, columns, stages, run.path / FILTER_DIR, settings.n, settings.config,
                              {"hull": hull["reference"]}, workers)
    metrics = {"task": "sun", "protocol": bench.protocol.name, **result.to_dict(), "hull": hull,
               "published": [p.__dict__ for p in PUBLISHED_SUN], "published_note": NOT_COMPARABLE}
    metrics["metadata"] = run_metadata(run, bench, {"settings": {"n": settings.n, "seed": settings.seed}})
    metrics["metadata"]["executor"] = workers.description if workers is not None else "inline (1 process)"
    with run.timed("report"):
        write_report(build_sun_report(bench, settings, metrics, result, known), run.path)
    metrics["metadata"]["wall_s"] = dict(run.wall_s)
    atomic_write_text(run.path / METRICS_FILE, json.dumps(metrics, indent=2))
    return metrics


# ---------------------------------------------------------------------------------- report
#: Bins of the E_hull histogram, over the samples' whole range (and at least 0 to the largest threshold).
E_HULL_BINS = 40


def e_hull_histogram(samples: np.ndarray, known: np.ndarray, thresholds: tuple[float, ...]) -> bytes:
    """The samples' E_hull over their whole range (``figures.compare_histogram`` would cut it at the
    percentiles of the 10,000-odd reference values), R's own in the background, clipped into it."""
    import io

    from matplotlib.figure import Figure as PlotFigure

    samples, known = samples[np.isfinite(samples)], known[np.isfinite(known)]
    low = min([0.0, *thresholds, *samples.tolist()])
    high = max([*thresholds, *samples.tolist()])
    bins = np.linspace(low, high, E_HULL_BINS + 1)
    plot = PlotFigure(figsize=figures.FIGSIZE)
    axes = plot.subplots()
    if len(known):  # a density of nothing divides by zero
        axes.hist(np.clip(known, low, high), bins=bins, density=True, alpha=0.45,
                  label=f"reference structures R, clipped to this range (n={len(known):,})")
    if len(samples):
        axes.hist(samples, bins=bins, density=True, histtype="step", linewidth=2.0,
                  label=f"relaxed unique novel samples (n={len(samples)})")
    for threshold in thresholds:
        axes.axvline(threshold, color="grey", linestyle="--", linewidth=1.0)
    axes.set_xlabel("E_hull on the CHGNet reference hull (eV/atom); dashed: thresholds")
    axes.set_ylabel("probability density")
    axes.legend()
    plot.tight_layout()
    buffer = io.BytesIO()
    plot.savefig(buffer, format="png", dpi=figures.DPI)
    return buffer.getvalue()


def _sun_table(result: SunResult, thresholds: tuple[float, ...]) -> Table:
    rows = [[f"<= {threshold_key(t)}", str(result.sun_count[threshold_key(t)]),
             percent(result.share(t, result.n_requested)), percent(result.share(t, result.n_valid)),
             percent(result.share(t, result.n_relaxed_valid))] for t in thresholds]
    return Table(["E_hull (eV/atom)", "S.U.N. count", f"S.U.N. % of requested (n={result.n_requested})",
                  f"% of structurally valid (n={result.n_valid})",
                  f"stable % of relaxed U.N. (n={result.n_relaxed_valid})"], rows)


def _hull_table(hull: dict[str, Any]) -> Table:
    mu, relax, cost = hull["mu_fit"], hull["relax"], hull["reference_cost"]
    rows = [
        ["reference set R (novelty and hull)", hull["reference"]],
        ["hull entries", f"{hull['n_hull_entries']:,} (plus every element at 0 eV/atom)"],
        ["energy on the hull", hull["energy"]],
        ["CHGNet", f"package {hull['chgnet_package']}, pretrained weights {hull['chgnet_weights']}, on CPU"],
        ["chemical potentials mu", f"{mu['method']}: {mu['elements']} elements from {mu['structures']:,} "
                                   f"structures, RMS residual {mu['rms_residual_ev_per_atom']:.3f} eV/atom"],
        ["relaxation", f"{relax['optimizer']}, fmax {relax['fmax_ev_per_a']} eV/Å, at most {relax['max_steps']} steps"],
        ["tolerance", f"E_hull <= t + {hull['tolerance_ev_per_atom']:g} eV/atom counts as <= t"],
        ["R's CHGNet energies (cached, cost of building)",
         f"{cost.get('structures', 0):,} structures in {cost.get('seconds', 0.0):.0f} s" if cost else MISSING],
        *[[f"R's own share at E_hull <= {key}", percent(share)] for key, share in hull["reference_shares"].items()],
    ]
    return Table(["field", "value"], rows)


def _published_table() -> Table:
    rows = [[p.model, number(p.percent, 2), p.stable, p.protocol, p.source] for p in PUBLISHED_SUN]
    return Table(["model", "S.U.N. %", "stable", "protocol", "source"], rows,
                 caption=f"Published anchors, {NOT_COMPARABLE}")


def build_sun_report(bench: BenchmarkModel, settings: SunBenchmarkSettings, metrics: dict[str, Any],
                     result: SunResult, known: np.ndarray) -> Report:
    config, hull = settings.config, metrics["hull"]
    seconds = result.relax_seconds
    notes = "\n".join([
        f"{result.n_requested} samples requested from `{bench.name}` (seed {settings.seed}) under `{bench.protocol.name}`; "
        f"{result.n_sampled} returned, {result.n_readable} readable.",
        "",
        "- S.U.N. = structurally valid, unique among the samples, novel against R, still valid after a CHGNet "
        "relaxation, and E_hull <= threshold on the CHGNet hull of R. The denominator is every requested sample; "
        "the share of the structurally valid ones is given too.",
        f"- R: {hull['reference']}. Test structures are in neither the novelty reference nor the hull.",
        "- Uniqueness and novelty are judged on the samples as generated (StructureMatcher 0.5 / 0.3 / 10°); "
        "only the unique novel ones are relaxed.",
        f"- E_hull <= 0 means on or below a hull of {hull['n_hull_entries']:,} known structures, not the "
        "Materials Project hull: in a chemical system with few reference structures it is easy to reach. "
        "A figure for comparing crystalgen runs under one protocol.",
        *([f"- {result.n_without_hull} relaxed samples contain an element with no reference structure: no hull, "
           "not counted as stable."] if result.n_without_hull else []),
    ])
    funnel = result.funnel()
    timing = [["relaxations", str(len(seconds))],
              ["wall time per relaxation (mean / median)",
               f"{np.mean(seconds):.1f} s / {np.median(seconds):.1f} s" if seconds else MISSING],
              ["wall time per stage", "in the run metadata below"]]
    sections = [
        Section("Summary", [Text(notes), _sun_table(result, config.thresholds)]),
        Section("Funnel", [Table(["stage", "remaining"], [[s, f"{n:,}"] for s, n in funnel]),
                           Figure("funnel", figures.funnel_plot([s for s, _ in funnel], [n for _, n in funnel]),
                                  "Samples left after each condition, in order.")]),
        Section("E_hull distribution", [Figure("e_above_hull", e_hull_histogram(
            np.array(result.e_above_hull), known, config.thresholds),
            "E_hull of the relaxed, valid, unique, novel samples, and of R's own structures on the same hull.")]),
        Section("The hull", [_hull_table(hull)]),
        Section("Published anchors", [_published_table()]),
        Section("Cost", [Table(["what", "value"], timing)]),
        metadata_section(metrics["metadata"], bench.card),
    ]
    return Report(f"S.U.N. benchmark: {bench.name} under {bench.protocol.name} ({result.n_requested} samples)",
                  sections)
