"""The tables of docs/benchmarks.md, generated from the run folders and model cards the leaderboard reads.

A table sits between ``<!-- generated: NAME -->`` and ``<!-- end generated -->``: :func:`fill_doc_tables`
rewrites each from ``TABLES[NAME]`` and leaves the prose around it as written; ``crystalgen leaderboard`` runs
it on docs/benchmarks.md. Every figure links to its source (:mod:`crystalgen.reports.doc_sources`). A table lists
the run folders of its kind that exist, so a new run appears on the next ``crystalgen leaderboard``.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Callable, Sequence

from crystalgen.errors import CrystalgenInputError
from crystalgen.reports.doc_sources import (Figure, Sources, count, counted, milliseconds, pct, per_second, plain,
                                            published_csp, published_percent, seconds, tenths, text, threshold)
from crystalgen.reports.document import MISSING, Table, table_markdown
from crystalgen.reports.board_rows import POLYMORPH, read_json
from crystalgen.reports.leaderboard import Leaderboard
from crystalgen.reports.published import published_gen

START = re.compile(r"^<!-- generated: (?P<name>[\w-]+) -->\n", re.M)
END_MARK = "<!-- end generated -->"
END = re.compile(rf"^{END_MARK}$", re.M)  # on a line of its own: prose may quote the markers
CSP_DATASETS = ("perov_5", "mp_20", "carbon_24")
SURROGATE_DATASETS = ("mp_20", "perov_5", "carbon_24")  # the doc's order: the headline property first
NOT_RUN = "not run"
ORACLE_FILE = "oracle.json"  # bench/wyckoff_oracle.py's run, kept beside a Wyckoff model's CSP run
SLICES_ROUNDTRIP = Path("slices") / "roundtrip-mp_20-test.json"  # bench/slices_roundtrip.py's run, under reports/
#: The SLICES decoding levels: (key in the round-trip JSON, label; ``{steps}`` is the optimiser's step count).
SLICES_LEVELS = (("encode", "encode (primitive + Niggli cell, radius-rule graph, canonical string)"),
                 ("embedding", "embedding (barycentric placement, cell scaled to the bond lengths)"),
                 ("optimised", "optimised (batched bond-length optimisation, {steps} Adam steps; what "
                               "`Slices.decode` returns)"),
                 ("chgnet", "CHGNet relaxation of the optimised structures"))
TOLERANCES = ("loose", "strict")
RATE_AND_RMSE = "match rate / RMSE"
WALL_CSP = "wall time (predict / score)"

TableSpec = Callable[[Sources], Table]
Cell = Callable[[Sources, str], str]  # (sources, run folder) -> cell


# ---------------------------------------------------------------------------------- cells
def _csp(src: Sources, folder: str, k: int = 1) -> str:
    at = src.prefix(folder, k)
    return src.run(folder, (at + "match_rate", pct), (at + "rmse", plain))


def _whole_split(src: Sources, folder: str) -> bool:
    return src.entry(folder).run.metrics.get("full_split", True) is not False  # the leaderboard's default


def _csp_beside(src: Sources, folder: str) -> str:
    """Another run's k=1 figures beside a table's own: "not run" if absent, its rows if not the whole split."""
    if not src.has(folder):
        return NOT_RUN
    return _csp(src, folder) + ("" if _whole_split(src, folder) else
                                f" on the first {src.run(folder, (src.prefix(folder, 1) + 'n', count))} rows")


def _tested(src: Sources, folder: str, k: int = 1) -> str:
    """How many test structures a CSP run scored: the whole split, or its first rows (``--limit``)."""
    n = (src.prefix(folder, k) + "n", count)
    if _whole_split(src, folder):
        return src.run(folder, n) + " (full split)"
    return src.run(folder, n, ("split_size", count), layout="first {} of {}")


def _walls(src: Sources, folder: str, *stages: str, block: str = "metadata") -> str:
    return src.run(folder, *((f"{block}.wall_s.{stage}", seconds) for stage in stages))


def _dataset(src: Sources, folder: str) -> str:
    return f"`{src.entry(folder).protocol}`"


def _present(src: Sources, pattern: str, datasets: Sequence[str] = CSP_DATASETS) -> list[tuple[str, str]]:
    """(dataset, run folder) for each dataset whose ``pattern`` folder exists."""
    return [(d, pattern.format(d)) for d in datasets if src.has(pattern.format(d))]


# ---------------------------------------------------------------------------------- CSP tables
def _csp_template(src: Sources) -> Table:
    rows = [[f"`{d}`", _dataset(src, f), src.report(f), _tested(src, f), _csp(src, f, 1), _csp(src, f, 20),
             src.run(f, ("targets_without_prediction", count)), _walls(src, f, "predict", "score")]
            for d, f in _present(src, "template-{}-csp")]
    return Table(["dataset", "protocol", "run", "test structures", f"k=1 {RATE_AND_RMSE}", f"k=20 {RATE_AND_RMSE}",
                  "targets without a proposal", WALL_CSP], rows)


def _csp_diffusion(src: Sources) -> Table:
    rows = [[src.report(f), _dataset(src, f), src.card(src.entry(f).run.model), _tested(src, f), _csp(src, f),
             _csp_beside(src, f"template-{d}-csp"),
             src.published(published_csp(d), (("match_rate", published_percent), ("rmse", plain))),
             _walls(src, f, "predict", "score")] for d, f in _present(src, "diffusion-{}-csp")]
    return Table(["run", "protocol", "training (card)", "test structures", f"k=1 {RATE_AND_RMSE}",
                  f"template k=1 {RATE_AND_RMSE}", f"published k=1 {RATE_AND_RMSE} (full train)", WALL_CSP], rows)


def _steps_curve(src: Sources) -> Table:
    runs = [f for _, f in _present(src, "diffusion-{}-csp") if src.keys(f, "steps_curve")]
    at = {f: {src.number(f, f"steps_curve.{i}.steps"): i for i in src.keys(f, "steps_curve")} for f in runs}
    steps = sorted({s for points in at.values() for s in points})
    rows = [[src.report(f), src.run(f, ("steps_curve.0.n", count))] +
            [src.run(f, (f"steps_curve.{at[f][s]}.match_rate", pct), (f"steps_curve.{at[f][s]}.rmse", plain))
             if s in at[f] else NOT_RUN for s in steps] for f in runs]
    return Table(["run", "first test structures", *(f"{s:,} steps: {RATE_AND_RMSE}" for s in steps)], rows)


def _oracle(src: Sources, folder: str) -> str:
    if not (src.entry(folder).run.folder / ORACLE_FILE).is_file():
        return NOT_RUN
    return src.run(folder, ("match_rate", pct), ("rmse", plain), file=ORACLE_FILE)


def _csp_wyckoff(src: Sources) -> Table:
    rows = [[f"`{d}`", _dataset(src, f), _tested(src, f), _csp(src, f), _csp_beside(src, f"wyckoff-{d}-random-csp"),
             _csp_beside(src, f"template-{d}-csp"), _oracle(src, f), _csp_beside(src, f"diffusion-{d}-csp")]
            for d, f in _present(src, "wyckoff-{}-csp")]
    return Table(["dataset", "protocol", "test structures", "wyckoff-*", "random-placement control",
                  "template baseline", "oracle template (bench/wyckoff_oracle.py)", "diffusion-*"], rows)


def _trainings(pattern: str) -> TableSpec:
    def table(src: Sources) -> Table:
        models = [src.entry(f).run.model for _, f in _present(src, pattern)]
        return Table(["model", "training (card)"], [[f"`{model}`", src.card(model)] for model in models])
    return table


def _subsets(pattern: str) -> TableSpec:
    """CSP runs on the first rows of the test split at k=1 and k=20 (``--k 20 --limit N``)."""
    def table(src: Sources) -> Table:
        rows = [[src.report(f), _tested(src, f, 20), _csp(src, f, 1), _csp(src, f, 20)]
                for _, f in _present(src, pattern)]
        return Table(["run", "test structures", f"k=1 {RATE_AND_RMSE}", f"k=20 {RATE_AND_RMSE}"], rows)
    return table


def _predict_speed(src: Sources) -> Table:
    def speed(folder: str) -> str:
        if not src.has(folder):
            return NOT_RUN
        n, predict = src.prefix(folder, 1) + "n", "metadata.wall_s.predict"
        return src.run(folder, (f"{n} / {predict}", per_second), (n, count), (predict, seconds),
                       layout="{} ({} targets in {})")
    rows = [[f"`{d}`", speed(f), speed(f"diffusion-{d}-csp")] for d, f in _present(src, "wyckoff-{}-csp")]
    return Table(["dataset", "wyckoff-*, predict stage (structures/s)", "diffusion-*, predict stage (structures/s)"],
                 rows)


def _csp_cif_tokens(src: Sources) -> Table:
    rows = [[f"`{d}`", _dataset(src, f), src.report(f), _tested(src, f), _csp(src, f),
             src.run(f, ("metadata.settings.sampler", text)), _csp_beside(src, f"template-{d}-csp"),
             _csp_beside(src, f"diffusion-{d}-csp"), _csp_beside(src, f"wyckoff-{d}-csp"),
             src.run(f, ("targets_without_prediction", count)), _walls(src, f, "predict", "score")]
            for d, f in _present(src, "cif-tokens-{}-csp")]
    return Table(["dataset", "protocol", "run", "test structures", f"this family, k=1 {RATE_AND_RMSE}", "sampler",
                  "template baseline", "diffusion-*", "wyckoff-*", "targets without a proposal", WALL_CSP], rows)


def _cif_checks(src: Sources) -> Table:
    runs = sorted(f for f in src.entries if f.startswith("cif-tokens-") and src.keys(f, "sampling_report"))
    at = "sampling_report."
    rows = [[src.report(f), src.run(f, (at + "total", count)),
             src.run(f, (at + "valid", count), (at + "valid_rate", pct), layout="{} ({})"),
             src.run(f, *((f"{at}failures.{cause}", counted(cause)) for cause in src.keys(f, at + "failures")),
                     layout=", ")] for f in runs]
    return Table(["run", "generated CIFs", "pass every check", "failures by check"], rows)


# ---------------------------------------------------------------------------------- generation tables
GEN_FIGURES: dict[str, Figure] = {
    "struct. valid": ("struct_validity", pct), "SMACT valid": ("comp_validity", pct), "COV-R": ("cov_recall", pct),
    "COV-P": ("cov_precision", pct), "d_rho": ("d_rho", plain), "d_E": ("d_prop", plain), "d_elem": ("d_elem", plain),
    "unique": ("uniqueness", pct), "novel": ("novelty", pct)}
GEN_CELLS: dict[str, Cell] = {
    "run": lambda src, f: src.report(f),
    "protocol": _dataset,
    "training (card)": lambda src, f: src.card(src.entry(f).run.model),
    "test split": lambda src, f: src.run(f, ("n_test", count)),
    "samples": lambda src, f: src.run(f, ("n_generated", count)),
    "decoded / requested": lambda src, f: src.run(f, ("n_generated", count), ("n_requested", count)),
    "space groups: exact / supergroup / violated": lambda src, f: src.run(f, *(
        (f"spacegroup_compliance.{key}", count) for key in ("exact", "supergroup", "violated"))),
    **{title: (lambda src, f, figure=figure: src.run(f, figure)) for title, figure in GEN_FIGURES.items()},
    "struct. / SMACT valid, of all requests": lambda src, f: src.run(f, *(
        (f"{key} * n_generated / n_requested", pct) for key in ("struct_validity", "comp_validity"))),
    "wall time (sample / metrics)": lambda src, f: _walls(src, f, "sample", "metrics"),
    "of which fingerprints (test / generated)": lambda src, f: src.run(
        f, ("timings_s.test_fingerprints", tenths), ("timings_s.generated_fingerprints", tenths)),
}
FIGURE_TITLES = tuple(GEN_FIGURES)
WALL_GEN = ("wall time (sample / metrics)", "of which fingerprints (test / generated)")


def _published_gen(src: Sources, row: Any, column: str) -> str:
    """A published generation row's cell under ``column``; a dash for what the paper did not report."""
    if column == "run":
        return f"{row.model} (published, full training split)"
    if column not in GEN_FIGURES or not hasattr(row, GEN_FIGURES[column][0]):
        return MISSING
    key, fmt = GEN_FIGURES[column]
    return src.published([row], [(key, published_percent if fmt is pct else fmt)], label=False)


def _generation(folders: Sequence[str], columns: Sequence[str], published_on: str | None = None) -> TableSpec:
    """Generation runs (those of ``folders`` that exist), then the published rows of ``published_on``."""
    def table(src: Sources) -> Table:
        rows = [[GEN_CELLS[c](src, f) for c in columns] for f in folders if src.has(f)]
        rows += [[_published_gen(src, row, c) for c in columns] for row in published_gen(published_on or "")]
        return Table(list(columns), rows)
    return table


def _gen_timings(folders: Sequence[str]) -> TableSpec:
    """The generation metrics' wall time by stage."""
    def table(src: Sources) -> Table:
        runs = [f for f in folders if src.has(f)]
        stages = list(dict.fromkeys(stage for f in runs for stage in src.keys(f, "timings_s")))
        rows = [[src.report(f), src.run(f, ("n_generated", count))] +
                [src.run(f, (f"timings_s.{s}", tenths)) if s in src.keys(f, "timings_s") else MISSING for s in stages]
                for f in runs]
        return Table(["run", "samples", *(s.replace("_", " ") for s in stages)], rows)
    return table


# ---------------------------------------------------------------------------------- other tables
def _surrogates(src: Sources) -> Table:
    rows = []
    for _, f in _present(src, "surrogate-{}", SURROGATE_DATASETS):
        for name in src.keys(f, "properties"):  # in the report's order: its headline property first
            at, entry = src.prefix(f, name), src.entry(f, name)
            rows.append([src.report(f), _dataset(src, f), src.card(entry.run.model), f"`{name}`",
                         src.run(f, (at + "n", count)), src.run(f, (at + "mae", plain)),
                         src.run(f, (at + "mae_of_training_mean", plain)), src.run(f, (at + "rmse", plain)),
                         src.run(f, (at + "spearman_error_std", plain)),
                         src.run(f, (at + "within_1_std", pct), (at + "within_2_std", pct)),
                         _walls(src, f, "predict", "stability", block="run")])
    return Table(["run", "protocol", "training (card)", "property", "test n", "MAE", "MAE of the training mean",
                  "RMSE", "Spearman(|err|, std)", "|err| <= 1 std / 2 std", "wall time (predict / stability)"], rows)


def _stability(src: Sources) -> Table:
    rows = []
    for _, f in _present(src, "surrogate-{}", SURROGATE_DATASETS):
        for i in src.keys(f, "stability"):
            at = f"stability.{i}."
            rows.append([src.report(f), src.run(f, (at + "threshold", threshold)),
                         src.run(f, (at + "surrogate.n", count)), src.run(f, (at + "surrogate.actually_stable", count)),
                         *(src.run(f, (f"{at}{hull}.precision", pct), (f"{at}{hull}.recall", pct))
                           for hull in ("surrogate", "dft_energy_reference_hull"))])
    return Table(["run", "E_hull threshold (eV/atom)", "test rows with a known e_above_hull", "positives",
                  "surrogate: precision / recall", "DFT energies, same hull: precision / recall"], rows)


def _slices_roundtrip(src: Sources) -> Table:
    path = src.lb.reports_dir / SLICES_ROUNDTRIP
    data = read_json(path)

    def figure(block: str, key: str, fmt: Callable) -> str:
        present = isinstance(data.get(block), dict) and key in data[block]
        return src.cite(path, data, [(f"{block}.{key}", fmt)]) if present else NOT_RUN

    steps = src.cite(path, data, [("meta.optimiser.steps", count)])
    rows = [[label.format(steps=steps), *(figure("rates", f"{level}/{tol}", pct) if level != "encode" else MISSING
                                          for tol in TOLERANCES), figure("seconds_per_structure", level, milliseconds)]
            for level, label in SLICES_LEVELS]
    return Table(["level", *TOLERANCES, "cost per structure"], rows)


MP_20_GENERATORS = ("template-mp_20-gen", "slices-mp_20-gen", "diffusion-mp_20-gen", "wyckoff-mp_20-gen")


def _csp_polymorph(src: Sources) -> Table:
    """Every CSP run with polymorph-aware figures: usual match rate and METRe, over all test
    structures and over those whose composition the model never saw."""
    folders = sorted(f for f, entries in src.entries.items() if any(e.detail == POLYMORPH for e in entries))

    def part(folder: str, name: str) -> str:
        at = f"polymorph.{name}."
        if not src.keys(folder, f"polymorph.{name}"):
            return MISSING
        return src.run(folder, (at + "n", count), (at + "match_rate", pct), (at + "metre", pct), (at + "crmse", plain))

    rows = [[src.report(f), _dataset(src, f), part(f, "all"), part(f, "not_leaked"), part(f, "leaked"),
             _walls(src, f, "polymorph")] for f in folders]
    return Table(["run", "protocol", "all test structures: n / match rate / METRe / cRMSE",
                  "composition unseen in training", "composition seen in training", "wall time (METRe)"], rows)


TABLES: dict[str, TableSpec] = {
    "slices-roundtrip": _slices_roundtrip,
    "csp-template": _csp_template,
    "csp-diffusion": _csp_diffusion,
    "csp-diffusion-steps": _steps_curve,
    "csp-wyckoff": _csp_wyckoff,
    "training-wyckoff": _trainings("wyckoff-{}-csp"),
    "csp-wyckoff-k20": _subsets("wyckoff-{}-k20"),
    "csp-predict-speed": _predict_speed,
    "csp-polymorph": _csp_polymorph,
    "gen-wyckoff": _generation(("wyckoff-mp_20-gen",), ("run", "training (card)", "samples",
                                                         "space groups: exact / supergroup / violated",
                                                         *FIGURE_TITLES, *WALL_GEN)),
    "csp-cif-tokens": _csp_cif_tokens,
    "csp-cif-tokens-k20": _subsets("cif-tokens-{}-k20"),
    "cif-tokens-checks": _cif_checks,
    "gen-diffusion": _generation(("diffusion-mp_20-gen", "diffusion-perov_5-gen"),
                                 ("run", "protocol", "training (card)", "samples", *FIGURE_TITLES, *WALL_GEN)),
    "gen-slices": _generation(("slices-mp_20-gen",), ("run", "training (card)", "decoded / requested",
                                                      "struct. / SMACT valid, of all requests", *FIGURE_TITLES,
                                                      *WALL_GEN)),
    "gen-voxel": _generation(("voxel-perov_5-gen", "voxel-perov_5-gen-1k", "voxel-mp_20-small-gen",
                              "template-mp_20-small-gen"),
                             ("run", "protocol", "test split", "decoded / requested", "struct. valid", "SMACT valid",
                              "COV-R", "COV-P", "unique", "novel", "wall time (sample / metrics)")),
    "gen-template": _generation(("template-mp_20-gen",), ("run", *FIGURE_TITLES), published_on="mp_20"),
    "gen-timings": _gen_timings(MP_20_GENERATORS),
    "surrogate": _surrogates,
    "surrogate-stability": _stability,
}


def fill_doc_tables(markdown: str, lb: Leaderboard, doc_dir: str | os.PathLike, where: str = "the document") -> str:
    """``markdown`` with every generated table rewritten from ``lb``, its links relative to ``doc_dir``."""
    sources, out, pos = Sources(lb, Path(doc_dir)), [], 0
    starts, ends = list(START.finditer(markdown)), list(END.finditer(markdown))
    if len(ends) != len(starts):
        raise CrystalgenInputError(f"{where}: {len(starts)} '<!-- generated: NAME -->' markers but "
                                   f"{len(ends)} '{END_MARK}'")
    for start, end, after in zip(starts, ends, starts[1:] + [None]):
        if end.start() < start.end() or (after is not None and end.start() > after.start()):
            raise CrystalgenInputError(f"{where}: '<!-- generated: {start['name']} -->' is not closed by "
                                       f"'{END_MARK}' before the next generated table")
        if start["name"] not in TABLES:
            raise CrystalgenInputError(f"{where}: unknown generated table {start['name']!r}; known: "
                                       + ", ".join(TABLES))
        sources.table = start["name"]
        out += [markdown[pos:start.end()], table_markdown(TABLES[start["name"]](sources)), "\n"]
        pos = end.start()
    return "".join(out + [markdown[pos:]])


def write_doc_tables(lb: Leaderboard, paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Rewrite the generated tables of each Markdown file in ``paths``; returns those that changed.

    Every file is rendered before any is written, so an error in one leaves all of them as they were.
    """
    rendered = {}
    for path in map(Path, paths):
        if not path.is_file():
            raise CrystalgenInputError(f"document not found: {path}")
        old = path.read_text(encoding="utf-8")
        rendered[path] = (old, fill_doc_tables(old, lb, path.parent, str(path)))
    for path, (old, new) in rendered.items():
        if new != old:
            path.write_text(new, encoding="utf-8")
    return [path for path, (old, new) in rendered.items() if new != old]
