"""Crystal structure prediction (CSP): match rate and RMSE, as defined in docs/protocol.md.

For each test structure a model proposes k structures of the same composition. A proposal
matches if ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)`` fits it to the ground truth;
a missing (``None``), unparsable or structurally invalid proposal is a miss, and the ground
truth itself is never filtered. A test structure is matched if any of its first k proposals
matches, and its RMS distance is the best (smallest) ``get_rms_dist(pred, gt)[0]`` among them.
Match rate = matched / all test structures; RMSE = mean RMS distance over matched ones.

The matcher is the slow part (pure Python), so the (n, k) matrix of RMS distances is computed
once, in a process pool, and every k' <= k is read off it: a k=20 run reports k=1 (the first
proposal of each) for free. Proposals whose reduced composition differs from the ground truth's
are misses without calling the matcher.

Published code (CDVAE, DiffCSP) also counts SMACT-invalid proposals as misses, and at k=1 also
drops ground truths that fail SMACT. docs/protocol.md does not; ``CspConfig(require_smact=True)``
reproduces the published behaviour for comparison.
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.metrics._pool import chunked, map_chunks, resolve_workers, use_pool
from crystalgen.metrics._util import finite_mean, json_float
from crystalgen.constants import SYMPREC
from crystalgen.metrics.matching import MatcherConfig, reduce_for_matching, rms_distance_reduced
from crystalgen.metrics.validity import ValidityConfig, composition_key, smact_valid, structural_validity

#: Roughly this many matcher calls are sent to a worker at a time.
MATCHES_PER_CHUNK = 64
#: At least this many chunks per worker, so that slow chunks do not leave workers idle.
CHUNKS_PER_WORKER = 4
UNKNOWN_SYSTEM = "unknown"


@dataclass(frozen=True)
class CspConfig:
    """How proposals are judged."""

    matcher: MatcherConfig = MatcherConfig()
    validity: ValidityConfig = ValidityConfig()
    #: Also count SMACT-invalid proposals as misses (the published code's behaviour).
    require_smact: bool = False


@dataclass
class CspResult:
    """CSP figures at one k, plus per-test-structure arrays for plots and breakdowns."""

    k: int
    n: int
    n_matched: int
    match_rate: float
    rmse: float
    matched: np.ndarray  # (n,) bool
    rms: np.ndarray  # (n,) best RMS distance, NaN if unmatched
    best_index: np.ndarray  # (n,) index of the best proposal, -1 if unmatched
    num_atoms: np.ndarray  # (n,) atoms in the ground-truth cell
    crystal_system: list[str]  # ground truth's crystal system at symprec 0.1
    ids: list[str | None] = field(default_factory=list)

    def breakdown(self, by: str = "crystal_system") -> dict[str, dict[str, float]]:
        """Match rate, RMSE and count per crystal system (``by="crystal_system"``) or atom count."""
        if by == "crystal_system":
            labels = np.array(self.crystal_system, dtype=object)
        elif by == "num_atoms":
            labels = self.num_atoms.astype(object)
        else:
            raise ValueError(f"unknown breakdown {by!r}; use 'crystal_system' or 'num_atoms'")
        out = {}
        for label in sorted(set(labels.tolist()), key=lambda x: (isinstance(x, str), x)):
            mask = labels == label
            out[str(label)] = {
                "n": int(mask.sum()),
                "match_rate": float(self.matched[mask].mean()),
                "rmse": json_float(finite_mean(self.rms[mask])),
            }
        return out

    def to_dict(self, per_structure: bool = True) -> dict[str, Any]:
        """JSON-serialisable; NaN becomes ``None``."""
        out: dict[str, Any] = {
            "k": self.k,
            "n": self.n,
            "n_matched": self.n_matched,
            "match_rate": json_float(self.match_rate),
            "rmse": json_float(self.rmse),
        }
        if per_structure:
            out["per_structure"] = {
                "id": list(self.ids),
                "matched": self.matched.tolist(),
                "rms": [json_float(x) for x in self.rms.tolist()],
                "best_index": self.best_index.tolist(),
                "num_atoms": self.num_atoms.tolist(),
                "crystal_system": list(self.crystal_system),
            }
        return out


@dataclass
class CspMatrix:
    """RMS distance of every proposal to its ground truth (NaN = miss), from which results at any k <= k_max follow."""

    rms: np.ndarray  # (n, k_max)
    num_atoms: np.ndarray
    crystal_system: list[str]
    ids: list[str | None]

    def result(self, k: int | None = None) -> CspResult:
        k = self.rms.shape[1] if k is None else int(k)
        if not 1 <= k <= max(1, self.rms.shape[1]):
            raise ValueError(f"k={k} outside 1..{self.rms.shape[1]}")
        sub = self.rms[:, :k]
        matched = np.isfinite(sub).any(axis=1)
        best_index = np.where(matched, np.argmin(np.where(np.isfinite(sub), sub, np.inf), axis=1), -1)
        rms = np.where(matched, sub[np.arange(len(sub)), np.maximum(best_index, 0)], np.nan)
        n = len(sub)
        return CspResult(
            k=k,
            n=n,
            n_matched=int(matched.sum()),
            match_rate=float(matched.mean()) if n else float("nan"),
            rmse=finite_mean(rms),
            matched=matched,
            rms=rms,
            best_index=best_index,
            num_atoms=self.num_atoms,
            crystal_system=self.crystal_system,
            ids=self.ids,
        )


# ---------------------------------------------------------------------------------- worker
def crystal_system(crystal: Crystal, symprec: float = SYMPREC) -> str:
    """Crystal system name (``"cubic"``, ...) from spglib, ``"unknown"`` if symmetry analysis fails."""
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return str(SpacegroupAnalyzer(crystal.to_structure(), symprec=symprec).get_crystal_system())
    except Exception:
        return UNKNOWN_SYSTEM


def proposal_rms(
    pred: Crystal | str | None, gt: Crystal, config: CspConfig = CspConfig(), gt_reduced: Any = None
) -> float:
    """RMS distance of one proposal to its ground truth, NaN for any kind of miss.

    A proposal may be CIF text, parsed here (in the worker, where the cost is spread over the
    pool); an unparsable CIF is a miss. ``gt_reduced`` is the ground truth after
    :func:`~crystalgen.metrics.matching.reduce_for_matching`, to reduce it once for k proposals.
    """
    if isinstance(pred, str):
        try:
            pred = Crystal.from_cif(pred)
        except Exception:
            return float("nan")
    if pred is None or composition_key(pred) != composition_key(gt):
        return float("nan")
    if not structural_validity(pred, config.validity):
        return float("nan")
    if config.require_smact and not smact_valid(pred):
        return float("nan")
    try:
        pred_reduced = reduce_for_matching(pred)
        if gt_reduced is None:
            gt_reduced = reduce_for_matching(gt)
    except Exception:  # pymatgen fails on some degenerate cells: no match, as in the published code
        return float("nan")
    return rms_distance_reduced(pred_reduced, gt_reduced, config.matcher)


def _csp_chunk(
    chunk: tuple[CspConfig, int, list[tuple[Crystal, list[Crystal | str | None]]]],
) -> list[tuple[np.ndarray, str]]:
    """Worker: for each (ground truth, proposals), the RMS row and the ground truth's crystal system."""
    config, k, items = chunk
    out = []
    for gt, preds in items:
        try:
            gt_reduced = reduce_for_matching(gt)
        except Exception:
            gt_reduced = None  # retried (and failing) per proposal: every proposal is a miss
        row = np.full(k, np.nan)
        for j, pred in enumerate(preds[:k]):
            row[j] = proposal_rms(pred, gt, config, gt_reduced=gt_reduced)
        out.append((row, crystal_system(gt)))
    return out


# ---------------------------------------------------------------------------------- public API
def csp_rms_matrix(
    ground_truth: Sequence[Crystal],
    predictions: Sequence[Sequence[Crystal | str | None]],
    k: int | None = None,
    config: CspConfig = CspConfig(),
    workers: int | None = os.cpu_count(),
    pool: Executor | None = None,
    progress: Any = None,
    show_progress: bool = True,
) -> CspMatrix:
    """The (n, k) RMS matrix; ``k=None`` takes the longest proposal list. Short lists are padded with misses."""
    if len(predictions) != len(ground_truth):
        raise ValueError(f"{len(ground_truth)} ground-truth structures but {len(predictions)} prediction lists")
    k = max((len(p) for p in predictions), default=1) if k is None else int(k)
    k = max(k, 1)
    items = [(gt, list(preds[:k])) for gt, preds in zip(ground_truth, predictions)]
    balance = math.ceil(len(items) / (CHUNKS_PER_WORKER * resolve_workers(workers)))
    size = max(1, min(MATCHES_PER_CHUNK // k, balance))
    chunks = [(config, k, list(c)) for c in chunked(items, size)]
    weights = [len(c[2]) for c in chunks]
    with use_pool(pool, workers) as executor:
        rows = map_chunks(
            _csp_chunk, chunks, executor, f"CSP matching (k={k})", progress, show_progress, weights=weights
        )
    rms = np.stack([r for r, _ in rows]) if rows else np.zeros((0, k))
    return CspMatrix(
        rms=rms,
        num_atoms=np.array([gt.num_atoms for gt in ground_truth], dtype=np.int64),
        crystal_system=[s for _, s in rows],
        ids=[gt.id for gt in ground_truth],
    )


def evaluate_csp(
    ground_truth: Sequence[Crystal],
    predictions: Sequence[Sequence[Crystal | str | None]],
    k: int | None = None,
    workers: int | None = os.cpu_count(),
    config: CspConfig = CspConfig(),
    pool: Executor | None = None,
    progress: Any = None,
    show_progress: bool = True,
) -> CspResult:
    """CSP match rate and RMSE at k (the first k proposals of each; ``None`` = all of them)."""
    matrix = csp_rms_matrix(ground_truth, predictions, k, config, workers, pool, progress, show_progress)
    return matrix.result(k)


def evaluate_csp_multi(
    ground_truth: Sequence[Crystal],
    predictions: Sequence[Sequence[Crystal | str | None]],
    ks: Sequence[int] = (1, 20),
    workers: int | None = os.cpu_count(),
    config: CspConfig = CspConfig(),
    pool: Executor | None = None,
    progress: Any = None,
    show_progress: bool = True,
) -> dict[int, CspResult]:
    """Results at several k from one matching pass, e.g. ``{1: ..., 20: ...}`` from 20 proposals each."""
    matrix = csp_rms_matrix(ground_truth, predictions, max(ks), config, workers, pool, progress, show_progress)
    return {int(k): matrix.result(k) for k in ks}
