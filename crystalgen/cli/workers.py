"""The options that say where expensive per-structure work runs (``crystalgen.executors``)."""

from __future__ import annotations

from collections.abc import Callable

import click

workers_option = click.option("--workers", type=click.IntRange(min=1), default=None,
                              help="Local processes for per-structure work (default: every core; 1: inline).")
scheduler_option = click.option(
    "--scheduler", default=None, metavar="ADDRESS",
    help="Run per-structure work on a Dask cluster, e.g. tcp://10.0.0.5:8786 (needs the 'dask' extra; "
         "overrides --workers). See docs/scaling.md.")


def with_workers_options(command: Callable) -> Callable:
    """``--workers`` and ``--scheduler``."""
    return workers_option(scheduler_option(command))
