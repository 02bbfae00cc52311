"""Template-retrieval baseline: copy the most similar training structure, substitute, rescale.

Not learned, except for per-element volumes. For a target composition:

1. candidates are training structures with the same stoichiometry pattern, i.e. the same
   multiset of per-element atom counts in the cell (SrTiO3 and BaZrS3 share (1, 1, 3));
   with a space group, only templates of that space group;
2. each candidate's elements are mapped onto the target's (only between elements of equal count),
   choosing the mapping that minimises the count-weighted difference of Mendeleev numbers;
3. candidates are ranked by that cost; the top ``k`` give ``k`` samples, each with the target's
   species substituted and the cell isotropically rescaled to the target's estimated volume.

Without a composition (generation from scratch) it returns random training structures: a
memorisation reference for the generation benchmark, novel by construction never.

The volume estimate is a least-squares fit of ``V = sum_i n_i v(Z_i)`` on the training set, the
only fitted parameters, and is what ``model.safetensors`` stores. The training structures are read
from the data directory at load time; they are never stored in the checkpoint.
"""

from __future__ import annotations

import itertools
import os
import warnings
from collections import defaultdict
from typing import Any, Sequence

import numpy as np

from crystalgen.constants import MAX_Z
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, SampleOptions, Target
from crystalgen.models.base import TrainingRun
from crystalgen.models.capabilities import CSP, GEN, Capabilities

#: Ridge term for the per-element volume fit, so rare elements do not get wild volumes.
VOLUME_RIDGE = 1e-3
#: Fallback volume per atom (Å^3) for elements never seen in training (~ the mp_20 median).
FALLBACK_VOLUME_PER_ATOM = 18.0
SPACEGROUP_PROPERTY = "spacegroup.number"
UNKNOWN_SPACEGROUP = 0


def _mendeleev_numbers() -> np.ndarray:
    from pymatgen.core.periodic_table import Element

    table = np.zeros(MAX_Z + 1, dtype=np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pymatgen lacks Mendeleev numbers for Z > 103
        for z in range(1, MAX_Z + 1):
            table[z] = Element.from_Z(z).mendeleev_no or 0.0
    return table


def _pattern(counts: Sequence[int]) -> tuple[int, ...]:
    return tuple(sorted(int(c) for c in counts))


def sorted_elements(numbers: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct elements ordered by (count, Z) and their counts, the canonical order for matching."""
    z, counts = np.unique(numbers, return_counts=True)
    order = np.lexsort((z, counts))
    return z[order], counts[order]


class TemplateGenerator(Generator):
    family = "template"

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        return Capabilities(tasks=frozenset({CSP, GEN}), conditions=frozenset({"composition", "spacegroup"}),
                            baseline=True)

    def __init__(self, config: dict | None = None):
        super().__init__(config)
        self.train: list[Crystal] = []
        self.element_volumes = np.full(MAX_Z + 1, np.nan)
        self._index: dict[tuple[int, ...], dict[str, np.ndarray]] = {}
        self._mendeleev = _mendeleev_numbers()

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return bool(self._index)

    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None, run: TrainingRun | None = None) -> None:
        """Index the protocol's training split and fit the per-element volumes (``run`` is unused:
        nothing here is trained by gradient descent)."""
        from crystalgen.data import load_protocol

        spec = load_protocol(protocol)
        data = spec.load(data_dir, include_test=False)
        self.config.update({"protocol": spec.name, "dataset": spec.dataset})
        self.config.setdefault("max_atoms", max(c.num_atoms for c in data.train))
        self.build_index(data.train, fit_volumes=True)

    def state(self) -> dict[str, Any]:
        return {"element_volumes": self.element_volumes}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        from crystalgen.data import load_protocol

        if not self.protocol:
            raise CrystalgenInputError(f"template checkpoint {self.name!r} names no protocol")
        data = load_protocol(self.protocol).load(data_dir, include_test=False)
        self.element_volumes = np.asarray(tensors["element_volumes"], dtype=np.float64)
        self.build_index(data.train, fit_volumes=False)

    def build_index(self, train: list[Crystal], fit_volumes: bool) -> None:
        """Index ``train`` by stoichiometry pattern (and fit the per-element volumes, or keep the loaded ones)."""
        self.train = train
        if fit_volumes:
            self.element_volumes = self._fit_volumes(train)
        groups: dict[tuple[int, ...], list[int]] = defaultdict(list)
        elements, counts = [], []
        for i, crystal in enumerate(train):
            z, n = sorted_elements(crystal.atomic_numbers)
            elements.append(z)
            counts.append(n)
            groups[_pattern(n)].append(i)
        # Space groups are known for mp_20 rows; others are found with spglib only when a
        # target asks for a space group, and only for that target's candidates.
        self._spacegroups = np.array(
            [int(c.properties.get(SPACEGROUP_PROPERTY, UNKNOWN_SPACEGROUP)) for c in train], dtype=np.int64
        )
        self._index = {
            pattern: {
                "rows": np.array(rows),
                "elements": np.stack([elements[r] for r in rows]),
                "counts": np.stack([counts[r] for r in rows]),
            }
            for pattern, rows in groups.items()
        }

    def rows_with_composition(self, atomic_numbers: np.ndarray) -> np.ndarray:
        """Training rows whose cell has exactly these atoms (the known structures of a composition)."""
        z, n = sorted_elements(atomic_numbers)
        entry = self._index.get(_pattern(n))
        if entry is None:
            return np.zeros(0, dtype=int)
        same = (entry["elements"] == z).all(1) & (entry["counts"] == n).all(1)
        return entry["rows"][same]

    def spacegroups_of(self, rows: np.ndarray) -> np.ndarray:
        from crystalgen.representations.cell import space_group_number

        for row in rows[self._spacegroups[rows] == UNKNOWN_SPACEGROUP]:
            self._spacegroups[row] = space_group_number(self.train[row])
        return self._spacegroups[rows]

    @staticmethod
    def _fit_volumes(train: list[Crystal]) -> np.ndarray:
        """Per-element atomic volumes from ``V = A v`` with A[i, z] = atoms of element z in crystal i."""
        design = np.zeros((len(train), MAX_Z + 1))
        for i, crystal in enumerate(train):
            np.add.at(design[i], crystal.atomic_numbers, 1.0)
        volumes = np.array([c.volume for c in train])
        seen = design.sum(0) > 0
        a = design[:, seen]
        coef = np.linalg.solve(a.T @ a + VOLUME_RIDGE * np.eye(a.shape[1]), a.T @ volumes)
        result = np.full(MAX_Z + 1, np.nan)
        result[seen] = np.clip(coef, 1.0, None)
        return result

    def estimate_volume(self, atomic_numbers: np.ndarray) -> float:
        per_atom = self.element_volumes[atomic_numbers]
        return float(np.where(np.isnan(per_atom), FALLBACK_VOLUME_PER_ATOM, per_atom).sum())

    # ------------------------------------------------------------------ sampling
    def _sample(self, targets: list[Target], n: int, seed: int, options: SampleOptions) -> list[list[Crystal]]:
        rng = np.random.default_rng(seed)
        return [self._sample_one(target, n, rng) for target in targets]

    def rank_templates(self, target: Target, mappings_per_template: int = 1) -> tuple[np.ndarray, list[np.ndarray]]:
        """Candidates ranked best first: training rows and, for each, the template element mapped to
        each target element (a ``(2, E)`` array). With ``mappings_per_template`` > 1 a row appears
        once per element mapping among its best few, so that rankers can choose between site
        assignments (which cation sits on which site) as well as between templates."""
        z_target, n_target = sorted_elements(target.atomic_numbers())
        entry = self._index.get(_pattern(n_target))
        if entry is None:
            return np.zeros(0, dtype=int), []
        keep = np.ones(len(entry["rows"]), dtype=bool)
        if target.spacegroup is not None:
            keep = self.spacegroups_of(entry["rows"]) == target.spacegroup
        elements = entry["elements"][keep]
        rows = entry["rows"][keep]
        # Only elements with equal counts may swap: try every permutation within each count group.
        groups = [np.flatnonzero(n_target == c) for c in np.unique(n_target)]
        perms = []
        for combo in itertools.product(*(itertools.permutations(g) for g in groups)):
            perm = np.empty(len(z_target), dtype=int)
            for group, permuted in zip(groups, combo):
                perm[group] = permuted
            perms.append(perm)
        costs = np.stack([(np.abs(self._mendeleev[elements[:, perm]] - self._mendeleev[z_target]) * n_target).sum(1)
                          for perm in perms], 1)  # (rows, permutations)
        per_row = min(mappings_per_template, len(perms))
        best = np.argsort(costs, axis=1, kind="stable")[:, :per_row]
        candidate_row = np.repeat(np.arange(len(rows)), per_row)
        candidate_perm, rank_in_row = best.ravel(), np.tile(np.arange(per_row), len(rows))
        order = np.lexsort((rank_in_row, rows[candidate_row], costs[candidate_row, candidate_perm]))
        mappings = [np.stack([elements[candidate_row[i], perms[candidate_perm[i]]], z_target]) for i in order]
        return rows[candidate_row[order]], mappings

    def substitute(self, template: Crystal, mapping: np.ndarray) -> Crystal:
        """The template with the mapping's species (row 0 -> row 1), rescaled to their estimated volume."""
        lookup = dict(zip(mapping[0].tolist(), mapping[1].tolist()))
        numbers = np.array([lookup[int(z)] for z in template.atomic_numbers])
        scale = (self.estimate_volume(numbers) / template.volume) ** (1.0 / 3.0)
        return Crystal(template.lattice * scale, template.frac_coords, numbers)

    def _sample_one(self, target: Target, n: int, rng: np.random.Generator) -> list[Crystal]:
        if target.composition is None:
            pool = np.arange(len(self.train))
            if target.spacegroup is not None:
                pool = pool[self.spacegroups_of(pool) == target.spacegroup]
            picks = rng.choice(pool, size=min(n, len(pool)), replace=False) if len(pool) else []
            return [self.train[i].copy() for i in picks]
        rows, mappings = self.rank_templates(target)
        return [self.substitute(self.train[r], m) for r, m in zip(rows[:n], mappings[:n])]

    def describe_sampling(self, options: SampleOptions | None = None) -> str:
        return ("CSP substitutes the best-ranked training templates of the target's stoichiometry; generation from "
                "scratch returns random training structures, a memorisation reference (novelty 0 by construction), "
                "not a generative model.")

    def card_notes(self, fit_wall_s: float) -> str:
        return f"""- **Fit wall time:** {fit_wall_s:.1f} s (includes parsing the training CIFs the first time)
- **Steps:** none; the template baseline is not trained by gradient descent. Its only fitted
  parameters are per-element atomic volumes (a ridge least-squares fit of cell volume on element
  counts over the training split), stored in `model.safetensors`. The training structures
  themselves are read from the data directory at load time, never stored here.
"""
