"""Sampling many targets into a resumable CSV: the loop behind ``crystalgen sample`` and the benchmarks."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, SampleOptions, Target
from crystalgen.progress import progress_bar
from crystalgen.runs import ResumableCsv

#: Targets per ``Generator.sample`` call; also how often sampled output is committed to disk.
SAMPLE_BATCH = 64


def refused_targets(model: Generator, targets: Sequence[Target]) -> set[int]:
    """Indices of the targets the model cannot serve (e.g. too many atoms); they get no samples.
    Each distinct target is checked once: from scratch, thousands of targets are one and the same."""
    servable: dict[Target, bool] = {}
    for target in dict.fromkeys(targets):
        try:
            model.check_target(target)
            servable[target] = True
        except CrystalgenInputError:
            servable[target] = False
    return {index for index, target in enumerate(targets) if not servable[target]}


def sample_resumably(
    model: Generator,
    targets: Sequence[Target],
    n: int,
    seed: int,
    writer: ResumableCsv,
    rows_for: Callable[[int, Target, list[Crystal]], list[dict[str, Any]]],
    label: str,
    options: SampleOptions | None = None,
    stop: Callable[[], bool] | None = None,
) -> set[int]:
    """Sample ``n`` crystals per target, in batches of ``options.batch_size`` targets (default
    :data:`SAMPLE_BATCH`), from ``writer.done`` on.

    Batch ``b`` uses seed ``seed + first target index``, so a resumed run draws what an
    uninterrupted one would have (and another batch size draws other crystals). Targets in :func:`refused_targets` get no rows; their indices
    (over all targets, not only this session's) are returned. ``stop`` is asked before each batch
    (e.g. a wall-time budget); when it says so, sampling ends there and can be resumed later.
    """
    options = options or SampleOptions()
    batch_size = options.batch_size or SAMPLE_BATCH
    refused = refused_targets(model, targets)
    with progress_bar() as progress:
        task = progress.add_task(label, total=len(targets), completed=writer.done)
        for start in range(writer.done, len(targets), batch_size):
            if stop is not None and stop():
                break
            batch = list(range(start, min(start + batch_size, len(targets))))
            accepted = [index for index in batch if index not in refused]
            samples = model.sample([targets[i] for i in accepted], n, seed + start, options) if accepted else []
            rows = [row for index, crystals in zip(accepted, samples) for row in rows_for(index, targets[index], crystals)]
            writer.commit(rows, len(batch))
            progress.advance(task, len(batch))
    return refused
