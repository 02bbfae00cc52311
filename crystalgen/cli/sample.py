"""``crystalgen sample`` and ``crystalgen models``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import click
from rich.console import Console

from crystalgen.cli.data import data_dir_option
from crystalgen.cli.filter import filter_candidates, filter_config_from_options, print_summary, with_filter_options
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Target, list_models, load_model
from crystalgen.generators.sampling import sample_resumably
from crystalgen.representations.cell import space_group_number
from crystalgen.runs import RunDir

SAMPLES_FILE = "samples.csv"
FILTER_DIR = "filter"
#: Console width for ``models`` output that goes to a pipe or file.
PIPED_WIDTH = 200
SAMPLE_COLUMNS = ("sample_id", "target", "formula", "spacegroup", "num_atoms", "cif")


@click.command()
@click.option("--model", "-m", "model_name", required=True, help="Checkpoint name/path or family (see `crystalgen models`).")
@click.option("--composition", "-c", "compositions", multiple=True, help="Target cell composition, e.g. SrTiO3 (repeatable).")
@click.option("--compositions-file", type=click.Path(dir_okay=False, path_type=Path),
              help="Text file with one composition per line (optionally followed by a space group).")
@click.option("--spacegroup", "-s", default=None, help="Space group number 1-230 for every target.")
@click.option("-n", "num_samples", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per target.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--filter", "apply_filter", is_flag=True,
              help="Run the filter stage on the samples into OUT/filter/ (see `crystalgen filter`).")
@with_filter_options
@data_dir_option
def sample(model_name: str, compositions: tuple[str, ...], compositions_file: Path | None, spacegroup: str | None,
           num_samples: int, seed: int, out: Path, apply_filter: bool, filter_config: Path | None,
           surrogate: str | None, max_e_above_hull: float | None, skip: tuple[str, ...], relax: bool | None,
           data_dir: str | None) -> None:
    """Sample crystals for target compositions and/or a space group, or from scratch.

    With no --composition, --compositions-file or --spacegroup, a model that generates from
    scratch (e.g. diffusion-mp_20-gen) draws -n crystals unconditionally: the same crystals as
    `crystalgen benchmark gen` with the same -n and seed.

    Writes OUT/samples.csv (sample_id, target, formula, spacegroup, num_atoms, cif) and one CIF per
    structure in OUT/cifs/; with --filter, also OUT/filter/filtered.csv and its summary. Targets are sampled in batches (one model call each, which is what
    keeps learned models fast) and rows are appended as each batch finishes; re-running the same
    command resumes after the last finished batch, and a different command into the same OUT is
    refused.

    \b
    Examples:
      crystalgen sample --model template-perov_5 -c SrTiO3 -c BaZrS3 -n 5 --out samples/
      crystalgen sample --model diffusion-mp_20-gen -n 1000 --out generated/
    """
    targets = _targets(compositions, compositions_file, spacegroup)
    per_target = num_samples
    target_labels: list[str] | str = [t.label for t in targets]
    if not targets:  # from scratch: one target per sample, exactly as `benchmark gen` draws them
        targets, per_target, target_labels = [Target()] * num_samples, 1, Target().label
    filter_settings = (filter_config, surrogate, max_e_above_hull, skip, relax)
    if not apply_filter and any(s not in (None, (), False) for s in filter_settings):
        raise CrystalgenInputError("filter options (--filter-config, --surrogate, --max-e-hull, --skip, --relax) need --filter")
    model = load_model(model_name, data_dir)
    for target in dict.fromkeys(targets):  # reject bad targets before any work is done
        model.check_target(target)
    if not model.is_fitted:
        raise CrystalgenInputError(f"model {model_name!r} is an unfitted family; use a checkpoint (see `crystalgen models`)")
    if apply_filter:  # build the stages (surrogate, data, CHGNet) first: a problem there must not wait for sampling
        from crystalgen.filters.build import build_stages

        config = filter_config_from_options(*filter_settings)
        stages, provenance = build_stages(config, model.protocol, data_dir,
                                          preferred_surrogate=f"surrogate-{model.config.get('dataset')}")
    settings = {"model": model_name, "targets": target_labels, "n": num_samples, "seed": seed}
    run = RunDir(out, settings)
    writer = run.csv_writer(SAMPLES_FILE, SAMPLE_COLUMNS)
    (out / "cifs").mkdir(parents=True, exist_ok=True)
    console = Console(stderr=True, highlight=False)

    def rows_for(index: int, target: Target, crystals: list[Crystal]) -> list[dict]:
        if not crystals:
            console.print(f"no sample for {target.label}: the model has nothing to offer for it")
        rows = []
        for k, crystal in enumerate(crystals):
            sample_id = f"t{index:04d}-{k:03d}"
            cif = crystal.to_cif()
            (out / "cifs" / f"{sample_id}.cif").write_text(cif)
            rows.append({"sample_id": sample_id, "target": target.label, "formula": crystal.formula,
                         "spacegroup": space_group_number(crystal), "num_atoms": crystal.num_atoms, "cif": cif})
        return rows

    with run.timed("sample"):
        sample_resumably(model, targets, per_target, seed, writer, rows_for, "sampling")
    console.print(f"wrote {out / SAMPLES_FILE}")
    if apply_filter:
        from dataclasses import asdict

        from crystalgen.filters.inputs import read_candidates

        rows, columns = read_candidates(out / SAMPLES_FILE)
        summary = filter_candidates(rows, columns, stages, provenance, out / FILTER_DIR,
                                    {"source": str(out / SAMPLES_FILE), "filter": asdict(config),
                                     "protocol": model.protocol})
        print_summary(summary, out / FILTER_DIR)


def _targets(compositions: tuple[str, ...], path: Path | None, spacegroup: str | None) -> list[Target]:
    lines: list[tuple[str | None, str | None]] = [(c, spacegroup) for c in compositions]
    if path is not None:
        if not path.is_file():
            raise CrystalgenInputError(f"file not found: {path}")
        for raw in path.read_text().splitlines():
            fields = raw.split("#")[0].split()
            if fields:
                lines.append((fields[0], fields[1] if len(fields) > 1 else spacegroup))
    if path is not None and len(lines) == len(compositions):
        raise CrystalgenInputError(f"{path} holds no compositions")
    if not lines and spacegroup is not None:
        lines = [(None, spacegroup)]
    return [Target.parse(formula, group) for formula, group in lines]


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List shipped checkpoints and generator families."""
    infos = list_models()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    from rich.table import Table

    table = Table("name", "family", "task", "dataset / protocol", "measured (card)", box=None, highlight=False)
    for info in infos:
        metrics = "\n".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.metrics.items())
        where = f"{info.dataset} / {info.protocol}" if info.protocol else "unfitted family"
        table.add_row(f"[bold]{info.name}[/bold]", info.family, info.task, where, metrics or "-")
    console = Console(highlight=False)
    if not console.is_terminal:  # piped: no terminal width to respect, so do not truncate
        console = Console(highlight=False, width=PIPED_WIDTH)
    console.print(table)
