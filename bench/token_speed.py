"""Decoding speed of an autoregressive checkpoint: tokens/s and structures/s, with and without the key-value cache.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/token_speed.py --model cif-tokens-perov_5 --limit 256 \
        --out docs/reports/cif-tokens-speed/perov_5.json

Prompts are the first ``--limit`` test compositions of the checkpoint's protocol, one sample each,
decoded in one batch per setting on the CPU. "Tokens" counts every position decoded (prompt and
forced keywords included); "structures" counts the samples that pass every check. Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from dataclasses import replace
from pathlib import Path

from crystalgen.data import load_protocol
from crystalgen.generators.target import Target
from crystalgen.metrics.check_counts import CheckCounts
from crystalgen.models import load_model


def main() -> None:
    import torch

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="cif-tokens-perov_5")
    parser.add_argument("--limit", type=int, default=256)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    model = load_model(args.model)
    data = load_protocol(model.config["protocol"]).load()
    targets = [Target.from_crystal(c) for c in data.test[: args.limit]]
    shipped = model.decoding
    report = {"model": args.model, "n": len(targets), "threads": torch.get_num_threads(),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores", "settings": {}}
    for use_cache in (True, False):
        model.decoding = replace(shipped, use_cache=use_cache, batch_size=len(targets))
        model.check_counts = CheckCounts()
        tokens_before = model.decoded_tokens
        start = time.perf_counter()
        samples = model.sample(targets, n=1, seed=0)
        wall = time.perf_counter() - start
        tokens = model.decoded_tokens - tokens_before
        valid = sum(len(s) for s in samples)
        report["settings"]["cache" if use_cache else "no cache"] = {
            "wall_s": round(wall, 2), "tokens": tokens, "tokens_per_s": round(tokens / wall, 1),
            "structures": valid, "structures_per_s": round(valid / wall, 2),
            "sequences_per_s": round(len(targets) / wall, 2), "checks": model.check_counts.as_dict()}
        print(use_cache, report["settings"]["cache" if use_cache else "no cache"], flush=True)
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(report, indent=2) + "\n")
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
