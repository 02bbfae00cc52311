"""k=1 CSP match rate of a checkpoint against one sampling setting, on its protocol's selection split.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/selection_sweep.py --model wyckoff-mp_20 \
        --setting refine_time --values 0.005,0.01,0.02,0.03,0.06 --limit 400 \
        --out docs/reports/wyckoff-refine-sweep/mp_20.json
    CRYSTALGEN_DATA_DIR=../shared/data python bench/selection_sweep.py --model cif-tokens-perov_5 \
        --setting temperature --values 0.3,0.6,1.0 --limit 400 --out docs/reports/cif-tokens/temperature-perov_5.json
    CRYSTALGEN_DATA_DIR=../shared/data python bench/selection_sweep.py --model cif-tokens-perov_5 \
        --setting candidates --values 4 --pick most-likely --limit 400 --out docs/reports/cif-tokens/candidates-perov_5.json

Settings: ``refine_time`` (a Wyckoff checkpoint's ``templates.refine_time``; its refinement steps
stay the checkpoint's), ``candidates`` (a token checkpoint's ``sampling.candidates``: draws per
sample, the first valid or, with ``--pick most-likely``, the most likely kept), or a sample option (``temperature``, ``top_k``, ``sampler_steps``). The
first proposal for each of the first ``--limit`` selection-split structures is compared with the
structure (``StructureMatcher(0.5, 0.3, 10)``). The selection split, never the test split, is
what such settings are chosen on. Prints JSON, and writes it after every value.
"""

from __future__ import annotations

import argparse
import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from crystalgen.data import load_protocol
from crystalgen.generators.options import SampleOptions
from crystalgen.generators.target import Target
from crystalgen.models import load_model

SAMPLE_OPTIONS = {"temperature": float, "top_k": int, "sampler_steps": int}


def _sample_with(model, setting: str, value: float, targets: list[Target], seed: int, pick: str):
    if setting == "refine_time":
        model.templates = replace(model.templates, refine_time=value)
        return model.sample(targets, n=1, seed=seed)
    if setting == "candidates":
        model.decoding = replace(model.decoding, candidates=int(value), pick=pick)
        return model.sample(targets, n=1, seed=seed)
    return model.sample(targets, n=1, seed=seed, options=SampleOptions(**{setting: SAMPLE_OPTIONS[setting](value)}))


def main() -> None:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--setting", required=True, choices=["refine_time", "candidates", *SAMPLE_OPTIONS])
    parser.add_argument("--values", required=True, help="Comma-separated values to try.")
    parser.add_argument("--limit", type=int, default=400)
    parser.add_argument("--pick", default="first-valid", help="With --setting candidates: first-valid or most-likely.")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="Also write the JSON here.")
    args = parser.parse_args()

    model = load_model(args.model)
    data = load_protocol(model.config["protocol"]).load(include_test=False)
    crystals = data.select[: args.limit]
    targets = [Target.from_crystal(c) for c in crystals]
    truths = [c.to_structure() for c in crystals]
    matcher = StructureMatcher(stol=0.5, ltol=0.3, angle_tol=10)
    report = {"model": args.model, "protocol": model.config["protocol"], "split": "selection", "n": len(crystals),
              "seed": args.seed, "setting": args.setting, "points": []}
    if args.setting == "candidates":
        report["pick"] = args.pick
    for value in (float(v) for v in args.values.split(",")):
        start = time.perf_counter()
        proposals = _sample_with(model, args.setting, value, targets, args.seed, args.pick)
        sample_s = time.perf_counter() - start
        hits = np.array([bool(group) and matcher.fit(group[0].to_structure(), truth)
                         for group, truth in zip(proposals, truths)])
        point = {args.setting: value, "match_rate": float(hits.mean()),
                 "without_proposal": int(sum(not group for group in proposals)), "sample_s": round(sample_s, 1)}
        report["points"].append(point)
        print(point, flush=True)
        if args.out:  # written after every point: a stopped run keeps what it measured
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
