"""Coverage recall and precision (COV-R, COV-P), reproducing the published evaluation code.

Distances are Euclidean between fingerprints (:mod:`crystalgen.metrics.fingerprints`):
structure fingerprints as they are, composition fingerprints standardised with CDVAE's fixed
scaler (see :mod:`crystalgen.metrics._cdvae_scaler`; ``scaler="test"`` refits it on the test
set instead, for analyses that do not need comparability).

Published semantics (CDVAE ``compute_cov``, reused by DiffCSP), which are the headline figures:

* COV-R: a test structure is covered when its nearest generated structure *by structure
  fingerprint* is within the structure cutoff and its nearest generated structure *by
  composition fingerprint* is within the composition cutoff. The two nearest neighbours need
  not be the same structure.
* COV-P: likewise for each generated structure against the test set, divided by the number of
  ALL generated structures, invalid ones included; a generated structure whose fingerprint
  fails counts in the denominator but never as covered.

The stricter reading, one structure within both cutoffs at once, is reported alongside as
``cov_recall_joint`` / ``cov_precision_joint``; it can only be lower or equal.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
from scipy.spatial.distance import cdist

from crystalgen.crystal import Crystal
from crystalgen.metrics._cdvae_scaler import CDVAE_COMP_MEANS, CDVAE_COMP_STDS
from crystalgen.metrics._util import finite_mean, json_float, share
from crystalgen.metrics.fingerprints import DEFAULT_METHOD, Fingerprints, cached_fingerprints, compute_fingerprints

#: Rows of generated fingerprints compared at once; bounds memory to ROW_BLOCK x n_test floats.
ROW_BLOCK = 1024


class CoverageCutoffs(NamedTuple):
    """Distance cutoffs: structure fingerprint, standardised composition fingerprint."""

    structure: float
    composition: float


#: The published cutoffs per dataset (CDVAE ``COV_Cutoffs``).
COVERAGE_CUTOFFS: dict[str, CoverageCutoffs] = {
    "mp_20": CoverageCutoffs(0.4, 10.0),
    "perov_5": CoverageCutoffs(0.2, 4.0),
    "carbon_24": CoverageCutoffs(0.2, 4.0),
}


@dataclass(frozen=True)
class CompositionScaler:
    """Standardises composition fingerprints; NaN (missing element data) becomes 0 afterwards."""

    means: np.ndarray
    stds: np.ndarray

    @classmethod
    def cdvae(cls) -> "CompositionScaler":
        return cls(np.array(CDVAE_COMP_MEANS), np.array(CDVAE_COMP_STDS))

    @classmethod
    def fit(cls, features: np.ndarray) -> "CompositionScaler":
        """Mean and standard deviation per feature, ignoring NaN; constant features get std 1."""
        features = np.asarray(features, dtype=np.float64)
        means = np.nan_to_num(np.nanmean(features, axis=0), nan=0.0) if len(features) else np.zeros(features.shape[1])
        stds = np.nan_to_num(np.nanstd(features, axis=0), nan=1.0) if len(features) else np.ones(features.shape[1])
        return cls(means, np.where(stds == 0, 1.0, stds))

    def transform(self, features: np.ndarray) -> np.ndarray:
        scaled = (np.asarray(features, dtype=np.float64) - self.means) / self.stds
        return np.where(np.isnan(scaled), 0.0, scaled)


@dataclass
class CoverageResult:
    """Coverage figures, mean nearest-neighbour distances, and per-structure distances."""

    cov_recall: float
    cov_precision: float
    cov_recall_joint: float
    cov_precision_joint: float
    amsd_recall: float  # mean structure distance from a test structure to its nearest generated one
    amsd_precision: float
    amcd_recall: float  # same for (standardised) composition fingerprints
    amcd_precision: float
    n_generated: int
    n_test: int
    n_generated_failed: int  # generated structures without a fingerprint
    n_test_failed: int
    cutoffs: CoverageCutoffs
    recall_struct_dist: np.ndarray  # (n_test,), inf where a fingerprint failed
    recall_comp_dist: np.ndarray
    precision_struct_dist: np.ndarray  # (n_generated,)
    precision_comp_dist: np.ndarray

    def to_dict(self, per_structure: bool = False) -> dict[str, Any]:
        """JSON-serialisable; non-finite numbers become ``None``."""
        out: dict[str, Any] = {
            name: json_float(getattr(self, name))
            for name in (
                "cov_recall",
                "cov_precision",
                "cov_recall_joint",
                "cov_precision_joint",
                "amsd_recall",
                "amsd_precision",
                "amcd_recall",
                "amcd_precision",
            )
        }
        out.update(
            n_generated=self.n_generated,
            n_test=self.n_test,
            n_generated_failed=self.n_generated_failed,
            n_test_failed=self.n_test_failed,
            cutoffs={"structure": self.cutoffs[0], "composition": self.cutoffs[1]},
        )
        if per_structure:
            for name in ("recall_struct_dist", "recall_comp_dist", "precision_struct_dist", "precision_comp_dist"):
                out[name] = [json_float(x) for x in getattr(self, name).tolist()]
        return out


def resolve_cutoffs(dataset: str | None = None, cutoffs: Sequence[float] | None = None) -> CoverageCutoffs:
    """Explicit cutoffs win; else the published ones of ``dataset``."""
    if cutoffs is not None:
        return CoverageCutoffs(float(cutoffs[0]), float(cutoffs[1]))
    if dataset not in COVERAGE_CUTOFFS:
        raise ValueError(
            f"no published coverage cutoffs for {dataset!r}; known: {', '.join(COVERAGE_CUTOFFS)}; pass cutoffs="
        )
    return COVERAGE_CUTOFFS[dataset]


def compute_coverage(
    generated: Fingerprints,
    test: Fingerprints,
    cutoffs: Sequence[float],
    scaler: str | CompositionScaler = "cdvae",
) -> CoverageResult:
    """Coverage from precomputed fingerprints (fast: vectorised, in blocks of generated rows)."""
    cut = CoverageCutoffs(float(cutoffs[0]), float(cutoffs[1]))
    if isinstance(scaler, str):
        if scaler not in ("cdvae", "test"):
            raise ValueError(f"unknown scaler {scaler!r}; use 'cdvae', 'test' or a CompositionScaler")
        scaler = CompositionScaler.cdvae() if scaler == "cdvae" else CompositionScaler.fit(test.composition[test.ok])
    gen_idx, test_idx = np.flatnonzero(generated.ok), np.flatnonzero(test.ok)
    t_struct, t_comp = test.structure[test_idx], scaler.transform(test.composition[test_idx])

    n_gen, n_test = len(generated), len(test)
    prec_s, prec_c = np.full(n_gen, np.inf), np.full(n_gen, np.inf)
    prec_joint = np.zeros(n_gen, dtype=bool)
    rec_s_ok, rec_c_ok = np.full(len(test_idx), np.inf), np.full(len(test_idx), np.inf)
    rec_joint_ok = np.zeros(len(test_idx), dtype=bool)
    if len(test_idx):
        for start in range(0, len(gen_idx), ROW_BLOCK):
            rows = gen_idx[start : start + ROW_BLOCK]
            d_s = cdist(generated.structure[rows], t_struct)
            d_c = cdist(scaler.transform(generated.composition[rows]), t_comp)
            both = (d_s <= cut.structure) & (d_c <= cut.composition)
            prec_s[rows], prec_c[rows], prec_joint[rows] = d_s.min(axis=1), d_c.min(axis=1), both.any(axis=1)
            rec_s_ok = np.minimum(rec_s_ok, d_s.min(axis=0))
            rec_c_ok = np.minimum(rec_c_ok, d_c.min(axis=0))
            rec_joint_ok |= both.any(axis=0)
    rec_s, rec_c = np.full(n_test, np.inf), np.full(n_test, np.inf)
    rec_joint = np.zeros(n_test, dtype=bool)
    rec_s[test_idx], rec_c[test_idx], rec_joint[test_idx] = rec_s_ok, rec_c_ok, rec_joint_ok

    recall_hit = (rec_s <= cut.structure) & (rec_c <= cut.composition)
    precision_hit = (prec_s <= cut.structure) & (prec_c <= cut.composition)
    return CoverageResult(
        cov_recall=share(recall_hit, n_test),
        cov_precision=share(precision_hit, n_gen),
        cov_recall_joint=share(rec_joint, n_test),
        cov_precision_joint=share(prec_joint, n_gen),
        amsd_recall=finite_mean(rec_s),
        amsd_precision=finite_mean(prec_s),
        amcd_recall=finite_mean(rec_c),
        amcd_precision=finite_mean(prec_c),
        n_generated=n_gen,
        n_test=n_test,
        n_generated_failed=int(n_gen - len(gen_idx)),
        n_test_failed=int(n_test - len(test_idx)),
        cutoffs=cut,
        recall_struct_dist=rec_s,
        recall_comp_dist=rec_c,
        precision_struct_dist=prec_s,
        precision_comp_dist=prec_c,
    )


def evaluate_coverage(
    generated: Sequence[Crystal],
    test: Sequence[Crystal],
    dataset: str | None = None,
    cutoffs: Sequence[float] | None = None,
    scaler: str | CompositionScaler = "cdvae",
    workers: int | None = os.cpu_count(),
    pool: Executor | None = None,
    use_cache: bool = True,
    cache_dir: str | os.PathLike | None = None,
    generated_fingerprints: Fingerprints | None = None,
    test_fingerprints: Fingerprints | None = None,
    progress: Any = None,
    show_progress: bool = True,
    fingerprint_method: str = DEFAULT_METHOD,
) -> CoverageResult:
    """COV-R / COV-P of ``generated`` (ALL of them, invalid included) against ``test``.

    Test fingerprints are cached on disk (``use_cache``); either set of fingerprints may be
    passed in precomputed, which skips computing it.
    """
    cut = resolve_cutoffs(dataset, cutoffs)
    if test_fingerprints is None:
        if use_cache:
            test_fingerprints = cached_fingerprints(
                test,
                cache_dir,
                workers,
                pool,
                progress,
                show_progress,
                label="test fingerprints (cached)",
                method=fingerprint_method,
            )
        else:
            test_fingerprints = compute_fingerprints(
                test, workers, pool, progress, show_progress, "test fingerprints", fingerprint_method
            )
    if generated_fingerprints is None:
        generated_fingerprints = compute_fingerprints(
            generated, workers, pool, progress, show_progress, "generated fingerprints", fingerprint_method
        )
    return compute_coverage(generated_fingerprints, test_fingerprints, cut, scaler)
