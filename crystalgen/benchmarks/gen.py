"""``crystalgen benchmark gen``: sample from scratch, score every generation metric, and report.

Sampling is resumable (``samples.csv`` is appended in blocks); the test-set fingerprints are
cached on disk and their build resumes too. The metrics themselves run in one pass over the
samples (minutes for 1,000 on two cores), so they are recomputed if a run is interrupted there.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from typing import Any

from crystalgen.benchmarks.common import (
    BenchmarkModel,
    card_path,
    load_benchmark_model,
    metadata_section,
    run_metadata,
    run_provenance,
    update_card,
)
from crystalgen.generators.sampling import sample_resumably
from crystalgen.runs import RunDir, atomic_write_text, read_csv_rows
from crystalgen.crystal import Crystal
from crystalgen.data.loading import parse_cifs
from crystalgen.data.protocols import DataProtocol
from crystalgen.generators import Target
from crystalgen.metrics import GenConfig, GenResult, evaluate_generation
from crystalgen.metrics.distribution import PropertyFn, densities, num_elements
from crystalgen.reports import figures
from crystalgen.reports.document import Figure, Report, Section, Table, Text, MISSING, number, percent, write_report
from crystalgen.reports.gallery import gen_gallery_section
from crystalgen.reports.published import SOURCE, published_gen

SAMPLES_FILE, METRICS_FILE = "samples.csv", "metrics.json"
SAMPLE_COLUMNS = ("sample_id", "formula", "num_atoms", "template_spacegroup", "cif")
#: Where a template-based model's samples carry the space group they were built in.
TEMPLATE_SPACEGROUP = "spacegroup.number"
#: The benchmark's full sample count (docs/protocol.md); fewer is a "quick run" and says so.
FULL_SAMPLE_COUNT = 10_000
DEFAULT_SAMPLE_COUNT = 1_000


@dataclass(frozen=True)
class GenBenchmarkSettings:
    model: str
    dataset: str
    protocol: str | None = None
    n: int = DEFAULT_SAMPLE_COUNT
    seed: int = 0


def generate(run: RunDir, bench: BenchmarkModel, n: int, seed: int) -> None:
    """``n`` unconditional samples; each target asks for one, so the sample count is exact and resumable."""
    writer = run.csv_writer(SAMPLES_FILE, SAMPLE_COLUMNS)

    def rows_for(index: int, _target: Target, crystals: list[Crystal]) -> list[dict[str, Any]]:
        return [{"sample_id": f"s{index:06d}", "formula": c.formula, "num_atoms": c.num_atoms,
                 "template_spacegroup": int(c.properties[TEMPLATE_SPACEGROUP]) if TEMPLATE_SPACEGROUP in c.properties
                 else "", "cif": c.to_cif()} for c in crystals[:1]]

    sample_resumably(bench.model, [Target()] * n, 1, seed, writer, rows_for, "sampling", bench.options)


def read_samples(path: os.PathLike) -> tuple[list[Crystal], int]:
    """Parsed samples, and how many rows could not be parsed (they stay out of every metric)."""
    rows = read_csv_rows(path)
    parsed = parse_cifs([r["cif"] for r in rows], label="parsing samples") if rows else []
    crystals = [Crystal(*p, id=r["sample_id"], properties=_template_group(r)) for r, p in zip(rows, parsed)
                if not isinstance(p, str)]
    return crystals, len(rows) - len(crystals)


def _template_group(row: dict[str, str]) -> dict[str, float]:
    value = (row.get("template_spacegroup") or "").strip()
    return {TEMPLATE_SPACEGROUP: float(value)} if value.isdigit() else {}


def symmetry_figures(samples: list[Crystal], train: list[Crystal]) -> tuple[dict[str, Any] | None, list[Figure]]:
    """Space-group compliance of the samples that name their template's group (``None`` when none
    do), and the space-group distribution of the samples against the training set (spglib, symprec 0.1)."""
    from crystalgen.metrics.symmetry import spacegroup_compliance
    from crystalgen.representations.cell import space_group_number

    templated = [c for c in samples if TEMPLATE_SPACEGROUP in c.properties]
    if not templated:
        return None, []
    compliance = spacegroup_compliance(templated, [int(c.properties[TEMPLATE_SPACEGROUP]) for c in templated])
    found = [space_group_number(c) for c in samples]
    reference = [int(c.properties.get(TEMPLATE_SPACEGROUP) or space_group_number(c)) for c in train]
    figure = Figure("spacegroups", figures.compare_histogram(reference, found, "space group number", "training set",
                                                             "samples", discrete=True),
                    "Space groups (spglib, symprec 0.1) of the samples against the training set.")
    return compliance.to_dict(), [figure]


def surrogate_property(dataset: str) -> tuple[PropertyFn | None, str]:
    """d_E's property function, the shipped ``surrogate-<dataset>``'s mean prediction of its energy
    (the property the filter's stability stage uses), and the report's note on it; ``(None, why)``
    when no such surrogate is shipped."""
    from crystalgen.models.store import resolve_checkpoint

    name = f"surrogate-{dataset}"
    if resolve_checkpoint(name) is None:
        return None, f"- d_E is not reported: crystalgen ships no `{name}` property model."
    from crystalgen.filters.build import hull_energy_property
    from crystalgen.surrogate.predictor import load_surrogate

    surrogate = load_surrogate(name)
    energy = hull_energy_property(surrogate)

    def predict(crystals: list[Crystal]) -> list[float]:
        return list(surrogate.predict(crystals)[energy][0])

    note = (f"- d_E compares `{energy}` as predicted by `{name}` for the same valid samples and for the test "
            "structures (both sides predicted, so they share the surrogate's error). It is comparable between "
            "crystalgen rows only: the published d_E comes from the authors' own property model.")
    return predict, note


def run_gen_benchmark(settings: GenBenchmarkSettings, out: str | os.PathLike, data_dir: str | os.PathLike | None = None,
                      workers: int | None = None, update_card: bool = False) -> dict[str, Any]:
    """Run (or resume) a generation benchmark into ``out``; returns what ``metrics.json`` holds."""
    start = time.perf_counter()
    bench = load_benchmark_model(settings.model, settings.dataset, settings.protocol, "gen", data_dir)
    if update_card:
        card_path(bench)  # refuse a model without a card before sampling, not after
    run = RunDir(out, {**settings.__dict__, "protocol": bench.protocol.name})
    run.add_time("load", time.perf_counter() - start)
    with run.timed("sample"):
        generate(run, bench, settings.n, settings.seed)
    samples, unparsable = read_samples(run.path / SAMPLES_FILE)
    data = bench.protocol.load(data_dir)
    with run.timed("metrics"):
        property_fn, property_note = surrogate_property(settings.dataset)
        result = evaluate_generation(samples, data.test, data.train, settings.dataset, property_fn, workers=workers)
        compliance, symmetry = symmetry_figures(samples, data.train)
    metrics = {
        "task": "gen",
        "dataset": settings.dataset,
        "protocol": bench.protocol.name,
        "n_requested": settings.n,
        "n_unparsable": unparsable,
        # A family whose decoder can fail (SLICES, tokens) may return nothing for a request.
        "n_without_sample": settings.n - len(samples) - unparsable,
        "quick_run": settings.n < FULL_SAMPLE_COUNT,
        "fingerprint_method": GenConfig().fingerprint_method,
        **result.to_dict(),
        **({"spacegroup_compliance": compliance} if compliance else {}),
    }
    metrics["metadata"] = run_metadata(run, bench, {"settings": {"n": settings.n, "seed": settings.seed}})
    with run.timed("report"):
        write_report(build_gen_report(bench, settings, metrics, result, samples, data.test, property_note, symmetry),
                     run.path)
    metrics["metadata"]["wall_s"] = dict(run.wall_s)
    atomic_write_text(run.path / METRICS_FILE, json.dumps(metrics, indent=2))
    if update_card:
        _update_card(bench, settings, metrics)
    return metrics


#: The card section ``--update-card`` (re)writes, and the metrics it records in the front matter.
CARD_SECTION = "Measured generation metrics"
CARD_METRICS = ("struct_validity", "comp_validity", "cov_recall", "cov_precision", "d_rho", "d_prop", "d_elem",
                "uniqueness", "novelty")


def _update_card(bench: BenchmarkModel, settings: GenBenchmarkSettings, metrics: dict) -> None:
    values = {f"{settings.dataset}_gen_{name}": None if metrics.get(name) is None else round(metrics[name], 6)
              for name in CARD_METRICS}
    values[f"{settings.dataset}_gen_n"] = metrics["n_generated"]
    compliance = metrics.get("spacegroup_compliance")
    if compliance:
        values[f"{settings.dataset}_gen_spacegroup_compliance"] = compliance["compliance"]
        values[f"{settings.dataset}_gen_spacegroup_exact"] = compliance["exact_share"]
    meta = metrics["metadata"]
    body = "\n".join([
        "| " + " | ".join("d_E" if m == "d_prop" else m for m in CARD_METRICS) + " |",
        "|" + "---|" * len(CARD_METRICS),
        "| " + " | ".join(number(metrics.get(m)) if m.startswith("d_") else percent(metrics.get(m))
                          for m in CARD_METRICS) + " |",
        "",
        f"{metrics['n_generated']:,} samples (seed {settings.seed}"
        + (f"; a quick run, the benchmark uses {FULL_SAMPLE_COUNT:,}" if metrics["quick_run"] else "")
        + f") against the {settings.dataset} test split{_subset_words(bench.protocol)};"
        + ("" if not compliance else f" space-group compliance {percent(compliance['compliance'])}% (exact "
           f"{percent(compliance['exact_share'])}%, n={compliance['n']});")
        + f" novelty against `{meta['protocol']}` training. Measured with "
        f"`crystalgen benchmark gen --model {settings.model} --dataset {settings.dataset} -n {settings.n} "
        f"--update-card` (crystalgen {meta['crystalgen_version']}, commit {meta['started_commit'][:12]}). "
        f"{run_provenance(meta)}",
    ])
    update_card(bench, CARD_SECTION, values, body)


def _subset_words(protocol: DataProtocol) -> str:
    return f" ({protocol.subset.describe()} only)" if protocol.subset else ""


# ---------------------------------------------------------------------------------- report
def build_gen_report(bench: BenchmarkModel, settings: GenBenchmarkSettings, metrics: dict, result: GenResult,
                     samples: list[Crystal], test: list[Crystal], property_note: str = "",
                     symmetry: list[Figure] = ()) -> Report:
    dataset = settings.dataset
    run_kind = ("the full benchmark" if not metrics["quick_run"]
                else f"a quick run; the benchmark uses {FULL_SAMPLE_COUNT:,}")
    notes = [
        f"{result.n_generated} samples from `{bench.name}` ({run_kind}), {metrics['n_unparsable']} unparsable, "
        f"against the {result.n_test} test structures of {dataset}{_subset_words(bench.protocol)}; novelty against the "
        f"`{bench.protocol.name}` training set.",
        *([f"- {metrics['n_without_sample']} of the {metrics['n_requested']:,} requests got no sample (the "
           "model's decoder failed); the figures below are shares of the samples that exist, so over all "
           f"requests structural validity is {result.struct_validity * result.n_generated / metrics['n_requested']:.2%}"
           f" and compositional validity {result.comp_validity * result.n_generated / metrics['n_requested']:.2%}."]
          if metrics.get("n_without_sample") else []),
        "",
        "- Validity and coverage count every generated structure, invalid ones included (COV-P over all of "
        "them, as in the published code).",
        "- d_rho, d_E and d_elem use up to 1,000 valid samples drawn with a fixed seed.",
    ]
    if property_note:
        notes.append(property_note)
    if bench.protocol.name != dataset:
        notes.append(f"- Trained under `{bench.protocol.name}`, on less data than the published models.")
    if bench.protocol.subset:
        notes.append(f"- Train and test splits hold only {bench.protocol.subset.describe()}: the published rows "
                     "below are for the whole dataset and are not comparable.")
    if bench.model.capabilities.baseline:
        notes.append(f"- `{bench.name}` is a baseline: {bench.model.describe_sampling(bench.options)}")
    rows = [["crystalgen: " + bench.name + " (this run)", percent(result.struct_validity), percent(result.comp_validity),
             percent(result.cov_recall), percent(result.cov_precision), number(result.d_rho), number(result.d_prop),
             number(result.d_elem), percent(result.uniqueness), percent(result.novelty)]]
    rows += [[f"{p.model} (published)", number(p.struct_validity, 2), number(p.comp_validity, 2),
              number(p.cov_recall, 2), number(p.cov_precision, 2), number(p.d_rho), number(p.d_prop),
              number(p.d_elem), MISSING, MISSING] for p in published_gen(dataset)]
    table = Table(["model", "struct. valid %", "comp. valid %", "COV-R %", "COV-P %", "d_rho", "d_E", "d_elem",
                   "unique %", "novel %"], rows, caption=f"Generation on {dataset}. Published rows: {SOURCE}.")
    timings = Table(["stage", "seconds"], [[k, f"{v:.1f}"] for k, v in result.timings.items()])
    compliance = metrics.get("spacegroup_compliance")
    symmetry_section = [] if not compliance else [Section("Space groups", [
        Text(f"{compliance['n']} samples name the space group of their template. spglib (symprec 0.1) finds "
             f"exactly that group for {compliance['exact']} ({percent(compliance['exact_share'])}%), a supergroup "
             f"(the sample is invariant under every operation of the template's group) for "
             f"{compliance['supergroup']}, and neither for {compliance['violated']}: compliance "
             f"{percent(compliance['compliance'])}%."), *symmetry])]
    sections = [
        Section("Summary", [Text("\n".join(notes)), table]),
        gen_gallery_section(samples, result.validity_detail.struct_valid),
        Section("Distributions against the test set", [
            Figure("density", figures.compare_histogram(densities(test), densities(samples), "density (g/cm³)",
                                                        "test", "samples"), "Density."),
            Figure("num_elements", figures.compare_histogram(num_elements(test), num_elements(samples),
                                                             "distinct elements", "test", "samples", discrete=True),
                   "Number of distinct elements."),
            Figure("num_atoms", figures.compare_histogram([c.num_atoms for c in test], [c.num_atoms for c in samples],
                                                          "atoms per cell", "test", "samples", discrete=True),
                   "Atoms per cell."),
        ]),
        *symmetry_section,
        Section("Metric wall times", [timings]),
        metadata_section(metrics["metadata"], bench.card),
    ]
    return Report(f"Generation benchmark: {bench.name} on {dataset} ({result.n_generated} samples)", sections)
