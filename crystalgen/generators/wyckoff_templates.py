"""Where the Wyckoff family's templates (space group, Wyckoff letters, species per orbit) come from.

Each source is named, and the name travels with every sample (its ``id`` is ``source:template``):

* ``retrieval`` (CSP): training structures with the target's stoichiometry pattern, ranked as the
  template family ranks them (:meth:`TemplateGenerator.rank_templates`), species substituted and
  the cell rescaled to the estimated volume; the model then refines each from an intermediate
  noise level. ``k`` proposals take the top ``k`` templates pyxtal can describe.
* ``spacegroup`` (CSP with ``--spacegroup``): retrieval restricted to that space group first; when
  the training set has too few such templates, pyxtal places the target's atoms on a random
  combination of that group's Wyckoff positions with the right counts, and the model generates
  coordinates and lattice from the prior.
* ``scratch`` (generation): the (space group, Wyckoff template, atom count) of a random training
  structure, i.e. a draw from the training distribution; types, coordinates and lattice are
  generated.
* ``random-placement`` (a control, no model): pyxtal's random placement in the retrieved
  template's space group and Wyckoff letters, on the substituted template's lattice.

The oracle (each test structure's own template) needs the answer, so it lives in the benchmark
script ``bench/wyckoff_oracle.py``, never here.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from crystalgen.constants import MAX_Z, SYMPREC
from crystalgen.crystal import Crystal
from crystalgen.representations.wyckoff import WyckoffCrystal, WyckoffError, encode_wyckoff, wyckoff_from_pyxtal
from crystalgen.representations.wyckoff_batch import WyckoffBatch, wyckoff_tensors

if TYPE_CHECKING:
    from crystalgen.generators.target import Target
    from crystalgen.generators.template_ranker import StructureTypes, TemplateRanker
    from crystalgen.generators.template import TemplateGenerator

RETRIEVAL, SPACEGROUP, SCRATCH, RANDOM_PLACEMENT = "retrieval", "spacegroup", "scratch", "random-placement"
TEMPLATE_SOURCES = (RETRIEVAL, SPACEGROUP, SCRATCH, RANDOM_PLACEMENT)
#: Templates tried per wanted sample before giving up (some cannot be described by pyxtal).
CANDIDATES_PER_SAMPLE = 4
#: Formula units per primitive cell tried when pyxtal places a composition in a space group.
MAX_FORMULA_UNITS = 4
#: Atoms per conventional cell of each lattice centring, relative to the primitive cell.
CENTRING_MULTIPLICITY = {"P": 1, "A": 2, "B": 2, "C": 2, "I": 2, "R": 3, "F": 4}
#: Attempts pyxtal gets to place atoms without overlaps before a placement counts as failed.
PLACEMENT_ATTEMPTS = 10


@dataclass
class TemplatePlan:
    """One sample's template: its one-crystal Wyckoff batch (species substituted, cell rescaled),
    its Wyckoff sites as letters, and where it came from."""

    batch: WyckoffBatch
    sites: list[tuple[int, str]]  # (atomic number after substitution, Wyckoff label) per orbit
    source: str
    template_id: str

    @classmethod
    def from_wyckoff(cls, encoded: WyckoffCrystal, source: str, template_id: str) -> "TemplatePlan":
        return cls(wyckoff_tensors(encoded), _site_labels(encoded), source, template_id)

    @property
    def refine(self) -> bool:
        """Retrieved templates carry a geometry worth refining; the others start from the prior."""
        return self.source == RETRIEVAL

    @property
    def label(self) -> str:
        return f"{self.source}:{self.template_id}"


def _site_labels(encoded: WyckoffCrystal) -> list[tuple[int, str]]:
    from pymatgen.core.periodic_table import Element

    return [(Element(site.element).Z, site.wyckoff) for site in encoded.sites]


def _rescaled(batch: WyckoffBatch, numbers: np.ndarray, volume: float) -> WyckoffBatch:
    """The batch with new species and its cell scaled isotropically to ``volume`` (a scale s adds
    ln s to the log-polar diagonal, which keeps every family's subspace)."""
    import torch

    current = float(torch.linalg.det(batch.lattices[0]).abs())
    shift = torch.zeros(6, dtype=batch.lattice_vector.dtype)
    shift[:3] = math.log(volume / current) / 3.0
    return replace(batch, atomic_numbers=torch.as_tensor(numbers), lattice_vector=batch.lattice_vector + shift)


def _pyxtal_placement(spacegroup: int, species: list[str], counts: list[int], seed: int,
                      sites: list[list[str]] | None = None, lattice: np.ndarray | None = None):
    """A pyxtal crystal with the given species and conventional-cell counts placed at random in
    ``spacegroup`` (on the given Wyckoff letters and lattice, if any), or ``None``."""
    from pyxtal import pyxtal
    from pyxtal.lattice import Lattice
    from pyxtal.symmetry import Group

    xtal = pyxtal()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cell = None if lattice is None else Lattice.from_matrix(lattice, ltype=Group(spacegroup).lattice_type)
            xtal.from_random(3, spacegroup, species, counts, sites=sites, lattice=cell, max_count=PLACEMENT_ATTEMPTS,
                             random_state=seed)
    except Exception:  # pyxtal signals an impossible combination in many ways
        return None
    return xtal if xtal.valid else None


class TemplateSources:
    """Templates for the Wyckoff family, from a fitted retrieval index (a :class:`TemplateGenerator`)."""

    def __init__(self, retrieval: "TemplateGenerator", symprec: float = SYMPREC,
                 avoid_known_polymorphs: bool = True) -> None:
        self.retrieval = retrieval
        self.symprec = symprec
        #: A learned ranker and its per-row structure-type counts; ``None``: the Mendeleev order.
        self.ranker: "TemplateRanker | None" = None
        self.log_type_counts: np.ndarray | None = None
        #: Whether the ranker pushes down the structure types training already holds for the composition.
        self.avoid_known_polymorphs = avoid_known_polymorphs
        self._encoded: dict[int, tuple[WyckoffBatch, list[tuple[int, str]]] | None] = {}

    def encoded(self, row: int) -> tuple[WyckoffBatch, list[tuple[int, str]]] | None:
        """The Wyckoff batch and sites of training structure ``row`` (cached), or ``None`` where pyxtal fails."""
        if row not in self._encoded:
            try:
                encoded = encode_wyckoff(self.retrieval.train[row], self.symprec)
                self._encoded[row] = (wyckoff_tensors(encoded), _site_labels(encoded))
            except WyckoffError:
                self._encoded[row] = None
        return self._encoded[row]

    def _template_id(self, row: int) -> str:
        return self.retrieval.train[row].id or f"train-{row}"

    def retrieve(self, target: "Target", n: int) -> list[TemplatePlan]:
        """Up to ``n`` retrieved, substituted and rescaled templates, best ranked first."""
        rows, mappings = self.ranked(target)
        plans = []
        for row, mapping in zip(rows[: n * CANDIDATES_PER_SAMPLE], mappings):
            found = self.encoded(int(row))
            if found is None:
                continue
            batch, sites = found
            table = np.arange(MAX_Z + 1)  # template Z -> target Z
            table[mapping[0]] = mapping[1]
            numbers = table[batch.atomic_numbers.numpy()]
            plans.append(TemplatePlan(_rescaled(batch, numbers, self.retrieval.estimate_volume(numbers)),
                                      [(int(table[z]), label) for z, label in sites], RETRIEVAL,
                                      self._template_id(int(row))))
            if len(plans) == n:
                break
        return plans

    def ranked(self, target: "Target") -> tuple[np.ndarray, list[np.ndarray]]:
        """Candidate training rows (and element mappings), best first: the ranker's order where there is one."""
        if self.ranker is None:
            return self.retrieval.rank_templates(target)
        from crystalgen.generators.template_ranker import MAPPINGS_PER_TEMPLATE, rerank

        rows, mappings = self.retrieval.rank_templates(target, MAPPINGS_PER_TEMPLATE)
        return rerank(self.ranker, self.retrieval, self.structure_types, target.atomic_numbers(), rows,
                      mappings, self.log_type_counts, self.avoid_known_polymorphs)

    def structure_types(self, row: int) -> "StructureTypes | None":
        """The structure types of training structure ``row`` (what the ranker compares), or ``None``."""
        from crystalgen.generators.template_ranker import structure_types_of

        found = self.encoded(row)
        return None if found is None else structure_types_of(int(found[0].spacegroup[0]), found[1])

    def for_spacegroup(self, target: "Target", n: int, rng: np.random.Generator) -> list[TemplatePlan]:
        """Retrieved templates of the target's space group, topped up with pyxtal placements."""
        # the index knows spglib's group of each training cell; pyxtal's template must agree too
        plans = [p for p in self.retrieve(target, n) if int(p.batch.spacegroup[0]) == target.spacegroup]
        species = [el.symbol for el in target.composition]
        counts = np.array([int(round(a)) for a in target.composition.values()])
        for _ in range(n - len(plans)):
            xtal = self._placement(target.spacegroup, species, counts, int(rng.integers(2**31)))
            if xtal is None:
                break
            encoded = wyckoff_from_pyxtal(xtal)
            labels = "-".join(site.wyckoff for site in encoded.sites)
            plans.append(TemplatePlan.from_wyckoff(encoded, SPACEGROUP, f"{target.spacegroup}-{labels}"))
        return plans

    @staticmethod
    def _placement(spacegroup: int, species: list[str], counts: np.ndarray, seed: int):
        from pyxtal.symmetry import Group

        centring = CENTRING_MULTIPLICITY.get(Group(spacegroup).symbol[0], 1)
        for units in range(1, MAX_FORMULA_UNITS + 1):
            xtal = _pyxtal_placement(spacegroup, species, (counts * centring * units).tolist(), seed)
            if xtal is not None:
                return xtal
        return None

    def scratch(self, target: "Target", n: int, rng: np.random.Generator) -> list[TemplatePlan]:
        """Templates of ``n`` random training structures (of the target's space group, if it has one)."""
        pool = np.arange(len(self.retrieval.train))
        if target.spacegroup is not None:
            pool = pool[self.retrieval.spacegroups_of(pool) == target.spacegroup]
        plans = []
        for row in rng.choice(pool, size=min(len(pool), n * CANDIDATES_PER_SAMPLE), replace=False):
            found = self.encoded(int(row))
            if found is not None:
                plans.append(TemplatePlan(*found, SCRATCH, self._template_id(int(row))))
            if len(plans) == n:
                break
        return plans

    def random_placement(self, target: "Target", n: int, rng: np.random.Generator) -> list[Crystal]:
        """The control: pyxtal's random placement in each retrieved template's group and letters."""
        from pymatgen.core.periodic_table import Element

        crystals = []
        for plan in self.retrieve(target, n):
            by_species: dict[int, list[str]] = {}
            for z, label in plan.sites:
                by_species.setdefault(z, []).append(label)
            species = [Element.from_Z(z).symbol for z in by_species]
            counts = [sum(int(label[:-1]) for label in labels) for labels in by_species.values()]
            xtal = _pyxtal_placement(int(plan.batch.spacegroup[0]), species, counts, int(rng.integers(2**31)),
                                     list(by_species.values()), plan.batch.lattices[0].numpy())
            if xtal is not None:
                crystal = Crystal.from_structure(xtal.to_pymatgen())
                crystals.append(Crystal(crystal.lattice, crystal.frac_coords, crystal.atomic_numbers,
                                        f"{RANDOM_PLACEMENT}:{plan.template_id}"))
        return crystals
