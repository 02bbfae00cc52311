"""Checkpoint folders, for every kind of model: ``model.safetensors`` + ``config.yaml`` + ``card.md``.

Nothing here unpickles: weights are safetensors, the config is YAML read with ``safe_load``, and
the card's measured metrics sit in a YAML front-matter block at the top of ``card.md``::

    ---
    metrics:
      perov_5_csp_k1_match_rate: 0.52
    ---
    # Model card ...

A model is addressed by a checkpoint folder path or by the name of a shipped checkpoint
(``checkpoints/<name>/``, see :mod:`crystalgen.resources`).
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystalgen.errors import CrystalgenInputError, first_line
from crystalgen.resources import checkpoints_dir

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.yaml", "card.md"
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


@dataclass
class Checkpoint:
    """What a checkpoint folder holds; ``tensors`` is empty when only the config was read."""

    path: Path
    config: dict[str, Any]
    card: str
    tensors: dict[str, Any]

    @property
    def family(self) -> str:
        return str(self.config.get("family", ""))

    @property
    def metrics(self) -> dict[str, Any]:
        return card_metrics(self.card)


def is_checkpoint(path: Path) -> bool:
    """A folder with a ``config.yaml`` (whether that config is readable is :func:`read_checkpoint`'s to say)."""
    return (path / CONFIG_FILE).exists()


def shipped_checkpoints() -> list[Path]:
    """The shipped checkpoint folders, sorted by name."""
    root = checkpoints_dir()
    return sorted(p for p in root.iterdir() if is_checkpoint(p)) if root.is_dir() else []


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path | None:
    """The checkpoint folder a model name refers to, or ``None`` if it is not a checkpoint."""
    path = Path(name_or_path)
    if is_checkpoint(path):
        return path
    shipped = checkpoints_dir() / str(name_or_path)
    return shipped if is_checkpoint(shipped) else None


def read_checkpoint(directory: str | os.PathLike, weights: bool = True) -> Checkpoint:
    """A checkpoint folder's config, card and (unless ``weights=False``) its tensors as numpy arrays."""
    from crystalgen.config_sections import read_yaml_mapping
    from crystalgen.io import read_text_file

    directory = Path(directory)
    if not is_checkpoint(directory):
        raise CrystalgenInputError(f"not a checkpoint folder (no {CONFIG_FILE}): {directory}")
    config = read_yaml_mapping(directory / CONFIG_FILE, "a checkpoint config")
    if not isinstance(config.get("family"), str):
        raise CrystalgenInputError(f"{directory / CONFIG_FILE}: a checkpoint config names its 'family'")
    card_file = directory / CARD_FILE
    card = read_text_file(card_file, "a model card", allow_empty=True) if card_file.is_file() else ""
    tensors = _read_weights(directory / WEIGHTS_FILE) if weights else {}
    return Checkpoint(directory, config, card, tensors)


def _read_weights(path: Path) -> dict[str, Any]:
    from safetensors.numpy import load

    from crystalgen.io import read_file_bytes

    if not path.exists():
        raise CrystalgenInputError(f"checkpoint {path.parent} has no {WEIGHTS_FILE}")
    data = read_file_bytes(path, "checkpoint weights (safetensors)")
    if not data:
        raise CrystalgenInputError(f"{path}: empty file, expected checkpoint weights (safetensors)")
    try:
        return load(data)
    except Exception as exc:  # safetensors raises its own error types for truncated or foreign files
        raise CrystalgenInputError(f"{path}: not a safetensors weights file, or a truncated one "
                                   f"({first_line(exc)})") from None


def write_checkpoint(directory: str | os.PathLike, config: dict, tensors: dict[str, Any], card: str) -> Path:
    """Write a checkpoint folder; each file goes to a temp name first and is renamed into place."""
    import numpy as np
    import yaml
    from safetensors.numpy import save_file

    from crystalgen.runs import atomic_write_text

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in tensors.items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(arrays, str(tmp))
    os.replace(tmp, directory / WEIGHTS_FILE)
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(directory / CARD_FILE, card)
    return directory


# ---------------------------------------------------------------------------------- cards
def card_metrics(card: str) -> dict[str, Any]:
    """The ``metrics`` mapping of a card's front matter (empty if none or unreadable)."""
    import yaml

    match = _FRONT_MATTER.match(card)
    if not match:
        return {}
    try:
        front = yaml.safe_load(match.group(1)) or {}
    except yaml.YAMLError:
        return {}
    metrics = front.get("metrics") if isinstance(front, dict) else None
    return dict(metrics) if isinstance(metrics, dict) else {}


def set_card_metrics(card: str, metrics: dict[str, Any]) -> str:
    """Replace (or add) the front-matter ``metrics`` of a card, keeping the body."""
    import yaml

    body = _FRONT_MATTER.sub("", card, count=1)
    front = yaml.safe_dump({"metrics": metrics}, sort_keys=True).strip()
    return f"---\n{front}\n---\n{body}"


def set_card_section(card: str, title: str, body: str) -> str:
    """Replace the body of the card's ``## title`` section (up to the next ``## ``), or append the section."""
    heading = f"## {title}"
    lines = card.rstrip("\n").split("\n")
    try:
        start = lines.index(heading)
    except ValueError:
        return f"{card.rstrip()}\n\n{heading}\n\n{body.strip()}\n"
    end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")), len(lines))
    new = lines[: start + 1] + ["", body.strip(), ""] + lines[end:]
    return "\n".join(new).rstrip("\n") + "\n"


def update_card_file(path: Path, section: str, values: dict[str, Any], body: str) -> None:
    """Merge ``values`` into a card's front-matter metrics and (re)write its ``## section``."""
    from crystalgen.runs import atomic_write_text

    card = path.read_text() if path.is_file() else ""
    card = set_card_metrics(card, {**card_metrics(card), **values})
    atomic_write_text(path, set_card_section(card, section, body))
