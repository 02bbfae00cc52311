"""Model families, and how a model name resolves to a ready model.

A family is registered as ``name -> "module:Class"`` and imported only when it is used (so
importing the registry, or reading a checkpoint's config, does not import torch; listing models
asks each family class for its capabilities, which does). A model is addressed by:

* a checkpoint folder path (anything with a ``config.yaml``);
* the name of a shipped checkpoint (``checkpoints/<name>/``);
* a registered family name (an unfitted model that must be fitted first).

Adding a family: one :class:`FamilyEntry` line in :data:`FAMILIES`.
"""

from __future__ import annotations

import importlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from crystalgen.errors import CrystalgenInputError
from crystalgen.models.base import GENERATOR, PROPERTY
from crystalgen.models.store import read_checkpoint, resolve_checkpoint, shipped_checkpoints, write_checkpoint

if TYPE_CHECKING:
    from crystalgen.models.base import Model


@dataclass(frozen=True)
class FamilyEntry:
    name: str
    kind: str
    #: ``"package.module:Class"``, imported on first use.
    target: str

    def load(self) -> type["Model"]:
        module, _, attribute = self.target.partition(":")
        return getattr(importlib.import_module(module), attribute)


#: family name -> where its class lives. Add a new family here.
FAMILIES: dict[str, FamilyEntry] = {entry.name: entry for entry in (
    FamilyEntry("template", GENERATOR, "crystalgen.generators.template:TemplateGenerator"),
    FamilyEntry("diffusion", GENERATOR, "crystalgen.generators.diffusion:DiffusionGenerator"),
    FamilyEntry("wyckoff", GENERATOR, "crystalgen.generators.wyckoff:WyckoffGenerator"),
    FamilyEntry("autoregressive", GENERATOR, "crystalgen.generators.autoregressive:AutoregressiveGenerator"),
    FamilyEntry("voxel", GENERATOR, "crystalgen.generators.voxel_vae:VoxelVAEGenerator"),
    FamilyEntry("surrogate", PROPERTY, "crystalgen.surrogate.predictor:Surrogate"),
    FamilyEntry("oracle", PROPERTY, "crystalgen.design.oracle:Oracle"),
)}

_KIND_USE = {GENERATOR: "sample from it with `crystalgen sample`",
             PROPERTY: "use it with `crystalgen filter --surrogate`, `crystalgen benchmark surrogate` or as a design oracle"}


@dataclass
class ModelInfo:
    """What ``crystalgen models`` shows about a checkpoint or a family."""

    name: str
    family: str
    kind: str
    task: str
    conditions: list[str] = field(default_factory=list)
    dataset: str | None = None
    protocol: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    path: str | None = None
    #: The reference method other models' reports show beside them.
    baseline: bool = False


def family_entry(family: Any, kind: str | None = None) -> FamilyEntry:
    """The registered family, checked against the kind of model the caller needs."""
    entry = FAMILIES.get(family) if isinstance(family, str) else None
    if entry is None:
        raise CrystalgenInputError(f"unknown model family {family!r}; families: {', '.join(FAMILIES)}")
    if kind is not None and entry.kind != kind:
        raise CrystalgenInputError(f"a {entry.name} model is a {entry.kind} model, not a {kind} model; "
                                   f"{_KIND_USE[entry.kind]}")
    return entry


def build_model(config: dict[str, Any], kind: str | None = None) -> "Model":
    """An unfitted model of the family ``config["family"]`` with that config."""
    cls = family_entry(config.get("family"), kind).load()
    return cls({k: v for k, v in config.items() if k != "family"})


def load_model(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None,
               kind: str | None = GENERATOR) -> "Model":
    """A model from a checkpoint path, a shipped checkpoint name, or a family name (unfitted).

    ``kind`` is the kind of model the caller needs (``generator`` by default, ``property``, or
    ``None`` for either); any other is refused with a one-line error.
    """
    folder = resolve_checkpoint(name_or_path)
    if folder is not None:
        checkpoint = read_checkpoint(folder)
        model = build_model(checkpoint.config, kind)
        try:
            model.load_state(checkpoint.tensors, data_dir)
        except CrystalgenInputError as exc:
            raise type(exc)(f"checkpoint {folder}: {exc}") from None
        return model
    if str(name_or_path) in FAMILIES:
        return build_model({"family": str(name_or_path), "name": str(name_or_path)}, kind)
    if Path(name_or_path).is_dir():
        raise CrystalgenInputError(f"not a checkpoint folder (no config.yaml): {name_or_path}")
    known = ", ".join(info.name for info in list_models(kind) if info.path is not None)
    what = f"{kind} model" if kind else "model"
    raise CrystalgenInputError(f"unknown {what} {str(name_or_path)!r}: not a checkpoint folder, a shipped checkpoint "
                               f"or a family; shipped: {known} (see `crystalgen models`)")


def save_model(model: "Model", directory: str | os.PathLike, card: str) -> Path:
    """Write ``model`` as a checkpoint folder that :func:`load_model` reads back."""
    return write_checkpoint(directory, model.checkpoint_config(), model.state(), card)


def list_models(kind: str | None = None) -> list[ModelInfo]:
    """Shipped checkpoints first, then each registered family once (optionally of one ``kind``)."""
    infos = []
    for folder in shipped_checkpoints():
        checkpoint = read_checkpoint(folder, weights=False)
        entry = family_entry(checkpoint.family)
        if kind in (None, entry.kind):
            config = checkpoint.config
            infos.append(_info(entry, config.get("name", folder.name), config, checkpoint.metrics, str(folder)))
    for entry in FAMILIES.values():
        if kind in (None, entry.kind):
            infos.append(_info(entry, entry.name, {}, {}, None))
    return infos


def _info(entry: FamilyEntry, name: str, config: dict[str, Any], metrics: dict[str, Any], path: str | None) -> ModelInfo:
    capabilities = entry.load().capabilities_for(config)
    return ModelInfo(name, entry.name, entry.kind, capabilities.task_label, sorted(capabilities.conditions),
                     config.get("dataset"), config.get("protocol"), metrics, path, capabilities.baseline)

