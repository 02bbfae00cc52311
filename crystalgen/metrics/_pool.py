"""A chunked process pool with a progress bar, shared by the slow metrics.

StructureMatcher and CrystalNN are pure Python and single-threaded, so the slow metrics spread
work over processes. Three choices here keep that cheap and safe:

* Work is sent in chunks, so inter-process overhead is paid per chunk, not per structure.
* The heavy modules (pymatgen's matcher, matminer, smact) are imported in the parent before the
  pool starts. On Linux the pool forks, so workers inherit them instead of spending seconds each
  importing them again.
* The workers are started (by a warm-up task) when the pool is created, which callers do before
  they open a rich progress display: forking while rich's refresh thread holds a lock could
  deadlock a child.

One pool can be reused by several metrics (``evaluate_generation`` does), so its start-up cost is
paid once.
"""

from __future__ import annotations

import importlib
import multiprocessing
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Executor, ProcessPoolExecutor
from contextlib import contextmanager, nullcontext
from typing import Any, TypeVar

T = TypeVar("T")
R = TypeVar("R")

#: Imported in the parent before forking, so that workers inherit them (matching, symmetry, SMACT).
MATCHING_MODULES = ("pymatgen.analysis.structure_matcher", "pymatgen.symmetry.analyzer", "smact.screening")
#: Also needed for fingerprints; matminer alone takes seconds to import, so only when needed.
FINGERPRINT_MODULES = ("matminer.featurizers.site.fingerprint", "matminer.featurizers.composition.composite")
ALL_MODULES = MATCHING_MODULES + FINGERPRINT_MODULES


def resolve_workers(workers: int | None) -> int:
    """``None`` means every core."""
    return max(1, int(workers) if workers else (os.cpu_count() or 1))


def _start_context() -> multiprocessing.context.BaseContext:
    # fork is cheap (no re-imports); it is only available, and only the default-safe choice, on Linux.
    if sys.platform.startswith("linux"):
        return multiprocessing.get_context("fork")
    return multiprocessing.get_context()


@contextmanager
def process_pool(workers: int | None, preload: Sequence[str] = MATCHING_MODULES) -> Iterator[Executor | None]:
    """A started process pool, or ``None`` when one worker is asked for (work then runs inline)."""
    n = resolve_workers(workers)
    if n == 1:
        yield None
        return
    for name in preload:
        importlib.import_module(name)
    pool = ProcessPoolExecutor(max_workers=n, mp_context=_start_context())
    try:
        list(pool.map(_worker_pid, range(n)))  # start every worker now, before any progress thread
        yield pool
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


@contextmanager
def use_pool(
    pool: Executor | None, workers: int | None, preload: Sequence[str] = MATCHING_MODULES
) -> Iterator[Executor | None]:
    """The caller's pool if it passed one (left running), else a new one for the duration."""
    if pool is not None:
        yield pool
        return
    with process_pool(workers, preload) as new_pool:
        yield new_pool


def _worker_pid(_: int) -> int:
    """Warm-up task: forces every worker process to start."""
    return os.getpid()


def progress_context(progress: Any, show_progress: bool) -> Any:
    """``progress`` itself if given; else a transient rich display (or nothing if not wanted)."""
    if progress is None and show_progress:
        from crystalgen.progress import progress_bar

        return progress_bar()
    return nullcontext(progress)


def chunked(items: Sequence[T], size: int) -> list[Sequence[T]]:
    """Consecutive slices of ``items`` of at most ``size`` elements."""
    size = max(1, int(size))
    return [items[i : i + size] for i in range(0, len(items), size)]


def map_chunks(
    fn: Callable[[Sequence[T]], list[R]],
    chunks: Sequence[Sequence[T]],
    pool: Executor | None,
    label: str = "",
    progress: Any = None,
    show_progress: bool = True,
    total: int | None = None,
    weights: Sequence[int] | None = None,
    task: Any = None,
) -> list[R]:
    """Apply ``fn`` to every chunk (in the pool if given) and concatenate results, in order.

    Args:
        fn: a module-level function (it must pickle) mapping a chunk to a list of results.
        progress: a running ``rich.progress.Progress`` to add a task to; if ``None`` and
            ``show_progress``, a transient one is opened for the duration of the call.
        total, weights: progress units overall and per chunk (default: items per chunk).
        task: an existing task of ``progress`` to advance instead of adding one.
    """
    weights = list(weights) if weights is not None else [len(c) for c in chunks]
    total = total if total is not None else sum(weights)
    results: list[R] = []
    with progress_context(progress, show_progress) as bar:
        if bar is not None and task is None:
            task = bar.add_task(label or "working", total=total)
        mapped = pool.map(fn, chunks) if pool is not None else map(fn, chunks)
        for weight, chunk_result in zip(weights, mapped):
            results.extend(chunk_result)
            if bar is not None:
                bar.advance(task, weight)
    return results
