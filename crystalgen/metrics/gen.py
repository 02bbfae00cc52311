"""All generation-from-scratch metrics of docs/protocol.md in one call.

``evaluate_generation`` reports structural and compositional validity, COV-R / COV-P, d_rho,
d_E (only with a property function), d_elem, uniqueness and novelty, and how long each took.
One process pool serves every slow stage, so its start-up is paid once.

Which structures each metric sees, following the published code:

* validity, coverage, uniqueness and novelty: every generated structure, invalid ones included
  (COV-P's denominator is all generated structures);
* d_rho, d_E, d_elem: 1,000 valid structures drawn with a fixed seed, where valid means
  structurally and compositionally valid and fingerprintable (the published ``Crystal.valid``),
  against every test structure.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.metrics._pool import ALL_MODULES, process_pool, progress_context
from crystalgen.metrics._util import json_float
from crystalgen.metrics.coverage import CompositionScaler, CoverageResult, compute_coverage, resolve_cutoffs
from crystalgen.metrics.distribution import (
    DISTRIBUTION_SEED,
    N_DISTRIBUTION_SAMPLES,
    DistributionResult,
    PropertyFn,
    evaluate_distribution,
)
from crystalgen.metrics.fingerprints import DEFAULT_METHOD, Fingerprints, cached_fingerprints, compute_fingerprints
from crystalgen.metrics.matching import MatcherConfig
from crystalgen.metrics.uniqueness import NoveltyResult, UniquenessResult, evaluate_novelty, evaluate_uniqueness
from crystalgen.metrics.validity import ValidityConfig, ValidityResult, evaluate_validity


@dataclass(frozen=True)
class GenConfig:
    """Settings of the generation metrics; the defaults are the benchmark's."""

    n_distribution_samples: int = N_DISTRIBUTION_SAMPLES
    seed: int = DISTRIBUTION_SEED
    cutoffs: tuple[float, float] | None = None  # None: the published cutoffs of the dataset
    scaler: str | CompositionScaler = "cdvae"
    matcher: MatcherConfig = MatcherConfig()
    validity: ValidityConfig = ValidityConfig()
    use_cache: bool = True  # cache test-set fingerprints on disk
    fingerprint_method: str = DEFAULT_METHOD  # "fast" or "matminer": two implementations of one fingerprint


@dataclass
class GenResult:
    """Headline figures (fractions in [0, 1]) plus the detailed result of every stage."""

    dataset: str
    n_generated: int
    n_test: int
    struct_validity: float
    comp_validity: float
    validity: float
    cov_recall: float
    cov_precision: float
    d_rho: float
    d_prop: float | None  # d_E; None without a property function
    d_elem: float
    uniqueness: float
    novelty: float | None  # None without a training set
    validity_detail: ValidityResult
    coverage: CoverageResult
    distribution: DistributionResult
    uniqueness_detail: UniquenessResult
    novelty_detail: NoveltyResult | None
    timings: dict[str, float] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable summary (NaN becomes ``None``)."""
        headline: dict[str, Any] = {"dataset": self.dataset, "n_generated": self.n_generated, "n_test": self.n_test}
        for name in (
            "struct_validity",
            "comp_validity",
            "validity",
            "cov_recall",
            "cov_precision",
            "d_rho",
            "d_prop",
            "d_elem",
            "uniqueness",
            "novelty",
        ):
            headline[name] = json_float(getattr(self, name))
        headline["details"] = {
            "validity": self.validity_detail.to_dict(),
            "coverage": self.coverage.to_dict(),
            "distribution": self.distribution.to_dict(),
            "uniqueness": self.uniqueness_detail.to_dict(),
            "novelty": self.novelty_detail.to_dict() if self.novelty_detail else None,
        }
        headline["timings_s"] = {k: round(v, 3) for k, v in self.timings.items()}
        return headline


@contextmanager
def _timed(timings: dict[str, float], name: str) -> Iterator[None]:
    start = time.perf_counter()
    try:
        yield
    finally:
        timings[name] = time.perf_counter() - start


def evaluate_generation(
    generated: Sequence[Crystal],
    test: Sequence[Crystal],
    train: Sequence[Crystal] | None,
    dataset: str,
    property_fn: PropertyFn | None = None,
    config: GenConfig = GenConfig(),
    workers: int | None = os.cpu_count(),
    cache_dir: str | os.PathLike | None = None,
    test_fingerprints: Fingerprints | None = None,
    test_property: Sequence[float] | np.ndarray | None = None,
    show_progress: bool = True,
) -> GenResult:
    """Every generation metric of ``generated`` against ``test`` (and ``train`` for novelty).

    Args:
        dataset: picks the published coverage cutoffs (``mp_20``, ``perov_5``, ``carbon_24``)
            unless ``config.cutoffs`` is set.
        property_fn: maps a list of crystals to one predicted property each (d_E).
        test_fingerprints / test_property: precomputed test-side values, to skip that work.
    """
    generated, test = list(generated), list(test)
    cutoffs = resolve_cutoffs(dataset, config.cutoffs)
    timings: dict[str, float] = {}
    total_start = time.perf_counter()
    with process_pool(workers, ALL_MODULES) as pool, progress_context(None, show_progress) as progress:
        timings["pool_start"] = time.perf_counter() - total_start  # imports in the parent, then fork
        with _timed(timings, "validity"):
            validity = evaluate_validity(generated, config.validity)
        with _timed(timings, "test_fingerprints"):
            if test_fingerprints is None and config.use_cache:
                test_fingerprints = cached_fingerprints(
                    test, cache_dir, workers, pool, progress, show_progress, method=config.fingerprint_method
                )
            elif test_fingerprints is None:
                test_fingerprints = compute_fingerprints(
                    test, workers, pool, progress, show_progress, "test fingerprints", config.fingerprint_method
                )
        with _timed(timings, "generated_fingerprints"):
            gen_fps = compute_fingerprints(
                generated, workers, pool, progress, show_progress, "generated fingerprints", config.fingerprint_method
            )
        with _timed(timings, "coverage"):
            coverage = compute_coverage(gen_fps, test_fingerprints, cutoffs, config.scaler)
        with _timed(timings, "distribution"):
            valid = validity.valid & gen_fps.ok
            distribution = evaluate_distribution(
                generated, test, valid, property_fn, config.n_distribution_samples, config.seed, test_property
            )
        with _timed(timings, "uniqueness"):
            uniqueness = evaluate_uniqueness(generated, config.matcher, workers, pool, progress, show_progress)
        novelty = None
        if train is not None:
            with _timed(timings, "novelty"):
                novelty = evaluate_novelty(
                    generated, list(train), config.matcher, workers, pool, progress, show_progress
                )
    timings["total"] = time.perf_counter() - total_start
    return GenResult(
        dataset=dataset,
        n_generated=len(generated),
        n_test=len(test),
        struct_validity=validity.struct_validity,
        comp_validity=validity.comp_validity,
        validity=validity.validity,
        cov_recall=coverage.cov_recall,
        cov_precision=coverage.cov_precision,
        d_rho=distribution.d_rho,
        d_prop=distribution.d_prop,
        d_elem=distribution.d_elem,
        uniqueness=uniqueness.uniqueness,
        novelty=novelty.novelty if novelty else None,
        validity_detail=validity,
        coverage=coverage,
        distribution=distribution,
        uniqueness_detail=uniqueness,
        novelty_detail=novelty,
        timings=timings,
    )
