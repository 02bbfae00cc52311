"""``crystalgen leaderboard``: one page comparing every shipped model, by task, with published rows."""

from __future__ import annotations

from pathlib import Path

import click

from crystalgen.reports.leaderboard import build_leaderboard, write_leaderboard

DEFAULT_REPORTS, DEFAULT_CHECKPOINTS, DEFAULT_OUT = Path("docs/reports"), Path("checkpoints"), Path("docs")


@click.command()
@click.option("--reports", "reports_dir", type=click.Path(path_type=Path), default=DEFAULT_REPORTS, show_default=True,
              help="Folder of benchmark run folders (each with a metrics.json).")
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(path_type=Path), default=DEFAULT_CHECKPOINTS,
              show_default=True, help="Folder of checkpoints (each with a card.md).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default=True, help="Where leaderboard.md and leaderboard.html are written.")
def leaderboard(reports_dir: Path, checkpoints_dir: Path, out_dir: Path) -> int:
    """Write leaderboard.md and a self-contained leaderboard.html from the benchmark run folders and model cards.

    Every crystalgen figure on the page is read from a run folder's metrics.json, with its provenance;
    re-run this whenever a run folder or card changes.

    \b
    Example:
      crystalgen leaderboard --reports docs/reports --checkpoints checkpoints --out docs
    """
    lb = build_leaderboard(reports_dir, checkpoints_dir)
    for board in lb.boards:
        ours = sum(entry.run is not None for entry in board.entries)
        click.echo(f"{board.title}: {ours} crystalgen + {len(board.entries) - ours} published rows")
    unreported = [card.name for card in lb.models if not lb.runs_of(card.name)]
    click.echo(f"{len(lb.models)} model cards; no benchmark report: {', '.join(unreported) or 'none'}")
    for reason in lb.skipped:
        click.echo(f"skipped {reason.replace('`', '')}")
    for path in write_leaderboard(lb, out_dir):
        click.echo(f"wrote {path}", err=True)
    return 0
