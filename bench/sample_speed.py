"""Time CSP sampling end to end: ``crystalgen sample`` as a fresh process, model load included.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/sample_speed.py                       # diffusion-perov_5, 1,000 targets
    python bench/sample_speed.py --model diffusion-mp_20 --dataset mp_20 --n-targets 200
    python bench/sample_speed.py --threads 2 --sampler-steps 50

The targets are the compositions of the first N test structures of the dataset, one sample each.
The headline is structures per second of the whole command: Python start-up, imports, loading the
checkpoint, sampling, and writing the CSV and one CIF per structure. A second, in-process
measurement splits that into model load and sampling alone. Results are printed and written as
JSON next to this script (``bench/results/``).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

DEFAULT_TARGETS = 1000


def _compositions(dataset: str, count: int) -> list[str]:
    from crystalgen.data import load_split

    return [c.composition.formula.replace(" ", "") for c in load_split(dataset, "test")[:count]]


def time_cli(model: str, formulas: list[str], threads: int | None, sampler_steps: int | None) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        targets = Path(tmp) / "targets.txt"
        targets.write_text("\n".join(formulas) + "\n")
        env = dict(os.environ)
        if threads:
            env["OMP_NUM_THREADS"] = str(threads)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "crystalgen", "sample", "--model", model, "--compositions-file",
                        str(targets), "-n", "1", "--out", str(Path(tmp) / "out"),
                        *(["--sampler-steps", str(sampler_steps)] if sampler_steps else [])], check=True, env=env,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        return time.perf_counter() - start


def time_in_process(model_name: str, formulas: list[str], sampler_steps: int | None) -> dict[str, float]:
    from crystalgen.generators import SampleOptions, Target, load_model

    start = time.perf_counter()
    model = load_model(model_name)
    loaded = time.perf_counter()
    targets = [Target.parse(f) for f in formulas]
    model.sample(targets, n=1, seed=0, options=SampleOptions(sampler_steps=sampler_steps))
    sampled = time.perf_counter()
    return {"load_s": loaded - start, "sample_s": sampled - loaded,
            "sample_structures_per_s": len(formulas) / (sampled - loaded)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="diffusion-perov_5")
    parser.add_argument("--dataset", default="perov_5")
    parser.add_argument("--n-targets", type=int, default=DEFAULT_TARGETS)
    parser.add_argument("--threads", type=int, default=None, help="torch/OpenMP threads (default: all cores)")
    parser.add_argument("--sampler-steps", type=int, default=None,
                        help="reverse-diffusion steps (default: the checkpoint's)")
    args = parser.parse_args()

    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    formulas = _compositions(args.dataset, args.n_targets)
    cli_s = time_cli(args.model, formulas, args.threads, args.sampler_steps)
    parts = time_in_process(args.model, formulas, args.sampler_steps)
    result = {
        "model": args.model, "dataset": args.dataset, "targets": len(formulas),
        "cli_wall_s": cli_s, "cli_structures_per_s": len(formulas) / cli_s, **parts,
        "sampler_steps_override": args.sampler_steps,
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}",
        "threads": torch.get_num_threads(),
    }
    for key, value in result.items():
        print(f"{key:>26}: {value:.3f}" if isinstance(value, float) else f"{key:>26}: {value}")
    out = Path(__file__).resolve().parent / "results" / f"sample_speed-{args.model}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
