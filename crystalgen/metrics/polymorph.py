"""Polymorph-aware CSP: METRe and cRMSE, polymorph leakage, and a polymorph-grouped split.

Definitions from Martirossyan et al., "All that structure matches does not glitter"
(arXiv:2509.12178), as implemented in the authors' OMatG code (``metre_rmsds`` / ``match_rmsds``
in ``omg/analysis``); see docs/polymorph.md for the sources and what differs here.

* **METRe** (match everyone to reference). A CSP model is asked for structures of composition C
  once per test entry of composition C. The usual match rate compares the proposal made for
  entry i only with structure i, although the model was given nothing that tells polymorphs of
  C apart; METRe compares every proposal for C with every test structure of C. A test structure
  is matched if any proposal of its reduced composition matches it, and its RMS distance is the
  best one over those proposals. METRe = matched / all test structures.
* **cRMSE**: the mean RMS distance over *all* test structures, an unmatched one counting as the
  matcher's ``stol``. Unlike the usual RMSE (mean over matched ones only) it cannot be improved
  by matching fewer, easier structures.

Both come from the usual matching of each test structure with its own proposals (or the RMS
distances a CSP benchmark has already computed) plus one pass of
:func:`~crystalgen.metrics.csp.csp_rms_matrix` over the proposals made for the *other* test
structures of its reduced composition, so the usual match rate and METRe share one set of rules.

*Polymorph leakage* is a test structure whose reduced composition also occurs in the training
data: a model that recalls training structures of that composition can "predict" it without
learning anything transferable. :func:`polymorph_grouped_split` keeps every reduced composition
inside one split, as the paper's polymorph splits do.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Sequence
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.metrics._util import finite_mean, json_float, share
from crystalgen.metrics.csp import CspConfig, csp_rms_matrix
from crystalgen.metrics.validity import CompositionKey, composition_key

#: The split names and fractions of the CDVAE benchmark datasets (60 / 20 / 20).
DEFAULT_SPLIT_FRACTIONS: dict[str, float] = {"train": 0.6, "val": 0.2, "test": 0.2}
Proposal = Crystal | str | None


def exact_composition_key(crystal: Crystal) -> CompositionKey:
    """The unreduced composition ``((Z, count), ...)``: C6 and C8 differ, unlike in :func:`composition_key`."""
    z, counts = np.unique(np.asarray(crystal.atomic_numbers, dtype=np.int64), return_counts=True)
    return tuple(zip(z.tolist(), counts.tolist()))


COMPOSITION_KEYS: dict[str, Callable[[Crystal], CompositionKey]] = {
    "reduced": composition_key,
    "exact": exact_composition_key,
}


def _key_function(key: str) -> Callable[[Crystal], CompositionKey]:
    if key not in COMPOSITION_KEYS:
        raise ValueError(f"unknown composition key {key!r}; use one of {sorted(COMPOSITION_KEYS)}")
    return COMPOSITION_KEYS[key]


# ---------------------------------------------------------------------------------- METRe / cRMSE
@dataclass(frozen=True)
class MetreConfig:
    """How proposals are judged: the CSP rules (matcher tolerances, validity, optional SMACT)."""

    csp: CspConfig = CspConfig()

    @property
    def unmatched_rms(self) -> float:
        """What an unmatched test structure contributes to cRMSE: the matcher's site tolerance."""
        return self.csp.matcher.stol


@dataclass
class MetreResult:
    """METRe and cRMSE, beside the usual index-aligned match rate and its cRMSE, per test structure."""

    n: int
    n_proposals: int
    unmatched_rms: float
    rms_any: np.ndarray  # (n,) best RMS over the composition's pool, NaN if unmatched (METRe)
    rms_own: np.ndarray  # (n,) best RMS over the structure's own proposals, NaN if unmatched
    ids: list[str | None] = field(default_factory=list)

    @property
    def metre(self) -> float:
        return share(np.isfinite(self.rms_any), self.n)

    @property
    def crmse(self) -> float:
        return self._crmse(self.rms_any)

    @property
    def mean_rms(self) -> float:
        """RMS over the METRe-matched structures only (what the usual RMSE would be)."""
        return finite_mean(self.rms_any)

    @property
    def match_rate(self) -> float:
        """The usual CSP match rate (a structure's own proposals only)."""
        return share(np.isfinite(self.rms_own), self.n)

    @property
    def crmse_own(self) -> float:
        return self._crmse(self.rms_own)

    def _crmse(self, rms: np.ndarray) -> float:
        return float(np.where(np.isfinite(rms), rms, self.unmatched_rms).mean()) if self.n else float("nan")

    def subset(self, mask: np.ndarray) -> "MetreResult":
        """The same figures over the test structures where ``mask`` is true (pools stay those of the full set)."""
        mask = np.asarray(mask, dtype=bool)
        if mask.shape != (self.n,):
            raise ValueError(f"mask has shape {mask.shape}, expected ({self.n},)")
        ids = [i for i, keep in zip(self.ids, mask) if keep] if self.ids else []
        return MetreResult(int(mask.sum()), self.n_proposals, self.unmatched_rms,
                           self.rms_any[mask], self.rms_own[mask], ids)

    def to_dict(self, with_metre: bool = True) -> dict[str, Any]:
        """JSON-serialisable; NaN becomes ``None``, and so do the METRe figures when ``with_metre`` is false."""
        metre = json_float if with_metre else (lambda _value: None)
        return {
            "n": self.n,
            "n_proposals": self.n_proposals,
            "metre": metre(self.metre),
            "crmse": metre(self.crmse),
            "metre_mean_rms": metre(self.mean_rms),
            "match_rate": json_float(self.match_rate),
            "crmse_own": json_float(self.crmse_own),
            "unmatched_rms": self.unmatched_rms,
        }


class MetreMetric:
    """METRe / cRMSE of CSP proposals; ``proposals[i]`` were made for the composition of ``references[i]``.

    Pools are formed by the composition each proposal was *asked* for (its reference's), not the
    one it came out with: a proposal of another composition is a miss, as in the usual match rate.
    """

    def __init__(self, config: MetreConfig = MetreConfig()) -> None:
        self.config = config

    def __call__(self, references: Sequence[Crystal], proposals: Sequence[Sequence[Proposal]],
                 workers: int | None = os.cpu_count(), show_progress: bool = False,
                 own_rms: np.ndarray | None = None, pool: Executor | None = None) -> MetreResult:
        """``own_rms``: each reference's best RMS over its own proposals (NaN if unmatched), when a CSP
        benchmark has already matched them; then only the other proposals of each pool are matched."""
        if len(proposals) != len(references):
            raise ValueError(f"{len(references)} references but {len(proposals)} proposal lists")
        match = dict(config=self.config.csp, workers=workers, pool=pool, show_progress=show_progress)
        if own_rms is None:
            own_rms = _row_min(csp_rms_matrix(references, proposals, **match).rms) if references else np.zeros(0)
        own_rms = np.asarray(own_rms, dtype=np.float64)
        if own_rms.shape != (len(references),):
            raise ValueError(f"own_rms has shape {own_rms.shape}, expected ({len(references)},)")
        others = other_proposals(references, proposals)
        rows = [i for i, pool_i in enumerate(others) if pool_i]
        cross = np.full(len(references), np.nan)
        if rows:
            width = max(len(others[i]) for i in rows)
            cross[rows] = _row_min(csp_rms_matrix([references[i] for i in rows], [others[i] for i in rows],
                                                  k=width, **match).rms)
        return MetreResult(
            n=len(references),
            n_proposals=sum(len(p) for p in proposals),
            unmatched_rms=self.config.unmatched_rms,
            rms_any=np.fmin(own_rms, cross),
            rms_own=own_rms,
            ids=[r.id for r in references],
        )

    def own_only(self, references: Sequence[Crystal], proposals: Sequence[Sequence[Proposal]],
                 own_rms: np.ndarray) -> MetreResult:
        """The usual figures alone, without matching the other proposals (its METRe figures are not
        meaningful: write it with ``to_dict(with_metre=False)``)."""
        own_rms = np.asarray(own_rms, dtype=np.float64)
        return MetreResult(len(references), sum(len(p) for p in proposals), self.config.unmatched_rms,
                           np.full(len(references), np.nan), own_rms, [r.id for r in references])


def other_proposals(references: Sequence[Crystal], proposals: Sequence[Sequence[Proposal]]) -> list[list[Proposal]]:
    """For each reference, the proposals made for the *other* references of its reduced composition."""
    group_of = _group_ids([composition_key(r) for r in references])
    members: dict[int, list[int]] = {}
    for index, group in enumerate(group_of):
        members.setdefault(int(group), []).append(index)
    return [[p for j in members[int(group)] if j != i for p in proposals[j]] for i, group in enumerate(group_of)]


def cross_pairs(references: Sequence[Crystal], proposals: Sequence[Sequence[Proposal]]) -> int:
    """How many (reference, other proposal) pairs METRe matches beyond the usual ones, before matching them."""
    if not references:
        return 0
    group_of = _group_ids([composition_key(r) for r in references])
    own = np.array([len(p) for p in proposals], dtype=np.float64)
    return int((np.bincount(group_of, weights=own)[group_of] - own).sum())


def _group_ids(keys: Sequence[CompositionKey]) -> np.ndarray:
    """An integer per key, equal for equal keys."""
    index: dict[CompositionKey, int] = {}
    return np.array([index.setdefault(key, len(index)) for key in keys], dtype=np.int64)


def _row_min(rms: np.ndarray) -> np.ndarray:
    """Smallest finite entry of each row, NaN for a row without one."""
    finite = np.isfinite(rms)
    best = np.where(finite, rms, np.inf).min(axis=1, initial=np.inf)
    return np.where(finite.any(axis=1), best, np.nan)


# ---------------------------------------------------------------------------------- leakage
@dataclass
class PolymorphLeakage:
    """How many test structures have a same-composition structure (a polymorph, or a duplicate) in train."""

    key: str
    n_train: int
    n_test: int
    n_test_compositions: int
    leaked: np.ndarray  # (n_test,) bool: the composition also occurs in train
    n_leaked_compositions: int
    n_test_sharing_within_test: int  # test structures whose composition another test structure has

    @property
    def n_leaked(self) -> int:
        return int(self.leaked.sum())

    @property
    def leaked_fraction(self) -> float:
        return share(self.leaked, self.n_test)

    def to_dict(self) -> dict[str, Any]:
        return {
            "key": self.key,
            "n_train": self.n_train,
            "n_test": self.n_test,
            "n_test_compositions": self.n_test_compositions,
            "n_leaked": self.n_leaked,
            "leaked_fraction": json_float(self.leaked_fraction),
            "n_leaked_compositions": self.n_leaked_compositions,
            "n_test_sharing_within_test": self.n_test_sharing_within_test,
        }


def polymorph_leakage(train: Sequence[Crystal], test: Sequence[Crystal], key: str = "reduced") -> PolymorphLeakage:
    """Which test structures share their (``"reduced"`` or ``"exact"``) composition with a training structure."""
    key_of = _key_function(key)
    train_keys = {key_of(c) for c in train}
    test_keys = [key_of(c) for c in test]
    groups = _group_ids(test_keys)
    group_sizes = np.bincount(groups) if len(groups) else np.zeros(0, dtype=np.int64)
    leaked = np.array([k in train_keys for k in test_keys], dtype=bool)
    return PolymorphLeakage(
        key=key,
        n_train=len(train),
        n_test=len(test),
        n_test_compositions=len(group_sizes),
        leaked=leaked,
        n_leaked_compositions=len(set(test_keys) & train_keys),
        n_test_sharing_within_test=int((group_sizes[groups] > 1).sum()) if len(groups) else 0,
    )


# ---------------------------------------------------------------------------------- grouped split
def _key_text(key: CompositionKey) -> str:
    return ",".join(f"{z}:{count}" for z, count in key)


def polymorph_grouped_split(crystals: Sequence[Crystal], fractions: dict[str, float] | None = None,
                            seed: int = 0, key: str = "reduced") -> dict[str, list[Crystal]]:
    """Split so that every composition lies entirely inside one split.

    Compositions are ordered by ``sha256(seed:composition)`` and handed out in that order, each to
    the first split (in ``fractions`` order) whose quota of ``fraction * n`` structures is not yet
    full. The result depends on the set of structures and the seed only, not on row order, and a
    split's structures keep their input order. Split sizes overshoot their quotas by at most one
    composition group, so a dataset with few, large groups splits far from the requested fractions
    (carbon_24 by reduced composition is a single group: everything lands in the first split).
    """
    fractions = dict(DEFAULT_SPLIT_FRACTIONS if fractions is None else fractions)
    if not fractions or any(f < 0 for f in fractions.values()) or not np.isclose(sum(fractions.values()), 1.0):
        raise ValueError(f"fractions must be non-negative and sum to 1, got {fractions}")
    key_of = _key_function(key)
    keys = [_key_text(key_of(c)) for c in crystals]
    members: dict[str, list[int]] = {}
    for index, text in enumerate(keys):
        members.setdefault(text, []).append(index)
    order = sorted(members, key=lambda text: hashlib.sha256(f"{seed}:{text}".encode()).hexdigest())
    names = list(fractions)
    quotas = np.array([fractions[name] for name in names]) * len(crystals)
    filled = np.zeros(len(names))
    split_of = np.empty(len(crystals), dtype=np.int64)
    for text in order:
        open_splits = np.flatnonzero(filled < quotas)
        target = int(open_splits[0]) if len(open_splits) else len(names) - 1
        split_of[members[text]] = target
        filled[target] += len(members[text])
    return {name: [c for c, s in zip(crystals, split_of) if s == i] for i, name in enumerate(names)}
