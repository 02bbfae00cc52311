"""The filter's stages. Each is a small class: a name, the columns it adds, and ``evaluate`` on a
chunk of candidates, returning those columns and a pass/fail per candidate.

Stages see chunks in input order and may keep state across chunks (the duplicate tracker does),
which is what lets the pipeline write results incrementally and resume. A stage that keeps no such
state and costs far more per structure than sending the structure away (StructureMatcher, CHGNet)
is ``distributable``: the pipeline may split its chunks over a process pool or a Dask cluster
(``crystalgen.executors``), each part evaluated by ``evaluate_part`` on ``stage.portable(part)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.filters.hull import ReferenceHull
from crystalgen.metrics.matching import MatcherConfig, structures_match
from crystalgen.metrics.validity import ValidityConfig, composition_key, smact_valid, structural_validity


@dataclass
class StageResult:
    columns: dict[str, np.ndarray]
    passed: np.ndarray  # (n,) bool


class Stage(ABC):
    #: Used in ``reject_reason`` and the funnel.
    name: str
    columns: tuple[str, ...]
    #: Evaluate only candidates that passed every earlier stage (for expensive stages).
    only_survivors: bool = False
    #: Largest chunk the pipeline should give this stage between two saves (None: the default).
    chunk_rows: int | None = None
    #: Keeps no state across chunks and is worth evaluating in other processes or machines.
    distributable: bool = False

    @abstractmethod
    def evaluate(self, crystals: Sequence[Crystal], row_ids: Sequence[int]) -> StageResult:
        """Columns and verdicts for ``crystals`` (``row_ids``: their positions in the whole input)."""

    def restore(self, crystals: Sequence[Crystal], row_ids: Sequence[int], rows: Sequence[dict[str, str]]) -> None:
        """Rebuild cross-chunk state from rows an earlier, interrupted run already wrote."""

    def portable(self, crystals: Sequence[Crystal]) -> "Stage":
        """What a worker needs to evaluate ``crystals`` (pickled for it): by default the stage itself."""
        return self


def evaluate_part(stage: Stage, crystals: Sequence[Crystal], row_ids: Sequence[int]) -> StageResult:
    """One worker's share of a chunk."""
    from crystalgen.executors import hold_worker_to_one_thread

    hold_worker_to_one_thread()
    return stage.evaluate(crystals, row_ids)


def join_results(parts: Sequence[StageResult]) -> StageResult:
    """The results of consecutive parts of a chunk, as one result for the whole chunk."""
    columns = {name: np.concatenate([part.columns[name] for part in parts]) for name in parts[0].columns}
    return StageResult(columns, np.concatenate([part.passed for part in parts]))


class StructuralValidity(Stage):
    name, columns = "structural", ("valid_struct",)

    def __init__(self, config: ValidityConfig = ValidityConfig()):
        self.config = config

    def evaluate(self, crystals, row_ids):
        valid = np.array([structural_validity(c, self.config) for c in crystals], dtype=bool)
        return StageResult({"valid_struct": valid}, valid)


class CompositionValidity(Stage):
    """SMACT charge neutrality and electronegativity (``smact14`` table), as the benchmark protocol."""

    name, columns = "composition", ("valid_comp",)

    def evaluate(self, crystals, row_ids):
        valid = np.array([smact_valid(c) for c in crystals], dtype=bool)
        return StageResult({"valid_comp": valid}, valid)


class Uniqueness(Stage):
    """A candidate is a duplicate if it matches an earlier unique candidate of the same composition.

    Only candidates that passed the earlier stages take part, so a broken first copy does not make
    a valid later one a duplicate. ``duplicate_of`` is the 0-based input row of the earlier copy
    (-1: unique)."""

    name, columns = "uniqueness", ("is_unique", "duplicate_of")
    only_survivors = True

    def __init__(self, matcher: MatcherConfig = MatcherConfig()):
        self.matcher = matcher
        self.representatives: dict[tuple, list[tuple[int, Crystal]]] = defaultdict(list)

    def _duplicate_of(self, row_id: int, crystal: Crystal) -> int:
        key = composition_key(crystal)
        for earlier_id, earlier in self.representatives[key]:
            if structures_match(crystal, earlier, self.matcher):
                return earlier_id
        self.representatives[key].append((row_id, crystal))
        return -1

    def evaluate(self, crystals, row_ids):
        duplicate_of = np.array([self._duplicate_of(i, c) for i, c in zip(row_ids, crystals)], dtype=np.int64)
        return StageResult({"is_unique": duplicate_of < 0, "duplicate_of": duplicate_of}, duplicate_of < 0)

    def restore(self, crystals, row_ids, rows):
        for row_id, crystal, row in zip(row_ids, crystals, rows):
            if row.get("is_unique") == "True":
                self.representatives[composition_key(crystal)].append((row_id, crystal))


class Novelty(Stage):
    """A candidate is novel if it matches no training structure of the same composition."""

    name, columns = "novelty", ("is_novel",)
    distributable = True

    def __init__(self, train: Sequence[Crystal], matcher: MatcherConfig = MatcherConfig()):
        self.matcher = matcher
        self.train_by_composition: dict[tuple, list[Crystal]] = defaultdict(list)
        for crystal in train:
            self.train_by_composition[composition_key(crystal)].append(crystal)

    def portable(self, crystals):
        # only the training structures these candidates can match travel, not the whole split
        keys = {composition_key(c) for c in crystals}
        return Novelty([t for key in keys for t in self.train_by_composition.get(key, ())], self.matcher)

    def evaluate(self, crystals, row_ids):
        novel = np.array([not any(structures_match(c, t, self.matcher)
                                  for t in self.train_by_composition.get(composition_key(c), ()))
                          for c in crystals], dtype=bool)
        return StageResult({"is_novel": novel}, novel)


class Stability(Stage):
    """Surrogate energy per atom (with its ensemble std), then the energy above the reference hull."""

    name = "stability"

    def __init__(self, surrogate, hull: ReferenceHull, energy_property: str, max_e_above_hull: float):
        self.surrogate, self.hull, self.energy_property = surrogate, hull, energy_property
        self.max_e_above_hull = max_e_above_hull
        self.columns = (*(c for p in surrogate.properties for c in (f"pred_{p}", f"pred_{p}_std")),
                        "e_above_hull_est", "e_above_hull_std")

    def evaluate(self, crystals, row_ids):
        predictions = self.surrogate.predict(crystals)
        columns = {}
        for name, (mean, std) in predictions.items():
            columns[f"pred_{name}"], columns[f"pred_{name}_std"] = mean, std
        energy, spread = predictions[self.energy_property]
        above = self.hull.energy_above_hull(crystals, energy)
        columns["e_above_hull_est"], columns["e_above_hull_std"] = above, spread
        return StageResult(columns, np.nan_to_num(above, nan=np.inf) <= self.max_e_above_hull)
