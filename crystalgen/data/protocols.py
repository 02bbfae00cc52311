"""Dataset protocols: which splits a model trains on, selects on and is evaluated on.

Protocols are YAML files in ``configs/data/``, addressed by name (``mp_20_reduced_train``) or by
path. A protocol either names a selection split (``select: val``) or carves a fixed hold-out out
of its training splits (``holdout: {fraction, seed}``). The hold-out is chosen by hashing
``seed:material_id``, so it does not depend on row order and is the same on every machine.
A protocol may also keep only a subset of every split (``subset: {max_atoms, max_elements}``),
so that a model sized for small cells is trained and scored on the same kind of crystal.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path

from crystalgen.config_sections import read_yaml_mapping
from crystalgen.crystal import Crystal
from crystalgen.data.loading import load_split
from crystalgen.data.registry import get_dataset
from crystalgen.errors import CrystalgenInputError, DatasetError, first_line
from crystalgen.resources import configs_dir


@dataclass(frozen=True)
class Holdout:
    fraction: float
    seed: int


@dataclass(frozen=True)
class Subset:
    """Crystals every split of a protocol keeps (``None``: no limit)."""

    max_atoms: int | None = None
    max_elements: int | None = None

    def keeps(self, crystal: Crystal) -> bool:
        return ((self.max_atoms is None or crystal.num_atoms <= self.max_atoms)
                and (self.max_elements is None or len(set(crystal.atomic_numbers.tolist())) <= self.max_elements))

    def describe(self) -> str:
        limits = [f"at most {self.max_atoms} atoms" if self.max_atoms else "",
                  f"at most {self.max_elements} elements" if self.max_elements else ""]
        return "crystals with " + " and ".join(limit for limit in limits if limit)


@dataclass(frozen=True)
class DataProtocol:
    """Which splits to train, select and evaluate on."""

    name: str
    title: str
    dataset: str
    train: tuple[str, ...]
    test: str
    select: str | None = None
    holdout: Holdout | None = None
    subset: Subset | None = None
    source: str = ""

    def __post_init__(self) -> None:
        spec = get_dataset(self.dataset)
        for split in (*self.train, self.test, *([self.select] if self.select else [])):
            spec.split(split)
        if (self.select is None) == (self.holdout is None):
            raise DatasetError(f"protocol {self.name!r} needs exactly one of 'select' or 'holdout'")
        if self.holdout and not 0.0 < self.holdout.fraction < 1.0:
            raise DatasetError(f"protocol {self.name!r}: holdout fraction must be in (0, 1)")
        if self.subset and any(limit is not None and limit < 1
                               for limit in (self.subset.max_atoms, self.subset.max_elements)):
            raise DatasetError(f"protocol {self.name!r}: subset limits must be positive")

    def load(self, data_dir: str | os.PathLike | None = None, include_test: bool = True) -> "ProtocolData":
        """Load the train / select / test structures of this protocol."""
        pool = [c for split in self.train for c in self._split(split, data_dir)]
        if self.holdout is not None:
            held = set(holdout_ids([c.id for c in pool], self.holdout.fraction, self.holdout.seed))
            train = [c for c in pool if c.id not in held]
            select = [c for c in pool if c.id in held]
        else:
            train, select = pool, self._split(self.select, data_dir)
        test = self._split(self.test, data_dir) if include_test else []
        return ProtocolData(self, train, select, test)

    def _split(self, split: str, data_dir: str | os.PathLike | None) -> list[Crystal]:
        crystals = load_split(self.dataset, split, data_dir)
        return [c for c in crystals if self.subset.keeps(c)] if self.subset else crystals

    def describe(self) -> str:
        if self.holdout:
            selection = f"a fixed {self.holdout.fraction:.0%} hold-out of the training splits (seed {self.holdout.seed})"
        else:
            selection = self.select
        subset = f" ({self.subset.describe()} in every split)" if self.subset else ""
        return (f"{self.title}: train on {' + '.join(self.train)}, select on {selection}, evaluate on "
                f"{self.test}{subset}")


@dataclass
class ProtocolData:
    protocol: DataProtocol
    train: list[Crystal]
    select: list[Crystal]
    test: list[Crystal] = field(default_factory=list)


def holdout_ids(ids: list[str | None], fraction: float, seed: int) -> list[str]:
    """The ``round(fraction * n)`` ids whose ``sha256(seed:id)`` sort first."""
    keyed = sorted((hashlib.sha256(f"{seed}:{i}".encode()).hexdigest(), str(i)) for i in ids)
    return [i for _, i in keyed[: round(fraction * len(ids))]]


def list_protocols() -> list[str]:
    return sorted(p.stem for p in (configs_dir() / "data").glob("*.yaml"))


def load_protocol(name_or_path: str | os.PathLike) -> DataProtocol:
    """A protocol by name (``configs/data/<name>.yaml``) or by path to a YAML file."""
    if not isinstance(name_or_path, (str, os.PathLike)):  # e.g. `protocol: [perov_5]` in a model config
        raise DatasetError(f"a protocol is a name or the path of a YAML file, got {name_or_path!r}")
    path = Path(name_or_path)
    if not path.suffix:
        path = configs_dir() / "data" / f"{name_or_path}.yaml"
    if not path.exists():
        known = ", ".join(list_protocols())
        raise DatasetError(f"unknown protocol {str(name_or_path)!r}; known protocols: {known}")
    raw = read_yaml_mapping(path, "a data protocol (name, dataset, train, test, ...)")
    try:
        holdout = raw.get("holdout")
        subset = raw.get("subset")
        train = raw["train"]
        return DataProtocol(
            name=raw["name"],
            title=raw.get("title", raw["name"]),
            dataset=raw["dataset"],
            train=(train,) if isinstance(train, str) else tuple(train),
            test=raw["test"],
            select=raw.get("select"),
            holdout=Holdout(float(holdout["fraction"]), int(holdout["seed"])) if holdout else None,
            subset=_subset(subset) if subset is not None else None,
            source=str(path),
        )
    except CrystalgenInputError as exc:  # an unknown dataset or split, or both or neither of select/holdout
        raise DatasetError(f"{path}: {exc}") from None
    except KeyError as exc:
        raise DatasetError(f"malformed protocol file {path}: no {exc} key") from None
    except (TypeError, ValueError) as exc:
        raise DatasetError(f"malformed protocol file {path}: {first_line(exc)}") from None


def _subset(raw: object) -> Subset:
    if not isinstance(raw, dict) or not raw or set(raw) - {"max_atoms", "max_elements"}:
        raise ValueError(f"subset is a mapping of max_atoms and/or max_elements, got {raw!r}")
    return Subset(**{key: int(value) for key, value in raw.items()})


def load_training_split(name_or_path: str | os.PathLike, data_dir: str | os.PathLike | None = None
                        ) -> tuple[DataProtocol, list]:
    """A protocol and its training crystals (what every model's ``fit`` starts from)."""
    spec = load_protocol(name_or_path)
    return spec, spec.load(data_dir, include_test=False).train
