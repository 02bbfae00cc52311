"""Where a voxel VAE's samples come from: the N(0, I) prior against Gaussian mixtures fitted to
the training crystals' posterior means (:mod:`crystalgen.nn.mixture`), chosen on the protocol's
selection split, never on test.

For each prior, ``--samples`` crystals are drawn (seed ``--seed``) and scored with the generation
metrics (:func:`crystalgen.metrics.gen.evaluate_generation`) against the selection split, with
novelty against the training split. With ``--write best`` the prior with the highest
min(COV-R, COV-P) on the selection split is stored in the checkpoint (weights, config and card),
so that ``crystalgen sample`` draws from it (``--write K`` stores the K-component mixture).

    python bench/voxel_latent_prior.py --model voxel-perov_5 --components 10 25 50 \
        --out docs/reports/voxel --write best
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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


def _card_section(rows: list[dict], chosen: int | None, data, samples: int, seed: int, report: str) -> str:
    lines = ["| prior | COV-R | COV-P | SMACT validity | uniqueness | novelty |", "|---|---|---|---|---|---|"]
    for row in rows:
        lines.append(f"| {row['prior']} | {100 * row['cov_recall']:.2f} | {100 * row['cov_precision']:.2f} | "
                     f"{100 * row['comp_validity']:.2f} | {100 * row['uniqueness']:.2f} | "
                     f"{100 * row['novelty']:.2f} |")
    source = (f"a {chosen}-component Gaussian mixture fitted (EM, full covariances) to the posterior means of the "
              f"{len(data.train):,} training crystals, not from N(0, I)" if chosen else "N(0, I)")
    return (f"Samples are drawn from {source}. The prior was chosen on the protocol's selection split "
            f"({len(data.select):,} structures; {samples:,} samples each, seed {seed}; highest min(COV-R, COV-P); "
            f"`{report}`):\n\n" + "\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="voxel-perov_5")
    parser.add_argument("--components", type=int, nargs="+", default=[10, 50, 200])
    parser.add_argument("--samples", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--write", default=None, metavar="best|K",
                        help="store the best prior on the selection split, or the K-component mixture, in the checkpoint")
    args = parser.parse_args()
    if args.write not in (None, "best") and (not args.write.isdigit() or int(args.write) not in args.components):
        parser.error(f"--write takes 'best' or one of --components {args.components}, got {args.write!r}")
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.workers)

    model = load_model(args.model, args.data_dir)
    data = load_protocol(model.protocol).load(args.data_dir, include_test=False)
    model.set_latent_prior(None)
    rows = [{"prior": "N(0, I)", **_score(model, data, args.samples, args.seed, args.workers)}]
    print(rows[-1], flush=True)
    start = time.perf_counter()
    means = model.encode(data.train)
    encode_s = time.perf_counter() - start
    mixtures = {}
    for components in args.components:
        start = time.perf_counter()
        mixtures[components] = model.fit_latent_prior(means, components)
        rows.append({"prior": f"mixture of {components}", "components": components,
                     "fit_s": round(time.perf_counter() - start, 1),
                     **_score(model, data, args.samples, args.seed, args.workers)})
        print(rows[-1], flush=True)

    args.out.mkdir(parents=True, exist_ok=True)
    path = args.out / f"latent-prior-selection-{model.name}.json"
    report = {"model": model.name, "protocol": data.protocol.describe(), "selected_on": data.protocol.name + " selection split",
              "n_select": len(data.select), "n_train": len(data.train), "samples": args.samples, "seed": args.seed,
              "encode_train_s": round(encode_s, 1),
              "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}",
              "rows": rows}
    path.write_text(json.dumps(report, indent=1))
    print(f"wrote {path}")
    if args.write is not None:
        folder = resolve_checkpoint(args.model)
        best = max(rows, key=lambda row: min(row["cov_recall"], row["cov_precision"]))
        chosen = best.get("components") if args.write == "best" else int(args.write)
        model.set_latent_prior(mixtures.get(chosen))
        card = re.sub(r"^- \*\*Sampler:\*\* .*$", f"- **Sampler:** {model.describe_sampling()}",
                      (folder / "card.md").read_text(), count=1, flags=re.MULTILINE)
        card = set_card_section(card, "Latent prior (chosen on the selection split)",
                                _card_section(rows, chosen, data, args.samples, args.seed, str(path)))
        save_model(model, folder, card)
        print(f"stored {model.describe_sampling()} in {folder}")


if __name__ == "__main__":
    main()
