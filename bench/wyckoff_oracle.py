"""The oracle-template upper bound of a Wyckoff CSP checkpoint, and its unconstrained reference.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/wyckoff_oracle.py --model wyckoff-perov_5 --dataset perov_5

For each test structure (the first ``--limit``, default all), the checkpoint generates one
structure from the prior in the test structure's *own* space group, Wyckoff letters and species
(DiffCSP++'s "given the true template" row); pyxtal describes the template. Structures pyxtal
cannot describe count as misses. Reports the k=1 match rate and RMSE (``StructureMatcher(0.5,
0.3, 10)``), the sampling wall time, and the count pyxtal could not describe, as JSON. An upper
bound for template sources, not a benchmark row: the template comes from the answer.
"""

from __future__ import annotations

import argparse
import json
import time

from crystalgen.data import load_split
from crystalgen.generators import load_model
from crystalgen.generators.wyckoff import encode_training_set
from crystalgen.generators.wyckoff_templates import TemplatePlan
from crystalgen.metrics.csp import csp_rms_matrix


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="wyckoff-perov_5")
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    test = load_split(args.dataset, "test")
    test = test[: args.limit] if args.limit else test
    model = load_model(args.model)
    start = time.perf_counter()
    encoded = encode_training_set(test)
    encode_s = time.perf_counter() - start
    described = [i for i, e in enumerate(encoded) if e is not None]
    plans = [TemplatePlan.from_wyckoff(encoded[i], "oracle", str(test[i].id)) for i in described]
    start = time.perf_counter()
    sampled = model.sample_templates(plans, seed=args.seed)
    sample_s = time.perf_counter() - start
    predictions = [[] for _ in test]
    for i, crystal in zip(described, sampled):
        predictions[i] = [crystal]
    result = csp_rms_matrix(test, predictions, k=1).result(1)
    report = {"model": args.model, "dataset": args.dataset, "n": len(test), "seed": args.seed,
              "template": "oracle (each test structure's own space group, Wyckoff letters and species)",
              "not_described_by_pyxtal": len(test) - len(described), "match_rate": result.match_rate,
              "rmse": result.rmse, "sampler": model.describe_sampling(), "encode_s": round(encode_s, 1),
              "sample_s": round(sample_s, 1)}
    text = json.dumps(report, indent=2)
    print(text)
    if args.out:
        with open(args.out, "w") as handle:
            handle.write(text + "\n")


if __name__ == "__main__":
    main()
