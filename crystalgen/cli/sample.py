"""``crystalgen sample`` and ``crystalgen models``."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import click

from crystalgen.cli.data import data_dir_option
from crystalgen.cli.filter import filter_candidates, filter_config_from_options, print_summary, with_filter_options
from crystalgen.models.base import DEVICES

if TYPE_CHECKING:
    from crystalgen.crystal import Crystal
    from crystalgen.generators import SampleOptions, Target

SAMPLES_FILE = "samples.csv"
FILTER_DIR = "filter"
#: Console width for ``models`` output that goes to a pipe or file.
PIPED_WIDTH = 200
SAMPLE_COLUMNS = ("sample_id", "target", "formula", "spacegroup", "num_atoms", "template", "template_spacegroup", "cif",
                  "cif_symmetric")


@click.command()
@click.option("--model", "-m", "model_name", required=True, help="Checkpoint name/path or family (see `crystalgen models`).")
@click.option("--composition", "-c", "compositions", multiple=True, help="Target cell composition, e.g. SrTiO3 (repeatable).")
@click.option("--compositions-file", type=click.Path(path_type=Path),
              help="Text file with one composition per line (optionally followed by a space group).")
@click.option("--spacegroup", "-s", default=None, help="Space group number 1-230 for every target.")
@click.option("--elements", default=None, metavar="A-B-C",
              help="Chemical system to generate within, e.g. Li-Mn-O (models that condition on an element set).")
@click.option("--num-atoms", default=None, type=click.IntRange(min=1),
              help="Atoms per cell when generating from scratch (models that condition on an atom count).")
@click.option("--property", "properties", multiple=True, metavar="NAME=GOAL",
              help="Property target: NAME=VALUE, NAME=LOW:HIGH, NAME=min or NAME=max (models that condition on "
                   "properties; repeatable).")
@click.option("-n", "num_samples", type=click.IntRange(min=1), default=1, show_default=True, help="Samples per target.")
@click.option("--seed", type=int, default=0, show_default=True)
@click.option("--sampler-steps", type=click.IntRange(min=1), default=None,
              help="Reverse-diffusion steps (diffusion models; default: the checkpoint's).")
@click.option("--temperature", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Sampling temperature (autoregressive models).")
@click.option("--top-k", type=click.IntRange(min=1), default=None, help="Top-k sampling (autoregressive models).")
@click.option("--batch-size", type=click.IntRange(min=1), default=None,
              help="Targets per model call, also how often rows are written (default 64; changes the draws).")
@click.option("--device", type=click.Choice(DEVICES), default=None,
              help="Where to sample (models that can use a GPU; default cpu).")
@click.option("--template-source", default=None,
              help="Where a template-based model takes its templates (wyckoff: retrieval, spacegroup, scratch, "
                   "random-placement; default: retrieval for CSP, scratch for generation).")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Output folder.")
@click.option("--filter", "apply_filter", is_flag=True,
              help="Run the filter stage on the samples into OUT/filter/ (see `crystalgen filter`).")
@with_filter_options
@data_dir_option
def sample(model_name: str, compositions: tuple[str, ...], compositions_file: Path | None, spacegroup: str | None,
           elements: str | None, num_atoms: int | None, properties: tuple[str, ...], num_samples: int, seed: int,
           sampler_steps: int | None, temperature: float | None, top_k: int | None, batch_size: int | None,
           device: str | None, template_source: str | None, out: Path, apply_filter: bool, filter_config: Path | None, surrogate: str | None,
           max_e_above_hull: float | None, skip: tuple[str, ...], relax: bool | None, data_dir: str | None) -> None:
    """Sample crystals for target compositions and/or a space group, or from scratch.

    With no --composition or --compositions-file, a model that generates from scratch (e.g.
    diffusion-mp_20-gen) draws -n crystals, optionally within --elements, with --num-atoms or in
    --spacegroup where the model can condition on them; with no condition at all, these are the
    same crystals as `crystalgen benchmark gen` with the same -n and seed. `crystalgen models`
    lists what each model conditions on; a condition it cannot serve is refused before any work.

    Writes OUT/samples.csv (sample_id, target, formula, spacegroup found by spglib at symprec 0.1,
    num_atoms, template: where a template-based model's sample came from, and
    template_spacegroup: the group it was built in, the P1 cif, and
    cif_symmetric: the symmetrised CIF with its space group and asymmetric unit) and one CIF per
    structure in OUT/cifs/; with --filter, also OUT/filter/filtered.csv and its summary. Targets are sampled in batches (one model call each, which is what
    keeps learned models fast) and rows are appended as each batch finishes; re-running the same
    command resumes after the last finished batch, and a different command into the same OUT is
    refused.

    \b
    Examples:
      crystalgen sample --model template-perov_5 -c SrTiO3 -c BaZrS3 -n 5 --out samples/
      crystalgen sample --model diffusion-mp_20-gen -n 1000 --out generated/
      crystalgen sample --model diffusion-mp_20-gen --elements Li-Mn-O --num-atoms 12 -n 20 --out limno/
    """
    from rich.console import Console

    from crystalgen.errors import CrystalgenInputError
    from crystalgen.generators import SampleOptions, Target, load_model
    from crystalgen.generators.sampling import sample_resumably
    from crystalgen.representations.cell import space_group_number
    from crystalgen.representations.cif import to_symmetric_cif
    from crystalgen.runs import RunDir

    constraints = {"spacegroup": spacegroup, "elements": elements, "num_atoms": num_atoms, "properties": properties}
    targets = _targets(compositions, compositions_file, constraints)
    per_target = num_samples
    target_labels: list[str] | str = [t.label for t in targets]
    if targets[0].composition is None:
        # from scratch: one target per sample, so that batches, progress and resume count samples
        # (and, with no condition, the draws are exactly `benchmark gen`'s)
        targets, per_target, target_labels = [targets[0]] * num_samples, 1, targets[0].label
    if device is not None:  # resolved now: a missing GPU is refused before any work, and the run records what ran
        from crystalgen.devices import resolve_device

        device = resolve_device(device).type
    options = SampleOptions(sampler_steps=sampler_steps, temperature=temperature, top_k=top_k, batch_size=batch_size,
                            device=device, template_source=template_source)
    filter_settings = (filter_config, surrogate, max_e_above_hull, skip, relax)
    if not apply_filter and any(s not in (None, (), False) for s in filter_settings):
        raise CrystalgenInputError("filter options (--filter-config, --surrogate, --max-e-hull, --skip, --relax) need --filter")
    model = load_model(model_name, data_dir)
    if not model.is_fitted:
        raise CrystalgenInputError(f"model {model_name!r} is an unfitted family; use a checkpoint (see `crystalgen models`)")
    model.check_options(options)  # reject bad targets and options before any work
    for target in dict.fromkeys(targets):
        model.check_target(target)
    if apply_filter:  # build the stages (surrogate, data, CHGNet) first: a problem there must not wait for sampling
        from crystalgen.filters.build import build_stages

        config = filter_config_from_options(*filter_settings)
        stages, provenance = build_stages(config, model.protocol, data_dir, preferred_surrogate=f"surrogate-{model.dataset}")
    settings = {"model": model_name, "targets": target_labels, "n": num_samples, "seed": seed,
                **({"options": _describe_options(options)} if options.set_fields() else {})}
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
                         "spacegroup": space_group_number(crystal), "num_atoms": crystal.num_atoms,
                         "template": crystal.id or "",
                         "template_spacegroup": int(crystal.properties["spacegroup.number"])
                         if "spacegroup.number" in crystal.properties else "", "cif": cif, "cif_symmetric": to_symmetric_cif(crystal)})
        return rows

    with run.timed("sample"):
        sample_resumably(model, targets, per_target, seed, writer, rows_for, "sampling", options)
    console.print(f"wrote {out / SAMPLES_FILE}")
    if apply_filter:
        from crystalgen.filters.inputs import read_candidates

        rows, columns = read_candidates(out / SAMPLES_FILE)
        summary = filter_candidates(rows, columns, stages, provenance, out / FILTER_DIR,
                                    {"source": str(out / SAMPLES_FILE), "filter": asdict(config),
                                     "protocol": model.protocol})
        print_summary(summary, out / FILTER_DIR)


def _targets(compositions: tuple[str, ...], path: Path | None, constraints: dict) -> list["Target"]:
    """One target per composition (a compositions file may give each its own space group), all
    sharing the other constraints; a single composition-free target when no composition is given."""
    from crystalgen.generators import Target
    from crystalgen.validation import read_compositions_file

    spacegroup = constraints["spacegroup"]
    lines: list[tuple[str | None, str | None]] = [(c, spacegroup) for c in compositions]
    if path is not None:
        lines += [(formula, group or spacegroup) for formula, group in read_compositions_file(path)]
    if not lines:
        lines = [(None, spacegroup)]
    others = {k: v for k, v in constraints.items() if k != "spacegroup"}
    return [Target.parse(formula, group, **others) for formula, group in lines]


def _describe_options(options: "SampleOptions") -> dict:
    return {name: getattr(options, name) for name in options.set_fields()}


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def models(as_json: bool) -> None:
    """List shipped checkpoints and model families: kind, task, what they condition on, measured figures."""
    from rich.console import Console

    from crystalgen.models import list_models

    infos = list_models()
    if as_json:
        click.echo(json.dumps([asdict(i) for i in infos], indent=2))
        return
    from rich.table import Table

    table = Table("name", "family", "kind / task", "conditions on", "dataset / protocol", "measured (card)", box=None,
                  highlight=False)
    for info in infos:
        metrics = "\n".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in info.metrics.items())
        where = f"{info.dataset} / {info.protocol}" if info.protocol else ("family" if info.path is None else "-")
        table.add_row(f"[bold]{info.name}[/bold]", info.family, f"{info.kind} / {info.task}",
                      ", ".join(info.conditions) or "-", where, metrics or "-")
    console = Console(highlight=False)
    if not console.is_terminal:  # piped: no terminal width to respect, so do not truncate
        console = Console(highlight=False, width=PIPED_WIDTH)
    console.print(table)
