"""Report figures, drawn with matplotlib's Agg backend and returned as PNG bytes."""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence

import numpy as np

#: Pixels per inch of the PNGs: sharp enough to read, small enough to embed.
DPI = 110
FIGSIZE = (6.4, 3.6)
RMSE_BINS = 30
DENSITY_BINS = 40
#: Point size of a structure panel's title.
TITLE_FONT_SIZE = 7


class _Figures:
    """pyplot's ``subplots`` and ``figure`` without pyplot: figures no backend owns, rendered
    straight to PNG, so that a caller's backend (a notebook's inline one) is left as it was."""

    @staticmethod
    def subplots(figsize: tuple[float, float]):
        from matplotlib.figure import Figure

        fig = Figure(figsize=figsize)
        return fig, fig.subplots()

    @staticmethod
    def figure(figsize: tuple[float, float]):
        from matplotlib.figure import Figure

        return Figure(figsize=figsize)


def _pyplot() -> _Figures:
    return _Figures()


def _png(fig) -> bytes:
    buffer = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buffer, format="png", dpi=DPI)
    return buffer.getvalue()


def rmse_histogram(rms_by_k: Mapping[int, np.ndarray]) -> bytes:
    """Histogram of the matched structures' RMS distances, one outline per k."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    finite = {k: np.asarray(v)[np.isfinite(v)] for k, v in rms_by_k.items()}
    upper = max((v.max() for v in finite.values() if len(v)), default=1.0)
    bins = np.linspace(0.0, max(upper, 1e-3), RMSE_BINS + 1)
    for k, values in sorted(finite.items()):
        ax.hist(values, bins=bins, histtype="step", linewidth=1.8, label=f"k={k} ({len(values)} matched)")
    ax.set_xlabel("RMS distance of the best match (normalised by (V/N)^(1/3))")
    ax.set_ylabel("test structures")
    ax.legend()
    return _png(fig)


def rate_by_group(
    breakdowns: Mapping[int, Mapping[str, Mapping[str, float]]], xlabel: str, order: Sequence[str] | None = None
) -> bytes:
    """Grouped bars of match rate per group (e.g. crystal system), one bar per k; n under each label."""
    plt = _pyplot()
    labels = list(order) if order is not None else list(next(iter(breakdowns.values())).keys())
    labels = [label for label in labels if any(label in b for b in breakdowns.values())]
    fig, ax = plt.subplots(figsize=(max(FIGSIZE[0], 0.45 * len(labels) + 2), FIGSIZE[1]))
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(breakdowns))
    for i, (k, breakdown) in enumerate(sorted(breakdowns.items())):
        rates = [100.0 * breakdown.get(label, {}).get("match_rate", np.nan) for label in labels]
        ax.bar(x + (i - (len(breakdowns) - 1) / 2) * width, rates, width, label=f"k={k}")
    first = next(iter(breakdowns.values()))
    ax.set_xticks(x, [f"{label}\n(n={int(first.get(label, {}).get('n', 0))})" for label in labels], fontsize=7)
    ax.set_ylim(0, 100)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("match rate (%)")
    ax.legend()
    return _png(fig)


def compare_histogram(
    reference: np.ndarray, candidate: np.ndarray, xlabel: str, reference_label: str, candidate_label: str,
    discrete: bool = False,
) -> bytes:
    """Normalised histograms of one quantity for the test set and the model's structures."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    reference = np.asarray(reference, dtype=float)
    candidate = np.asarray(candidate, dtype=float)
    reference, candidate = reference[np.isfinite(reference)], candidate[np.isfinite(candidate)]
    both = np.concatenate([reference, candidate]) if len(candidate) else reference
    if discrete:
        bins = np.arange(np.floor(both.min()) - 0.5, np.ceil(both.max()) + 1.5) if len(both) else 10
    else:
        low, high = np.percentile(both, [0.5, 99.5]) if len(both) else (0.0, 1.0)
        bins = np.linspace(low, high if high > low else low + 1.0, DENSITY_BINS + 1)
    ax.hist(reference, bins=bins, density=True, alpha=0.45, label=f"{reference_label} (n={len(reference)})")
    ax.hist(candidate, bins=bins, density=True, histtype="step", linewidth=2.0,
            label=f"{candidate_label} (n={len(candidate)})")
    ax.set_xlabel(xlabel)
    ax.set_ylabel("probability density")
    ax.legend()
    return _png(fig)


def line_plot(xs: Sequence[float], ys: Sequence[float], xlabel: str, ylabel: str, log_x: bool = False) -> bytes:
    """One marked line, e.g. match rate against sampler steps."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(xs, ys, marker="o")
    if log_x:
        ax.set_xscale("log")
        ax.set_xticks(list(xs), [str(x) for x in xs])
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)
    return _png(fig)


def funnel_plot(stages: Sequence[str], remaining: Sequence[int]) -> bytes:
    """Horizontal bars: candidates left after each filter stage, first stage on top."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(FIGSIZE[0], 0.45 * len(stages) + 1.0))
    positions = np.arange(len(stages))[::-1]
    ax.barh(positions, remaining, color="tab:blue")
    total = max(remaining[0], 1) if len(remaining) else 1
    for y, value in zip(positions, remaining):
        ax.text(value, y, f" {value:,} ({100 * value / total:.1f}%)", va="center")
    ax.set_yticks(positions, list(stages))
    ax.set_xlabel("candidates remaining")
    ax.set_xlim(0, total * 1.25)
    return _png(fig)


def calibration_plot(predicted_std: Sequence[float], observed_rmse: Sequence[float], quantity: str) -> bytes:
    """Observed RMSE against the predicted std per bin, with the y = x line of perfect calibration."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=FIGSIZE)
    ax.plot(predicted_std, observed_rmse, marker="o", label="RMSE of the ensemble mean")
    top = max([*predicted_std, *observed_rmse, 1e-6])
    ax.plot([0, top], [0, top], linestyle="--", color="grey", label="perfect calibration")
    ax.set_xlabel(f"predicted std ({quantity}), quantile bins")
    ax.set_ylabel("observed error")
    ax.legend()
    ax.grid(alpha=0.3)
    return _png(fig)


def _draw_cell(ax, lattice: np.ndarray, cart_coords: np.ndarray, symbols: Sequence[str], title: str) -> None:
    """One cell on a 3D axis: its edges, and atoms coloured and labelled by element."""
    from matplotlib import colormaps

    colours = colormaps["tab10"]
    corners = np.array([[i, j, k] for i in (0, 1) for j in (0, 1) for k in (0, 1)], dtype=float) @ lattice
    for a in range(8):
        for b in range(a + 1, 8):
            if bin(a ^ b).count("1") == 1:  # corners that differ in one fractional coordinate share an edge
                ax.plot(*zip(corners[a], corners[b]), color="0.6", linewidth=0.6)
    for index, element in enumerate(dict.fromkeys(symbols)):
        mask = np.array([s == element for s in symbols])
        ax.scatter(*cart_coords[mask].T, s=40, color=colours(index % 10), label=element, depthshade=False)
    ax.set_axis_off()
    ax.set_title(title, fontsize=TITLE_FONT_SIZE)
    ax.legend(fontsize=6, loc="upper left", frameon=False)


def structure_picture(lattice: np.ndarray, cart_coords: np.ndarray, symbols: Sequence[str], title: str) -> bytes:
    """A small 3D view of one cell: its edges, and atoms coloured and labelled by element."""
    fig = _pyplot().figure(figsize=(2.6, 2.6))
    _draw_cell(fig.add_subplot(projection="3d"), lattice, cart_coords, symbols, title)
    return _png(fig)


#: A cell as the structure figures take it: lattice (rows, Å), Cartesian coordinates (Å), element symbols.
Cell = tuple[np.ndarray, np.ndarray, Sequence[str]]
#: Inches per structure panel (width, height): room for the cell and a title of up to three lines.
PANEL_SIZE = (2.2, 2.6)
#: Panels per row of a gallery.
GALLERY_COLUMNS = 4


def structure_gallery(cells: Sequence[Cell | None], titles: Sequence[str], columns: int = GALLERY_COLUMNS) -> bytes:
    """Cells on a grid, ``columns`` panels per row filled left to right, each with its title;
    ``None`` draws an empty panel with only its title (a sample that failed). Fewer cells than
    one row narrow the figure to them rather than leave blank panels."""
    if not cells:
        raise ValueError("a structure gallery needs at least one cell")
    if len(titles) != len(cells):
        raise ValueError(f"{len(cells)} cells but {len(titles)} titles")
    columns = max(1, min(columns, len(cells)))
    rows = -(-len(cells) // columns)  # ceiling division
    fig = _pyplot().figure(figsize=(PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows))
    for index, (cell, title) in enumerate(zip(cells, titles), start=1):
        ax = fig.add_subplot(rows, columns, index, projection="3d")
        if cell is None:
            ax.set_axis_off()
            ax.set_title(title, fontsize=TITLE_FONT_SIZE)
        else:
            _draw_cell(ax, *cell, title)
    return _png(fig)


def structure_row(cells: Sequence[Cell | None], titles: Sequence[str]) -> bytes:
    """Cells side by side, as in an interpolation: a gallery of one row."""
    return structure_gallery(cells, titles, columns=len(cells))
