"""Space-group compliance of a ``samples.csv`` written by ``crystalgen sample`` (or ``benchmark gen``).

    crystalgen sample --model wyckoff-perov_5 -c SrTiO3 -c BaZrO3 --spacegroup 99 -n 10 --out runs/sg99
    python bench/spacegroup_compliance.py runs/sg99/samples.csv

Every row with a ``template_spacegroup`` is checked from its P1 CIF alone: spglib (symprec 0.1)
finds the template's group (exact), or the sample is invariant under every operation of that group
(a supergroup), or neither (violated). Prints the counts as JSON.
"""

from __future__ import annotations

import argparse
import json

from crystalgen.crystal import Crystal
from crystalgen.metrics.symmetry import spacegroup_compliance
from crystalgen.runs import read_csv_rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("samples", help="a samples.csv with template_spacegroup and cif columns")
    args = parser.parse_args()
    rows = [r for r in read_csv_rows(args.samples) if (r.get("template_spacegroup") or "").strip()]
    crystals = [Crystal.from_cif(r["cif"]) for r in rows]
    result = spacegroup_compliance(crystals, [int(r["template_spacegroup"]) for r in rows])
    by_group: dict[int, int] = {}
    for r in rows:
        by_group[int(r["template_spacegroup"])] = by_group.get(int(r["template_spacegroup"]), 0) + 1
    print(json.dumps({"samples": args.samples, **result.to_dict(), "samples_per_group": by_group}, indent=2))


if __name__ == "__main__":
    main()
