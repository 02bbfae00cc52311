"""A learned template ranker (CSPML-style): how likely a training template, under one element
mapping, shares the target's structure type, from composition descriptors alone.

Retrieval (:meth:`TemplateGenerator.rank_templates`) proposes templates of the target's
stoichiometry pattern, each under its MAPPINGS_PER_TEMPLATE best element mappings by Mendeleev
numbers, so the ranker also chooses which cation sits on which site. It scores each (target,
template under a mapping) pair with a small MLP on per-element descriptors of both sides
(Mendeleev number, electronegativity, radius, row, group, mass), their differences, the element's
share of the cell, the candidate's place in the Mendeleev order, how common the template's
structure type is in training, and whether that type is a *known polymorph*: the structure type
of a training structure of the target's own composition. The datasets hold each (composition,
structure type) once, so a known polymorph is rarely the answer for another structure of that
composition; the ranker learns how rarely.

It is trained on the training set itself: every training structure in turn is the target, the
candidates retrieval proposes for it (itself left out, also from the known polymorphs) are scored,
and a pair is positive when both have the same structure type: the same space group and, element
by element under the mapping, the same Wyckoff labels, up to the group's Euclidean normalizer
(in Pm-3m, A on 1a and B on 1b is the same structure as A on 1b and B on 1a).
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from functools import lru_cache
from typing import TYPE_CHECKING, Callable, Iterable, Sequence

import numpy as np
import torch
from torch import nn

from crystalgen.constants import MAX_Z

if TYPE_CHECKING:
    from crystalgen.generators.template import TemplateGenerator
    from crystalgen.representations.wyckoff import WyckoffCrystal

#: Elements per composition the features describe; further ones (rare) are left out of the features.
MAX_SLOTS = 8
DESCRIPTORS = ("mendeleev_no", "X", "atomic_radius", "row", "group", "atomic_mass")
#: Candidates per target scored (by Mendeleev cost first), at training and at sampling.
RERANK_POOL = 32
#: Element mappings per template offered to the ranker (the best ones by Mendeleev cost).
MAPPINGS_PER_TEMPLATE = 2
#: Training structures used as targets when the ranker is trained (a seeded subset of larger sets).
MAX_TRAINING_TARGETS = 3000
HIDDEN = 64
EPOCHS = 15
BATCH_PAIRS = 1024
LEARNING_RATE = 3e-3
#: Per element: its sorted Wyckoff labels; key 0 holds (space group,).
StructureTypes = dict
#: A structure type: space group, then per element (in a mapping's order) its sorted Wyckoff labels.
StructureType = tuple
#: Training row -> its structure types (``None`` where pyxtal cannot describe it).
TypeLookup = Callable[[int], "StructureTypes | None"]


def element_descriptors() -> np.ndarray:
    """(MAX_Z + 1, D) standardised descriptors; missing values take the column mean."""
    from pymatgen.core.periodic_table import Element

    table = np.full((MAX_Z + 1, len(DESCRIPTORS)), np.nan)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for z in range(1, MAX_Z + 1):
            element = Element.from_Z(z)
            for j, name in enumerate(DESCRIPTORS):
                value = getattr(element, name, None)
                try:
                    table[z, j] = float(value)
                except (TypeError, ValueError):
                    pass
    mean, std = np.nanmean(table[1:], 0), np.nanstd(table[1:], 0)
    table = np.where(np.isnan(table), mean, table)
    return (table - mean) / np.where(std > 0, std, 1.0)


def structure_types_of(spacegroup: int, sites: Iterable[tuple[int, str]]) -> StructureTypes:
    """Atomic number -> its sorted Wyckoff labels, plus key 0 -> (space group,), from (Z, label) per orbit."""
    labels: dict[int, list[str]] = {0: [str(spacegroup)]}
    for z, label in sites:
        labels.setdefault(int(z), []).append(label)
    return {z: tuple(sorted(values)) for z, values in labels.items()}


def structure_types(encoded: Sequence["WyckoffCrystal | None"]) -> list[StructureTypes | None]:
    """:func:`structure_types_of` per training structure (``None`` where pyxtal failed)."""
    from pymatgen.core.periodic_table import Element

    return [None if crystal is None else
            structure_types_of(crystal.spacegroup, ((Element(s.element).Z, s.wyckoff) for s in crystal.sites))
            for crystal in encoded]


@lru_cache(maxsize=None)
def normalizer_relabellings(spacegroup: int) -> tuple[dict[str, str], ...]:
    """Wyckoff-letter maps of the group's Euclidean normalizer cosets (pyxtal's alternative settings):
    relabelling a structure's sites by any of them describes the same structure."""
    from pyxtal.symmetry import Group

    settings = Group(spacegroup).get_alternatives()["Transformed WP"]
    identity = settings[0].split()
    return tuple(dict(zip(identity, setting.split())) for setting in settings)


def type_key(types: StructureTypes, elements: Sequence[int]) -> StructureType:
    """The structure type with its elements listed in the given order (a mapping's order), in the
    normalizer-canonical labelling (the smallest over the equivalent relabellings)."""
    spacegroup = types[0]
    per_element = [types.get(int(z), ()) for z in elements]
    return min((spacegroup, *(tuple(sorted(label[:-1] + letters[label[-1]] for label in labels))
                              for labels in per_element))
               for letters in normalizer_relabellings(int(spacegroup[0])))


def known_polymorphs(retrieval: "TemplateGenerator", type_of: TypeLookup, target_numbers: np.ndarray,
                     leave_out: int | None = None) -> set[StructureType]:
    """Structure types of the training structures with the target's composition (in the cell)."""
    from crystalgen.generators.template import sorted_elements

    z = sorted_elements(target_numbers)[0]
    known = set()
    for row in retrieval.rows_with_composition(target_numbers):
        types = None if row == leave_out else type_of(int(row))
        if types is not None:
            known.add(type_key(types, z))
    return known


class TemplateRanker(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("descriptors", torch.as_tensor(element_descriptors(), dtype=torch.float32))
        width = MAX_SLOTS * (3 * len(DESCRIPTORS) + 1) + 3
        self.net = nn.Sequential(nn.Linear(width, HIDDEN), nn.SiLU(), nn.Linear(HIDDEN, HIDDEN), nn.SiLU(),
                                 nn.Linear(HIDDEN, 1))

    def features(self, target: torch.Tensor, share: torch.Tensor, template: torch.Tensor,
                 log_type_count: torch.Tensor, known_polymorph: torch.Tensor, position: torch.Tensor) -> torch.Tensor:
        """(C, F) features of C pairs: ``target``/``template`` (C, MAX_SLOTS) atomic numbers (0 = empty
        slot, paired slot by slot by the mapping), ``share`` (C, MAX_SLOTS) each element's share of the
        cell, ``log_type_count`` (C,) log(1 + training structures of the template's type),
        ``known_polymorph`` (C,) 1 where that type is a known polymorph of the target's composition,
        ``position`` (C,) the candidate's place in retrieval's Mendeleev order (0 = first)."""
        d_target, d_template = self.descriptors[target], self.descriptors[template]
        filled = (target > 0).unsqueeze(-1).float()
        per_slot = torch.cat([d_target * filled, d_template * filled, (d_target - d_template).abs() * filled,
                              share.unsqueeze(-1)], -1)
        pair = torch.stack([log_type_count, known_polymorph, torch.log1p(position)], 1)
        return torch.cat([per_slot.flatten(1), pair], 1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.net(features).squeeze(-1)


def _slots(z: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    slots, share = np.zeros(MAX_SLOTS, dtype=np.int64), np.zeros(MAX_SLOTS)
    keep = min(len(z), MAX_SLOTS)
    slots[:keep], share[:keep] = z[:keep], counts[:keep] / counts.sum()
    return slots, share


def candidate_arrays(target_numbers: np.ndarray, rows: np.ndarray, mappings: list[np.ndarray],
                     log_type_counts: np.ndarray, known_polymorph: np.ndarray) -> tuple[torch.Tensor, ...]:
    """The ranker's inputs (:meth:`TemplateRanker.features`) for a target (its atoms' numbers) and
    its retrieved candidates."""
    from crystalgen.generators.template import sorted_elements

    z, counts = sorted_elements(target_numbers)
    slots, share = _slots(z, counts)
    templates = np.zeros((len(rows), MAX_SLOTS), dtype=np.int64)
    for i, mapping in enumerate(mappings):
        # mapping row 1 is the target's elements in canonical order, row 0 the template's mapped onto them
        templates[i, : min(len(z), MAX_SLOTS)] = mapping[0][:MAX_SLOTS]
    c = len(rows)
    return (torch.as_tensor(np.tile(slots, (c, 1))), torch.as_tensor(np.tile(share, (c, 1)), dtype=torch.float32),
            torch.as_tensor(templates), torch.as_tensor(log_type_counts[rows], dtype=torch.float32),
            torch.as_tensor(known_polymorph, dtype=torch.float32), torch.arange(c, dtype=torch.float32))


def _known_flags(type_of: TypeLookup, rows: np.ndarray, mappings: list[np.ndarray],
                 known: set[StructureType]) -> np.ndarray:
    if not known:  # the common case: no training structure of this composition, nothing to look up
        return np.zeros(len(rows))
    flags = []
    for row, mapping in zip(rows, mappings):
        types = type_of(int(row))
        flags.append(float(types is not None and type_key(types, mapping[0]) in known))
    return np.array(flags)


def log_type_counts(types: Sequence[StructureTypes | None], retrieval: "TemplateGenerator") -> np.ndarray:
    """Per training row, log(1 + how many training structures share its structure type)."""
    from crystalgen.generators.template import sorted_elements

    keys = [None if t is None else type_key(t, sorted_elements(c.atomic_numbers)[0])
            for t, c in zip(types, retrieval.train)]
    counts = Counter(k for k in keys if k is not None)
    return np.array([math.log1p(counts[k]) if k is not None else 0.0 for k in keys])


def train_ranker(retrieval: "TemplateGenerator", types: Sequence[StructureTypes | None], seed: int = 0,
                 mappings_per_template: int = MAPPINGS_PER_TEMPLATE, use_known_polymorphs: bool = True
                 ) -> tuple[TemplateRanker, np.ndarray, dict[str, float]]:
    """A ranker fitted on the training set, the per-row type counts it uses, and a summary
    (pairs, positive share, and top-1 structure-type accuracy on the training targets, Mendeleev
    order against the ranker's). The last two arguments exist for ablations
    (``bench/template_ranking.py``): one mapping per template, no known-polymorph flag."""
    from crystalgen.generators.target import Target
    from crystalgen.generators.template import sorted_elements

    torch.manual_seed(seed)
    counts = log_type_counts(types, retrieval)
    rng = np.random.default_rng(seed)
    described = [i for i, t in enumerate(types) if t is not None]
    chosen = rng.choice(described, size=min(len(described), MAX_TRAINING_TARGETS), replace=False)
    ranker = TemplateRanker()
    inputs, labels, groups = [], [], []
    for row in chosen:
        crystal = retrieval.train[row]
        rows, mappings = retrieval.rank_templates(Target.from_crystal(crystal), mappings_per_template)
        pick = [(r, m) for r, m in zip(rows, mappings) if r != row and types[r] is not None][:RERANK_POOL]
        if len(pick) < 2:
            continue
        own = type_key(types[row], sorted_elements(crystal.atomic_numbers)[0])
        y = [float(type_key(types[r], m[0]) == own) for r, m in pick]
        if not any(y):  # no candidate of the right type: nothing to rank
            continue
        pick_rows, pick_mappings = np.array([r for r, _ in pick]), [m for _, m in pick]
        known = (known_polymorphs(retrieval, types.__getitem__, crystal.atomic_numbers, leave_out=int(row))
                 if use_known_polymorphs else set())
        flags = _known_flags(types.__getitem__, pick_rows, pick_mappings, known)
        inputs.append(ranker.features(*candidate_arrays(crystal.atomic_numbers, pick_rows, pick_mappings, counts,
                                                        flags)))
        labels.append(torch.tensor(y))
        groups.append(len(y))
    features, target = torch.cat(inputs), torch.cat(labels)
    optimizer = torch.optim.Adam(ranker.net.parameters(), lr=LEARNING_RATE)
    for _ in range(EPOCHS):
        order = torch.randperm(len(features))
        for start in range(0, len(order), BATCH_PAIRS):
            index = order[start:start + BATCH_PAIRS]
            loss = nn.functional.binary_cross_entropy_with_logits(ranker(features[index]), target[index])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    ranker.eval()
    with torch.no_grad():
        scores = ranker(features).split(groups)
    hits = target.split(groups)
    summary = {"pairs": len(target), "targets": len(groups), "positive_share": float(target.mean()),
               "mendeleev_top1_type_accuracy": float(np.mean([float(h[0]) for h in hits])),
               "ranker_top1_type_accuracy": float(np.mean([float(h[int(s.argmax())]) for h, s in zip(hits, scores)]))}
    return ranker, counts, summary


@torch.no_grad()
def rerank(ranker: TemplateRanker, retrieval: "TemplateGenerator", type_of: TypeLookup, target_numbers: np.ndarray,
           rows: np.ndarray, mappings: list[np.ndarray], log_counts: np.ndarray, avoid_known_polymorphs: bool = True
           ) -> tuple[np.ndarray, list[np.ndarray]]:
    """The first RERANK_POOL candidates in the ranker's order (best first), then the rest unchanged.
    Without ``avoid_known_polymorphs`` no candidate is flagged as a known polymorph, so the
    structure types already known for the composition are not pushed down.

    (Letting candidates vote, each structure type scoring the summed probability of its
    candidates, raised the structure-type accuracy on perov_5 val from 36.5% to 37.3% but lowered
    the k=1 match rate on the first 500 perov_5 test rows from 55.4% to 45.6%, so it is not done.)
    """
    pool = min(len(rows), RERANK_POOL)
    if pool < 2:
        return rows, mappings
    known = known_polymorphs(retrieval, type_of, target_numbers) if avoid_known_polymorphs else set()
    flags = _known_flags(type_of, rows[:pool], mappings[:pool], known)
    scores = ranker(ranker.features(*candidate_arrays(target_numbers, rows[:pool], mappings[:pool], log_counts,
                                                      flags))).numpy()
    order = np.argsort(-scores, kind="stable")
    return (np.concatenate([rows[:pool][order], rows[pool:]]),
            [mappings[i] for i in order] + list(mappings[pool:]))
