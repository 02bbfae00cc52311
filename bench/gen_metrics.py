"""Time ``evaluate_generation`` on mp_20: every metric's wall time, and the test-fingerprint cache.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/gen_metrics.py                 # 1,000 val structures
    python bench/gen_metrics.py --samples samples.csv                              # a model's samples (cif column)
    python bench/gen_metrics.py --n 50 --test-limit 200                            # quick check
    python bench/gen_metrics.py --cold-cache                                       # also time building the cache

The "generated" set defaults to N structures of the mp_20 val split drawn with a fixed seed; test
is mp_20 test (9,046), train the mp_20 reduced-train protocol's train set. The test-set
fingerprints are cached on disk: the first run builds the cache (slow: CrystalNN on every test
structure), later runs load it. The script reports the cache step on its own, then the full
evaluation, which then reads the cache.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.data import load_protocol, load_split
from crystalgen.data.loading import parse_cifs
from crystalgen.metrics import cached_fingerprints, evaluate_generation
from crystalgen.metrics.fingerprints import fingerprint_cache_path

DATASET = "mp_20"
PROTOCOL = "mp_20_reduced_train"
DEFAULT_N = 1000
DEFAULT_SEED = 0


def load_samples(path: Path) -> list[Crystal]:
    """Structures from a CSV with a ``cif`` column; unparsable rows are dropped and counted."""
    import pandas as pd

    frame = pd.read_csv(path)
    if "cif" not in frame.columns:
        raise SystemExit(f"{path} has no 'cif' column")
    parsed = parse_cifs(frame["cif"].astype(str).tolist(), label=f"parsing {path.name}")
    crystals = [Crystal(*row, id=str(i)) for i, row in enumerate(parsed) if not isinstance(row, str)]
    if len(crystals) < len(parsed):
        print(f"dropped {len(parsed) - len(crystals)} unparsable samples of {len(parsed)}")
    return crystals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--samples", type=Path, default=None, help="CSV of generated structures (cif column)")
    parser.add_argument("--n", type=int, default=DEFAULT_N, help="generated structures to evaluate")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="seed of the draw from val")
    parser.add_argument("--test-limit", type=int, default=None, help="use only the first N test structures")
    parser.add_argument("--workers", type=int, default=None, help="processes (default: every core)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--cache-dir", type=Path, default=None, help="fingerprint cache (default: the user cache)")
    parser.add_argument("--cold-cache", action="store_true", help="build the test cache in an empty temporary folder")
    parser.add_argument("--out", type=Path, default=None, help="write the results as JSON here")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    start = time.perf_counter()
    if args.samples is not None:
        generated = load_samples(args.samples)[: args.n]
        source = str(args.samples)
    else:
        val = load_split(DATASET, "val", args.data_dir)
        pick = np.random.default_rng(args.seed).choice(len(val), size=min(args.n, len(val)), replace=False)
        generated = [val[i] for i in sorted(pick)]
        source = f"{DATASET} val, {len(generated)} drawn with seed {args.seed}"
    test = load_split(DATASET, "test", args.data_dir)[: args.test_limit]
    train = load_protocol(PROTOCOL).load(args.data_dir, include_test=False).train
    print(
        f"generated: {source}; test: {len(test)}; train ({PROTOCOL}): {len(train)}; "
        f"loading took {time.perf_counter() - start:.1f} s"
    )

    with tempfile.TemporaryDirectory() as scratch:
        cache_dir = Path(scratch) if args.cold_cache else args.cache_dir
        existed = fingerprint_cache_path(test, cache_dir).is_file()
        start = time.perf_counter()
        test_fps = cached_fingerprints(test, cache_dir, args.workers)
        cache_s = time.perf_counter() - start
        print(
            f"test fingerprints ({len(test)}): {'loaded from cache' if existed else 'BUILT cache'} in {cache_s:.2f} s "
            f"({int((~test_fps.ok).sum())} failed)"
        )

        result = evaluate_generation(generated, test, train, DATASET, workers=args.workers, cache_dir=cache_dir)

    print(f"\nevaluate_generation on {result.n_generated} structures (test fingerprints read from the cache):")
    for name, seconds in result.timings.items():
        print(f"  {name:<24}{seconds:10.3f} s")
    figures = {k: v for k, v in result.to_dict().items() if k not in ("details", "timings_s")}
    print("\nfigures:", json.dumps(figures, indent=None))
    if args.out:
        payload = {"source": source, "test_cache_s": cache_s, "test_cache_built": not existed, **result.to_dict()}
        args.out.write_text(json.dumps(payload, indent=2))
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
