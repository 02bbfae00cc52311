"""Progress bars for long work: on stderr, live only in a terminal, gone when done.

In a pipe or a log file rich cannot redraw a bar and would leave blank lines behind, so there the
bar is switched off and only the commands' own summary lines remain.
"""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

def progress_bar(*columns: ProgressColumn | str, console: Console | None = None, enabled: bool = True,
                 **kwargs: Any) -> Progress:
    """A transient ``rich`` progress display on stderr (off when not ``enabled`` or not a terminal)."""
    console = console or Console(stderr=True)
    if not columns:
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   TimeRemainingColumn())
    return Progress(*columns, console=console, transient=True, disable=not (enabled and console.is_terminal),
                    **kwargs)
