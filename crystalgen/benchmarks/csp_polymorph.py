"""The polymorph-aware stage of ``crystalgen benchmark csp``: METRe and cRMSE of the first proposals.

At k=1 (the first proposal of each test structure, the paper's protocol) the run's score matrix
already holds every structure's own RMS distance; this stage matches only the proposals made for
the *other* test structures of each reduced composition, and splits the figures by whether the
composition occurs in the model's training data (polymorph leakage). Test structures whose
composition is unseen in training form a split without leakage: the figure a model cannot reach by
recalling training polymorphs. Definitions and sources: docs/polymorph.md.

The result is saved to ``polymorph.json`` in the run folder, so a resumed run does not redo it.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from crystalgen.benchmarks.common import BenchmarkModel
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.executors import open_workers
from crystalgen.metrics._pool import MATCHING_MODULES
from crystalgen.metrics.csp import CspConfig
from crystalgen.metrics.polymorph import MetreConfig, MetreMetric, cross_pairs, polymorph_leakage
from crystalgen.reports.document import MISSING, Section, Table, Text, number, percent
from crystalgen.runs import atomic_write_text

POLYMORPH_FILE = "polymorph.json"
#: Beyond this many extra (test structure, other proposal) pairs METRe is skipped and says why:
#: carbon_24 is one composition, so METRe would match every proposal with every test structure.
MAX_CROSS_PAIRS = 200_000
PARTS = (("all", "every test structure"), ("not_leaked", "composition unseen in training"),
         ("leaked", "composition seen in training"))


def polymorph_figures(path: Path, bench: BenchmarkModel, test: list[Crystal], first_proposals: list[str | None],
                      own_rms: np.ndarray, config: CspConfig, workers: int | None, scheduler: str | None,
                      data_dir: str | os.PathLike | None) -> dict[str, Any]:
    """METRe / cRMSE at k=1, overall and by leakage; read from ``path`` when a previous session wrote it."""
    if path.is_file():
        saved = json.loads(path.read_text())
        if saved.get("n") == len(test):
            return saved
    leaked, training = _leakage(bench, test, data_dir)
    proposals = [[p] for p in first_proposals]
    extra = cross_pairs(test, proposals)
    figures: dict[str, Any] = {"k": 1, "n": len(test), "composition_key": "reduced", "cross_pairs": extra,
                               "training_data": training}
    metre = MetreMetric(MetreConfig(config))
    if extra > MAX_CROSS_PAIRS:
        figures["metre_skipped"] = (f"METRe not computed: it would match {extra:,} pairs beyond the usual match "
                                    f"rate's (limit {MAX_CROSS_PAIRS:,}), as the test split has few compositions")
        result = metre.own_only(test, proposals, own_rms)
    else:
        with open_workers(workers, scheduler, MATCHING_MODULES) as opened:
            result = metre(test, proposals, workers=opened.width, own_rms=own_rms, pool=opened.executor,
                           show_progress=True)
    parts = {"all": result} if leaked is None else {
        "all": result, "not_leaked": result.subset(~leaked), "leaked": result.subset(leaked)}
    for name, part in parts.items():
        figures[name] = part.to_dict(with_metre="metre_skipped" not in figures)
    atomic_write_text(path, json.dumps(figures, indent=2))
    return figures


def _leakage(bench: BenchmarkModel, test: list[Crystal], data_dir: str | os.PathLike | None
             ) -> tuple[np.ndarray | None, str]:
    """Which test structures share their reduced composition with the model's training data, and what that data is."""
    from crystalgen.data.protocols import load_training_split

    protocol = bench.model.protocol
    if not protocol:
        return None, "unknown (the checkpoint names no training protocol)"
    try:
        spec, train = load_training_split(protocol, data_dir)
    except (CrystalgenInputError, FileNotFoundError) as exc:
        return None, f"`{protocol}` could not be loaded here ({exc}); leakage not measured"
    return polymorph_leakage(train, test).leaked, f"the `{spec.name}` training structures ({len(train):,})"


def polymorph_section(figures: dict[str, Any] | None) -> Section | None:
    """The report's section: the usual figures beside METRe and cRMSE, by leakage."""
    if not figures:
        return None
    rows = [[label, str(figures[name]["n"]), percent(figures[name]["match_rate"]), number(figures[name]["crmse_own"]),
             percent(figures[name].get("metre")), number(figures[name].get("crmse"))]
            for name, label in PARTS if name in figures]
    skipped = figures.get("metre_skipped")
    text = [
        "k=1, first proposals. **METRe** counts a test structure as matched when *any* proposal made for its "
        "reduced composition matches it: the model is given only the composition, so it cannot know which of "
        "several test polymorphs an entry wants. **cRMSE** is the mean RMS distance over all test structures, an "
        "unmatched one counting as the matcher's stol (0.5), so it cannot be lowered by matching fewer structures. "
        f"Leakage is measured against {figures['training_data']}: the *unseen* row is a test split without "
        "polymorph leakage. Definitions: docs/polymorph.md.",
    ]
    if skipped:
        text.append(f"\n{skipped}.")
    return Section("Polymorph-aware figures", [
        Text("\n".join(text)),
        Table(["test structures", "n", "match rate (%)", "cRMSE (match rate)", "METRe (%)", "cRMSE (METRe)"], rows,
              caption=f"Extra pairs matched for METRe: {figures['cross_pairs']:,}. {MISSING}: not computed."),
    ])
