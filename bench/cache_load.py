"""Time loading a dataset split: the first (parsing) load and reloads from the binary cache.

    python bench/cache_load.py --dataset mp_20 --split test --repeats 5
    python bench/cache_load.py --cold      # also time a fresh parse into an empty cache
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import tempfile
import time

from crystalgen.data import load_split


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dataset", default="mp_20")
    parser.add_argument("--split", default="test")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--cold", action="store_true", help="also time a parse into an empty cache")
    args = parser.parse_args()

    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}")
    if args.cold:
        with tempfile.TemporaryDirectory() as empty_cache:
            previous = os.environ.get("XDG_CACHE_HOME")
            os.environ["XDG_CACHE_HOME"] = empty_cache
            start = time.perf_counter()
            crystals = load_split(args.dataset, args.split, args.data_dir)
            print(f"cold parse + cache write: {len(crystals)} structures in {time.perf_counter() - start:.2f} s")
            if previous is None:
                del os.environ["XDG_CACHE_HOME"]
            else:
                os.environ["XDG_CACHE_HOME"] = previous
    load_split(args.dataset, args.split, args.data_dir)  # make sure the cache exists
    times = []
    for _ in range(args.repeats):
        start = time.perf_counter()
        crystals = load_split(args.dataset, args.split, args.data_dir)
        times.append(time.perf_counter() - start)
    print(f"cached reload of {args.dataset}/{args.split}: {len(crystals)} structures, "
          f"median {statistics.median(times):.3f} s, max {max(times):.3f} s over {args.repeats} runs")


if __name__ == "__main__":
    main()
