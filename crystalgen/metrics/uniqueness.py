"""Uniqueness and novelty of generated structures.

Both use ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``. Two structures can only match
if their reduced compositions are equal, so structures are first grouped by reduced
composition (a cheap exact key) and the matcher runs only inside a group.

* Uniqueness: share of generated structures that match no earlier generated structure. Each
  structure is compared with the first member of every earlier group of duplicates (the
  "representatives"), not with every earlier duplicate: matching is not exactly transitive at
  the tolerance edges, but this keeps mode-collapsed sets (hundreds of copies of one structure)
  linear rather than quadratic, which is what pymatgen's ``group_structures`` does too.
* Novelty: share of generated structures that match no training structure.

Cost grows with the size of composition groups: one-element sets (carbon_24, where every
structure is "C") put everything in one group and need up to n x (number of unique structures)
matcher calls.
"""

from __future__ import annotations

import os
from collections import defaultdict
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.metrics._pool import map_chunks, use_pool
from crystalgen.metrics._util import json_float
from crystalgen.metrics.matching import MatcherConfig, structures_match
from crystalgen.metrics.validity import composition_key

#: Matcher calls (estimated) per pool task.
MATCHES_PER_CHUNK = 64


@dataclass
class UniquenessResult:
    uniqueness: float
    n: int
    n_unique: int
    duplicate_of: np.ndarray  # (n,) index of the earlier structure it matches, -1 if unique

    @property
    def unique(self) -> np.ndarray:
        return self.duplicate_of < 0

    def to_dict(self) -> dict[str, Any]:
        return {"uniqueness": json_float(self.uniqueness), "n": self.n, "n_unique": self.n_unique}


@dataclass
class NoveltyResult:
    novelty: float
    n: int
    n_novel: int
    n_train: int
    match_index: np.ndarray  # (n,) index of a matching training structure, -1 if novel

    @property
    def novel(self) -> np.ndarray:
        return self.match_index < 0

    def to_dict(self) -> dict[str, Any]:
        return {"novelty": json_float(self.novelty), "n": self.n, "n_novel": self.n_novel, "n_train": self.n_train}


def group_by_composition(crystals: Sequence[Crystal]) -> dict[tuple, list[int]]:
    """Indices of the crystals, grouped by reduced composition, in input order within a group."""
    groups: dict[tuple, list[int]] = defaultdict(list)
    for i, crystal in enumerate(crystals):
        groups[composition_key(crystal)].append(i)
    return dict(groups)


# ---------------------------------------------------------------------------------- workers
def _unique_chunk(chunk: tuple[MatcherConfig, list[list[tuple[int, Crystal]]]]) -> list[tuple[int, int]]:
    """Worker: (index, index of the earlier match or -1) for each member of each group."""
    config, groups = chunk
    out = []
    for members in groups:
        representatives: list[tuple[int, Any]] = []
        for index, crystal in members:
            structure = crystal.to_structure()
            match = next((rep for rep, rep_s in representatives if structures_match(structure, rep_s, config)), -1)
            if match < 0:
                representatives.append((index, structure))
            out.append((index, match))
    return out


def _novel_chunk(
    chunk: tuple[MatcherConfig, list[tuple[int, Crystal, list[tuple[int, Crystal]]]]],
) -> list[tuple[int, int]]:
    """Worker: (generated index, index of a matching training structure or -1)."""
    config, tasks = chunk
    out = []
    for index, crystal, candidates in tasks:
        structure = crystal.to_structure()
        match = next((j for j, train in candidates if structures_match(structure, train, config)), -1)
        out.append((index, match))
    return out


def _pack(tasks: list[Any], costs: list[int], budget: int) -> tuple[list[list[Any]], list[int]]:
    """Greedy packing of tasks (most expensive first) into chunks of about ``budget`` cost."""
    order = np.argsort(-np.asarray(costs), kind="stable")
    chunks: list[list[Any]] = []
    sizes: list[int] = []
    current: list[Any] = []
    current_cost = 0
    for i in order:
        current.append(tasks[i])
        current_cost += costs[i]
        if current_cost >= budget:
            chunks.append(current)
            sizes.append(current_cost)
            current, current_cost = [], 0
    if current:
        chunks.append(current)
        sizes.append(current_cost)
    return chunks, sizes


# ---------------------------------------------------------------------------------- public API
def evaluate_uniqueness(
    crystals: Sequence[Crystal],
    config: MatcherConfig = MatcherConfig(),
    workers: int | None = os.cpu_count(),
    pool: Executor | None = None,
    progress: Any = None,
    show_progress: bool = True,
) -> UniquenessResult:
    """Share of structures not matched by an earlier one (compared within composition groups)."""
    n = len(crystals)
    duplicate_of = np.full(n, -1, dtype=np.int64)
    groups = [g for g in group_by_composition(crystals).values() if len(g) > 1]
    tasks = [[(i, crystals[i]) for i in g] for g in groups]
    chunks, costs = _pack(tasks, [len(g) * (len(g) - 1) // 2 for g in groups], MATCHES_PER_CHUNK)
    with use_pool(pool, workers) as executor:
        results = map_chunks(
            _unique_chunk,
            [(config, c) for c in chunks],
            executor,
            "uniqueness",
            progress,
            show_progress,
            weights=[sum(len(g) for g in c) for c in chunks],
        )
    for index, match in results:
        duplicate_of[index] = match
    n_unique = int((duplicate_of < 0).sum())
    return UniquenessResult(n_unique / n if n else float("nan"), n, n_unique, duplicate_of)


def evaluate_novelty(
    generated: Sequence[Crystal],
    train: Sequence[Crystal],
    config: MatcherConfig = MatcherConfig(),
    workers: int | None = os.cpu_count(),
    pool: Executor | None = None,
    progress: Any = None,
    show_progress: bool = True,
) -> NoveltyResult:
    """Share of generated structures that match no training structure of the same composition."""
    n = len(generated)
    train_groups = group_by_composition(train)
    match_index = np.full(n, -1, dtype=np.int64)
    tasks, costs = [], []
    for i, crystal in enumerate(generated):
        candidates = train_groups.get(composition_key(crystal), [])
        if candidates:
            tasks.append((i, crystal, [(j, train[j]) for j in candidates]))
            costs.append(len(candidates))
    chunks, _ = _pack(tasks, costs, MATCHES_PER_CHUNK)
    with use_pool(pool, workers) as executor:
        results = map_chunks(_novel_chunk, [(config, c) for c in chunks], executor, "novelty", progress, show_progress)
    for index, match in results:
        match_index[index] = match
    n_novel = int((match_index < 0).sum())
    return NoveltyResult(n_novel / n if n else float("nan"), n, n_novel, len(train), match_index)
