"""``crystalgen leaderboard``: one page comparing every shipped model, by task, with published rows."""

from __future__ import annotations

from pathlib import Path

import click

from crystalgen.reports.doc_tables import write_doc_tables
from crystalgen.reports.leaderboard import build_leaderboard, write_leaderboard

DEFAULT_REPORTS, DEFAULT_CHECKPOINTS, DEFAULT_OUT = Path("docs/reports"), Path("checkpoints"), Path("docs")
#: The document whose generated tables are rewritten when the page goes to its default place.
DEFAULT_DOCS = DEFAULT_OUT / "benchmarks.md"


@click.command()
@click.option("--reports", "reports_dir", type=click.Path(path_type=Path), default=DEFAULT_REPORTS, show_default=True,
              help="Folder of benchmark run folders (each with a metrics.json).")
@click.option("--checkpoints", "checkpoints_dir", type=click.Path(path_type=Path), default=DEFAULT_CHECKPOINTS,
              show_default=True, help="Folder of checkpoints (each with a card.md).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_OUT,
              show_default=True, help="Where leaderboard.md and leaderboard.html are written.")
@click.option("--docs", "docs", type=click.Path(dir_okay=False, path_type=Path), multiple=True,
              help="A Markdown file whose generated tables (each between '<!-- generated: NAME -->' and "
                   "'<!-- end generated -->') are rewritten from the same run folders and cards; repeatable. "
                   f"Default: {DEFAULT_DOCS} when --out is the default ({DEFAULT_OUT}), none otherwise.")
@click.option("--no-docs", is_flag=True, help="Rewrite no document's tables, only the leaderboard pages.")
def leaderboard(reports_dir: Path, checkpoints_dir: Path, out_dir: Path, docs: tuple[Path, ...],
                no_docs: bool) -> int:
    """Write leaderboard.md and a self-contained leaderboard.html from the benchmark run folders and model cards,
    and rewrite the generated tables of docs/benchmarks.md from the same files.

    Every crystalgen figure on the page and in those tables is read from a run folder (with its provenance;
    in the tables each figure links to its file and key); re-run this whenever a run folder or card changes.

    \b
    Example:
      crystalgen leaderboard --reports docs/reports --checkpoints checkpoints --out docs --docs docs/benchmarks.md
    """
    lb = build_leaderboard(reports_dir, checkpoints_dir)
    documents = [] if no_docs else list(docs) or ([DEFAULT_DOCS] if out_dir == DEFAULT_OUT else [])
    for board in lb.boards:
        ours = sum(entry.run is not None for entry in board.entries)
        click.echo(f"{board.title}: {ours} crystalgen + {len(board.entries) - ours} published rows")
    unreported = [card.name for card in lb.models if not lb.runs_of(card.name)]
    click.echo(f"{len(lb.models)} model cards; no benchmark report: {', '.join(unreported) or 'none'}")
    for reason in lb.skipped:
        click.echo(f"skipped {reason.replace('`', '')}")
    changed = write_doc_tables(lb, documents)  # before the pages: a document in error leaves everything as it was
    for path in write_leaderboard(lb, out_dir):
        click.echo(f"wrote {path}", err=True)
    for path in documents:
        click.echo(f"{'rewrote' if path in changed else 'up to date:'} the generated tables of {path}", err=True)
    return 0
