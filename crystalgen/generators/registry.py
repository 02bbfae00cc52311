"""Generator families and how a model name resolves to a ready-to-sample generator.

A model is addressed by:

* a checkpoint folder path (anything with a ``config.yaml``);
* the name of a shipped checkpoint in ``checkpoints/<name>/``;
* a registered family name (an unfitted generator that must be fitted before sampling).
"""

from __future__ import annotations

import os
from pathlib import Path

from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, GeneratorInfo
from crystalgen.generators.checkpoint import (
    card_metrics,
    checkpoints_dir,
    is_checkpoint,
    read_checkpoint,
    write_checkpoint,
)
from crystalgen.generators.diffusion import DiffusionGenerator
from crystalgen.generators.template import TemplateGenerator
from crystalgen.surrogate.predictor import FAMILY as SURROGATE_FAMILY

#: family name -> class. Add a new generator family here.
FAMILIES: dict[str, type[Generator]] = {
    TemplateGenerator.family: TemplateGenerator,
    DiffusionGenerator.family: DiffusionGenerator,
}


#: Checkpoint families that are not generators (listed by ``crystalgen models``, not sampled from).
PROPERTY_MODELS = (SURROGATE_FAMILY,)


def _family_class(family: str) -> type[Generator]:
    try:
        return FAMILIES[family]
    except KeyError:
        if family in PROPERTY_MODELS:
            raise CrystalgenInputError(f"a {family} checkpoint is a property model, not a generator; "
                                       f"use it with `crystalgen filter --surrogate`") from None
        raise CrystalgenInputError(f"unknown generator family {family!r}; families: {', '.join(FAMILIES)}") from None


def resolve_checkpoint(name_or_path: str | os.PathLike) -> Path | None:
    """The checkpoint folder a model name refers to, or ``None`` if it is not a checkpoint."""
    path = Path(name_or_path)
    if is_checkpoint(path):
        return path
    shipped = checkpoints_dir() / str(name_or_path)
    if is_checkpoint(shipped):
        return shipped
    return None


def load_model(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None) -> Generator:
    """A generator from a checkpoint path, a shipped checkpoint name, or a family name."""
    folder = resolve_checkpoint(name_or_path)
    if folder is not None:
        config, tensors, _card = read_checkpoint(folder)
        model = _family_class(config.get("family", ""))(config)
        model.load_state(tensors, data_dir)
        return model
    if str(name_or_path) in FAMILIES:
        return FAMILIES[str(name_or_path)]({"name": str(name_or_path)})
    known = ", ".join([*FAMILIES, *(i.name for i in list_models())])
    raise CrystalgenInputError(f"unknown model {str(name_or_path)!r}; known models: {known}")


def save_model(model: Generator, directory: str | os.PathLike, card: str) -> Path:
    config = {"family": model.family, "task": model.task, **model.config}
    return write_checkpoint(directory, config, model.state(), card)


def list_models() -> list[GeneratorInfo]:
    """Shipped checkpoints first, then the bare families."""
    infos = []
    root = checkpoints_dir()
    for folder in sorted(p for p in root.iterdir() if is_checkpoint(p)) if root.is_dir() else []:
        config, _tensors, card = read_checkpoint(folder)
        infos.append(
            GeneratorInfo(
                name=config.get("name", folder.name),
                family=config.get("family", "?"),
                task=config.get("task", "property" if config.get("family") in PROPERTY_MODELS else "?"),
                dataset=config.get("dataset"),
                protocol=config.get("protocol"),
                metrics=card_metrics(card),
                path=str(folder),
            )
        )
    for family, cls in FAMILIES.items():
        infos.append(GeneratorInfo(family, family, cls.task, None, None, {}, None))
    return infos
