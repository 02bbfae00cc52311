"""Candidate evaluation on a Dask cluster (``--scheduler``): a ``LocalCluster`` of two worker
processes on loopback. The filter's results are the same bytes as the local pool's, a worker
killed mid-run loses nothing, a client stopped mid-run resumes to the same file, and an address
nobody answers is a one-line error."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

distributed = pytest.importorskip("distributed", reason="the Dask tests need the 'dask' extra (distributed)")

from crystalgen.executors import Workers, open_workers, split_evenly  # noqa: E402
from crystalgen.filters.inputs import CandidateRow  # noqa: E402
from crystalgen.filters.pipeline import run_filter  # noqa: E402
from crystalgen.filters.stages import Stage, StageResult, StructuralValidity  # noqa: E402
from crystalgen.runs import read_csv_rows  # noqa: E402

from conftest import assert_one_line_error, make_textbook, run_main  # noqa: E402
from test_filter import EXIT_INTERRUPTED, candidates_csv, fake_mp20, filter_args, tiny_ckpt  # noqa: E402,F401

#: Seconds a slow stage spends per structure: long enough that a worker can be killed mid-task.
SLOW_STAGE_S = 0.25
SLOW_ROWS = 24
#: Columns that measure time, not the result, and so differ between any two runs.
TIMING_COLUMNS = ("relax_s",)


class SlowDensity(Stage):
    """A distributable stage with a known answer per structure that takes a while to give it."""

    name, columns = "slow_density", ("atoms_per_volume",)
    distributable = True

    def evaluate(self, crystals, row_ids):
        time.sleep(SLOW_STAGE_S * len(crystals))
        density = np.array([c.num_atoms / c.volume for c in crystals])
        return StageResult({"atoms_per_volume": density}, density > 0)


class StopAtThirdChunk(Stage):
    """Runs in the client; raises KeyboardInterrupt (Ctrl-C) when it sees its third chunk."""

    name, columns, calls = "stopper", (), 0

    def evaluate(self, crystals, row_ids):
        StopAtThirdChunk.calls += 1
        if StopAtThirdChunk.calls == 3:
            raise KeyboardInterrupt
        return StageResult({}, np.ones(len(crystals), dtype=bool))


@pytest.fixture(scope="module")
def cluster():
    """Two single-threaded worker processes, restarted by their nannies if killed."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                                  dashboard_address=None) as local:
        yield local


def slow_rows() -> list[CandidateRow]:
    names = ("NaCl", "SrTiO3", "ZnO")
    return [CandidateRow({"sample_id": f"s{i}"}, make_textbook(names[i % len(names)])) for i in range(SLOW_ROWS)]


def filtered(out: Path) -> list[dict[str, str]]:
    return [{k: v for k, v in row.items() if k not in TIMING_COLUMNS} for row in read_csv_rows(out / "filtered.csv")]


def run_slow_filter(out: Path, workers: Workers | None, extra: tuple[Stage, ...] = ()) -> dict:
    return run_filter(slow_rows(), ("sample_id",), [StructuralValidity(), SlowDensity(), *extra], out, {"n": SLOW_ROWS},
                      workers=workers)


def test_split_evenly_covers_every_item_once_in_order():
    for count, parts in [(7, 3), (2, 5), (10, 1), (0, 4), (9, 9)]:
        pieces = split_evenly(count, parts)
        assert [i for piece in pieces for i in piece] == list(range(count))
        assert len(pieces) == min(count, parts) and all(len(p) for p in pieces)
        assert max(map(len, pieces), default=0) - min(map(len, pieces), default=0) <= 1


@pytest.mark.parametrize("stage, options", [
    ("novelty", ("--protocol", "mp_20")),
    ("relax", ("--skip", "novelty", "--relax")),  # novelty would reject every textbook crystal before relax
])
def test_filter_on_dask_writes_what_the_local_pool_writes(stage, options, cluster, candidates_csv, tiny_ckpt,
                                                          fake_mp20, tmp_path, capsys):
    """Each distributable stage gives the same rows on the cluster as on two local workers."""
    if stage == "relax" and not _has_chgnet():
        pytest.skip("the relax stage needs the 'relax' extra (CHGNet)")
    common = ("--max-e-hull", "100", *options)
    local = run_main(filter_args(candidates_csv, tmp_path / "local", tiny_ckpt, fake_mp20, *common, "--workers", "2"),
                     capsys)
    assert local.returncode == 0, local.stderr
    remote = run_main(filter_args(candidates_csv, tmp_path / "dask", tiny_ckpt, fake_mp20, *common,
                                  "--scheduler", cluster.scheduler_address), capsys)
    assert remote.returncode == 0, remote.stderr
    rows = filtered(tmp_path / "dask")
    assert rows == filtered(tmp_path / "local")
    evaluated = [r for r in rows if r.get("is_novel") or r.get("relaxed_cif")]
    assert len(evaluated) >= 2, f"the {stage} stage evaluated fewer than two candidates: nothing was split"
    summary = (tmp_path / "dask" / "summary.json").read_text()
    assert "Dask scheduler" in summary and "2 worker threads" in summary


def test_a_killed_worker_loses_nothing(cluster, tmp_path):
    """One worker is killed (SIGKILL) while the slow stage is running: its tasks go to the other
    worker (and to the nanny's replacement), and the file is the same as an inline run's."""
    run_slow_filter(tmp_path / "inline", None)
    with distributed.Client(cluster.scheduler_address) as client:
        pids = list(client.run(os.getpid).values())
    progress = tmp_path / "dask" / "filtered.progress.json"
    killed_mid_run = threading.Event()

    def kill_one_worker_mid_run() -> None:
        time.sleep(4 * SLOW_STAGE_S)  # well inside the first chunk (SLOW_ROWS / 2 structures per worker)
        if not progress.is_file() or '"done": 0' in progress.read_text():
            killed_mid_run.set()
        os.kill(pids[0], signal.SIGKILL)

    killer = threading.Thread(target=kill_one_worker_mid_run)
    with open_workers(scheduler=cluster.scheduler_address) as workers:
        killer.start()
        summary = run_slow_filter(tmp_path / "dask", workers)
    killer.join()
    assert killed_mid_run.is_set(), "the worker was killed after the run had written its first chunk"
    assert summary["passed"] == SLOW_ROWS
    assert filtered(tmp_path / "dask") == filtered(tmp_path / "inline")
    with distributed.Client(cluster.scheduler_address) as client:
        client.wait_for_workers(2, timeout=60)  # the nanny restarted the killed one, for the next test


def test_a_stopped_dask_run_resumes_to_the_same_file(cluster, tmp_path, monkeypatch):
    import crystalgen.filters.pipeline as pipeline

    run_slow_filter(tmp_path / "inline", None)
    monkeypatch.setattr(pipeline, "CHUNK_ROWS", 2)  # chunks of 2 x 2 workers: the third stops after 8 rows
    StopAtThirdChunk.calls = 0
    out = tmp_path / "dask"
    with open_workers(scheduler=cluster.scheduler_address) as workers:
        with pytest.raises(KeyboardInterrupt):
            run_slow_filter(out, workers, (StopAtThirdChunk(),))
        assert len(read_csv_rows(out / "filtered.csv")) == 8
        StopAtThirdChunk.calls = -SLOW_ROWS  # never three again
        run_slow_filter(out, workers, (StopAtThirdChunk(),))
    assert filtered(out) == filtered(tmp_path / "inline")


@pytest.mark.data
def test_csp_matching_on_dask_gives_the_local_figures(cluster, data_dir, tmp_path, capsys):
    """``benchmark csp`` scored on the cluster: the same per-structure RMS file as two local workers."""
    common = ["benchmark", "csp", "--model", "template-perov_5", "--dataset", "perov_5", "--limit", "24",
              "--data-dir", str(data_dir)]
    local = run_main([*common, "--out", str(tmp_path / "local"), "--workers", "2"], capsys)
    assert local.returncode == 0, local.stderr
    remote = run_main([*common, "--out", str(tmp_path / "dask"), "--scheduler", cluster.scheduler_address], capsys)
    assert remote.returncode == 0, remote.stderr
    per_structure = [read_csv_rows(tmp_path / name / "per_structure.csv") for name in ("local", "dask")]
    assert len(per_structure[0]) == 24 and per_structure[0] == per_structure[1]
    assert any(row["matched_k1"] == "1" for row in per_structure[1])  # real matches were computed there


def test_an_unreachable_scheduler_is_a_one_line_error(candidates_csv, tiny_ckpt, fake_mp20, tmp_path, capsys,
                                                      monkeypatch):
    import crystalgen.executors as executors

    monkeypatch.setattr(executors, "CONNECT_TIMEOUT_S", 1)
    result = run_main(filter_args(candidates_csv, tmp_path / "out", tiny_ckpt, fake_mp20, "--skip", "novelty",
                                  "--scheduler", "tcp://127.0.0.1:9"), capsys)
    assert_one_line_error(result, "cannot reach the Dask scheduler", "tcp://127.0.0.1:9")


def _has_chgnet() -> bool:
    try:
        import chgnet  # noqa: F401
    except ImportError:
        return False
    return True
