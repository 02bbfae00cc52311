"""Round-trip rate of every registered representation on a dataset split.

For each structure: ``decode(encode(c))`` is compared with ``c`` by
``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``. Failures are counted by cause (an
exception while encoding, while decoding, or no match). Results are written per representation
to ``--out`` as they finish, so ``--resume`` skips representations already measured.

    python bench/roundtrip.py --dataset mp_20 --split test            # full 9,046 structures
    python bench/roundtrip.py --limit 200 --representations wyckoff   # quick look
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections import Counter
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.data import load_split
from crystalgen.representations import REPRESENTATIONS, decoder_can_fail, get_representation
from crystalgen.representations.cell import primitive_cell

MATCHER_KWARGS = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}
CHUNK = 64
MATCHED_AFTER_PRIMITIVE = "matched only after reducing the decoded cell to its primitive cell"
CAUSE_LENGTH = 80
LENGTH_BIN = 16


def _length(encoded: object) -> int | None:
    """Length of a sequence encoding (tokens, strings), for the length distribution; None otherwise."""
    return len(encoded) if isinstance(encoded, (list, tuple, str)) else None


def _round_trip_chunk(args: tuple[str, list[Crystal]]) -> list[tuple[str | None, int | None]]:
    """Worker: per crystal, (None for a matched round trip else the cause of failure, encoded length)."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    name, crystals = args
    warnings.simplefilter("ignore")
    representation = get_representation(name)
    matcher = StructureMatcher(**MATCHER_KWARGS)
    causes: list[tuple[str | None, int | None]] = []
    for crystal in crystals:
        causes.append(_round_trip_one(representation, matcher, crystal))
    return causes


def _failure(stage: str, exc: Exception) -> str:
    # a decoder that can fail names its cause; group by it rather than by the (site-specific) message
    cause = getattr(exc, "cause", None)
    return f"{stage}: {cause}" if cause else f"{stage}: {type(exc).__name__}: {str(exc)[:CAUSE_LENGTH]}"


def _round_trip_one(representation, matcher, crystal: Crystal) -> tuple[str | None, int | None]:
    try:
        encoded = representation.encode(crystal)
    except Exception as exc:
        return _failure("encode", exc), None
    length = _length(encoded)
    try:
        decoded = representation.decode(encoded)
    except Exception as exc:
        return _failure("decode", exc), length
    try:
        if decoded.num_atoms % crystal.num_atoms and crystal.num_atoms % decoded.num_atoms:
            return "atom count changed", length
        if matcher.fit(crystal.to_structure(), decoded.to_structure()):
            return None, length
        if decoded.num_atoms != crystal.num_atoms and matcher.fit(
            crystal.to_structure(), primitive_cell(decoded).to_structure()
        ):
            # StructureMatcher's own primitive reduction misses some centred cells (e.g. a
            # 40-atom conventional fcc cell against its 10-atom primitive); counted separately.
            return MATCHED_AFTER_PRIMITIVE, length
        return "no StructureMatcher match", length
    except Exception as exc:  # symmetry analysis inside the comparison can fail too
        return _failure("compare", exc), length


def measure(name: str, crystals: list[Crystal], workers: int) -> dict:
    chunks = [(name, crystals[i : i + CHUNK]) for i in range(0, len(crystals), CHUNK)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        results = [r for chunk in pool.map(_round_trip_chunk, chunks) for r in chunk]
    elapsed = time.perf_counter() - start
    causes = [cause for cause, _ in results]
    lengths = np.array([length for _, length in results if length is not None])
    via_primitive = sum(c == MATCHED_AFTER_PRIMITIVE for c in causes)
    failures = [(crystals[i].id, c) for i, c in enumerate(causes) if c not in (None, MATCHED_AFTER_PRIMITIVE)]
    by_cause = Counter(c for _, c in failures)
    return {
        "representation": name,
        "n": len(crystals),
        "matched": len(crystals) - len(failures),
        "rate": (len(crystals) - len(failures)) / len(crystals),
        "matched_only_after_primitive_reduction": via_primitive,
        "wall_s": round(elapsed, 1),
        "failures_by_cause": dict(by_cause.most_common()),
        "failed_ids": [i for i, _ in failures],
        "decoder_can_fail": decoder_can_fail(get_representation(name)),
        **({"encoded_length": _distribution(lengths)} if len(lengths) else {}),
    }


def _distribution(lengths: np.ndarray) -> dict:
    """Summary and histogram (bins of 16) of encoded lengths, e.g. tokens per crystal."""
    counts = np.bincount(lengths // LENGTH_BIN)
    return {"min": int(lengths.min()), "median": float(np.median(lengths)), "p95": float(np.percentile(lengths, 95)),
            "max": int(lengths.max()), "mean": round(float(lengths.mean()), 1), "bin": LENGTH_BIN,
            "histogram": {int(i * LENGTH_BIN): int(c) for i, c in enumerate(counts) if c}}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--representations", nargs="*", default=list(REPRESENTATIONS))
    parser.add_argument("--limit", type=int, default=None, help="only the first N structures")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=Path("bench/results/roundtrip.json"))
    parser.add_argument("--resume", action="store_true", help="skip representations already in --out")
    args = parser.parse_args()

    crystals = load_split(args.dataset, args.split, args.data_dir)[: args.limit]
    results = json.loads(args.out.read_text()) if args.resume and args.out.is_file() else {}
    results.setdefault("meta", {}).update(
        {"dataset": args.dataset, "split": args.split, "n": len(crystals), "matcher": MATCHER_KWARGS,
         "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}", "workers": args.workers}
    )
    results.setdefault("results", {})
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for name in args.representations:
        if name in results["results"] and results["results"][name]["n"] == len(crystals):
            continue
        results["results"][name] = measure(name, crystals, args.workers)
        args.out.write_text(json.dumps(results, indent=1))
        r = results["results"][name]
        print(f"{name:18s} {r['matched']:>6}/{r['n']:<6} {100 * r['rate']:7.3f}%  {r['wall_s']:7.1f} s"
              f"  ({r['matched_only_after_primitive_reduction']} matched only after primitive reduction)", flush=True)
        for cause, count in list(r["failures_by_cause"].items())[:5]:
            print(f"{'':18s}   {count:>5} x {cause}")


if __name__ == "__main__":
    main()
