"""The ``crystalgen`` command line.

User errors must give exit code 2 and exactly one line on stderr ("crystalgen: error: ..."), never
a traceback. That handling lives in ``crystalgen.cli.main``, so it is tested on real processes
(``python -m crystalgen``). Each process spends ~2 s importing, so the commands of this module are
started together, in parallel, by one module-scoped fixture; the tests then inspect the results.
Round trips through every output format run in-process through ``main()`` (same code, same exit
codes via SystemExit) to keep the suite fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import click
import pytest

import crystalgen
from crystalgen import Crystal
from crystalgen.cli import cli
from crystalgen.io import FORMATS
from crystalgen.representations.wyckoff import encode_wyckoff
from conftest import Result, assert_one_line_error, run_main  # noqa: E402  (shared with the other CLI tests)

REPO_ROOT = Path(crystalgen.__file__).resolve().parents[1]
CLI_TIMEOUT_S = 300


def _env(cache: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.pop("CRYSTALGEN_DATA_DIR", None)
    env["XDG_CACHE_HOME"] = str(cache)
    env["PYTHONPATH"] = os.pathsep.join([str(REPO_ROOT), env.get("PYTHONPATH", "")]).rstrip(os.pathsep)
    env["COLUMNS"] = "200"
    env["NO_COLOR"] = "1"
    return env


def run_cli(args: list[str], cwd: Path, cache: Path) -> Result:
    proc = subprocess.run(
        [sys.executable, "-m", "crystalgen", *args],
        cwd=cwd, env=_env(cache), capture_output=True, text=True, timeout=CLI_TIMEOUT_S,
    )
    return Result(list(args), proc.returncode, proc.stdout, proc.stderr)


def run_many(commands: dict[str, list[str]], cwd: Path, cache: Path) -> dict[str, Result]:
    workers = max(2, min(8, (os.cpu_count() or 2) * 2))
    with ThreadPoolExecutor(max_workers=workers) as pool:
        futures = {name: pool.submit(run_cli, args, cwd, cache) for name, args in commands.items()}
        return {name: future.result() for name, future in futures.items()}


# ------------------------------------------------------------------------------ inputs
def _nacl() -> Crystal:
    from conftest import make_textbook

    return make_textbook("NaCl")


def _write_inputs(root: Path) -> None:
    from conftest import make_textbook

    nacl = _nacl()
    (root / "NaCl.cif").write_text(nacl.to_cif())
    (root / "garbage.cif").write_text("this is not a crystal\n\x01 at all ;;;\n")
    (root / "empty.cif").write_text("")
    (root / "binary.cif").write_bytes(bytes(range(256)) * 8)
    (root / "structure.foo").write_text(nacl.to_cif())
    (root / "notjson.json").write_text("{'spacegroup': 225, this is not JSON")
    wyckoff = encode_wyckoff(nacl).to_dict()
    for name, edit in {
        "sg231": lambda d: d.update(spacegroup=231),
        "element_xx": lambda d: d["sites"][0].update(element="Xx"),
        "nonnumeric": lambda d: d["sites"][0].update(free_coords=["x"]),
        "badlattice": lambda d: d["lattice"].update(a_b_c_alpha_beta_gamma=[5.64, 5.64, 5.64, 0, 0, 0]),
        "nosites": lambda d: d.update(sites=[]),
        "badlabel": lambda d: d["sites"][0].update(wyckoff="a4"),
    }.items():
        data = json.loads(json.dumps(wyckoff))
        edit(data)
        (root / f"{name}.json").write_text(json.dumps(data))
    import pandas as pd

    good = [("mp-1", make_textbook("NaCl")), ("mp/2 si", make_textbook("Si")), ("mp-3", make_textbook("ZnO"))]
    pd.DataFrame({"material_id": [i for i, _ in good], "cif": [c.to_cif() for _, c in good]}).to_csv(root / "good.csv")
    pd.DataFrame({"material_id": ["ok-1", "broken-2"], "cif": [nacl.to_cif(), "not a cif"]}).to_csv(root / "bad.csv")
    pd.DataFrame({"material_id": ["a"], "structure": ["x"]}).to_csv(root / "nocif.csv")
    (root / "empty-data").mkdir()
    (root / "mismatch-data" / "perov_5").mkdir(parents=True)
    (root / "mismatch-data" / "perov_5" / "val.csv").write_text(",material_id,cif\n0,x,y\n")


ERROR_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    # name: (arguments, fragments the one-line message must contain)
    "convert-missing-file": (["convert", "missing.cif"], ("missing.cif", "not found")),
    "convert-garbage-cif": (["convert", "garbage.cif"], ("garbage.cif", "CIF")),
    "convert-empty-cif": (["convert", "empty.cif"], ("empty.cif",)),
    "convert-unknown-extension": (["convert", "structure.foo"], ("structure.foo",)),
    "wyckoff-spacegroup-231": (["convert", "sg231.json"], ("231",)),
    "wyckoff-unknown-element": (["convert", "element_xx.json"], ("Xx",)),
    "wyckoff-not-json": (["convert", "notjson.json"], ("notjson.json", "JSON")),
    "info-unknown-dataset": (["data", "info", "nosuchdataset"], ("nosuchdataset",)),
    "info-unknown-split": (["data", "info", "mp_20", "--split", "nosuch", "--data-dir", "empty-data"], ("nosuch",)),
    "find-unknown-element": (["data", "find", "mp_20", "--formula", "Xx2O", "--data-dir", "empty-data"], ("Xx",)),
    "find-malformed-formula": (["data", "find", "mp_20", "--formula", "Fe2O3!!", "--data-dir", "empty-data"], ("Fe2O3!!",)),
    "find-spacegroup-0": (["data", "find", "mp_20", "--spacegroup", "0", "--data-dir", "empty-data"], ("0",)),
    "find-spacegroup-231": (["data", "find", "mp_20", "--spacegroup", "231", "--data-dir", "empty-data"], ("231",)),
    "unknown-option": (["--no-such-option"], ("--no-such-option",)),
}

#: More user errors, checked in-process through main() (same handler, no process start-up cost).
MORE_ERROR_CASES: dict[str, tuple[list[str], tuple[str, ...]]] = {
    "convert-unknown-target": (["convert", "NaCl.cif", "--to", "pdb"], ("pdb",)),
    "convert-csv-without-out": (["convert", "good.csv"], ("--out",)),
    "convert-csv-without-cif-column": (["convert", "nocif.csv", "--out", "x"], ("cif",)),
    "find-no-criteria": (["data", "find", "mp_20", "--data-dir", "empty-data"], ("--formula",)),
    "find-missing-split": (
        ["data", "find", "mp_20", "--formula", "NaCl", "--split", "test", "--data-dir", "empty-data"],
        ("mp_20/test", "crystalgen data fetch mp_20"),
    ),
    "fetch-derived-split": (
        ["data", "fetch", "mp_20", "--split", "train_first1000", "--data-dir", "empty-data"], ("train_first1000",),
    ),
    "verify-unknown-dataset": (["data", "verify", "nosuch", "--data-dir", "empty-data"], ("nosuch",)),
    "unknown-command": (["frobnicate"], ("frobnicate",)),
    "unknown-subcommand-option": (["data", "list", "--bogus"], ("--bogus",)),
    "missing-argument": (["convert"], ("SOURCE",)),
    "wyckoff-bad-label": (["convert", "badlabel.json"], ("a4",)),
}

#: Malformed inputs that currently break the one-line contract (run in-process; see the reasons).
BUG_CASES: dict[str, tuple[list[str], str]] = {
    "binary-cif": (
        ["convert", "binary.cif"],
        "BUG: `crystalgen convert binary.cif` (a non-UTF-8 file) crashes with a UnicodeDecodeError "
        "traceback and exit 1: convert reads the file with Path.read_text() itself instead of going "
        "through io.read_crystal_file, which handles it",
    ),
    "wyckoff-non-numeric": (
        ["convert", "nonnumeric.json"],
        "BUG: a Wyckoff JSON whose free_coords holds a string ('x') crashes with a ValueError "
        "traceback and exit 1 (float() is not guarded in WyckoffCrystal.from_dict)",
    ),
    "wyckoff-impossible-lattice": (
        ["convert", "badlattice.json"],
        "BUG: a Wyckoff JSON with lattice angles 0, 0, 0 is accepted (exit 0) and written as a CIF "
        "whose cell lengths, angles and volume are nan",
    ),
    "wyckoff-no-sites": (
        ["convert", "nosites.json"],
        "BUG: a Wyckoff JSON with an empty site list is accepted (exit 0) and written as a CIF with no atoms",
    ),
}

POSITIVE_CASES: dict[str, list[str]] = {
    "version": ["--version"],
    "help": ["--help"],
}


@pytest.fixture(scope="module")
def cli_workdir(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("cli")
    _write_inputs(root)
    return root


@pytest.fixture(scope="module")
def cli_results(cli_workdir, tmp_path_factory) -> dict[str, Result]:
    commands = {name: args for name, (args, _) in ERROR_CASES.items()}
    commands.update(POSITIVE_CASES)
    return run_many(commands, cli_workdir, tmp_path_factory.mktemp("cli-cache"))


# ------------------------------------------------------------------------------ error matrix
@pytest.mark.parametrize("name", list(ERROR_CASES))
def test_user_error_is_one_line_exit_2(cli_results, name):
    assert_one_line_error(cli_results[name], *ERROR_CASES[name][1])


@pytest.fixture
def in_workdir(cli_workdir, monkeypatch) -> Path:
    monkeypatch.chdir(cli_workdir)
    return cli_workdir


@pytest.mark.parametrize("name", list(MORE_ERROR_CASES))
def test_more_user_errors_in_process(in_workdir, capsys, name):
    args, fragments = MORE_ERROR_CASES[name]
    assert_one_line_error(run_main(args, capsys), *fragments)


@pytest.mark.parametrize("name", list(BUG_CASES))
def test_user_error_is_one_line_exit_2_fixed_bugs(in_workdir, capsys, name):
    # Regressions: each of these once escaped main() with a traceback or exited 0.
    assert_one_line_error(run_main(BUG_CASES[name][0], capsys))


# ------------------------------------------------------------------------------ positive cases
def test_version(cli_results):
    result = cli_results["version"]
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.strip() == f"crystalgen, version {crystalgen.__version__}"


def test_help_as_a_process(cli_results):
    result = cli_results["help"]
    assert result.returncode == 0 and result.stderr == ""
    assert "Usage: crystalgen" in result.stdout
    assert "convert" in result.stdout and "data" in result.stdout


def test_convert_to_stdout(in_workdir, capsys, assert_same_cell):
    result = run_main(["convert", "NaCl.cif", "--to", "poscar"], capsys)
    assert result.returncode == 0, result.stderr
    assert_same_cell(_nacl(), Crystal.from_poscar(result.stdout), rotation_free=False)


def test_convert_csv_to_folder(in_workdir, capsys):
    result = run_main(["convert", "good.csv", "--to", "poscar", "--out", "csv-out"], capsys)
    assert result.returncode == 0, result.stderr
    out = in_workdir / "csv-out"
    assert sorted(p.name for p in out.iterdir()) == ["mp-1.vasp", "mp-3.vasp", "mp_2_si.vasp"]
    formulas = {p.stem: Crystal.from_file(p).formula for p in out.iterdir()}
    assert formulas == {"mp-1": "NaCl", "mp_2_si": "Si", "mp-3": "ZnO"}
    assert "converted 3 of 3" in result.stderr


def test_convert_csv_with_a_bad_row_exits_1(in_workdir, capsys):
    result = run_main(["convert", "bad.csv", "--to", "cif", "--out", "csv-bad-out"], capsys)
    assert result.returncode == 1
    assert "converted 1 of 2" in result.stderr and "broken-2" in result.stderr
    assert [p.name for p in (in_workdir / "csv-bad-out").iterdir()] == ["ok-1.cif"]


def test_data_list_with_empty_data_dir(in_workdir, capsys):
    result = run_main(["data", "list", "--data-dir", "empty-data"], capsys)
    assert result.returncode == 0, result.stderr
    for name in ("perov_5", "carbon_24", "mp_20", "mpts_52"):
        assert name in result.stdout
    assert "missing" in result.stdout and "present" not in result.stdout


def test_data_verify_with_empty_data_dir(in_workdir, capsys):
    result = run_main(["data", "verify", "--data-dir", "empty-data"], capsys)
    assert result.returncode == 0, result.stderr
    assert "MISMATCH" not in result.stdout and "failed" not in result.stdout


def test_data_verify_mismatch_exits_1(in_workdir, capsys):
    result = run_main(["data", "verify", "--data-dir", "mismatch-data"], capsys)
    assert result.returncode == 1
    assert "MISMATCH" in result.stdout and "perov_5/val" in result.stdout


def test_data_info_without_data(in_workdir, capsys):
    result = run_main(["data", "info", "carbon_24", "--data-dir", "empty-data"], capsys)
    assert result.returncode == 0, result.stderr
    assert "crystalgen data fetch carbon_24" in result.stdout


# ------------------------------------------------------------------------------ in-process: help, round trips
def _all_command_paths(group: click.Group, prefix=()) -> list[tuple[str, ...]]:
    paths = [prefix]
    for name, command in sorted(group.commands.items()):
        if isinstance(command, click.Group):
            paths += _all_command_paths(command, prefix + (name,))
        else:
            paths.append(prefix + (name,))
    return paths


COMMAND_PATHS = _all_command_paths(cli)


def test_command_tree_is_known():
    expected = {
        ("convert",), ("data",), ("data", "list"), ("data", "info"), ("data", "verify"), ("data", "fetch"),
        ("data", "find"), ("data", "protocols"), ("sample",), ("models",), ("train",), ("filter",),
        ("benchmark",), ("benchmark", "csp"), ("benchmark", "gen"), ("benchmark", "surrogate"), ("design",),
        ("benchmark", "design"),
    }
    assert expected <= set(COMMAND_PATHS)
    assert {p for p in COMMAND_PATHS if p[:1] == ("benchmark",)} == {
        ("benchmark",), ("benchmark", "csp"), ("benchmark", "gen"), ("benchmark", "surrogate"), ("benchmark", "design"),
        ("benchmark", "sun")}


@pytest.mark.parametrize("path", COMMAND_PATHS, ids=lambda p: " ".join(p) or "crystalgen")
@pytest.mark.parametrize("flag", ["--help", "-h"])
def test_help_of_every_command(path, flag, capsys):
    result = run_main([*path, flag], capsys)
    assert result.returncode == 0 and result.stderr == ""
    assert result.stdout.startswith(f"Usage: crystalgen {' '.join(path)}".rstrip())


def test_version_in_process(capsys):
    result = run_main(["-V"], capsys)
    assert result.returncode == 0 and crystalgen.__version__ in result.stdout


@pytest.mark.parametrize("fmt", FORMATS)
def test_convert_round_trip_through_every_format(fmt, tmp_path, capsys, assert_same_cell, same_crystal, monkeypatch):
    monkeypatch.chdir(tmp_path)
    nacl = _nacl()
    Path("NaCl.cif").write_text(nacl.to_cif())
    from crystalgen.io import FILE_EXTENSIONS

    suffix = FILE_EXTENSIONS[fmt]
    middle = Path(f"converted{suffix}")
    result = run_main(["convert", "NaCl.cif", "--to", fmt, "--out", str(middle)], capsys)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and f"wrote {middle}" in result.stderr
    result = run_main(["convert", str(middle), "--to", "cif", "--out", "back/NaCl.cif"], capsys)
    assert result.returncode == 0, result.stderr
    back = Crystal.from_file("back/NaCl.cif")
    assert same_crystal(nacl, back)
    assert back.formula == "NaCl" and back.num_atoms == (2 if fmt in ("cif-tokens", "slices") else 8)  # primitive cells
    if fmt in ("cif", "poscar", "extxyz"):  # formats that keep the exact cell
        assert_same_cell(nacl, back, atol=1e-6)
    if fmt == "cif-symmetric":
        assert "Fm-3m" in middle.read_text() or "F m -3 m" in middle.read_text()
    if fmt == "wyckoff-json":
        assert json.loads(middle.read_text())["spacegroup"] == 225


def test_convert_with_explicit_input_format(tmp_path, capsys, monkeypatch, assert_same_cell):
    monkeypatch.chdir(tmp_path)
    nacl = _nacl()
    Path("structure.txt").write_text(nacl.to_poscar())
    result = run_main(["convert", "structure.txt", "--from", "poscar", "--to", "cif"], capsys)
    assert result.returncode == 0, result.stderr
    assert_same_cell(nacl, Crystal.from_cif(result.stdout))


@pytest.fixture
def toy_dataset(tmp_path, monkeypatch):
    """A registered 'toy' dataset with the four textbook crystals in <tmp>/data/toy/test.csv."""
    import pandas as pd

    from conftest import TEXTBOOK_NAMES, make_textbook
    from crystalgen.data import registry

    spec = registry.DatasetSpec("toy", "four textbook crystals", 8, ("energy",), {"test": registry.SplitSpec("test", 4, None)})
    monkeypatch.setitem(registry.DATASETS, "toy", spec)
    (tmp_path / "data" / "toy").mkdir(parents=True)
    frame = pd.DataFrame({
        "material_id": [f"toy-{n}" for n in TEXTBOOK_NAMES],
        "cif": [make_textbook(n).to_cif() for n in TEXTBOOK_NAMES],
        "energy": [-1.0, -2.0, -3.0, -4.0],
    })
    frame.to_csv(tmp_path / "data" / "toy" / "test.csv")
    return tmp_path / "data"


@pytest.mark.parametrize(
    "criteria, expected",
    [
        (["--formula", "NaCl"], [("toy-NaCl", "NaCl", "225")]),
        (["--formula", "Na4Cl4"], [("toy-NaCl", "NaCl", "225")]),
        (["--spacegroup", "186"], [("toy-ZnO", "ZnO", "186")]),
        (["--formula", "SrTiO3", "--spacegroup", "221"], [("toy-SrTiO3", "SrTiO3", "221")]),
        (["--formula", "SrTiO3", "--spacegroup", "225"], []),
        (["--formula", "Fe2O3"], []),
    ],
)
def test_data_find_on_a_toy_dataset(toy_dataset, capsys, criteria, expected):
    result = run_main(["data", "find", "toy", *criteria, "--data-dir", str(toy_dataset)], capsys)
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines() if line.startswith("test")]
    assert [(r[1], r[2], r[4]) for r in rows] == expected
    assert f"{len(expected)} match(es)" in result.stdout


def test_data_find_output_is_tab_separated(toy_dataset, capsys):
    result = run_main(["data", "find", "toy", "--formula", "NaCl", "--data-dir", str(toy_dataset)], capsys)
    assert result.returncode == 0
    assert "test\ttoy-NaCl\tNaCl\t" in result.stdout


def test_data_info_on_a_toy_dataset(toy_dataset, capsys):
    result = run_main(["data", "info", "toy", "--data-dir", str(toy_dataset)], capsys)
    assert result.returncode == 0, result.stderr
    assert "4 structures" in result.stdout
    assert "energy: n=4" in result.stdout


def test_data_protocols_command(capsys):
    result = run_main(["data", "protocols"], capsys)
    assert result.returncode == 0
    assert "mp_20_reduced_train" in result.stdout and "carbon_24_val_trained" in result.stdout
    assert "hold-out" in result.stdout


# ------------------------------------------------------------------------------ with the benchmark data
@pytest.fixture(scope="module")
def data_cli_results(data_dir, shared_data_cache, tmp_path_factory) -> dict[str, Result]:
    commands = {
        "find-srtio3": ["data", "find", "mp_20", "--formula", "SrTiO3", "--split", "val", "--data-dir", str(data_dir)],
        "verify": ["data", "verify", "--data-dir", str(data_dir)],
    }
    return run_many(commands, tmp_path_factory.mktemp("cli-data"), shared_data_cache)


def test_find_srtio3_in_mp_20(data_cli_results):
    result = data_cli_results["find-srtio3"]
    assert result.returncode == 0, result.stderr
    hits = [line.split() for line in result.stdout.splitlines() if line.startswith("val")]
    assert hits and all(h[2] == "SrTiO3" for h in hits)
    assert "mp-4651" in [h[1] for h in hits]
    assert f"{len(hits)} match(es)" in result.stdout


def test_verify_the_benchmark_data(data_cli_results):
    result = data_cli_results["verify"]
    assert result.returncode == 0, result.stdout + result.stderr
    assert "MISMATCH" not in result.stdout
    assert "perov_5/val" in result.stdout and "mp_20/test" in result.stdout
