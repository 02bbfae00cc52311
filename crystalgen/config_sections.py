"""Validated config sections: a YAML mapping checked against a dataclass's fields and defaults,
with a one-line error for an unknown key, a wrong type or a wrong sign."""

from __future__ import annotations

import os
from dataclasses import fields
from typing import Any

from crystalgen.errors import CrystalgenInputError, first_line

#: Settings that may be zero; every other number must be positive.
MAY_BE_ZERO = frozenset({"weight_decay", "seed", "corrector_steps", "lattice_loss_weight", "type_loss_weight",
                         "warmup_steps", "max_e_above_hull", "top_k"})


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
        if isinstance(default, tuple):  # layer widths and the like: a non-empty list of positive integers
            if (not isinstance(value, (list, tuple)) or not value
                    or any(not isinstance(v, int) or isinstance(v, bool) or v <= 0 for v in value)):
                raise CrystalgenInputError(f"{section}.{key} must be a list of positive integers, got {value!r}")
            continue
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not number or (isinstance(default, int) and not isinstance(value, int)):
            hint = " (YAML reads 1e-3 as text: write 0.001 or 1.0e-3)" if isinstance(value, str) else ""
            raise CrystalgenInputError(f"{section}.{key} must be {type(default).__name__}, got {value!r}{hint}")
        if value < 0 or (value == 0 and key not in MAY_BE_ZERO):
            raise CrystalgenInputError(f"{section}.{key} must be {'>= 0' if key in MAY_BE_ZERO else '> 0'}, got {value}")
    return {k: tuple(v) if isinstance(allowed[k], tuple) else v for k, v in values.items()}


def dataclass_defaults(cls: type, keys: set[str] | None = None) -> dict[str, Any]:
    instance = cls()
    return {f.name: getattr(instance, f.name) for f in fields(cls) if keys is None or f.name in keys}


def section_dataclass(config: dict, key: str, cls: type) -> Any:
    """``cls`` built from ``config[key]`` (defaults for what it leaves out), validated."""
    return cls(**checked_section(key, config.get(key), dataclass_defaults(cls)))


def read_yaml_mapping(path: str | os.PathLike, what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping (a file of only comments is an empty one); one-line
    errors for a file that cannot be read as text (see :func:`crystalgen.io.read_text_file`),
    is not valid YAML, or holds something other than a mapping."""
    import yaml

    from crystalgen.io import read_text_file

    text = read_text_file(path, what)
    try:
        loaded = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise CrystalgenInputError(f"{path}: not valid YAML ({_yaml_problem(exc)})") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise CrystalgenInputError(f"{path}: {what} is a YAML mapping, not a {_yaml_kind(loaded)}")
    return loaded


def _yaml_problem(exc: Exception) -> str:
    """What is wrong and where: PyYAML's first line ("while scanning for the next token") says neither."""
    problem = getattr(exc, "problem", None)
    mark = getattr(exc, "problem_mark", None)
    if problem and mark is not None:
        return f"{problem} at line {mark.line + 1}, column {mark.column + 1}"
    return first_line(exc)


def _yaml_kind(value: Any) -> str:
    return "list" if isinstance(value, list) else "single value"
