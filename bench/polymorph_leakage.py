"""Polymorph leakage of the benchmark splits, a polymorph-grouped re-split, and METRe / cRMSE of a CSP run.

    CRYSTALGEN_DATA_DIR=../shared/data python bench/polymorph_leakage.py \
        [--csp-run bench/results/polymorph/template-mp_20-k1-n1000] [--out bench/results/polymorph]

1. Leakage: for each dataset and each (train, test) pair of splits available in the data directory,
   how many test structures have a training structure of the same reduced (and exact) composition.
2. Grouped split: pools the available splits of perov_5 and mp_20 and re-splits them with
   ``polymorph_grouped_split`` (60/20/20, seed 0); writes ``<dataset>_grouped_split.csv``
   (material_id, split) and checks that no composition is in two splits.
3. With ``--csp-run`` (the folder of a ``crystalgen benchmark csp`` run, k=1 or more): METRe and
   cRMSE of its predictions.csv beside the usual match rate, overall and split into test structures
   whose composition is / is not in the model's training data; the usual match rate recomputed here
   is checked, structure by structure, against the run's per_structure.csv.

Writes ``polymorph_leakage.json`` and ``polymorph_leakage.md`` to ``--out``.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import time
from pathlib import Path

import numpy as np
import pandas as pd

from crystalgen.data.files import find_split_file
from crystalgen.data.loading import load_split
from crystalgen.data.protocols import load_training_split
from crystalgen.metrics.polymorph import MetreMetric, polymorph_grouped_split, polymorph_leakage

#: (dataset, train splits, test split) pairs; a pair whose files are missing is reported as skipped.
LEAKAGE_PAIRS = [
    ("perov_5", ("train",), "test"),
    ("perov_5", ("val",), "test"),
    ("mp_20", ("train",), "test"),
    ("mp_20", ("train_first1000",), "test"),
    ("mp_20", ("val",), "test"),
    ("mp_20", ("val", "train_first1000"), "test"),
    ("carbon_24", ("train",), "test"),
    ("carbon_24", ("val",), "test"),
]
GROUPED_SPLIT_DATASETS = {"perov_5": ("train", "val", "test"), "mp_20": ("train_first1000", "val", "test"),
                          "carbon_24": ("val", "test")}
SPLIT_SEED = 0


def available(dataset: str, splits: tuple[str, ...], data_dir: str | None) -> bool:
    return all(find_split_file(dataset, split, data_dir) is not None for split in splits)


def leakage_rows(data_dir: str | None) -> list[dict]:
    rows = []
    for dataset, train_splits, test_split in LEAKAGE_PAIRS:
        row = {"dataset": dataset, "train": "+".join(train_splits), "test": test_split}
        if not available(dataset, (*train_splits, test_split), data_dir):
            rows.append({**row, "skipped": "split file not in the data directory"})
            continue
        train = [c for split in train_splits for c in load_split(dataset, split, data_dir)]
        test = load_split(dataset, test_split, data_dir)
        for key in ("reduced", "exact"):
            rows.append({**row, **polymorph_leakage(train, test, key=key).to_dict()})
    return rows


def grouped_split_rows(data_dir: str | None, out: Path) -> list[dict]:
    rows = []
    for dataset, splits in GROUPED_SPLIT_DATASETS.items():
        if not available(dataset, splits, data_dir):
            continue
        pool = [c for split in splits for c in load_split(dataset, split, data_dir)]
        for key in ("reduced", "exact"):
            grouped = polymorph_grouped_split(pool, seed=SPLIT_SEED, key=key)
            train_leak = polymorph_leakage(grouped["train"], grouped["test"], key=key)
            rows.append({"dataset": dataset, "pooled": "+".join(splits), "key": key, "n": len(pool),
                         **{f"n_{name}": len(members) for name, members in grouped.items()},
                         "test_leaked_into_train": train_leak.n_leaked})
            if key == "reduced":
                with open(out / f"{dataset}_grouped_split.csv", "w", newline="") as handle:
                    writer = csv.writer(handle)
                    writer.writerow(["material_id", "split"])
                    writer.writerows((c.id, name) for name, members in grouped.items() for c in members)
    return rows


def csp_breakdown(run_dir: Path, data_dir: str | None, workers: int) -> dict:
    settings = json.loads((run_dir / "run.json").read_text())["settings"]
    predictions = pd.read_csv(run_dir / "predictions.csv").sort_values(["material_id", "rank"], kind="stable")
    proposals_of = predictions.groupby("material_id", sort=False)["cif"].apply(list).to_dict()
    test = load_split(settings["dataset"], "test", data_dir)[: settings["limit"]]  # limit None: all
    _, train = load_training_split(settings["protocol"], data_dir)
    leakage = polymorph_leakage(train, test)
    leaked = leakage.leaked

    start = time.perf_counter()
    # a structure without a row in predictions.csv got no proposal: a miss, as in the run's own scoring
    result = MetreMetric()(test, [proposals_of.get(c.id, []) for c in test], workers=workers)
    wall_s = time.perf_counter() - start

    per_structure = pd.read_csv(run_dir / "per_structure.csv").set_index("material_id")
    k = int(settings["k"])
    reported = per_structure.loc[[c.id for c in test], f"matched_k{k}"].to_numpy(dtype=bool)
    disagreements = int((reported != np.isfinite(result.rms_own)).sum())
    return {
        "run": str(run_dir), "model": settings["model"], "dataset": settings["dataset"],
        "protocol": settings["protocol"], "k": k, "n_train": len(train), "metre_wall_s": round(wall_s, 1),
        "per_structure_disagreements": disagreements,
        "n_without_proposals": sum(c.id not in proposals_of for c in test),
        "n_test_sharing_within_test": leakage.n_test_sharing_within_test,
        "all": result.to_dict(),
        "leaked": result.subset(leaked).to_dict(),
        "not_leaked": result.subset(~leaked).to_dict(),
    }


def fmt(value: float | None, digits: int = 4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def markdown(report: dict) -> str:
    lines = ["# Polymorph leakage", "", "| dataset | train | test | key | n_test | test compositions | "
             "leaked structures | leaked % | leaked compositions | test structures sharing a composition in test |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for row in report["leakage"]:
        if "skipped" in row:
            lines.append(f"| {row['dataset']} | {row['train']} | {row['test']} | — | skipped: {row['skipped']} "
                         "| | | | | |")
            continue
        lines.append(f"| {row['dataset']} | {row['train']} | {row['test']} | {row['key']} | {row['n_test']} | "
                     f"{row['n_test_compositions']} | {row['n_leaked']} | {100 * row['leaked_fraction']:.1f} | "
                     f"{row['n_leaked_compositions']} | {row['n_test_sharing_within_test']} |")
    lines += ["", "## Polymorph-grouped re-split (60/20/20, seed 0)", "",
              "| dataset | pooled splits | key | n | train | val | test | test compositions in train |",
              "|---|---|---|---|---|---|---|---|"]
    for row in report["grouped_split"]:
        lines.append(f"| {row['dataset']} | {row['pooled']} | {row['key']} | {row['n']} | {row['n_train']} | "
                     f"{row['n_val']} | {row['n_test']} | {row['test_leaked_into_train']} |")
    csp = report.get("csp")
    if csp:
        lines += ["", f"## CSP: {csp['model']} on {csp['dataset']} test ({csp['protocol']}, k={csp['k']})", "",
                  "| test structures | n | match rate | cRMSE (own) | METRe | cRMSE (METRe) | METRe mean RMS |",
                  "|---|---|---|---|---|---|---|"]
        for part in ("all", "leaked", "not_leaked"):
            r = csp[part]
            lines.append(f"| {part} | {r['n']} | {fmt(r['match_rate'])} | {fmt(r['crmse_own'])} | "
                         f"{fmt(r['metre'])} | {fmt(r['crmse'])} | {fmt(r['metre_mean_rms'])} |")
        lines += ["", f"Usual match verdicts differing from the run's per_structure.csv: "
                  f"{csp['per_structure_disagreements']}. Test structures without any proposal (misses): "
                  f"{csp['n_without_proposals']}. Evaluated test structures sharing their composition with another "
                  f"evaluated one (the only ones METRe can treat differently): {csp['n_test_sharing_within_test']}. "
                  f"Training structures: {csp['n_train']}. METRe matching wall time: {csp['metre_wall_s']} s."]
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-dir", default=os.environ.get("CRYSTALGEN_DATA_DIR"))
    parser.add_argument("--csp-run", type=Path, help="folder of a `crystalgen benchmark csp` run")
    parser.add_argument("--out", type=Path, default=Path("bench/results/polymorph"))
    parser.add_argument("--workers", type=int, default=os.cpu_count())
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    report: dict = {"leakage": leakage_rows(args.data_dir), "grouped_split": grouped_split_rows(args.data_dir, args.out)}
    if args.csp_run:
        report["csp"] = csp_breakdown(args.csp_run, args.data_dir, args.workers)
    report["wall_s"] = round(time.perf_counter() - start, 1)
    (args.out / "polymorph_leakage.json").write_text(json.dumps(report, indent=2))
    (args.out / "polymorph_leakage.md").write_text(markdown(report))
    print(markdown(report))
    print(f"wall time {report['wall_s']} s; written to {args.out}")


if __name__ == "__main__":
    main()
