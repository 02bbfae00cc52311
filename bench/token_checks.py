"""The checks on every generated sequence of a token checkpoint, re-validated by plain pymatgen and spglib.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/token_checks.py --model cif-tokens-mp_20 -n 1000 \
        --out docs/reports/cif-tokens/checks-mp_20-gen.json

Draws ``-n`` sequences from scratch (the start token alone; ``--prompts test`` takes the first
``-n`` test compositions of the checkpoint's protocol instead), seed 0, and reports the
checkpoint's own check counts by cause. Each sample that passed is then written out as a
symmetric CIF (``crystalgen.io``'s ``cif-symmetric``) and re-read with pymatgen's ``CifParser``; spglib at symprec
0.1 must find the space group the sequence stated, and the composition must be the prompt's.
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

from crystalgen.data import load_protocol
from crystalgen.generators.target import Target
from crystalgen.generators.template import SPACEGROUP_PROPERTY
from crystalgen.metrics.cif_validity import CHECK_SYMPREC
from crystalgen.models import load_model


def revalidated(crystal, target: Target) -> bool:
    """Re-read the crystal's symmetric CIF with plain pymatgen and check group and composition."""
    import spglib
    from pymatgen.io.cif import CifParser

    from crystalgen.io import format_crystal

    structure = CifParser.from_str(format_crystal(crystal, "cif-symmetric")).parse_structures(primitive=True)[0]
    found = spglib.get_symmetry_dataset((structure.lattice.matrix, structure.frac_coords,
                                         [site.specie.Z for site in structure]), symprec=CHECK_SYMPREC)
    same_group = found is not None and int(found.number) == int(crystal.properties[SPACEGROUP_PROPERTY])
    same_formula = target.composition is None or structure.composition.reduced_composition == \
        target.composition.reduced_composition
    return bool(same_group and same_formula)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("-n", type=int, default=1000)
    parser.add_argument("--prompts", choices=["scratch", "test"], default="scratch")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    model = load_model(args.model)
    if args.prompts == "test":
        targets = [Target.from_crystal(c) for c in load_protocol(model.config["protocol"]).load().test[: args.n]]
    else:
        targets = [Target()]
    start = time.perf_counter()
    samples = model.sample(targets, n=args.n if args.prompts == "scratch" else 1, seed=args.seed)
    wall = time.perf_counter() - start
    pairs = [(crystal, target) for target, group in zip(targets, samples) for crystal in group]
    agreed = sum(revalidated(crystal, target) for crystal, target in pairs)
    report = {"model": args.model, "prompts": args.prompts, "n": model.check_counts.total, "seed": args.seed,
              "checks": model.check_counts.as_dict(), "passed": len(pairs),
              "revalidated_by_pymatgen_and_spglib": agreed, "sample_s": round(wall, 1),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores"}
    print(json.dumps(report, indent=2))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    main()
