"""Voxel round trip, image -> crystal with no network, and its resolution/width sweep.

Per structure: encode to a :class:`~crystalgen.representations.voxel.VoxelImage`, decode, and
compare with ``StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)``. Also measured: the mean
error of the three Niggli lattice lengths (Å), the mean distance from each atom to its decoded
counterpart (Å, same element, periodic, when the atom counts agree), stored bytes per crystal and
the encode/decode time. Failures are counted by cause.

    python bench/voxel_roundtrip.py --dataset perov_5 --grid 16                 # full test split
    python bench/voxel_roundtrip.py --dataset mp_20 --sweep 16,24,32,48 --widths 0.5,0.75,1,1.5 --limit 1000
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
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.data import load_split
from crystalgen.representations.cell import niggli_cell
from crystalgen.representations.voxel import Voxel, VoxelConfig

MATCHER_KWARGS = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}
CHUNK = 64


def position_error(original: Crystal, decoded: Crystal) -> float | None:
    """Mean distance (Å, in the original's cell) from each atom to the nearest decoded atom of its
    element; None when the counts differ. Both cells are the same Niggli cell, so fractional
    coordinates compare directly."""
    if sorted(original.atomic_numbers) != sorted(decoded.atomic_numbers):
        return None
    delta = original.frac_coords[:, None, :] - decoded.frac_coords[None, :, :]
    delta -= np.round(delta)
    distance = np.linalg.norm(delta @ original.lattice, axis=-1)
    distance[original.atomic_numbers[:, None] != decoded.atomic_numbers[None, :]] = np.inf
    return float(distance.min(axis=1).mean())


def _one(voxel: Voxel, matcher, crystal: Crystal) -> dict:
    reduced = niggli_cell(crystal)
    start = time.perf_counter()
    image = voxel.encode(crystal)
    encoded = time.perf_counter()
    try:
        decoded = voxel.decode(image)
    except Exception as exc:
        return {"cause": f"decode: {getattr(exc, 'cause', type(exc).__name__)}", "bytes": image.nbytes}
    done = time.perf_counter()
    lengths = np.linalg.norm(reduced.lattice, axis=1), np.linalg.norm(decoded.lattice, axis=1)
    row = {"bytes": image.nbytes, "encode_s": encoded - start, "decode_s": done - encoded,
           "lattice_error": float(np.abs(lengths[0] - lengths[1]).mean()),
           "position_error": position_error(reduced, decoded)}
    if decoded.num_atoms != crystal.num_atoms:
        row["cause"] = "atom count changed"
        return row
    try:
        if not matcher.fit(crystal.to_structure(), decoded.to_structure()):
            row["cause"] = "no StructureMatcher match"
    except Exception as exc:  # symmetry analysis inside the comparison can fail, or run out of memory
        row["cause"] = f"compare: {type(exc).__name__}"
    return row


def _chunk(args: tuple[dict, list[Crystal]]) -> list[dict]:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    config, crystals = args
    warnings.simplefilter("ignore")
    voxel, matcher = Voxel(VoxelConfig(**config)), StructureMatcher(**MATCHER_KWARGS)
    return [_one(voxel, matcher, c) for c in crystals]


def measure(config: VoxelConfig, crystals: list[Crystal], workers: int) -> dict:
    chunks = [(asdict(config), crystals[i:i + CHUNK]) for i in range(0, len(crystals), CHUNK)]
    start = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        rows = [r for chunk in pool.map(_chunk, chunks) for r in chunk]
    wall = time.perf_counter() - start
    causes = Counter(r["cause"] for r in rows if "cause" in r)
    decoded = [r for r in rows if "lattice_error" in r]
    positions = [r["position_error"] for r in decoded if r["position_error"] is not None]
    matched = len(rows) - sum(causes.values())
    return {
        "config": asdict(config), "n": len(rows), "matched": matched, "rate": matched / len(rows),
        "failures_by_cause": dict(causes.most_common()),
        "failed_ids": [c.id for c, r in zip(crystals, rows) if "cause" in r],
        "mean_lattice_length_error_A": float(np.mean([r["lattice_error"] for r in decoded])) if decoded else None,
        "mean_position_error_A": float(np.mean(positions)) if positions else None,
        "bytes_per_crystal": float(np.mean([r["bytes"] for r in rows])),
        "encode_ms": 1000 * float(np.mean([r["encode_s"] for r in decoded])) if decoded else None,
        "decode_ms": 1000 * float(np.mean([r["decode_s"] for r in decoded])) if decoded else None,
        "wall_s": round(wall, 1),
    }


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--grid", type=int, default=VoxelConfig.grid)
    parser.add_argument("--width", type=float, default=VoxelConfig.width)
    parser.add_argument("--cell-grid", type=int, default=VoxelConfig.cell_grid)
    parser.add_argument("--sweep", type=str, default=None, help="comma-separated basis grids to sweep")
    parser.add_argument("--widths", type=str, default=None, help="comma-separated widths (voxels) to sweep")
    parser.add_argument("--limit", type=int, default=None, help="only the first N structures")
    parser.add_argument("--max-atoms", type=int, default=None,
                        help="only structures with at most this many atoms (e.g. 8: the mp_20_reduced_train_small test split)")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    crystals = [c for c in load_split(args.dataset, args.split, args.data_dir)
                if args.max_atoms is None or c.num_atoms <= args.max_atoms][:args.limit]
    base = VoxelConfig(grid=args.grid, width=args.width, cell_grid=args.cell_grid)
    grids = [int(g) for g in _floats(args.sweep)] if args.sweep else [args.grid]
    widths = _floats(args.widths) if args.widths else [args.width]
    subset = f"-max{args.max_atoms}atoms" if args.max_atoms else ""
    out = args.out or Path(f"bench/results/voxel-roundtrip-{args.dataset}-{args.split}{subset}.json")
    out.parent.mkdir(parents=True, exist_ok=True)
    report = {"meta": {"dataset": args.dataset, "split": args.split, "max_atoms": args.max_atoms, "n": len(crystals),
                       "matcher": MATCHER_KWARGS,
                       "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}",
                       "workers": args.workers}, "results": []}
    print("| grid | width (voxels) | match | lattice error (Å) | position error (Å) | kB/crystal | decode ms |")
    print("|---|---|---|---|---|---|---|")
    for grid in grids:
        for width in widths:
            result = measure(replace(base, grid=grid, width=width), crystals, args.workers)
            report["results"].append(result)
            out.write_text(json.dumps(report, indent=1))
            print(f"| {grid} | {width:g} | {100 * result['rate']:.2f}% ({result['matched']}/{result['n']}) | "
                  f"{result['mean_lattice_length_error_A']:.2e} | {result['mean_position_error_A']:.2e} | "
                  f"{result['bytes_per_crystal'] / 1000:.1f} | {result['decode_ms']:.1f} |  "
                  f"{result['failures_by_cause']}", flush=True)


if __name__ == "__main__":
    main()
