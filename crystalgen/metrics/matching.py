"""StructureMatcher settings shared by CSP matching, uniqueness and novelty.

All structure comparisons in the benchmarks use ``StructureMatcher(stol=0.5, ltol=0.3,
angle_tol=10)`` with pymatgen's other defaults (primitive cells, volume scaling, no supercell
search); the default primitive reduction is what lets a supercell match its unit cell.
pymatgen raises on some degenerate inputs; a comparison that raises counts as "no match", as in
the published evaluation code.

``get_rms_dist`` reduces both structures (Niggli, then primitive) on every call, which is over
half its cost. When one structure is compared with many (CSP: a ground truth against k
proposals), :func:`reduce_for_matching` does that once per structure and
:func:`rms_distance_reduced` runs the rest of ``get_rms_dist`` unchanged: the same pymatgen steps
in the same order, so the result is identical (a test checks this).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

from crystalgen.constants import MATCHER_ANGLE_TOL, MATCHER_LTOL, MATCHER_STOL
from crystalgen.crystal import Crystal

if TYPE_CHECKING:
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

@dataclass(frozen=True)
class MatcherConfig:
    """StructureMatcher tolerances (the benchmark values by default)."""

    stol: float = MATCHER_STOL
    ltol: float = MATCHER_LTOL
    angle_tol: float = MATCHER_ANGLE_TOL


@lru_cache(maxsize=8)
def get_matcher(config: MatcherConfig = MatcherConfig()) -> "StructureMatcher":
    """One matcher per process and configuration (building one is cheap, but not free)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(stol=config.stol, ltol=config.ltol, angle_tol=config.angle_tol)


def as_structure(crystal: "Crystal | Structure") -> "Structure":
    return crystal.to_structure() if isinstance(crystal, Crystal) else crystal


def rms_distance(
    pred: "Crystal | Structure", target: "Crystal | Structure", config: MatcherConfig = MatcherConfig()
) -> float:
    """``get_rms_dist(pred, target)[0]`` (normalised by (V/N)^(1/3)), or NaN if they do not match."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = get_matcher(config).get_rms_dist(as_structure(pred), as_structure(target))
    except Exception:
        return float("nan")
    return float("nan") if result is None else float(result[0])


def reduce_for_matching(crystal: "Crystal | Structure") -> "Structure":
    """The Niggli-reduced primitive cell ``get_rms_dist`` would compare (benchmark matcher settings)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher
    from pymatgen.core import Structure

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        reduced = StructureMatcher._get_reduced_structure(
            Structure.from_sites(as_structure(crystal)), primitive_cell=True, niggli=True
        )
    return reduced


def rms_distance_reduced(pred: "Structure", target: "Structure", config: MatcherConfig = MatcherConfig()) -> float:
    """:func:`rms_distance` of two structures already passed through :func:`reduce_for_matching`."""
    matcher = get_matcher(config)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            s1, s2, fu, s1_supercell = matcher._preprocess(pred, target, skip_structure_reduction=True)
            match = matcher._match(s1, s2, fu, s1_supercell, use_rms=True, break_on_match=False)
    except Exception:
        return float("nan")
    return float("nan") if match is None else float(match[0])


def structures_match(
    a: "Crystal | Structure", b: "Crystal | Structure", config: MatcherConfig = MatcherConfig()
) -> bool:
    """``StructureMatcher.fit(a, b)``; ``False`` if pymatgen raises."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return bool(get_matcher(config).fit(as_structure(a), as_structure(b)))
    except Exception:
        return False
