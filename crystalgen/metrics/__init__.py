"""Benchmark metrics, defined exactly as in docs/protocol.md (the CDVAE / DiffCSP protocol).

Typical use::

    from crystalgen.metrics import evaluate_csp_multi, evaluate_generation
    csp = evaluate_csp_multi(test, predictions, ks=(1, 20))      # {1: CspResult, 20: CspResult}
    gen = evaluate_generation(samples, test, train, dataset="mp_20")
    print(gen.to_dict())

Submodules: :mod:`~crystalgen.metrics.csp` (match rate, RMSE), :mod:`~crystalgen.metrics.validity`,
:mod:`~crystalgen.metrics.fingerprints` and :mod:`~crystalgen.metrics.coverage` (COV-R / COV-P),
:mod:`~crystalgen.metrics.distribution` (Wasserstein distances), :mod:`~crystalgen.metrics.uniqueness`
(uniqueness, novelty) and :mod:`~crystalgen.metrics.gen` (all generation metrics at once).
Heavy dependencies (pymatgen's matcher, matminer, smact) are imported only when used.
"""

from crystalgen.metrics.coverage import (
    COVERAGE_CUTOFFS,
    CompositionScaler,
    CoverageCutoffs,
    CoverageResult,
    compute_coverage,
    evaluate_coverage,
)
from crystalgen.metrics.csp import CspConfig, CspMatrix, CspResult, csp_rms_matrix, evaluate_csp, evaluate_csp_multi
from crystalgen.metrics.distribution import (
    DistributionResult,
    densities,
    evaluate_distribution,
    num_elements,
    sample_valid,
    wasserstein,
)
from crystalgen.metrics.fingerprints import (
    Fingerprints,
    cached_fingerprints,
    composition_fingerprint,
    compute_fingerprints,
    structure_fingerprint,
)
from crystalgen.metrics.gen import GenConfig, GenResult, evaluate_generation
from crystalgen.metrics.matching import MatcherConfig, rms_distance, structures_match
from crystalgen.metrics.uniqueness import NoveltyResult, UniquenessResult, evaluate_novelty, evaluate_uniqueness
from crystalgen.metrics.validity import (
    ValidityConfig,
    ValidityResult,
    composition_key,
    evaluate_validity,
    min_interatomic_distance,
    smact_valid,
    structural_validity,
)

__all__ = [
    "COVERAGE_CUTOFFS",
    "CompositionScaler",
    "CoverageCutoffs",
    "CoverageResult",
    "CspConfig",
    "CspMatrix",
    "CspResult",
    "DistributionResult",
    "Fingerprints",
    "GenConfig",
    "GenResult",
    "MatcherConfig",
    "NoveltyResult",
    "UniquenessResult",
    "ValidityConfig",
    "ValidityResult",
    "cached_fingerprints",
    "composition_fingerprint",
    "composition_key",
    "compute_coverage",
    "compute_fingerprints",
    "csp_rms_matrix",
    "densities",
    "evaluate_coverage",
    "evaluate_csp",
    "evaluate_csp_multi",
    "evaluate_distribution",
    "evaluate_generation",
    "evaluate_novelty",
    "evaluate_uniqueness",
    "evaluate_validity",
    "min_interatomic_distance",
    "num_elements",
    "rms_distance",
    "sample_valid",
    "smact_valid",
    "structural_validity",
    "structure_fingerprint",
    "structures_match",
    "wasserstein",
]
