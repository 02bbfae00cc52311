"""S.U.N.: the share of generated crystals that are stable, unique and novel (LeMat-GenBench style).

The computation runs on the filter pipeline (resumable, chunk by chunk), stage after stage:

1. structural validity (every interatomic distance >= 0.5 Å, volume >= 0.1 Å^3);
2. uniqueness among the samples (StructureMatcher; the first copy counts, later copies do not);
3. novelty against the reference set R (no StructureMatcher match of the same composition in R);
4. CHGNet relaxation (cell and positions) of the unique novel ones, structural validity again,
   and E_hull of the relaxed crystal against the hull of R's CHGNet formation-like energies
   (``filters.relax``: R evaluated once with CHGNet and cached, per-element mu fitted on R).

R is every structure the protocol makes available to a model: its training split and its
selection split (the ``select`` split, or the hold-out carved out of the training splits), never
its test split, so neither the novelty reference nor the hull contains a test structure. Novelty
uses the same R as the hull: a sample that copies a hull member sits at E_hull = 0 by
construction and must not count as a discovery.

Uniqueness and novelty are judged on the structures as generated, so that only the unique novel
ones pay for a relaxation. ``S.U.N.(t) = #(valid, unique, novel, valid after relaxation,
E_hull <= t) / n_requested``: every requested sample is in the denominator, including those the
model failed to return or that could not be read.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.filters.pipeline import UNREADABLE, FilterConfig
from crystalgen.filters.stages import Novelty, Stage, StructuralValidity, Uniqueness
from crystalgen.metrics.validity import MIN_DISTANCE, MIN_VOLUME, ValidityConfig

if TYPE_CHECKING:
    from crystalgen.data.protocols import DataProtocol
    from crystalgen.executors import Workers
    from crystalgen.filters.inputs import CandidateRow
    from crystalgen.filters.relax import Relaxation

#: The thresholds reported: on or below the reference hull, and within 0.1 eV/atom of it.
SUN_THRESHOLDS = (0.0, 0.1)
#: E_hull at or below ``t + E_HULL_TOLERANCE`` counts as ``<= t``: filtered.csv keeps six decimals,
#: and a relaxed copy of a hull phase lands at 0 up to the LP solver's round-off.
E_HULL_TOLERANCE = 1e-6


@dataclass(frozen=True)
class SunConfig:
    """What counts as stable, and how samples are relaxed (CHGNet's FIRE optimiser with its
    FrechetCellFilter, the defaults of ``StructOptimizer``, up to ``relax_steps`` steps)."""

    thresholds: tuple[float, ...] = SUN_THRESHOLDS
    relax_steps: int = FilterConfig.relax_steps
    relax_fmax: float = FilterConfig.relax_fmax  # eV/Å
    min_distance: float = MIN_DISTANCE
    min_volume: float = MIN_VOLUME

    def __post_init__(self) -> None:
        if not self.thresholds or any(not math.isfinite(t) for t in self.thresholds):
            raise CrystalgenInputError(f"S.U.N. thresholds must be finite numbers, got {self.thresholds!r}")
        if self.relax_steps < 1 or self.relax_fmax <= 0:
            raise CrystalgenInputError("S.U.N. needs relax_steps >= 1 and relax_fmax > 0")

    @property
    def validity(self) -> ValidityConfig:
        return ValidityConfig(self.min_distance, self.min_volume)

    def settings(self) -> dict[str, Any]:
        """As JSON stores it (lists, not tuples), so that a resumed run compares equal."""
        return {**asdict(self), "thresholds": [float(t) for t in self.thresholds]}


def threshold_key(threshold: float) -> str:
    """``0.1`` -> ``"0.1"``: the key of a threshold in metrics.json."""
    return f"{threshold:g}"


@dataclass
class SunResult:
    """Counts along the funnel, and S.U.N. per threshold with its denominators."""

    n_requested: int
    n_sampled: int
    n_readable: int
    n_valid: int
    n_unique: int
    n_novel: int
    n_relaxed_valid: int
    n_without_hull: int  # relaxed and valid, but an element has no reference structure
    sun_count: dict[str, int]
    e_above_hull: list[float] = field(default_factory=list)  # of the relaxed valid U.N. samples
    relax_seconds: list[float] = field(default_factory=list)  # of every relaxation attempted

    def share(self, threshold: float, denominator: int) -> float | None:
        return self.sun_count[threshold_key(threshold)] / denominator if denominator else None

    def funnel(self) -> list[tuple[str, int]]:
        return [("requested", self.n_requested), ("sampled", self.n_sampled), ("readable", self.n_readable),
                ("structurally valid", self.n_valid), ("unique", self.n_unique), ("novel", self.n_novel),
                ("relaxed, still valid", self.n_relaxed_valid),
                *[(f"E_hull <= {key} eV/atom", count) for key, count in
                  sorted(self.sun_count.items(), key=lambda item: -float(item[0]))]]

    def to_dict(self) -> dict[str, Any]:
        thresholds = [float(key) for key in self.sun_count]
        return {
            "n_requested": self.n_requested, "n_sampled": self.n_sampled, "n_readable": self.n_readable,
            "n_valid": self.n_valid, "n_unique": self.n_unique, "n_novel": self.n_novel,
            "n_relaxed_valid": self.n_relaxed_valid, "n_without_hull": self.n_without_hull,
            "sun": {threshold_key(t): {
                "count": self.sun_count[threshold_key(t)],
                "share_of_requested": self.share(t, self.n_requested),
                "share_of_valid": self.share(t, self.n_valid),
                "stable_share_of_relaxed": self.share(t, self.n_relaxed_valid),
            } for t in thresholds},
            "funnel": [{"stage": stage, "remaining": n} for stage, n in self.funnel()],
            "relax_s_mean": float(np.mean(self.relax_seconds)) if self.relax_seconds else None,
            "relax_s_median": float(np.median(self.relax_seconds)) if self.relax_seconds else None,
            "n_relaxations": len(self.relax_seconds),
        }


def _true(row: dict[str, str], column: str) -> bool:
    return row.get(column) == "True"


def _number(row: dict[str, str], column: str) -> float:
    try:
        return float(row.get(column) or "nan")
    except ValueError:
        return float("nan")


def sun_from_rows(rows: Sequence[dict[str, str]], n_requested: int, config: SunConfig = SunConfig()) -> SunResult:
    """The S.U.N. counts from filtered.csv rows of the stages of :func:`sun_stages`.

    Each count requires every earlier one (a duplicate of a novel sample is not novel-and-unique;
    novelty is computed for every readable row, so it is read only where the row is unique)."""
    readable = [r for r in rows if not r.get("reject_reason", "").startswith(UNREADABLE)]
    valid = [r for r in readable if _true(r, "valid_struct")]
    unique = [r for r in valid if _true(r, "is_unique")]
    novel = [r for r in unique if _true(r, "is_novel")]
    relaxed = [r for r in novel if _true(r, "relaxed_valid_struct")]
    above = np.array([_number(r, "e_above_hull_chgnet") for r in relaxed], dtype=np.float64)
    finite = above[np.isfinite(above)]
    counts = {threshold_key(t): int(np.sum(finite <= t + E_HULL_TOLERANCE)) for t in config.thresholds}
    seconds = [_number(r, "relax_s") for r in novel]
    return SunResult(n_requested, len(rows), len(readable), len(valid), len(unique), len(novel), len(relaxed),
                     int(len(above) - len(finite)), counts, finite.tolist(), [s for s in seconds if math.isfinite(s)])


# ---------------------------------------------------------------------------------- the reference set
@dataclass
class SunReference:
    """R: the protocol's training and selection structures (its test split left out)."""

    protocol: "DataProtocol"
    crystals: list[Crystal]
    energy_property: str
    n_train: int
    n_select: int

    def describe(self) -> str:
        spec = self.protocol
        if spec.holdout:
            selection = (f"its {spec.holdout.fraction:.0%} hold-out of {' + '.join(spec.train)} "
                         f"(seed {spec.holdout.seed}, {self.n_select:,})")
        else:
            selection = f"its selection split `{spec.select}` ({self.n_select:,})"
        subset = f", {spec.subset.describe()} only" if spec.subset else ""
        return (f"every `{spec.name}` structure but its test split: the training structures "
                f"({' + '.join(spec.train)}, {self.n_train:,}) and {selection}{subset}; {len(self.crystals):,} "
                f"structures, the test split `{spec.test}` excluded")


def formation_energy_property(dataset: str) -> str:
    """The dataset's formation-like energy per atom, which the CHGNet chemical potentials are fitted to."""
    from crystalgen.data.registry import get_dataset
    from crystalgen.filters.build import HULL_ENERGIES

    properties = get_dataset(dataset).properties
    for name in properties:
        if HULL_ENERGIES.get(name) == "formation":
            return name
    raise CrystalgenInputError(f"S.U.N. needs a formation energy to fit CHGNet's chemical potentials to; {dataset} "
                               f"has only {', '.join(properties)}")


def load_sun_reference(protocol: "DataProtocol", data_dir: str | os.PathLike | None = None) -> SunReference:
    energy = formation_energy_property(protocol.dataset)  # refuse before loading anything
    data = protocol.load(data_dir, include_test=False)
    return SunReference(protocol, [*data.train, *data.select], energy, len(data.train), len(data.select))


def chgnet_relaxation(reference: SunReference, config: SunConfig, cache_dir: Path | None = None) -> "Relaxation":
    """The CHGNet stage, its hull built from R (CHGNet energies cached per protocol)."""
    from crystalgen.data.files import user_cache_dir
    from crystalgen.filters.relax import Relaxation

    return Relaxation(reference.crystals, reference.protocol.name, reference.energy_property, config.relax_steps,
                      config.relax_fmax, max(config.thresholds) + E_HULL_TOLERANCE,
                      cache_dir or user_cache_dir() / "chgnet", config.validity)


def sun_stages(config: SunConfig, reference: Sequence[Crystal], relaxation: Stage) -> list[Stage]:
    """Validity, uniqueness, novelty against ``reference``, then ``relaxation`` (the CHGNet stage,
    or a stand-in with its columns)."""
    return [StructuralValidity(config.validity), Uniqueness(), Novelty(reference), relaxation]


def evaluate_sun(rows: Sequence["CandidateRow"], input_columns: Sequence[str], stages: Sequence[Stage],
                 out: str | os.PathLike, n_requested: int, config: SunConfig = SunConfig(),
                 provenance: dict[str, Any] | None = None, workers: "Workers | None" = None) -> SunResult:
    """Run (or resume) the S.U.N. stages on ``rows`` into OUT/filtered.csv and count; the
    relaxations run over ``workers`` (inline when ``None``)."""
    from crystalgen.filters.pipeline import FILTERED_FILE, run_filter
    from crystalgen.runs import read_csv_rows

    if n_requested < max(1, len(rows)):
        raise CrystalgenInputError(f"{len(rows)} samples cannot come from {n_requested} requests")
    run_filter(rows, input_columns, stages, out, {"n_requested": n_requested, **config.settings()}, provenance,
               workers)
    return sun_from_rows(read_csv_rows(Path(out) / FILTERED_FILE), n_requested, config)


def _with_energy(reference: SunReference) -> list[Crystal]:
    """The reference structures the CHGNet stage fitted and built its hull from, in its order."""
    return [c for c in reference.crystals if reference.energy_property in c.properties]


def reference_e_above_hull(reference: SunReference, relaxation: "Relaxation") -> np.ndarray:
    """E_hull of R's own structures on the hull they span (>= 0; 0 for the hull's vertices): how
    the known structures themselves fare under this CHGNet hull."""
    return relaxation.hull.energy_above_hull(_with_energy(reference), relaxation.reference_formation)


def describe_hull(reference: SunReference, relaxation: "Relaxation", config: SunConfig, known: np.ndarray
                  ) -> dict[str, Any]:
    """Exactly which hull: the reference set, its energies, the chemical potentials, the relaxation,
    and ``known`` (R's own E_hull, :func:`reference_e_above_hull`) as shares at each threshold."""
    from importlib.metadata import PackageNotFoundError, version

    from crystalgen.filters.relax import CHGNET_VERSION

    try:
        package = version("chgnet")
    except PackageNotFoundError:  # a stand-in stage (tests) runs without CHGNet
        package = "not installed"

    dft = np.array([c.properties[reference.energy_property] for c in _with_energy(reference)])
    residual = relaxation.reference_formation - dft
    return {
        "protocol": reference.protocol.name,
        "reference": reference.describe(),
        "n_reference": len(reference.crystals),
        "n_hull_entries": relaxation.hull.size,
        "energy": "CHGNet energy per atom minus sum_el x_el mu_el (formation-like, eV/atom); elements at 0",
        "chgnet_package": package,
        "chgnet_weights": CHGNET_VERSION,
        "mu_fit": {"method": f"least squares of E_CHGNet - x . mu against the DFT `{reference.energy_property}` "
                             "over every reference structure",
                   "elements": len(relaxation.mu), "structures": len(dft),
                   "rms_residual_ev_per_atom": float(np.sqrt(np.nanmean(residual ** 2)))},
        "relax": {"optimizer": "FIRE with FrechetCellFilter (CHGNet StructOptimizer defaults), cell and positions",
                  "fmax_ev_per_a": config.relax_fmax, "max_steps": config.relax_steps, "device": "cpu"},
        "tolerance_ev_per_atom": E_HULL_TOLERANCE,
        "reference_cost": relaxation.reference_cost,
        "reference_shares": {threshold_key(t): float(np.mean(known[np.isfinite(known)] <= t + E_HULL_TOLERANCE))
                             for t in config.thresholds},
    }
