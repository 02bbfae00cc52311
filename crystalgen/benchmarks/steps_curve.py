"""The match-rate-against-sampler-steps section of a CSP report (``benchmark csp --steps-curve``)."""

from __future__ import annotations

from typing import Any

from crystalgen.reports import figures
from crystalgen.reports.document import Figure, Section, Table, Text, number, percent


def steps_curve_section(curve: list[dict[str, Any]], folder: str) -> Section:
    """Figure and table of k=1 match rate (and sampling speed) per number of sampler steps."""
    points = sorted(curve, key=lambda p: p["steps"])
    rows = [[str(p["steps"]), str(p["n"]), percent(p["match_rate"]), number(p["rmse"]), f"{p['predict_s']:.1f}",
             number(p["structures_per_s"], 1)] for p in points]
    return Section("Match rate against sampler steps", [
        Text(f"k=1 on the first {points[0]['n']} test structures for each number of reverse steps (the model's "
             f"sampler otherwise unchanged); sub-runs in `{folder}/`. Sampling time is this machine's, "
             "model already loaded."),
        Figure("steps_curve", figures.line_plot([p["steps"] for p in points],
                                                [100 * (p["match_rate"] or 0.0) for p in points],
                                                "sampler steps", "match rate (%), k=1", log_x=True),
               "Match rate against sampler steps."),
        Table(["steps", "n", "match rate (%)", "RMSE", "sampling wall (s)", "structures/s"], rows),
    ])
