"""Where a voxel VAE's samples come from: the N(0, I) prior against Gaussian mixtures fitted to
the training crystals' posterior means (:mod:`crystalgen.nn.mixture`), chosen on the protocol's
selection split, never on test.

For each prior, ``--samples`` crystals are drawn (seed ``--seed``) and scored with the generation
metrics (:func:`crystalgen.metrics.gen.evaluate_generation`) against the selection split, with
novelty against the training split. With ``--write K`` the K-component mixture is stored in the
checkpoint (its weights, config and card), so that ``crystalgen sample`` draws from it.

    python bench/voxel_latent_prior.py --model voxel-perov_5 --components 10 50 200 \
        --out docs/reports/voxel --write 50
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from pathlib import Path

import torch

from crystalgen.data.protocols import load_protocol
from crystalgen.generators.target import Target
from crystalgen.metrics.gen import evaluate_generation
from crystalgen.models.registry import load_model, save_model
from crystalgen.models.store import resolve_checkpoint, set_card_section

METRICS = ("struct_validity", "comp_validity", "cov_recall", "cov_precision", "uniqueness", "novelty", "d_rho",
           "d_elem")


def _score(model, data, samples: int, seed: int, workers: int) -> dict:
    start = time.perf_counter()
    model.decode_failures.clear()
    model.decode_attempts = 0
    generated = model.sample([Target()], n=samples, seed=seed)[0]
    sample_s = time.perf_counter() - start
    result = evaluate_generation(generated, data.select, data.train, data.protocol.dataset, workers=workers,
                                 show_progress=False)
    row = {name: getattr(result, name) for name in METRICS}
    return {**row, "n_generated": samples, "n_decoded": len(generated), "sample_s": round(sample_s, 1),
            "decode_failures": model.sampling_report()["failures"]}


def _card_section(rows: list[dict], chosen: int, data, samples: int, seed: int, report: str) -> str:
    lines = ["| prior | COV-R | COV-P | SMACT validity | uniqueness | novelty |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['prior']} | {100 * row['cov_recall']:.2f} | {100 * row['cov_precision']:.2f} | "
                     f"{100 * row['comp_validity']:.2f} | {100 * row['uniqueness']:.2f} | "
                     f"{100 * row['novelty']:.2f} |")
    return (f"Samples are drawn from a {chosen}-component Gaussian mixture fitted (EM, full covariances) to the "
            f"posterior means of the {len(data.train):,} training crystals, not from N(0, I). The prior was "
            f"chosen on the protocol's selection split ({len(data.select):,} structures; {samples:,} samples "
            f"each, seed {seed}; `{report}`):\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="voxel-perov_5")
    parser.add_argument("--components", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write", type=int, default=None, metavar="K",
                        help="store the K-component mixture in the checkpoint (K must be among --components)")
    args = parser.parse_args()
    if args.write is not None and args.write not in args.components:
        parser.error(f"--write {args.write} is not among --components {args.components}")
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.workers)

    model = load_model(args.model, args.data_dir)
    data = load_protocol(model.protocol).load(args.data_dir, include_test=False)
    model.set_latent_prior(None)
    rows = [{"prior": "N(0, I)", **_score(model, data, args.samples, args.seed, args.workers)}]
    print(rows[-1], flush=True)
    mixtures = {}
    for components in args.components:
        start = time.perf_counter()
        mixtures[components] = model.fit_latent_prior(data.train, components)
        rows.append({"prior": f"mixture of {components}", "components": components,
                     "fit_s": round(time.perf_counter() - start, 1),
                     **_score(model, data, args.samples, args.seed, args.workers)})
        print(rows[-1], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"latent-prior-selection-{data.protocol.name}.json"
    report = {"model": model.name, "protocol": data.protocol.describe(), "selected_on": data.protocol.name + " selection split",
              "n_select": len(data.select), "n_train": len(data.train), "samples": args.samples, "seed": args.seed,
              "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}",
              "rows": rows}
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    if args.write is not None:
        folder = resolve_checkpoint(args.model)
        model.set_latent_prior(mixtures[args.write])
        card = set_card_section((folder / "card.md").read_text(), "Latent prior (chosen on the selection split)",
                                _card_section(rows, args.write, data, args.samples, args.seed, str(path)))
        save_model(model, folder, card)
        print(f"stored the {args.write}-component mixture in {folder}")


if __name__ == "__main__":
    main()
