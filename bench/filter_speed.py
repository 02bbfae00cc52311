"""Filter throughput and verdicts on a mix of dataset structures and deliberately broken ones.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/filter_speed.py                 # 1,000 mp_20 test structures
    python bench/filter_speed.py --n 300 --surrogate checkpoints/surrogate-mp_20

The candidates are the first N structures of the mp_20 test split, written as a samples CSV, plus
broken variants: for every tenth structure, a copy with one atom moved 0.1 Å from another
(structurally invalid), and a set of charge-imbalanced rock-salt cells (NaCl2, Na2Cl, CaF3,
BaO3 ...) in sensible geometries (compositionally invalid under smact14). ``crystalgen filter`` runs on
that CSV as a fresh process with the default stages (structural, SMACT, uniqueness, novelty
against mp_20_reduced_train, surrogate stability); the headline is structures per second of the
whole command, start-up, data loading and the surrogate's load included. Then the verdicts are
compared with what each row should get:

* every broken row must be rejected by the stage that targets it;
* dataset rows must not be rejected by the validity stages unless the benchmark protocol's own
  validity functions (``crystalgen.metrics.validity``, the published definitions) reject them too.

Results are printed and written as JSON in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_N = 1000
OVERLAP_EVERY = 10
OVERLAP_DISTANCE = 0.1  # Å
#: Rock-salt-like cells whose formulas cannot be charge-balanced with smact14's oxidation states.
IMBALANCED = (("Na", "Cl", "Cl"), ("Na", "Na", "Cl"), ("Ca", "F", "F", "F"), ("Li", "F", "F"), ("Mg", "F", "F", "F"),
              ("Ba", "O", "O", "O"), ("Cs", "F", "F"), ("Zn", "Cl", "Cl", "Cl"))


def _overlapping(crystal):
    broken = crystal.copy()
    cart = broken.cart_coords
    cart[1] = cart[0] + np.array([OVERLAP_DISTANCE, 0.0, 0.0])
    broken.frac_coords = (cart @ np.linalg.inv(broken.lattice)) % 1.0
    return broken


def _imbalanced(symbols):
    from pymatgen.core import Element

    from crystalgen.crystal import Crystal

    positions = np.array([[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0, 0], [0, 0.5, 0]])[:len(symbols)]
    return Crystal(np.eye(3) * 4.5, positions, np.array([Element(s).Z for s in symbols]), id="".join(symbols))


def build_candidates(n: int, path: Path) -> list[dict]:
    from crystalgen.data import load_split

    test = load_split("mp_20", "test")[:n]
    rows = [{"sample_id": c.id, "kind": "dataset", "cif": c.to_cif()} for c in test]
    rows += [{"sample_id": f"{c.id}-overlap", "kind": "overlap", "cif": _overlapping(c).to_cif()}
             for c in test[::OVERLAP_EVERY] if c.num_atoms > 1]
    rows += [{"sample_id": f"imbalanced-{i}", "kind": "imbalanced", "cif": _imbalanced(s).to_cif()}
             for i, s in enumerate(IMBALANCED)]
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, ["sample_id", "kind", "cif"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


def check_verdicts(filtered: Path, dataset) -> dict:
    from crystalgen.metrics.validity import smact_valid, structural_validity
    from crystalgen.runs import CSV_FIELD_LIMIT

    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open(filtered, newline="") as handle:
        rows = list(csv.DictReader(handle))
    by_id = {c.id: c for c in dataset}
    result = {"overlap": {"n": 0, "rejected_structural": 0}, "imbalanced": {"n": 0, "rejected_composition": 0},
              "dataset": {"n": 0, "rejected_structural": 0, "protocol_rejects_structural": 0,
                          "rejected_composition": 0, "protocol_rejects_composition": 0, "disagreements": 0,
                          "passed": 0, "rejected_by": {}}}
    for row in rows:
        kind, reason = row["kind"], row["reject_reason"]
        entry = result[kind]
        entry["n"] += 1
        if kind == "overlap":
            entry["rejected_structural"] += row["valid_struct"] == "False"
        elif kind == "imbalanced":
            entry["rejected_composition"] += row["valid_comp"] == "False"
        else:
            crystal = by_id[row["sample_id"]]
            protocol_struct, protocol_comp = structural_validity(crystal), smact_valid(crystal)
            entry["rejected_structural"] += row["valid_struct"] == "False"
            entry["protocol_rejects_structural"] += not protocol_struct
            entry["rejected_composition"] += row["valid_comp"] == "False"
            entry["protocol_rejects_composition"] += not protocol_comp
            entry["disagreements"] += ((row["valid_struct"] == "True") != protocol_struct
                                       or (row["valid_comp"] == "True") != protocol_comp)
            entry["passed"] += row["passed"] == "True"
            if reason:
                entry["rejected_by"][reason] = entry["rejected_by"].get(reason, 0) + 1
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="mp_20 test structures (default 1000)")
    parser.add_argument("--surrogate", default="surrogate-mp_20")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "filter_speed.json")
    args = parser.parse_args()
    from crystalgen.data import load_split
    from crystalgen.runs import machine_description

    with tempfile.TemporaryDirectory() as tmp:
        candidates = Path(tmp) / "candidates.csv"
        rows = build_candidates(args.n, candidates)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "crystalgen", "filter", str(candidates), "--out", str(Path(tmp) / "out"),
                        "--surrogate", args.surrogate], check=True, env=dict(os.environ), stdout=subprocess.DEVNULL)
        wall = time.perf_counter() - start
        summary = json.loads((Path(tmp) / "out" / "summary.json").read_text())
        verdicts = check_verdicts(Path(tmp) / "out" / "filtered.csv", load_split("mp_20", "test")[:args.n])
    result = {"candidates": len(rows), "wall_s": round(wall, 2), "structures_per_s": round(len(rows) / wall, 1),
              "filter_stage_wall_s": summary["wall_s"], "filter_stage_structures_per_s": round(summary["structures_per_s"], 1),
              "funnel": summary["funnel"], "verdicts": verdicts, "surrogate": args.surrogate,
              "machine": machine_description(), "python": platform.python_version()}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("candidates", "wall_s", "structures_per_s", "filter_stage_structures_per_s")}))
    print(json.dumps(verdicts, indent=1))


if __name__ == "__main__":
    main()
