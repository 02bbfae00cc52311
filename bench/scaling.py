"""Candidate-evaluation throughput inline, on the local process pool and on a Dask cluster.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/scaling.py               # novelty and CHGNet relaxation
    python bench/scaling.py --stages novelty --novelty-n 2000 --workers 1,2

Two workloads, each the filter pipeline (``crystalgen.filters.pipeline.run_filter``) with the
structural stage and one distributable stage, on the same candidates for every executor:

* **novelty**: the first N mp_20 test structures against the mp_20_reduced_train training split
  (StructureMatcher against every training structure of the same composition);
* **relax**: M mp_20 test structures, rattled (seeded) so that CHGNet has work to do, relaxed and
  placed against the CHGNet reference hull of mp_20_reduced_train (built once and cached).

Executors: inline (one process), the local process pool, and a Dask ``LocalCluster`` of single-
threaded worker processes on loopback, at each worker count asked for. The rows written are
compared (timing columns aside) with the inline run's, where torch uses every core, so round-off
may differ (reported per column), and with the first multi-process run's, where every worker is
single-threaded, which must agree exactly (a difference is a failure).
Results are printed and written as JSON in ``bench/results/``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).resolve().parent / "results"
PROTOCOL = "mp_20_reduced_train"
#: Standard deviation of the seeded Cartesian rattle given to relaxation candidates, Å.
RATTLE_A = 0.15
SEED = 0
TIMING_COLUMNS = ("relax_s",)


def _candidates(kind: str, n: int, data_dir: str | None) -> list:
    from crystalgen.data.loading import load_split
    from crystalgen.filters.inputs import CandidateRow

    test = load_split("mp_20", "test", data_dir)[:n]
    if kind == "relax":
        rng = np.random.default_rng(SEED)
        for crystal in test:
            cart = crystal.cart_coords + rng.normal(0.0, RATTLE_A, size=(crystal.num_atoms, 3))
            crystal.frac_coords = (cart @ np.linalg.inv(crystal.lattice)) % 1.0
    return [CandidateRow({"sample_id": c.id}, c) for c in test]


def _stages(kind: str, data_dir: str | None) -> list:
    from crystalgen.filters.build import build_stages
    from crystalgen.filters.pipeline import FilterConfig

    off = dict(composition=False, uniqueness=False, stability=False)
    config = FilterConfig(**off, novelty=True, relax=False) if kind == "novelty" else FilterConfig(
        **off, novelty=False, relax=True)
    stages, _ = build_stages(config, PROTOCOL, data_dir, preferred_surrogate="surrogate-mp_20")
    return stages


def _run(rows, stages, out: Path, workers) -> tuple[float, list[dict]]:
    from crystalgen.filters.pipeline import run_filter
    from crystalgen.runs import read_csv_rows

    started = time.perf_counter()
    run_filter(rows, ("sample_id",), stages, out, {"n": len(rows)}, workers=workers)
    seconds = time.perf_counter() - started
    written = [{k: v for k, v in r.items() if k not in TIMING_COLUMNS} for r in read_csv_rows(out / "filtered.csv")]
    return seconds, written


def _differences(rows: list[dict], reference: list[dict]) -> dict[str, str]:
    """Per column that differs from ``reference``: how many rows, and the largest numeric gap."""
    if len(rows) != len(reference):
        return {"row count": f"{len(rows)} against {len(reference)}"}
    out = {}
    for column in reference[0] if reference else ():
        pairs = [(a.get(column), b.get(column)) for a, b in zip(rows, reference) if a.get(column) != b.get(column)]
        if not pairs:
            continue
        try:
            gap = max(abs(float(a) - float(b)) for a, b in pairs)
            out[column] = f"{len(pairs)} rows, largest difference {gap:.3g}"
        except (TypeError, ValueError):
            out[column] = f"{len(pairs)} rows (text)"
    return out


def _executors(counts: list[int]):
    """(label, context manager of Workers) for inline, then each count on the local pool and on Dask."""
    from contextlib import contextmanager

    from crystalgen.executors import open_workers

    yield "inline", open_workers(1)

    @contextmanager
    def dask(count: int):
        from distributed import LocalCluster

        with LocalCluster(n_workers=count, threads_per_worker=1, processes=True, host="127.0.0.1",
                          dashboard_address=None) as cluster, open_workers(scheduler=cluster.scheduler_address) as w:
            yield w

    for count in counts:
        if count > 1:
            yield f"local pool x{count}", open_workers(count)
        yield f"dask x{count}", dask(count)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--stages", default="novelty,relax", help="Workloads, comma-separated: novelty, relax.")
    parser.add_argument("--novelty-n", type=int, default=1000, help="Candidates for the novelty workload.")
    parser.add_argument("--relax-n", type=int, default=16, help="Candidates for the relaxation workload.")
    parser.add_argument("--workers", default="1,2", help="Worker counts, comma-separated.")
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    counts = [int(x) for x in args.workers.split(",")]
    report: dict = {"machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
                    "python": sys.version.split()[0], "protocol": PROTOCOL, "workloads": {}}
    failures = 0
    for kind in args.stages.split(","):
        n = args.novelty_n if kind == "novelty" else args.relax_n
        rows, stages = _candidates(kind, n, args.data_dir), _stages(kind, args.data_dir)
        # inline runs torch on every core, the workers on one thread each, so float round-off may
        # differ from inline; every multi-process executor must agree exactly with the first one
        inline, pooled, results = None, None, []
        for label, opened in _executors(counts):
            with tempfile.TemporaryDirectory() as tmp, opened as workers:
                seconds, written = _run(rows, stages, Path(tmp) / "out", workers)
            inline = inline if inline is not None else written
            result = {"executor": label, "seconds": round(seconds, 2), "structures_per_s": round(len(rows) / seconds, 3),
                      "differences_from_inline": _differences(written, inline)}
            line = f"{kind:8s} n={len(rows):5d}  {label:14s} {seconds:8.1f} s  {len(rows) / seconds:8.2f} /s"
            if result["differences_from_inline"]:
                line += f"  differs from inline: {result['differences_from_inline']}"
            if label != "inline":
                pooled = pooled or (label, written)
                versus_pooled = result[f"differences_from_{pooled[0]}"] = _differences(written, pooled[1])
                failures += bool(versus_pooled)
                line += f"  DIFFERS FROM {pooled[0].upper()}: {versus_pooled}" if versus_pooled else ""
            results.append(result)
            print(line, flush=True)
        report["workloads"][kind] = {"n": len(rows), "runs": results}
    RESULTS.mkdir(exist_ok=True)
    path = RESULTS / "scaling.json"
    path.write_text(json.dumps(report, indent=2))
    print(f"wrote {path}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
