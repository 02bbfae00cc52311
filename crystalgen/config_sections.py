"""Validated config sections: a YAML mapping checked against a dataclass's fields and defaults,
with a one-line error for an unknown key, a wrong type or a wrong sign."""

from __future__ import annotations

import os
from dataclasses import fields
from pathlib import Path
from typing import Any

from crystalgen.errors import CrystalgenInputError

#: Settings that may be zero; every other number must be positive.
MAY_BE_ZERO = frozenset({"weight_decay", "seed", "corrector_steps", "lattice_loss_weight", "type_loss_weight",
                         "warmup_steps", "max_e_above_hull"})


def checked_section(section: str, values: Any, allowed: dict[str, Any]) -> dict[str, Any]:
    """Validate a config section against ``allowed`` (name -> default): known keys, the default's
    type (an int may stand for a float), and a sign; a one-line error otherwise."""
    if values is None:
        return {}
    if not isinstance(values, dict):
        raise CrystalgenInputError(f"config section {section!r} must be a mapping, got {type(values).__name__}")
    unknown = set(values) - set(allowed)
    if unknown:
        raise CrystalgenInputError(f"unknown {section} settings: {', '.join(sorted(map(str, unknown)))}")
    for key, value in values.items():
        default = allowed[key]
        if isinstance(default, bool):
            if not isinstance(value, bool):
                raise CrystalgenInputError(f"{section}.{key} must be true or false, got {value!r}")
            continue
        if isinstance(default, str):
            if not isinstance(value, str):
                raise CrystalgenInputError(f"{section}.{key} must be text, got {value!r}")
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(default, int) and not isinstance(value, int)):
            hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)" if isinstance(value, str) else ""
            raise CrystalgenInputError(f"{section}.{key} must be {type(default).__name__}, got {value!r}{hint}")
        if value < 0 or (value == 0 and key not in MAY_BE_ZERO):
            raise CrystalgenInputError(f"{section}.{key} must be {'>= 0' if key in MAY_BE_ZERO else '> 0'}, got {value}")
    return dict(values)


def dataclass_defaults(cls: type, keys: set[str] | None = None) -> dict[str, Any]:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls) if keys is None or f.name in keys}


def section_dataclass(config: dict, key: str, cls: type) -> Any:
    """``cls`` built from ``config[key]`` (defaults for what it leaves out), validated."""
    return cls(**checked_section(key, config.get(key), dataclass_defaults(cls)))


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; one-line errors for a missing file, bad YAML or a non-mapping."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise CrystalgenInputError(f"file not found: {path}")
    try:
        loaded = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise CrystalgenInputError(f"{path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if not isinstance(loaded, dict):
        raise CrystalgenInputError(f"{path}: {what} is a YAML mapping")
    return loaded
