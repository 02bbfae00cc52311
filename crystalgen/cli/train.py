"""``crystalgen train``: fit a generator from a model config and write a checkpoint folder."""

from __future__ import annotations

import os
import platform
import time
from pathlib import Path

import click
import yaml

from crystalgen import __version__
from crystalgen.cli.data import data_dir_option
from crystalgen.data import load_protocol
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.registry import FAMILIES, save_model


@click.command()
@click.option("--config", "config_path", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Model config, e.g. configs/models/template-perov_5.yaml.")
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), required=True, help="Checkpoint folder to write.")
@data_dir_option
def train(config_path: Path, out: Path, data_dir: str | None) -> None:
    """Fit the model described by a config on its data protocol and save it to OUT."""
    if not config_path.is_file():
        raise CrystalgenInputError(f"file not found: {config_path}")
    config = yaml.safe_load(config_path.read_text()) or {}
    family = config.get("family")
    if family not in FAMILIES:
        raise CrystalgenInputError(f"{config_path}: unknown family {family!r}; families: {', '.join(FAMILIES)}")
    if "protocol" not in config:
        raise CrystalgenInputError(f"{config_path}: the config needs a 'protocol'")
    protocol = load_protocol(config["protocol"])
    model = FAMILIES[family]({k: v for k, v in config.items() if k != "family"})
    start = time.perf_counter()
    model.fit(protocol.name, data_dir)
    wall = time.perf_counter() - start
    card = _card(model.name, family, protocol.describe(), wall, config_path)
    save_model(model, out, card)
    click.echo(f"wrote {out} ({wall:.1f} s)", err=True)


def _card(name: str, family: str, protocol: str, wall_s: float, config_path: Path) -> str:
    machine = f"{platform.machine()} CPU, {os.cpu_count()} cores, Python {platform.python_version()}"
    return f"""# {name}

- **Family:** {family}
- **Data protocol:** {protocol}
- **Fitted with:** `crystalgen train --config {config_path.as_posix()}` (crystalgen {__version__})
- **Fit wall time:** {wall_s:.1f} s on {machine} (includes parsing the training CIFs the first time)
- **Steps:** none; the template baseline is not trained by gradient descent. Its only fitted
  parameters are per-element atomic volumes (a ridge least-squares fit of cell volume on element
  counts over the training split), stored in `model.safetensors`. The training structures
  themselves are read from the data directory at load time, never stored here.

## Measured metrics

None measured yet for this checkpoint: the CSP benchmark (`crystalgen benchmark csp`) fills the
front matter of this card once it has been run on the full test split.
"""
