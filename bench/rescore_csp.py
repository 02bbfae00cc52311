"""Re-score a `crystalgen benchmark csp` run with plain pymatgen, independently of crystalgen's code.

    python bench/rescore_csp.py runs/template-mp_20-csp ../shared/data/mp_20/test.csv.gz --n 300 --k 1

Draws N random test structures (seed 0), parses the run's predictions.csv and the test CIFs with
pymatgen, applies the rule of docs/protocol.md (a proposal with an interatomic distance < 0.5 Å or a
volume < 0.1 Å^3 is a miss), takes the best `StructureMatcher(0.5, 0.3, 10).get_rms_dist` over the
first k proposals, and compares verdict and RMS distance with the run's per_structure.csv.
"""

import argparse
import csv
import random
import warnings

import numpy as np
import pandas as pd
from pymatgen.analysis.structure_matcher import StructureMatcher
from pymatgen.core import Structure

MIN_DISTANCE, MIN_VOLUME, RMS_TOLERANCE = 0.5, 0.1, 1e-6


def best_rms(cifs: list[str], truth: Structure, matcher: StructureMatcher) -> float | None:
    best = None
    for cif in cifs:
        try:
            pred = Structure.from_str(cif, fmt="cif")
            distances = pred.distance_matrix + np.eye(len(pred)) * 10 * MIN_DISTANCE
            if distances.min() < MIN_DISTANCE or pred.volume < MIN_VOLUME:
                continue
            result = matcher.get_rms_dist(pred, truth)
        except Exception:
            result = None
        if result is not None and (best is None or result[0] < best):
            best = result[0]
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("run", help="the benchmark's --out folder")
    parser.add_argument("test_csv", help="the dataset's test split (CSV with material_id and cif)")
    parser.add_argument("--n", type=int, default=300)
    parser.add_argument("--k", type=int, default=1)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    csv.field_size_limit(1 << 28)
    test = pd.read_csv(args.test_csv, dtype={"material_id": str})
    proposals: dict[str, dict[int, str]] = {}
    with open(f"{args.run}/predictions.csv", newline="") as handle:
        for row in csv.DictReader(handle):
            if int(row["rank"]) < args.k:
                proposals.setdefault(row["material_id"], {})[int(row["rank"])] = row["cif"]
    ours = pd.read_csv(f"{args.run}/per_structure.csv", dtype={"material_id": str}).set_index("material_id")
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    picks = random.Random(0).sample(range(len(test)), min(args.n, len(test)))
    agree, theirs, mine = 0, [], []
    for i in picks:
        material = test.material_id[i]
        cifs = [proposals.get(material, {})[r] for r in sorted(proposals.get(material, {}))]
        independent = best_rms(cifs, Structure.from_str(test.cif[i], fmt="cif"), matcher)
        value = ours.loc[material, f"rms_k{args.k}"]
        crystalgen = None if pd.isna(value) else float(value)
        agree += (independent is None and crystalgen is None) or (
            independent is not None and crystalgen is not None and abs(independent - crystalgen) < RMS_TOLERANCE)
        theirs.append(independent is not None)
        mine.append(crystalgen is not None)
    print(f"{args.run} k={args.k}: {agree}/{len(picks)} identical verdicts and RMS; "
          f"match rate crystalgen {np.mean(mine):.4f}, independent {np.mean(theirs):.4f}")


if __name__ == "__main__":
    main()
