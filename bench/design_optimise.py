"""Time optimisation from seeds (``crystalgen.design.strategies.optimise_from_seeds``), guided and unguided.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/design_optimise.py                      # perov_5, 100 seeds
    python bench/design_optimise.py --dataset mp_20 --model diffusion-mp_20-gen --surrogate surrogate-mp_20 \
        --property formation_energy_per_atom --seeds 50

The seeds are the first N test structures. For each guidance strength it reports the wall time,
refinements per second, the share of valid proposals, and how the *guiding surrogate's* own
prediction moved. Those predictions are the optimiser's view of itself, not a success rate: the
design benchmark judges results with an independent oracle. Results are printed and written as
JSON to ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--model", default="diffusion-perov_5-gen")
    parser.add_argument("--surrogate", default="surrogate-perov_5")
    parser.add_argument("--property", default="heat_ref")
    parser.add_argument("--seeds", type=int, default=100)
    parser.add_argument("--strengths", type=float, nargs="+", default=[0.0, 1.0])
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--proposals", type=int, default=4)
    parser.add_argument("--start-time", type=float, default=0.3)
    args = parser.parse_args()

    from crystalgen.data import load_split
    from crystalgen.design.objectives import Objective, PropertyEvaluator
    from crystalgen.design.strategies import OptimiseSettings, optimise_from_seeds
    from crystalgen.models.registry import load_model
    from crystalgen.runs import machine_description
    from crystalgen.surrogate.predictor import load_surrogate

    generator, surrogate = load_model(args.model), load_surrogate(args.surrogate)
    seeds = load_split(args.dataset, "test")[:args.seeds]
    evaluator = PropertyEvaluator(surrogate)
    objectives = [Objective(args.property, "minimise")]
    start = surrogate.predict(seeds)[args.property][0]
    rows = []
    for strength in args.strengths:
        settings = OptimiseSettings(strength=strength, start_time=args.start_time, iterations=args.iterations,
                                    proposals=args.proposals)
        began = time.perf_counter()
        result = optimise_from_seeds(generator, seeds, evaluator, objectives, settings, seed=0)
        wall = time.perf_counter() - began
        final = surrogate.predict(result.best)[args.property][0]
        refinements = len(seeds) * args.iterations * args.proposals
        rows.append({"strength": strength, "wall_s": round(wall, 2), "refinements_per_s": round(refinements / wall, 2),
                     "valid_share_by_iteration": [round(h["valid_share"], 4) for h in result.history],
                     "surrogate_mean_start": round(float(np.nanmean(start)), 4),
                     "surrogate_mean_best": round(float(np.nanmean(final)), 4)})
        print(json.dumps(rows[-1]))
    out = Path(__file__).with_name("results")
    out.mkdir(exist_ok=True)
    record = {"settings": vars(args), "results": rows, "machine": machine_description(),
              "python": platform.python_version()}
    path = out / f"design_optimise_{args.dataset}.json"
    path.write_text(json.dumps(record, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
