"""A real non-editable install works from another folder, and the CLI starts without torch."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: Seconds for building and installing the wheel (no dependencies: they are this environment's).
INSTALL_TIMEOUT_S = 300
#: Not part of a source tree: a build from a copy without them cannot pick up stale files
#: (setuptools reuses ``build/lib``, where a deleted module would live on).
NOT_SOURCE = shutil.ignore_patterns(".git", ".venv", "build", "dist", "runs", "*.egg-info", "__pycache__",
                                    ".pytest_cache", "samples")
_TORCH_PROBE = """
import sys
from crystalgen.cli import main
sys.argv = ["crystalgen", *{args!r}]
try:
    main()
except SystemExit:
    pass
print("TORCH_IMPORTED" if "torch" in sys.modules else "NO_TORCH", file=sys.stderr)
"""


@pytest.mark.parametrize("args", [["--help"], ["--version"], ["data", "list"], ["sample", "--help"]])
def test_cli_start_up_does_not_import_torch(args, tmp_path):
    env = {**os.environ, "CRYSTALGEN_DATA_DIR": str(tmp_path)}
    result = subprocess.run([sys.executable, "-c", _TORCH_PROBE.format(args=args)], capture_output=True, text=True,
                            env=env, timeout=120)
    assert result.stderr.strip().endswith("NO_TORCH"), result.stderr[-2000:]


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> dict[str, str]:
    """crystalgen built as a wheel and installed (without dependencies) into a folder of its own."""
    work = tmp_path_factory.mktemp("wheel")
    source = shutil.copytree(ROOT, work / "source", ignore=NOT_SOURCE)
    build = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--no-build-isolation", "-q", str(source),
                            "-w", str(work / "dist")], capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert build.returncode == 0, build.stderr[-3000:]
    (wheel,) = (work / "dist").glob("crystalgen-*.whl")
    site = work / "site"
    install = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target", str(site), str(wheel)],
                             capture_output=True, text=True, timeout=INSTALL_TIMEOUT_S)
    assert install.returncode == 0, install.stderr[-3000:]
    elsewhere = work / "elsewhere"
    elsewhere.mkdir()
    return {"site": str(site), "cwd": str(elsewhere)}


def run_installed(installed: dict[str, str], *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": installed["site"]}
    env.pop("CRYSTALGEN_DATA_DIR", None)
    return subprocess.run([sys.executable, "-m", "crystalgen", *args], capture_output=True, text=True, env=env,
                          cwd=installed["cwd"], timeout=300)


@pytest.mark.slow
def test_the_wheel_is_what_runs(installed):
    probe = run_installed(installed, "--version")
    assert probe.returncode == 0, probe.stderr
    env = {**os.environ, "PYTHONPATH": installed["site"]}
    where = subprocess.run([sys.executable, "-c", "import crystalgen; print(crystalgen.__file__)"], capture_output=True,
                           text=True, env=env, cwd=installed["cwd"], timeout=60)
    assert where.stdout.strip().startswith(installed["site"]), where.stdout  # not the source checkout


@pytest.mark.slow
def test_installed_models_lists_every_checkpoint_once(installed):
    result = run_installed(installed, "models", "--json")
    assert result.returncode == 0, result.stderr
    names = [m["name"] for m in json.loads(result.stdout)]
    shipped = sorted(p.name for p in (ROOT / "checkpoints").iterdir() if (p / "config.yaml").is_file())
    assert shipped and all(names.count(name) == 1 for name in shipped), names
    assert len(names) == len(set(names)), names  # each family once too


@pytest.mark.slow
def test_installed_sample_and_protocols(installed):
    sampled = run_installed(installed, "sample", "--model", "diffusion-perov_5", "-c", "SrTiO3", "-n", "1", "--out", "out")
    assert sampled.returncode == 0, sampled.stderr
    assert (Path(installed["cwd"]) / "out" / "samples.csv").is_file()
    protocols = run_installed(installed, "data", "protocols")
    assert protocols.returncode == 0, protocols.stderr
    expected = sorted(p.stem for p in (ROOT / "configs" / "data").glob("*.yaml"))
    assert expected and all(name in protocols.stdout for name in expected), protocols.stdout


def test_every_package_folder_is_a_package():
    """setup.py's find_packages skips folders without an __init__.py, so a wheel would lack them."""
    missing = [str(d.relative_to(ROOT)) for d in (ROOT / "crystalgen").rglob("*")
               if d.is_dir() and d.name != "__pycache__" and any(d.glob("*.py")) and not (d / "__init__.py").is_file()]
    assert not missing, missing
