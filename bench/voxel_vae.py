"""A voxel VAE checkpoint's latent space: reconstruction, KL per dimension, property head,
interpolation and sampling speed.

* The crystals are the model protocol's test split (its subset, if it has one); a crystal with an
  element the model has no channel for is left out and counted.
* Reconstruction: every test crystal is encoded to its posterior mean and decoded, once with the
  composition given to the decoder (it keeps each element's strongest peaks up to the count) and
  once without; matched against the original with ``StructureMatcher(stol=0.5, ltol=0.3,
  angle_tol=10)``. Failures are counted by cause.
* KL per latent dimension of the posterior against N(0, I), averaged over the test split, and
  the active dimensions (variance of the posterior mean across crystals above 0.01, Burda et al.).
* The property head's MAE on the test split, from the posterior mean.
* Interpolation: decoded structures along the straight line between two test crystals' means.
* Sampling speed: draws from the model's sampling prior decoded per second (network and
  network-free decoder).

    python bench/voxel_vae.py --model voxel-perov_5 --out docs/reports/voxel-perov_5-autoencoder
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np
import torch

from crystalgen.data.protocols import load_protocol
from crystalgen.models.registry import load_model
from crystalgen.representations.voxel import VoxelError

MATCHER_KWARGS = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}
ACTIVE_VARIANCE = 0.01
INTERPOLATION_STEPS = 8
BATCH = 256


def _match_rate(model, crystals, with_composition: bool, matcher) -> dict:
    causes: Counter = Counter()
    start = time.perf_counter()
    for i in range(0, len(crystals), BATCH):
        chunk = crystals[i:i + BATCH]
        for original, decoded in zip(chunk, model.reconstruct(chunk, with_composition)):
            if isinstance(decoded, VoxelError):
                causes[f"decode: {decoded.cause}"] += 1
            elif not matcher.fit(original.to_structure(), decoded.to_structure()):
                causes["no StructureMatcher match"] += 1
    matched = len(crystals) - sum(causes.values())
    return {"n": len(crystals), "matched": matched, "rate": matched / len(crystals),
            "failures_by_cause": dict(causes.most_common()), "wall_s": round(time.perf_counter() - start, 1)}


@torch.no_grad()
def _latent_statistics(model, crystals, prop: str | None) -> dict:
    from crystalgen.generators.voxel_vae import VoxelCollate

    means, log_vars = [], []
    for i in range(0, len(crystals), BATCH):
        batch = VoxelCollate(model.elements)([(model.representation.encode(c), np.nan) for c in crystals[i:i + BATCH]])
        mean, log_var = model.model.encode(batch.cell, batch.basis)
        means.append(mean)
        log_vars.append(log_var)
    mean, log_var = torch.cat(means), torch.cat(log_vars)
    kl = (0.5 * (mean ** 2 + log_var.exp() - 1 - log_var)).mean(0)
    out = {"kl_per_dim_mean": float(kl.mean()), "kl_per_dim": [round(float(k), 4) for k in kl],
           "active_dims": int((mean.var(0) > ACTIVE_VARIANCE).sum()), "latent_dim": int(mean.shape[1])}
    if prop and model.model.property_head is not None:
        truth = np.array([c.properties.get(prop, np.nan) for c in crystals])
        predicted = model.predict_property(mean).numpy()
        known = np.isfinite(truth)
        out["property"] = {"name": prop, "n": int(known.sum()),
                           "mae": float(np.abs(predicted[known] - truth[known]).mean()),
                           "mae_of_the_train_mean": float(np.abs(model.config["property_mean"] - truth[known]).mean())}
    return out


def _interpolation_figure(model, a, b, path: Path) -> list[str]:
    from crystalgen.reports.figures import structure_row

    z = model.encode([a, b])
    weights = torch.linspace(0, 1, INTERPOLATION_STEPS)
    decoded = model.decode((1 - weights[:, None]) * z[0] + weights[:, None] * z[1])
    cells, labels = [], []
    for weight, crystal in zip(weights.tolist(), decoded):
        if isinstance(crystal, VoxelError):
            cells.append(None)
            labels.append(f"t={weight:.2f}: no crystal ({crystal.cause})")
        else:
            cells.append((crystal.lattice, crystal.cart_coords, crystal.species))
            labels.append(f"t={weight:.2f}: {crystal.composition.reduced_formula}")
    path.write_bytes(structure_row(cells, labels))
    return labels


def _sampling_speed(model, draws: int) -> dict:
    from crystalgen.generators.target import Target

    start = time.perf_counter()
    samples = model.sample([Target()], n=draws, seed=0)[0]
    wall = time.perf_counter() - start
    return {"draws": draws, "decoded": len(samples), "wall_s": round(wall, 2), "draws_per_s": round(draws / wall, 1),
            "failures": model.sampling_report()["failures"]}


def main() -> None:
    from pymatgen.analysis.structure_matcher import StructureMatcher

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="voxel-perov_5")
    parser.add_argument("--split", choices=("test", "select"), default="test",
                        help="the model protocol's test or selection split (a protocol subset applies)")
    parser.add_argument("--data-dir", default=None)
    parser.add_argument("--limit", type=int, default=None)
    parser.add_argument("--pair", type=int, nargs=2, default=(0, 1), help="test rows to interpolate between")
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()
    warnings.simplefilter("ignore")
    torch.set_num_threads(args.threads)

    model = load_model(args.model, args.data_dir)
    data = load_protocol(model.protocol).load(args.data_dir, include_test=args.split == "test")
    crystals = (data.test if args.split == "test" else data.select)[:args.limit]
    channels = set(model.elements.tolist())
    unknown = sum(not set(c.atomic_numbers.tolist()) <= channels for c in crystals)
    crystals = [c for c in crystals if set(c.atomic_numbers.tolist()) <= channels]
    matcher = StructureMatcher(**MATCHER_KWARGS)
    args.out.mkdir(parents=True, exist_ok=True)
    report = {"model": model.name, "dataset": model.dataset, "protocol": model.protocol, "split": args.split,
              "left_out_for_elements_without_a_channel": unknown,
              "matcher": MATCHER_KWARGS, "threads": args.threads,
              "machine": f"{platform.machine()} {os.cpu_count()} cores, {platform.python_version()}, torch {torch.__version__}"}
    report["reconstruction_with_composition"] = _match_rate(model, crystals, True, matcher)
    report["reconstruction_without_composition"] = _match_rate(model, crystals, False, matcher)
    report["latent"] = _latent_statistics(model, crystals, model.config.get("property"))
    report["interpolation"] = _interpolation_figure(model, crystals[args.pair[0]], crystals[args.pair[1]],
                                                    args.out / "interpolation.png")
    report["sampling_speed"] = _sampling_speed(model, args.draws)
    (args.out / "autoencoder.json").write_text(json.dumps(report, indent=1))
    for key in ("reconstruction_with_composition", "reconstruction_without_composition"):
        r = report[key]
        print(f"{key}: {100 * r['rate']:.2f}% ({r['matched']}/{r['n']}) {r['failures_by_cause']}")
    latent = report["latent"]
    print(f"KL per dim {latent['kl_per_dim_mean']:.3f}, active dims {latent['active_dims']}/{latent['latent_dim']}",
          latent.get("property", ""))
    print("interpolation:", "; ".join(report["interpolation"]))
    print("sampling:", report["sampling_speed"])


if __name__ == "__main__":
    main()
