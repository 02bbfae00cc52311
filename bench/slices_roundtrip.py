"""SLICES round trip at each decoding level, with loose and strict matching and the cost of each stage.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/slices_roundtrip.py --dataset mp_20 --split test \
        --out docs/reports/slices/roundtrip-mp_20-test.json
    # the CHGNet level on a fixed, seeded subset (needs the relax extra)
    CRYSTALGEN_DATA_DIR=../shared/data python bench/slices_roundtrip.py --dataset mp_20 --split test \
        --chgnet 1000 --out docs/reports/slices/roundtrip-mp_20-test-chgnet.json

Levels: ``embedding`` (barycentric placement in a cell scaled to the bond lengths, no
optimisation), ``optimised`` (the batched bond-length optimisation: what ``Slices.decode``
returns), and with ``--chgnet N`` also ``chgnet`` (the optimised structures relaxed by CHGNet) on N
structures drawn with seed 0. Matching: loose ``StructureMatcher(ltol=0.3, stol=0.5,
angle_tol=10)`` and strict ``(0.2, 0.3, 5)``. No structure is filtered out: one that cannot be
encoded counts as a failure at every level. Results are written after every chunk, and a rerun
with the same ``--out`` resumes.
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
from crystalgen.representations.slices import SlicesError, encode_graph
from crystalgen.representations.slices_geometry import OptimiserConfig, optimise

TOLERANCES = {"loose": {"ltol": 0.3, "stol": 0.5, "angle_tol": 10}, "strict": {"ltol": 0.2, "stol": 0.3, "angle_tol": 5}}
CHUNK = 256
CHGNET_STEPS, CHGNET_FMAX = 500, 0.05


def _match(pairs: list[tuple[Crystal, Crystal | None]]) -> list[dict[str, bool]]:
    """Worker: for (truth, decoded or None) pairs, whether each tolerance matches."""
    from pymatgen.analysis.structure_matcher import StructureMatcher

    warnings.simplefilter("ignore")
    matchers = {name: StructureMatcher(**kwargs) for name, kwargs in TOLERANCES.items()}
    out = []
    for truth, decoded in pairs:
        if decoded is None:
            out.append({name: False for name in matchers})
            continue
        a, b = truth.to_structure(), decoded.to_structure()
        try:
            out.append({name: bool(m.fit(a, b)) for name, m in matchers.items()})
        except Exception:  # noqa: BLE001  a degenerate rebuilt cell can break the matcher: a miss
            out.append({name: False for name in matchers})
    return out


def _decode_levels(crystals, chgnet_model) -> tuple[dict[str, list], dict[str, float], Counter]:
    levels: dict[str, list] = {"embedding": [], "optimised": []}
    seconds = Counter()
    failures: Counter = Counter()
    graphs, positions = [], []
    start = time.perf_counter()
    for k, crystal in enumerate(crystals):
        try:
            graphs.append(encode_graph(crystal))
            positions.append(k)
        except SlicesError as exc:
            failures[f"encode: {exc.cause}"] += 1
    seconds["encode"] += time.perf_counter() - start
    for level, config in (("embedding", OptimiserConfig(steps=0)), ("optimised", OptimiserConfig())):
        start = time.perf_counter()
        decoded = optimise(graphs, config) if graphs else []
        seconds[level] += time.perf_counter() - start
        slots: list = [None] * len(crystals)
        for k, crystal in zip(positions, decoded):
            slots[k] = crystal
            if crystal is None:
                failures[f"{level}: the cell collapsed"] += 1
        levels[level] = slots
    if chgnet_model is not None:
        from crystalgen.filters.relax import chgnet_relax

        start = time.perf_counter()
        relaxed = []
        for crystal in levels["optimised"]:
            result = None if crystal is None else chgnet_relax(chgnet_model, crystal, CHGNET_STEPS, CHGNET_FMAX)
            relaxed.append(None if result is None else result[0])
            if crystal is not None and result is None:
                failures["chgnet: relaxation failed"] += 1
        seconds["chgnet"] += time.perf_counter() - start
        levels["chgnet"] = relaxed
    return levels, seconds, failures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--split", default="test")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--chgnet", type=int, default=None, metavar="N", help="Also relax with CHGNet, on N seeded structures.")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    crystals = load_split(args.dataset, args.split)[: args.limit]
    chgnet_model = None
    if args.chgnet:
        from crystalgen.filters.relax import load_chgnet

        chosen = np.sort(np.random.default_rng(0).choice(len(crystals), size=min(args.chgnet, len(crystals)), replace=False))
        crystals = [crystals[i] for i in chosen]
        chgnet_model = load_chgnet()
    state = json.loads(args.out.read_text()) if args.out.is_file() else None
    if state is None or state["meta"]["n"] != len(crystals):
        state = {"meta": {"dataset": args.dataset, "split": args.split, "n": len(crystals), "filter": "none",
                          "chgnet_subset_seed": 0 if args.chgnet else None, "tolerances": TOLERANCES,
                          "optimiser": OptimiserConfig().__dict__,
                          "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"},
                 "done": 0, "matched": {}, "seconds": {}, "failures": {}}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with ProcessPoolExecutor(max_workers=args.workers) as pool:
        while state["done"] < len(crystals):
            chunk = crystals[state["done"]: state["done"] + CHUNK]
            levels, seconds, failures = _decode_levels(chunk, chgnet_model)
            for level, decoded in levels.items():
                pairs = list(zip(chunk, decoded))
                parts = [pairs[i:i + 32] for i in range(0, len(pairs), 32)]
                results = [r for part in pool.map(_match, parts) for r in part]
                for name in TOLERANCES:
                    key = f"{level}/{name}"
                    state["matched"][key] = state["matched"].get(key, 0) + sum(r[name] for r in results)
            for stage, s in seconds.items():
                state["seconds"][stage] = state["seconds"].get(stage, 0.0) + s
            for cause, count in failures.items():
                state["failures"][cause] = state["failures"].get(cause, 0) + count
            state["done"] += len(chunk)
            state["rates"] = {k: v / state["done"] for k, v in state["matched"].items()}
            state["seconds_per_structure"] = {k: v / state["done"] for k, v in state["seconds"].items()}
            args.out.write_text(json.dumps(state, indent=2) + "\n")
            print(state["done"], {k: round(v, 4) for k, v in state["rates"].items()}, flush=True)
    print(json.dumps(state, indent=2))


if __name__ == "__main__":
    main()
