"""Build the test-set fingerprint cache with the fast implementation, and compare it with matminer.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/fingerprint_agreement.py \\
        --out docs/reports/fingerprints/agreement-mp_20-test.json
    python bench/fingerprint_agreement.py --dataset perov_5 --limit 500          # quicker

Three measurements on one split (default: the full mp_20 test split, 9,046 structures):

1. the wall time of building the fast cache from empty (``cached_fingerprints`` into a fresh
   folder, the step a first ``benchmark gen`` pays);
2. agreement with matminer's ``CrystalNNFingerprint.from_preset("ops")``, feature by feature:
   structures within 1e-6 in all 61 features, and in the 60 besides the bcc motif (feature 30);
   matminer's fingerprints come from its own cache (``method="matminer"``), built and timed here
   when missing;
3. for structures that differ in the bcc feature, whether matminer agrees with *itself* when
   the same crystal is given with its sites listed in another order and shifted by 1e-9 A
   (a physically identical input): if not, the feature is set by rounding noise, not by the
   crystal.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.data import load_split
from crystalgen.metrics.fingerprints import cached_fingerprints, fingerprint_cache_path
from crystalgen.runs import machine_description

TOLERANCE = 1e-6
BCC_FEATURE = 30
#: Structures re-fingerprinted by matminer for the self-agreement check (it is slow).
SELF_CHECK_LIMIT = 60
SHIFT_A = 1e-9
#: The structure-fingerprint cutoff of mp_20 coverage, to put differences in proportion.
COVERAGE_STRUCTURE_CUTOFF = 0.4


def matminer_self_difference(crystal: Crystal, seed: int) -> np.ndarray:
    """|matminer(crystal) - matminer(same crystal, sites permuted, shifted by SHIFT_A)| per feature."""
    from crystalgen.metrics.fingerprints import structure_fingerprint

    perm = np.random.default_rng(seed).permutation(len(crystal.atomic_numbers))
    shift = SHIFT_A * np.linalg.solve(crystal.lattice.T, np.ones(3)) / np.sqrt(3)
    moved = Crystal(crystal.lattice, crystal.frac_coords[perm] + shift, crystal.atomic_numbers[perm], id=crystal.id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return np.abs(structure_fingerprint(crystal, "matminer") - structure_fingerprint(moved, "matminer"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None, help="only the first N structures")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--reference-cache", type=Path, default=None, help="matminer cache (default: user cache)")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    crystals = load_split(args.dataset, args.split, args.data_dir)[: args.limit]
    print(f"{args.dataset}/{args.split}: {len(crystals)} structures")
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        fast = cached_fingerprints(crystals, scratch, args.workers, label="fast fingerprints (empty cache)")
        fast_s = time.perf_counter() - start
    print(f"fast cache built from empty in {fast_s:.1f} s")

    reference_existed = fingerprint_cache_path(crystals, args.reference_cache, "matminer").is_file()
    start = time.perf_counter()
    reference = cached_fingerprints(
        crystals, args.reference_cache, args.workers, label="matminer fingerprints", method="matminer"
    )
    matminer_s = None if reference_existed else time.perf_counter() - start
    print(f"matminer: {'from its cache' if reference_existed else f'built in {matminer_s:.1f} s'}")

    both = fast.ok & reference.ok
    difference = np.abs(fast.structure - reference.structure)[both]
    others = np.delete(difference, BCC_FEATURE, axis=1)
    all_ok = difference.max(axis=1) <= TOLERANCE
    others_ok = others.max(axis=1) <= TOLERANCE
    ids = np.array([c.id for c in crystals])[both]
    distance = np.linalg.norm(fast.structure - reference.structure, axis=1)[both]
    bcc_off = np.nonzero(~all_ok & others_ok)[0]
    self_changed = []
    for rank, row in enumerate(bcc_off[:SELF_CHECK_LIMIT]):
        index = int(np.nonzero(both)[0][row])
        self_changed.append(float(matminer_self_difference(crystals[index], rank)[BCC_FEATURE]))
    worst_rows = np.argsort(-difference.max(axis=1))[:20]
    result = {
        "dataset": args.dataset,
        "split": args.split,
        "n": len(crystals),
        "machine": machine_description(),
        "workers": args.workers,
        "fast_cache_build_s": round(fast_s, 1),
        "matminer_build_s": None if matminer_s is None else round(matminer_s, 1),
        "fast_failed": int((~fast.ok).sum()),
        "matminer_failed": int((~reference.ok).sum()),
        "failed_in_one_only": int((fast.ok != reference.ok).sum()),
        "compared": int(both.sum()),
        "tolerance": TOLERANCE,
        "within_tolerance_all_61": int(all_ok.sum()),
        "within_tolerance_60_without_bcc": int(others_ok.sum()),
        "worst_difference_without_bcc": float(others.max()) if len(others) else None,
        "worst_difference_bcc": float(difference[:, BCC_FEATURE].max()) if len(difference) else None,
        "max_fingerprint_distance": float(distance.max()) if len(distance) else None,
        "coverage_structure_cutoff": COVERAGE_STRUCTURE_CUTOFF,
        "composition_identical": bool(np.array_equal(fast.composition, reference.composition, equal_nan=True)),
        "bcc_only_disagreements": len(bcc_off),
        "bcc_self_check": {
            "checked": len(self_changed),
            "matminer_changes_itself_over_tolerance": int(sum(d > TOLERANCE for d in self_changed)),
            "shift_A": SHIFT_A,
        },
        "worst": [{"id": str(ids[r]), "max_difference": float(difference[r].max()),
                   "feature": int(difference[r].argmax())} for r in worst_rows if difference[r].max() > TOLERANCE],
    }
    print(json.dumps({k: v for k, v in result.items() if k not in ("worst", "machine")}, indent=2))
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=2) + "\n")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
