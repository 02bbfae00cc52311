"""Execute every notebook in ``notebooks/`` with nbclient, as CI does.

Each notebook is its own test: it must run without a cell error, under this interpreter (the
kernel is ``python3`` of the same environment; a check cell, added to the in-memory copy only,
asserts it), and produce at least one picture. A notebook that reads dataset splits names them in
its metadata (``crystalgen.needs_data``, e.g. ``["perov_5/train"]``) and runs under the ``data_dir``
fixture: it is skipped, with the fixture's reason, when CRYSTALGEN_DATA_DIR is not set, and with
the missing splits named when the folder lacks one; its kernel sees that folder as
CRYSTALGEN_DATA_DIR and the session's shared structure cache, so splits that other data tests
parsed are not parsed again. The other notebooks run as every test does here: without
CRYSTALGEN_DATA_DIR and with an empty cache, which shows they need no data. Notebooks write only
to temporary folders: ``TMPDIR`` points the kernel at pytest's ``tmp_path``, and the test checks
that nothing new appears in the repository's ``notebooks/`` folder or at its top level.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

nbformat = pytest.importorskip("nbformat", reason="the notebook tests need nbformat (pip install -e '.[dev]')")
nbclient = pytest.importorskip("nbclient", reason="the notebook tests need nbclient (pip install -e '.[dev]')")
pytest.importorskip("ipykernel", reason="the notebook tests need ipykernel (pip install -e '.[dev]')")

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
KERNEL = "python3"
#: Seconds any one cell may take (the notebooks take seconds each; a cold structure cache adds
#: the parsing of the dataset splits they read, well under a minute per split).
CELL_TIMEOUT_S = 600
IMAGE = "image/png"
DATA_DIR_ENV = "CRYSTALGEN_DATA_DIR"


def _needs_data(path: Path) -> list[str]:
    return list(json.loads(path.read_text()).get("metadata", {}).get("crystalgen", {}).get("needs_data", []))


def _params(with_data: bool) -> list:
    return [pytest.param(path, id=path.stem, marks=pytest.mark.slow)
            for path in sorted(NOTEBOOKS.glob("*.ipynb")) if bool(_needs_data(path)) == with_data]


def _missing_splits(needed: list[str], data_dir: Path) -> list[str]:
    from crystalgen.data.files import find_split_file

    return [item for item in needed if find_split_file(*item.split("/", 1), data_dir=data_dir) is None]


def _check_interpreter_cell():
    """A first cell that fails unless the kernel runs this test's interpreter (its environment)."""
    expected = os.path.realpath(sys.prefix)
    return nbformat.v4.new_code_cell(
        "import os, sys\n"
        f"assert os.path.realpath(sys.prefix) == {expected!r}, "
        "f'kernel runs {sys.executable}, not the interpreter of the tests'"
    )


def _snapshot() -> set[str]:
    return {p.name for p in NOTEBOOKS.iterdir()} | {f"../{p.name}" for p in REPO.iterdir()}


def _execute(nb, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # the kernel's tempfile.mkdtemp() and its subprocesses
    client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=CELL_TIMEOUT_S,
                                     resources={"metadata": {"path": str(NOTEBOOKS)}})
    client.execute()


def _run_notebook(path: Path, tmp_path: Path, monkeypatch) -> None:
    nb = nbformat.read(path, as_version=4)
    nb.cells.insert(0, _check_interpreter_cell())
    before = _snapshot()
    _execute(nb, tmp_path, monkeypatch)  # a cell error raises nbclient's CellExecutionError
    new = sorted(_snapshot() - before)
    assert not new, f"{path.name} wrote into the repository: {new}"
    images = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])
              if IMAGE in o.get("data", {})]
    assert images, f"{path.name} produced no picture"


def test_there_are_notebooks():
    assert len(_params(True)) + len(_params(False)) >= 2, f"no notebooks found in {NOTEBOOKS}"


def test_kernel_runs_under_this_interpreter(tmp_path, monkeypatch):
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell("import sys; print(sys.executable)")]
    _execute(nb, tmp_path, monkeypatch)
    printed = nb.cells[0].outputs[0]["text"].strip()
    assert os.path.realpath(printed) == os.path.realpath(sys.executable), (
        f"kernel {KERNEL!r} runs {printed}, the tests run {sys.executable}: install ipykernel into this "
        "environment, or point the python3 kernel spec at it")


@pytest.mark.parametrize("path", _params(with_data=False))
def test_notebook_runs(path: Path, tmp_path, monkeypatch):
    _run_notebook(path, tmp_path, monkeypatch)


@pytest.mark.parametrize("path", _params(with_data=True))
def test_data_notebook_runs(path: Path, data_dir: Path, tmp_path, monkeypatch):
    missing = _missing_splits(_needs_data(path), data_dir)
    if missing:
        pytest.skip(f"{path.name} needs {', '.join(missing)} in the data directory {data_dir}")
    monkeypatch.setenv(DATA_DIR_ENV, str(data_dir))
    _run_notebook(path, tmp_path, monkeypatch)
