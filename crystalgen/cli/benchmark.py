"""``crystalgen benchmark csp|gen|surrogate|design|sun``."""

from __future__ import annotations

from pathlib import Path

import click
from rich.console import Console

from crystalgen.cli.data import data_dir_option
from crystalgen.cli.workers import scheduler_option, workers_option as _workers
from crystalgen.constants import DEFAULT_MAX_E_ABOVE_HULL
from crystalgen.data.registry import DATASETS

_model = click.option("--model", "-m", "model_name", required=True,
                      help="Checkpoint name/path (see `crystalgen models`).")
_dataset = click.option("--dataset", "-d", required=True, type=click.Choice(sorted(DATASETS)),
                        help="Dataset whose test split is used.")
_protocol = click.option("--protocol", "-p", default=None,
                         help="Data protocol (default: the model's own on this dataset, else the standard one).")
_seed = click.option("--seed", type=int, default=0, show_default=True)
_out = click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
                    help="Output folder; re-running the same command there resumes.")


@click.group()
def benchmark() -> None:
    """Benchmark a model on a dataset's test split and write a report."""


@benchmark.command()
@_model
@_dataset
@_protocol
@click.option("--k", type=click.IntRange(min=1), default=1, show_default=True,
              help="Proposals per test structure; k>1 also reports k=1 (the first proposal).")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="Only the first N test structures (a quick check; the report says so).")
@_seed
@click.option("--require-smact", is_flag=True,
              help="Also count SMACT-invalid proposals as misses (what the published code does).")
@click.option("--update-card", is_flag=True,
              help="Write the figures into the checkpoint's card.md (full test split only).")
@click.option("--sampler-steps", type=click.IntRange(min=1), default=None,
              help="Reverse-diffusion steps (diffusion models; default: the checkpoint's).")
@click.option("--steps-curve", default="", metavar="N,N,...",
              help="Also measure k=1 match rate at these sampler steps, e.g. 50,100,200,1000 (on --curve-limit structures).")
@click.option("--curve-limit", type=click.IntRange(min=1), default=500, show_default=True,
              help="Test structures per point of --steps-curve.")
@click.option("--template-source", default=None,
              help="Where a template-based model (wyckoff) takes its templates, e.g. the random-placement control.")
@_out
@_workers
@scheduler_option
@data_dir_option
def csp(model_name: str, dataset: str, protocol: str | None, k: int, limit: int | None, seed: int,
        require_smact: bool, update_card: bool, sampler_steps: int | None, steps_curve: str, curve_limit: int,
        template_source: str | None, out: Path, workers: int | None, scheduler: str | None, data_dir: str | None
        ) -> None:
    """Crystal structure prediction: k proposals per test composition, scored by StructureMatcher.

    Writes OUT/predictions.csv (material_id, rank, cif), OUT/metrics.json (match_rate, rmse, n,
    per-k breakdowns), OUT/per_structure.csv, OUT/report.md and a self-contained OUT/report.html.

    \b
    Example:
      crystalgen benchmark csp --model template-perov_5 --dataset perov_5 --k 20 --out runs/csp-perov
    """
    from crystalgen.benchmarks.csp import CspBenchmarkSettings, run_csp_benchmark

    curve = _int_list(steps_curve, "--steps-curve")
    settings = CspBenchmarkSettings(model_name, dataset, protocol, limit, k, seed, require_smact, sampler_steps,
                                    curve, curve_limit if curve else None, template_source)
    metrics = run_csp_benchmark(settings, out, data_dir, workers, update_card, scheduler)
    lines = [f"k={kk}: match rate {_pct(e['match_rate'])}, RMSE {_fmt(e['rmse'])}, n={e['n']}"
             for kk, e in metrics["by_k"].items()]
    _finish(out, lines)


@benchmark.command()
@_model
@_dataset
@_protocol
@click.option("-n", "--n", "num_samples", type=click.IntRange(min=1), default=1000, show_default=True,
              help="Samples to generate (the published protocol uses 10,000).")
@_seed
@click.option("--update-card", is_flag=True, help="Write the figures into the checkpoint's card.md.")
@_out
@_workers
@data_dir_option
def gen(model_name: str, dataset: str, protocol: str | None, num_samples: int, seed: int, update_card: bool,
        out: Path, workers: int | None, data_dir: str | None) -> None:
    """Generation from scratch: validity, coverage, property distributions, uniqueness, novelty.

    Writes OUT/samples.csv, OUT/metrics.json, OUT/report.md and a self-contained OUT/report.html.
    """
    from crystalgen.benchmarks.gen import GenBenchmarkSettings, run_gen_benchmark

    metrics = run_gen_benchmark(GenBenchmarkSettings(model_name, dataset, protocol, num_samples, seed), out,
                                data_dir, workers, update_card)
    names = ("struct_validity", "comp_validity", "cov_recall", "cov_precision", "uniqueness", "novelty")
    _finish(out, [", ".join(f"{n} {_pct(metrics[n])}" for n in names),
                  f"d_rho {_fmt(metrics['d_rho'])}, d_elem {_fmt(metrics['d_elem'])}"])


@benchmark.command()
@_model
@_dataset
@_protocol
@click.option("--max-e-hull", "max_e_above_hull", type=float, default=DEFAULT_MAX_E_ABOVE_HULL, show_default=True,
              help="Stability threshold (eV/atom) for the precision/recall of E_hull <= threshold.")
@click.option("--update-card", is_flag=True, help="Write the figures into the checkpoint's card.md.")
@_out
@data_dir_option
def surrogate(model_name: str, dataset: str, protocol: str | None, max_e_above_hull: float, update_card: bool,
              out: Path, data_dir: str | None) -> None:
    """Surrogate property model: test MAE, calibration of the ensemble spread, stability precision/recall.

    Writes OUT/metrics.json, OUT/report.md and OUT/report.html.
    """
    from crystalgen.benchmarks.surrogate import SurrogateBenchmarkSettings, run_surrogate_benchmark

    metrics = run_surrogate_benchmark(SurrogateBenchmarkSettings(model_name, dataset, protocol, max_e_above_hull),
                                      out, data_dir, update_card)
    lines = [f"{name}: MAE {_fmt(m['mae'])}, RMSE {_fmt(m['rmse'])}, n={m['n']}, within 1 std "
             f"{_pct(m['within_1_std'])}" for name, m in metrics["properties"].items()]
    if metrics.get("stability"):
        s = metrics["stability"][0]["surrogate"]
        lines.append(f"E_hull <= {max_e_above_hull}: precision {_pct(s['precision'])}, recall {_pct(s['recall'])}")
    _finish(out, lines)


@benchmark.command()
@click.option("--model", "-m", "model_name", required=True,
              help="Diffusion-family checkpoint that refines the starts, e.g. diffusion-perov_5-gen.")
@click.option("--dataset", "-d", required=True, type=click.Choice(["carbon_24", "mp_20", "perov_5"]),
              help="Dataset whose test split gives the starts and whose protocol property is minimised.")
@_protocol
@click.option("--surrogate", default=None, help="Guiding surrogate (default: surrogate-<dataset>).")
@click.option("--oracle", default=None, help="Judging oracle (default: oracle-<dataset>).")
@click.option("--starts", type=click.IntRange(min=1), default=100, show_default=True, help="Test structures optimised.")
@click.option("--strength", type=click.FloatRange(min=0), default=1.0, show_default=True,
              help="Guidance strength (0: unguided refinement, selection by the surrogate only).")
@click.option("--start-time", type=click.FloatRange(min=0, min_open=True, max=1), default=0.3, show_default=True,
              help="How far each start is noised (1: back to the prior).")
@click.option("--iterations", type=click.IntRange(min=1), default=4, show_default=True)
@click.option("--proposals", type=click.IntRange(min=1), default=4, show_default=True,
              help="Refinements per start and iteration.")
@click.option("--steps", type=click.IntRange(min=1), default=100, show_default=True,
              help="Latent models: Adam steps on each start's latent vector.")
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=0.05, show_default=True,
              help="Latent models: the learning rate of those steps.")
@click.option("--decodes", type=click.IntRange(min=1), default=5, show_default=True,
              help="Latent models: decodes along each path (evenly spaced).")
@_seed
@_out
@data_dir_option
def design(model_name: str, dataset: str, protocol: str | None, surrogate: str | None, oracle: str | None, starts: int,
           strength: float, start_time: float, iterations: int, proposals: int, steps: int, lr: float, decodes: int,
           seed: int, out: Path, data_dir: str | None) -> None:
    """Property optimisation from test starts (the CDVAE protocol): SR5/SR10/SR15 judged by the oracle.

    A diffusion model refines the starts (--strength, --start-time, --iterations, --proposals); a
    voxel model follows its property head's gradient in latent space (--steps, --lr, --decodes).

    Writes OUT/optimised.csv (per start: formulas, guide and oracle predictions, the best CIF),
    OUT/metrics.json, OUT/report.md and OUT/report.html.

    \b
    Example:
      crystalgen benchmark design --model diffusion-perov_5-gen --dataset perov_5 --out runs/design-perov
    """
    from crystalgen.benchmarks.design import DesignBenchmarkSettings, run_design_benchmark

    settings = DesignBenchmarkSettings(model_name, dataset, surrogate, oracle, protocol, starts, strength, start_time,
                                       iterations, proposals, seed, steps, lr, decodes)
    metrics = run_design_benchmark(settings, out, data_dir)
    lines = [f"{label}: " + ", ".join(f"{k.upper()} {_pct(v)}" for k, v in rates.items())
             for label, rates in metrics["success_rates"].items()]
    _finish(out, lines)


@benchmark.command()
@_model
@click.option("-n", "--n", "num_samples", type=click.IntRange(min=1), default=100, show_default=True,
              help="Samples to generate; every one is in the S.U.N. denominator.")
@_seed
@_out
@_workers
@scheduler_option
@data_dir_option
def sun(model_name: str, num_samples: int, seed: int, out: Path, workers: int | None, scheduler: str | None,
        data_dir: str | None) -> None:
    """S.U.N.: stable, unique and novel samples, relaxed with CHGNet, under the model's own protocol.

    Novelty and the hull are against every structure of that protocol except its test split
    (training + selection), the hull built from their CHGNet energies (cached after the first
    run). Writes OUT/samples.csv, OUT/filter/filtered.csv, OUT/metrics.json, OUT/report.md and
    OUT/report.html; re-running the same command resumes.

    \b
    Example:
      crystalgen benchmark sun --model diffusion-mp_20-gen -n 100 --out runs/sun-mp20
    """
    from crystalgen.benchmarks.sun import SunBenchmarkSettings, run_sun_benchmark
    from crystalgen.executors import open_workers

    with open_workers(workers, scheduler) as pool:
        metrics = run_sun_benchmark(SunBenchmarkSettings(model_name, num_samples, seed), out, data_dir, pool)
    _finish(out, [f"E_hull <= {key} eV/atom: S.U.N. {entry['count']}/{metrics['n_requested']} = "
                  f"{_pct(entry['share_of_requested'])} (of structurally valid: {_pct(entry['share_of_valid'])})"
                  for key, entry in metrics["sun"].items()])


def _int_list(text: str, option: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.replace(" ", "").split(",") if v)
    except ValueError:
        raise click.BadParameter(f"expected comma-separated integers, got {text!r}", param_hint=option) from None
    if any(v < 1 for v in values):
        raise click.BadParameter("steps must be at least 1", param_hint=option)
    return values


def _pct(x: float | None) -> str:
    return "n/a" if x is None else f"{100 * x:.2f}%"


def _fmt(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.4f}"


def _finish(out: Path, lines: list[str]) -> None:
    console = Console(highlight=False)
    for line in lines:
        console.print(line)
    console.print(f"report: {out / 'report.html'}")
