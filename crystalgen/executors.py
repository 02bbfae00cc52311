"""Where expensive per-structure work runs: inline, a local process pool, or a Dask cluster.

Candidate evaluation (CHGNet relaxation, StructureMatcher novelty, CSP matching) costs from
milliseconds to tens of seconds per structure and shares nothing between structures, so it spreads
over any ``concurrent.futures.Executor``. Two kinds are offered behind one :class:`Workers`:

* the local process pool (the default; ``crystalgen.metrics._pool``), one process per core;
* a Dask distributed cluster, reached by its scheduler's address (``--scheduler``), through
  ``Client.get_executor()``: the same ``map`` in input order, so results are the same as a local
  run's. When a worker dies, the scheduler hands its unfinished tasks to another worker, so
  nothing is lost; the run folder's incremental writes (``crystalgen.runs``) cover the client
  itself being stopped.

Every Dask worker needs crystalgen (and, for relaxation, chgnet) importable, in the same version
as the client: docs/scaling.md shows a launch.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from concurrent.futures import Executor
from contextlib import contextmanager
from dataclasses import dataclass

from crystalgen.errors import CrystalgenInputError, first_line

#: Seconds to wait for a Dask scheduler before telling the user it cannot be reached.
CONNECT_TIMEOUT_S = 10


@dataclass(frozen=True)
class Workers:
    """An open executor (``None``: run inline), how many tasks it runs at once, and what it is."""

    executor: Executor | None
    width: int
    description: str


@contextmanager
def open_workers(workers: int | None = None, scheduler: str | None = None,
                 preload: Sequence[str] = ()) -> Iterator[Workers]:
    """Dask's executor when ``scheduler`` is given, else a local pool of ``workers`` processes
    (``None``: every core; 1: inline). ``preload``: modules the local pool's workers inherit."""
    if scheduler:
        with _dask_workers(scheduler) as opened:
            yield opened
        return
    from crystalgen.metrics._pool import process_pool, resolve_workers

    count = resolve_workers(workers)
    with process_pool(count, preload) as pool:
        yield Workers(pool, count, "inline (1 process)" if pool is None else f"local process pool ({count} workers)")


@contextmanager
def _dask_workers(address: str) -> Iterator[Workers]:
    try:
        from distributed import Client
    except ImportError:
        raise CrystalgenInputError("--scheduler needs Dask: pip install 'crystalgen[dask]'") from None
    try:
        client = Client(address, timeout=CONNECT_TIMEOUT_S, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CrystalgenInputError(f"cannot reach the Dask scheduler at {address!r}: {first_line(exc)}") from None
    try:
        threads = sum(client.nthreads().values())
        if threads == 0:
            raise CrystalgenInputError(f"the Dask scheduler at {address!r} has no workers")
        yield Workers(client.get_executor(), threads, f"Dask scheduler {address} ({threads} worker threads)")
    finally:
        client.close()


def hold_worker_to_one_thread() -> None:
    """For a task in a worker: the pool is the parallelism. A forked worker inherits the parent's
    torch and BLAS (OpenBLAS, OpenMP) thread pools, sized to every core, so two workers would
    each run two threads per step and fight over the cores (measured: a local pool of 2 relaxing
    with CHGNet at half the speed of Dask, whose workers start with OMP_NUM_THREADS=1)."""
    import sys

    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)  # BLAS and OpenMP pools, for the rest of this process
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(1)


def split_evenly(count: int, parts: int) -> list[range]:
    """``range(count)`` cut into at most ``parts`` consecutive, non-empty pieces of nearly equal size."""
    parts = max(1, min(parts, count))
    bounds = [count * k // parts for k in range(parts + 1)]
    return [range(a, b) for a, b in zip(bounds, bounds[1:]) if b > a]


__all__ = ["Workers", "hold_worker_to_one_thread", "open_workers", "split_evenly"]
