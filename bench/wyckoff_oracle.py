"""How far do true Wyckoff templates take a model that was not trained for them?

    CRYSTALGEN_DATA_DIR=../shared/data python bench/wyckoff_oracle.py --model diffusion-perov_5 --dataset perov_5 --limit 500

For the first N test structures, samples one structure each from a shipped CSP diffusion checkpoint
twice with the same seed: as it is, and with the sampler's projection hook holding every sample to
the test structure's own space group and Wyckoff positions (``WyckoffProjection`` of its
``WyckoffBatch``: the oracle template, as in DiffCSP++'s "given the true space group and Wyckoff
template" row). Reports the k=1 match rate and RMSE of both (``StructureMatcher(0.5, 0.3, 10)``),
and how many structures pyxtal could not describe (those keep the unconstrained sample). An upper
bound for template sources, not a benchmark row: the template comes from the answer.
"""

from __future__ import annotations

import argparse
import json
import time

import torch

from crystalgen.crystal import crystals_from_arrays
from crystalgen.data import load_split
from crystalgen.generators import Target, load_model
from crystalgen.metrics.csp import csp_rms_matrix
from crystalgen.representations.wyckoff import WyckoffError
from crystalgen.representations.wyckoff_batch import WyckoffProjection, WyckoffTensors, collate_wyckoff


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="diffusion-perov_5")
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--limit", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()

    test = load_split(args.dataset, "test")[: args.limit]
    generator = load_model(args.model)
    start = time.perf_counter()
    free = [group[0] for group in generator.sample([Target.from_crystal(c) for c in test], n=1, seed=args.seed)]
    free_s = time.perf_counter() - start

    encoder, templates, described = WyckoffTensors(), [], []
    for index, crystal in enumerate(test):
        try:
            templates.append(encoder.encode(crystal))
            described.append(index)
        except WyckoffError:
            pass
    batch = collate_wyckoff(templates)
    model = generator.model
    start = time.perf_counter()
    cells = model.sample(batch.num_atoms, batch.atomic_numbers, generator.sampler,
                         torch.Generator().manual_seed(args.seed),
                         projection=WyckoffProjection(batch, model.lattice_mean.double(), model.lattice_std.double()))
    constrained_s = time.perf_counter() - start
    constrained = list(free)
    for index, crystal in zip(described, crystals_from_arrays(
            cells.lattices.double().numpy(), cells.frac_coords.double().numpy(), cells.atom_types.numpy(),
            cells.num_atoms.numpy())):
        constrained[index] = crystal

    rows = {}
    for name, predictions, wall in (("as trained", free, free_s), ("oracle Wyckoff template", constrained, constrained_s)):
        result = csp_rms_matrix(test, [[p] for p in predictions], k=1).result(1)
        rows[name] = {"match_rate": result.match_rate, "rmse": result.rmse, "n": result.n, "sample_s": round(wall, 1)}
    report = {"model": args.model, "dataset": args.dataset, "n": len(test), "seed": args.seed,
              "not_described_by_pyxtal": len(test) - len(described), "sampler": vars(generator.sampler), **rows}
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
