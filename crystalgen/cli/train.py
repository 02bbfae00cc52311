"""``crystalgen train``: fit a generator (or, with ``family: surrogate``, a surrogate property
model) from a model config; OUT becomes its checkpoint folder.

Learned families also keep their resumable training state (``train_state.safetensors``) and
training log (``metrics.csv``) in OUT, so ``--resume`` continues an interrupted run. For several
processes, launch the same command under torchrun::

    torchrun --standalone --nproc_per_node 2 -m crystalgen train --config ... --out runs/NAME
"""

from __future__ import annotations

import csv
import time
from types import SimpleNamespace
from pathlib import Path

import click

from crystalgen.cli.data import data_dir_option
from crystalgen.models.base import DEVICES

#: Rows of the training log reproduced in the card (evenly spaced, last row included).
CARD_CURVE_ROWS = 12
SECONDS_PER_MINUTE = 60.0


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model config, e.g. configs/models/diffusion-perov_5.yaml.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True,
              help="Run folder: training state, log and, at the end, the checkpoint.")
@click.option("--resume", is_flag=True, help="Continue the training state in OUT.")
@click.option("--time-limit", type=click.FloatRange(min=0.1), default=None,
              help="Stop after this many minutes (state saved; continue with --resume).")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch (default: all).")
@click.option("--device", type=click.Choice(DEVICES), default="auto", show_default=True,
              help="Where to train: auto picks CUDA when a GPU is visible.")
@click.option("--bf16", is_flag=True, help="bf16 autocast of the forward pass (needs a CUDA device).")
@data_dir_option
def train(config_path: Path, out: Path, resume: bool, time_limit: float | None, threads: int | None, device: str,
          bf16: bool, data_dir: str | None) -> None:
    """Fit the model described by a config on its data protocol and save it to OUT.

    Any family in `crystalgen models` can be trained this way; families learned by gradient
    descent keep a resumable state in OUT. Surrogates are also calibrated on the protocol's
    held-out split before they are saved."""
    from crystalgen.config_sections import read_yaml_mapping
    from crystalgen.data import load_protocol
    from crystalgen.errors import CrystalgenInputError
    from crystalgen.models import TrainingRun, build_model, save_model
    from crystalgen.models.store import set_card_metrics
    from crystalgen.training.state import STATE_FILE

    config = read_yaml_mapping(config_path, "a model config (family, protocol, ...)")
    if "protocol" not in config:
        raise CrystalgenInputError(f"{config_path}: the config needs a 'protocol'")
    if (out / STATE_FILE).is_file() and not resume:
        raise CrystalgenInputError(f"{out} already holds a training run; pass --resume to continue it or pick another --out")
    if resume and not (out / STATE_FILE).is_file():
        raise CrystalgenInputError(f"--resume: no training state in {out}")
    try:
        protocol = load_protocol(config["protocol"])
    except CrystalgenInputError as exc:
        raise CrystalgenInputError(f"{config_path}: protocol: {exc}") from None
    model = build_model(config, kind=None)
    if model.capabilities.trained:
        from crystalgen.devices import resolve_device

        if resolve_device(device).type != "cuda" and bf16:  # a missing GPU is refused before the data are loaded
            raise CrystalgenInputError("--bf16 needs a CUDA device; bf16 autocast is for GPUs")
    else:
        given = [flag for flag, on in (("--device cuda", device == "cuda"), ("--bf16", bf16),
                                       ("--time-limit", time_limit is not None)) if on]
        if given:
            raise CrystalgenInputError(f"{', '.join(given)}: a {model.family} model is fitted in one pass, "
                                       "not trained by gradient descent")
    if threads:
        import torch

        torch.set_num_threads(threads)
    start = time.perf_counter()
    run = TrainingRun(out, resume, time_limit * SECONDS_PER_MINUTE if time_limit else None, device, bf16)
    model.fit(protocol.name, data_dir, run)
    wall = time.perf_counter() - start
    if not _is_main_process():
        return
    extra = model.after_fit(data_dir)
    card = _card(model, protocol.describe(), wall, config_path, out) + extra
    save_model(model, out, set_card_metrics(card, model.measured_metrics) if model.measured_metrics else card)
    summary = model.training_summary
    if summary and not summary["finished"]:
        click.echo(f"stopped at step {summary['steps']} of {summary['config']['steps']}; "
                   f"continue with: crystalgen train --config {config_path} --out {out} --resume", err=True)
    click.echo(f"wrote {out} ({wall:.1f} s)", err=True)


def _is_main_process() -> bool:
    import os

    return int(os.environ.get("RANK", "0")) == 0


def _machine() -> str:
    from crystalgen.runs import machine_description

    info = machine_description()
    gpu = f", GPU {info['gpu']}" if info.get("gpu") else ", no GPU"
    return f"{info['cpu']} ({info['cores']} cores){gpu}; torch {info.get('torch')}, Python {info['python']}"


def _card(model, protocol: str, wall_s: float, config_path: Path, out: Path) -> str:
    from crystalgen import __version__
    from crystalgen.training.trainer import LOG_FILE

    capabilities = model.capabilities
    header = f"""# {model.name}

- **Family:** {model.family} (task: {capabilities.task_label})
- **Data protocol:** {protocol}
- **Trained with:** `crystalgen train --config {config_path.as_posix()}` (crystalgen {__version__})
- **Machine:** {_machine()}
"""
    body = header
    summary = model.training_summary
    if summary:
        body += _training_lines(model, summary)
    body += model.card_notes(wall_s)
    if summary:
        body += f"\n## Training curve\n\n{_curve_table(out / LOG_FILE)}\n"
    for task in sorted(capabilities.tasks):
        body += f"""
## {_metrics_section(task)}

None measured yet for this checkpoint: `crystalgen benchmark {task} --update-card` fills the
front matter and this section once run on the full test split.
"""
    return body


def _training_lines(model, summary: dict) -> str:
    train_config = SimpleNamespace(**summary["config"])  # the TrainConfig the run used
    status = "finished" if summary["finished"] else f"**unfinished** (stopped at step {summary['steps']})"
    processes = summary["processes"]
    structures = summary["steps"] * train_config.batch_size * processes
    rate = structures / summary["wall_s"] if summary["wall_s"] > 0 else float("nan")
    return f"""- **Architecture:** {model.describe_architecture()}
- **Training:** {summary['steps']:,} of {train_config.steps:,} steps ({status}), batch {train_config.batch_size}
  per process x {processes} process(es) on {summary.get('device', 'cpu')}, AdamW lr {train_config.lr} ({train_config.lr_schedule}), EMA decay {train_config.ema_decay}, seed {train_config.seed};
  {summary['train_structures']:,} training structures (about {structures / summary['train_structures']:.1f} epochs)
- **Training wall time:** {summary['wall_s'] / SECONDS_PER_MINUTE:.1f} min of training steps, summed over resumed
  sessions (data loading and time lost to interruptions not included)
- **Training throughput:** {rate:.0f} structures/s on the machine above
- **Weights:** the EMA copy, float32
"""


def _metrics_section(task: str) -> str:
    """The card section ``benchmark csp|gen --update-card`` rewrites, so the placeholder is replaced, not duplicated."""
    from crystalgen.benchmarks.csp import CARD_SECTION as CSP_SECTION
    from crystalgen.benchmarks.gen import CARD_SECTION as GEN_SECTION

    return GEN_SECTION if task == "gen" else CSP_SECTION


def _curve_table(log: Path) -> str:
    """A Markdown table of evenly spaced rows of the training log."""
    if not log.is_file():
        return "No training log."
    with open(log, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows:
        return "No training log."
    picks = sorted({round(i * (len(rows) - 1) / (CARD_CURVE_ROWS - 1)) for i in range(CARD_CURVE_ROWS)})
    columns = [c for c in rows[0] if c != "grad_norm"]
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for i in picks:
        lines.append("| " + " | ".join(_fmt(rows[i][c]) for c in columns) + " |")
    return "\n".join(lines)


def _fmt(value: str) -> str:
    try:
        number = float(value)
    except ValueError:
        return value
    return f"{number:.0f}" if number.is_integer() or abs(number) >= 100 else f"{number:.4f}"
