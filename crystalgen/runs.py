"""Output folders of long jobs (sampling, benchmarks): resumable CSV output, run settings,
wall-time bookkeeping, and a description of the machine and code that produced them.

An interrupted job loses nothing already computed. Predictions are appended to a CSV in
blocks; after each block the CSV is flushed and ``progress.json`` records how many targets are
finished and the CSV's length in bytes. On resume the CSV is cut back to that length (dropping a
half-written block) and work continues with the next target. ``run.json`` keeps the settings the
run was started with, so that resuming with different settings is refused instead of silently
mixing two runs in one folder.
"""

from __future__ import annotations

import csv
import json
import os
import platform
import subprocess
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from crystalgen.errors import CrystalgenInputError

RUN_FILE, PROGRESS_FILE = "run.json", "progress.json"
#: The advice that ends every error about a damaged state file in an output folder.
UNRESUMABLE = "choose another --out or delete that folder"
#: csv module field limit, raised because one CIF cell can exceed its 128 kB default.
CSV_FIELD_LIMIT = 1 << 28


def atomic_write_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    os.replace(tmp, path)


class RunDir:
    """One benchmark run's folder. ``settings`` must match on resume (see module docstring)."""

    def __init__(self, path: str | os.PathLike, settings: dict[str, Any]):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)
        self.settings = settings
        run_file = self.path / RUN_FILE
        if run_file.exists():
            previous = read_state(run_file)
            stored = previous.get("settings", {})
            if not isinstance(stored, dict):
                raise CrystalgenInputError(f"{run_file}: 'settings' is not a mapping; {UNRESUMABLE}")
            changed = sorted(k for k in set(stored) | set(settings) if stored.get(k) != settings.get(k))
            if changed:
                details = ", ".join(f"{k}: {stored.get(k)!r} -> {settings.get(k)!r}" for k in changed)
                raise CrystalgenInputError(
                    f"{self.path} holds a run with other settings ({details}); choose another --out or delete it"
                )
            self.wall_s: dict[str, float] = dict(previous.get("wall_s", {}))
            self.started_commit = previous.get("started_commit", "unknown")
            self.resumed = True
        else:
            self.wall_s = {}
            self.started_commit = git_commit()
            self.resumed = False
        self._save_run()

    def _save_run(self) -> None:
        state = {"settings": self.settings, "started_commit": self.started_commit, "wall_s": self.wall_s}
        atomic_write_text(self.path / RUN_FILE, json.dumps(state, indent=2))

    def add_time(self, stage: str, seconds: float) -> None:
        self.wall_s[stage] = round(self.wall_s.get(stage, 0.0) + seconds, 3)
        self._save_run()

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add this stage's wall time to the run's total (kept across resumes)."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.add_time(stage, time.perf_counter() - start)

    def csv_writer(self, name: str, columns: Iterable[str]) -> "ResumableCsv":
        return ResumableCsv(self.path / name, tuple(columns), self.path / f"{Path(name).stem}.{PROGRESS_FILE}")


class ResumableCsv:
    """An append-only CSV whose committed length is recorded, so a half-written block is dropped."""

    def __init__(self, path: Path, columns: tuple[str, ...], progress_path: Path):
        self.path, self.columns, self.progress_path = path, columns, progress_path
        state = read_state(progress_path) if progress_path.exists() else {}
        try:
            self.done = int(state.get("done", 0))
            committed = int(state.get("bytes", 0))
        except (TypeError, ValueError):
            raise CrystalgenInputError(f"{progress_path}: 'done' and 'bytes' are not counts; {UNRESUMABLE}") from None
        if self.done and self.path.is_file() and self.path.stat().st_size >= committed:
            with open(self.path, "r+b") as handle:
                handle.truncate(committed)
        else:  # nothing committed yet: start the file afresh
            self.done = 0
            with open(self.path, "w", newline="") as handle:
                csv.writer(handle).writerow(self.columns)
            self._commit_state()

    def _commit_state(self) -> None:
        atomic_write_text(self.progress_path, json.dumps({"done": self.done, "bytes": self.path.stat().st_size}))

    def commit(self, rows: Iterable[dict[str, Any]], finished: int) -> None:
        """Append ``rows`` and mark ``finished`` more targets as done, durably."""
        with open(self.path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, self.columns)
            writer.writerows(rows)
            handle.flush()
            os.fsync(handle.fileno())
        self.done += finished
        self._commit_state()


def read_state(path: Path) -> dict[str, Any]:
    """A run's JSON state file; one that cannot be read stops the run instead of being overwritten."""
    from crystalgen.io import read_text_file

    try:
        state = json.loads(read_text_file(path, "a run's JSON state"))
    except json.JSONDecodeError as exc:
        raise CrystalgenInputError(f"{path}: not valid JSON ({exc}); {UNRESUMABLE}") from None
    except CrystalgenInputError as exc:
        raise CrystalgenInputError(f"{exc}; {UNRESUMABLE}") from None
    if not isinstance(state, dict):
        raise CrystalgenInputError(f"{path}: not a JSON object; {UNRESUMABLE}")
    return state


def write_csv_rows(path: Path, rows: list[dict[str, Any]], columns: Iterable[str] | None = None) -> None:
    """Write a whole CSV atomically (a file derived from others, rewritten on every run)."""
    columns = tuple(columns if columns is not None else (rows[0] if rows else ()))
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "w", newline="") as handle:
        writer = csv.DictWriter(handle, columns)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def read_csv_rows(path: Path) -> list[dict[str, str]]:
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))


# ---------------------------------------------------------------------------------- metadata
def git_commit() -> str:
    """The crystalgen checkout's commit (with ``-dirty`` if modified), or ``unknown``."""
    root = Path(__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=10, check=True,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{commit}-dirty" if dirty else commit


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_description() -> dict[str, Any]:
    """What the run ran on: CPU, cores, OS, Python, torch and any GPU."""
    info: dict[str, Any] = {
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "host": platform.node(),
    }
    try:
        import torch

        info["torch"] = torch.__version__
        info["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        info["torch"] = None
    return info
