"""Checkpoint folders: ``model.safetensors`` + ``config.yaml`` + ``card.md``.

Nothing here unpickles: weights are safetensors, the config is YAML read with ``safe_load``, and
the card's measured metrics sit in a YAML front-matter block at the top of ``card.md``::

    ---
    metrics:
      perov_5_csp_k1_match_rate: 0.52
    ---
    # Model card ...
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from crystalgen.errors import CrystalgenInputError
from crystalgen.runs import atomic_write_text

WEIGHTS_FILE, CONFIG_FILE, CARD_FILE = "model.safetensors", "config.yaml", "card.md"
_FRONT_MATTER = re.compile(r"\A---\n(.*?)\n---\n", re.DOTALL)


def checkpoints_dir() -> Path:
    """The repository's shipped ``checkpoints/`` folder."""
    return Path(__file__).resolve().parents[2] / "checkpoints"


def is_checkpoint(path: Path) -> bool:
    return (path / CONFIG_FILE).is_file()


def write_checkpoint(directory: str | os.PathLike, config: dict, tensors: dict[str, Any], card: str) -> Path:
    """Write a checkpoint folder; each file goes to a temp name first and is renamed into place."""
    from safetensors.numpy import save_file

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    arrays = {k: np.ascontiguousarray(v.detach().cpu().numpy() if hasattr(v, "detach") else v) for k, v in tensors.items()}
    tmp = directory / f".{WEIGHTS_FILE}.tmp"
    save_file(arrays, str(tmp))
    os.replace(tmp, directory / WEIGHTS_FILE)
    atomic_write_text(directory / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))
    atomic_write_text(directory / CARD_FILE, card)
    return directory


def read_checkpoint(directory: str | os.PathLike) -> tuple[dict, dict[str, np.ndarray], str]:
    """Config, weights (numpy) and card text of a checkpoint folder."""
    from safetensors.numpy import load_file

    directory = Path(directory)
    if not is_checkpoint(directory):
        raise CrystalgenInputError(f"not a checkpoint folder (no {CONFIG_FILE}): {directory}")
    try:
        config = yaml.safe_load((directory / CONFIG_FILE).read_text()) or {}
        tensors = load_file(str(directory / WEIGHTS_FILE)) if (directory / WEIGHTS_FILE).is_file() else {}
    except Exception as exc:
        raise CrystalgenInputError(f"corrupt checkpoint {directory}: {str(exc).splitlines()[0]}") from None
    card = (directory / CARD_FILE).read_text() if (directory / CARD_FILE).is_file() else ""
    return config, tensors, card


def card_metrics(card: str) -> dict[str, Any]:
    """The ``metrics`` mapping of a card's front matter (empty if none)."""
    match = _FRONT_MATTER.match(card)
    if not match:
        return {}
    front = yaml.safe_load(match.group(1)) or {}
    return dict(front.get("metrics") or {})


def set_card_metrics(card: str, metrics: dict[str, Any]) -> str:
    """Replace (or add) the front-matter ``metrics`` of a card, keeping the body."""
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
