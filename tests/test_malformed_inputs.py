"""Every file a command reads, damaged in every way we could think of, must give exit code 2 and one
line on stderr (``crystalgen: error: ...``) naming the file, never a traceback.

The table below pairs each (command, kind of file) with the damage that applies to it: the generic
damage any file can suffer (missing, a directory, unreadable, binary, empty, truncated, not UTF-8)
and the malformed contents particular to its format. Every input is a few hundred bytes built here,
so the whole matrix runs in-process through ``crystalgen.cli.main`` in seconds.
"""

from __future__ import annotations

import csv
import gzip
import io
import os
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from conftest import assert_one_line_error, make_textbook, run_main, write_dataset
from crystalgen.errors import CrystalgenInputError

Damage = Callable[[bytes], bytes]

#: Damage that is not a content: the file is absent, a folder, or cannot be opened.
MISSING, DIRECTORY, UNREADABLE = "missing", "directory", "unreadable"
PNG_HEADER = b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"
ROOT_SKIP_REASON = "running as root: chmod 000 does not stop root from reading a file"


def _random_bytes(size: int = 2048, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(size)


def _half(data: bytes) -> bytes:
    return data[: len(data) // 2]


def _drop_last_lines(count: int) -> Damage:
    """Truncated at a line boundary: every line left is well formed, some are missing."""
    return lambda data: b"".join(data.splitlines(keepends=True)[:-count])


GENERIC: dict[str, Damage | str] = {
    MISSING: MISSING,
    DIRECTORY: DIRECTORY,
    UNREADABLE: UNREADABLE,
    "binary": lambda data: _random_bytes(),
    "png": lambda data: PNG_HEADER + _random_bytes(256),
    "empty": lambda data: b"",
    "whitespace": lambda data: b" \n\n\t\n",
    "truncated": _half,
    "non-utf8": lambda data: data.replace(b"\n", " caf\xe9\n".encode("latin-1"), 1),
    "utf16": lambda data: data.decode().encode("utf-16"),
    "gzipped-binary": lambda data: gzip.compress(_random_bytes()),
}
#: Damage for files that are binary by nature (weights): only what can happen to any file.
GENERIC_BINARY = (MISSING, DIRECTORY, UNREADABLE, "png", "empty", "truncated")
#: Damage a line-based file survives undetectably when cut short: what is left is a shorter good file.
NOT_TRUNCATED = tuple(g for g in GENERIC if g != "truncated")

#: What the message must say about each kind of damage (besides naming the file), unless a kind says otherwise.
PROBLEMS = {
    DIRECTORY: "directory",
    "binary": "binary file",
    "png": "binary file",
    "empty": "empty file",
    "whitespace": "empty file",
    "non-utf8": "not UTF-8",
    "utf16": "UTF-16",
    "gzipped-binary": "binary file",
    "truncated-gzip": "truncated gzip",
    "corrupt-gzip": "corrupt gzip",
    "not-gzip": "not a gzip file",
    "quote-never-closed": "truncated",
    "ragged-row": "fields",
    "no-cif-column": "cif",
    "list": "not a list",
    "scalar": "YAML mapping",
    "tab-indent": "not valid YAML",
    "unclosed-bracket": "not valid YAML",
    "python-tag": "not valid YAML",
    "unknown-element": "Xx",
}
#: A gzip file that is not one is reported as such, whatever it holds instead.
GZIP_PROBLEMS = {"binary": "not a gzip file", "png": "not a gzip file"}


# ------------------------------------------------------------------------------ good files
def _nacl_cif() -> bytes:
    return make_textbook("NaCl").to_cif().encode()


def _nacl_as(fmt: str) -> bytes:
    from crystalgen.io import format_crystal

    return format_crystal(make_textbook("NaCl"), fmt).encode()


def _csv_bytes(header: list[str], rows: list[list[str]]) -> bytes:
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(header)
    writer.writerows(rows)
    return buffer.getvalue().encode()


def _samples_csv() -> bytes:
    cif = make_textbook("NaCl").to_cif()
    return _csv_bytes(["material_id", "cif"], [["s-1", cif], ["s-2", cif]])


def _split_csv(root: Path) -> bytes:
    """The bytes of a one-row perov_5 split CSV, as the conftest helper writes dataset folders."""
    write_dataset(root, "perov_5", {"train": [make_textbook("NaCl")]})
    return (root / "perov_5" / "train.csv").read_bytes()


def _safetensors() -> bytes:
    import numpy as np
    from safetensors.numpy import save

    return save({"element_volumes": np.arange(128, dtype=np.float64)})


PROTOCOL_YAML = b"{name: p, dataset: perov_5, train: [train], select: val, test: test}\n"
#: Flow style, so that half of it is not valid YAML (a truncated block mapping often still is).
FILTER_YAML = b"{filter: {novelty: false, stability: false, uniqueness: true}}\n"
TRAIN_YAML = b"{family: template, protocol: perov_5, name: t}\n"
CHECKPOINT_YAML = b"{family: template, task: csp, name: t, protocol: perov_5, dataset: perov_5}\n"
COMPOSITIONS = b"# targets\nSrTiO3 221\nBaTiO3\n"


# ------------------------------------------------------------------------------ the table
@dataclass(frozen=True)
class FileKind:
    """One file a command reads: where the bad copy goes, what a good one holds, how the command is called."""

    name: str
    filename: str  # relative to tmp_path
    good: Callable[[Path], bytes]  # tmp_path -> good content
    argv: Callable[[Path, Path], list[str]]  # (the bad file, tmp_path) -> command line
    malformed: dict[str, Damage] = field(default_factory=dict)
    generic: tuple[str, ...] = tuple(GENERIC)
    fragment: str | None = None  # what the error must name (default: the file name)
    problems: dict[str, str] = field(default_factory=dict)  # case -> what the error must say, over PROBLEMS

    def expected(self, case: str, path: Path) -> tuple[str, ...]:
        """What the error must hold: the file, and the problem."""
        problem = {**PROBLEMS, **self.problems}.get(case, "")
        return (self.fragment or path.name, *([problem] if problem else []))


def _filter_args(source: Path, tmp: Path, *more: str) -> list[str]:
    return ["filter", str(source), "--out", str(tmp / "out"), "--skip", "novelty", "--skip", "stability", *more]


def _good_cif_file(tmp: Path) -> Path:
    path = tmp / "good.cif"
    path.write_bytes(_nacl_cif())
    return path


def _train_with_protocol(protocol: Path, tmp: Path) -> list[str]:
    config = tmp / "model.yaml"
    config.write_text(f"family: template\nprotocol: {protocol}\n")
    return ["train", "--config", str(config), "--out", str(tmp / "run")]


def _checkpoint_with_weights(tmp: Path) -> bytes:
    (tmp / "ckpt").mkdir(exist_ok=True)
    (tmp / "ckpt" / "config.yaml").write_bytes(CHECKPOINT_YAML)
    return _safetensors()


def _sample_args(tmp: Path, *more: str) -> list[str]:
    return ["sample", *more, "--out", str(tmp / "samples"), "--data-dir", str(tmp / "data")]


CSV_MALFORMED: dict[str, Damage] = {
    "no-cif-column": lambda data: _csv_bytes(["material_id", "structure"], [["a", "x"]]),
    "ragged-row": lambda data: data + b"s-3,extra,fields,here\n",
    "quote-never-closed": lambda data: data + b's-4,"data_x\n_cell_length_a 5\n',
}
YAML_MALFORMED: dict[str, Damage] = {
    "list": lambda data: b"- family\n- protocol\n",
    "scalar": lambda data: b"just some words\n",
    "tab-indent": lambda data: b"filter:\n\tnovelty: false\n",
    "unclosed-bracket": lambda data: b"filter: [novelty\n",
    "python-tag": lambda data: b"!!python/object/apply:os.system ['echo hi']\n",
}
STRUCTURE_CIF_MALFORMED: dict[str, Damage] = {
    "garbage-text": lambda data: b"this is not a crystal\n;;; at all\n",
    "no-atoms": lambda data: data.split(b"loop_")[0],
    "cut-at-line": _drop_last_lines(3),
    "unknown-element": lambda data: data.replace(b"  Cl  Cl", b"  Xx  Xx"),
}
#: Damage to a gzip file (``data`` is the compressed good file).
GZIP_MALFORMED: dict[str, Damage] = {
    "truncated-gzip": _half,
    "not-gzip": gzip.decompress,
    "corrupt-gzip": lambda data: data[:20] + bytes(b ^ 0xFF for b in data[20:60]) + data[60:],
}
SPLIT_MALFORMED: dict[str, Damage] = {
    **CSV_MALFORMED,
    "header-only": lambda data: data.splitlines(keepends=True)[0],
    "garbage-cifs": lambda data: _csv_bytes(["material_id", "cif"], [["a", "junk"], ["b", "more junk"]]),
    "unknown-element": STRUCTURE_CIF_MALFORMED["unknown-element"],
}


def _split_gz(tmp: Path) -> bytes:
    data = _split_csv(tmp / "data")
    (tmp / "data" / "perov_5" / "train.csv").unlink()
    return gzip.compress(data)


def _gzipped(damage: Damage) -> Damage:
    """``damage`` done to the CSV inside a gzip file."""
    return lambda data: gzip.compress(damage(gzip.decompress(data)))


KINDS: tuple[FileKind, ...] = (
    FileKind("convert-cif", "in.cif", lambda tmp: _nacl_cif(), lambda p, tmp: ["convert", str(p)],
             STRUCTURE_CIF_MALFORMED, problems={"cut-at-line": "truncated"}),
    FileKind("convert-poscar", "POSCAR", lambda tmp: _nacl_as("poscar"), lambda p, tmp: ["convert", str(p)], {
        "wrong-counts": lambda data: data.replace(b"\n4 4\n", b"\n4 5\n"),
        "unknown-element": lambda data: data.replace(b"Na Cl", b"Xx Cl").replace(b" Na\n", b" Xx\n"),
        "cut-at-line": _drop_last_lines(3),
        "garbage-text": lambda data: b"not\na\nposcar\n",
    }),
    FileKind("convert-vasp", "in.vasp", lambda tmp: _nacl_as("poscar"), lambda p, tmp: ["convert", str(p)],
             generic=("binary", "truncated", "non-utf8")),
    FileKind("convert-extxyz", "in.extxyz", lambda tmp: _nacl_as("extxyz"), lambda p, tmp: ["convert", str(p)], {
        "wrong-count": lambda data: b"9" + data[1:],
        "cut-at-line": _drop_last_lines(3),
        "garbage-text": lambda data: b"not an xyz file\n",
    }),
    FileKind("convert-wyckoff-json", "in.json", lambda tmp: _nacl_as("wyckoff-json"),
             lambda p, tmp: ["convert", str(p)], {
                 "list": lambda data: b"[1, 2, 3]\n",
                 "string": lambda data: b'"NaCl"\n',
                 "empty-object": lambda data: b"{}\n",
                 "not-json": lambda data: b"{'spacegroup': 225, oops\n",
             }),
    FileKind("convert-csv", "in.csv", lambda tmp: _samples_csv(),
             lambda p, tmp: ["convert", str(p), "--out", str(tmp / "out")], CSV_MALFORMED),
    FileKind("convert-csv-gz", "in.csv.gz", lambda tmp: gzip.compress(_samples_csv()),
             lambda p, tmp: ["convert", str(p), "--out", str(tmp / "out")], GZIP_MALFORMED,
             generic=(DIRECTORY, UNREADABLE, "binary", "png", "empty"), problems=GZIP_PROBLEMS),
    FileKind("filter-cif", "in.cif", lambda tmp: _nacl_cif(), _filter_args, STRUCTURE_CIF_MALFORMED,
             generic=tuple(g for g in GENERIC if g != DIRECTORY),  # a folder is a valid SOURCE
             problems={"cut-at-line": "truncated"}),
    FileKind("filter-csv", "samples.csv", lambda tmp: _samples_csv(), _filter_args, CSV_MALFORMED,
             problems={DIRECTORY: "no CIF files"}),  # a folder is read as a folder of CIFs
    FileKind("filter-csv-gz", "samples.csv.gz", lambda tmp: gzip.compress(_samples_csv()), _filter_args,
             {**GZIP_MALFORMED, **{f"gzipped-{k}": _gzipped(f) for k, f in CSV_MALFORMED.items()}},
             generic=("binary", "empty"), problems=GZIP_PROBLEMS),
    FileKind("filter-config", "filter.yaml", lambda tmp: FILTER_YAML,
             lambda p, tmp: _filter_args(_good_cif_file(tmp), tmp, "--filter-config", str(p)), {
                 **YAML_MALFORMED,
                 "filter-section-list": lambda data: b"filter: [novelty, stability]\n",
                 "unknown-setting": lambda data: b"filter: {novelty: false, max_e_hull: 0.1}\n",
             }),
    FileKind("train-config", "model.yaml", lambda tmp: TRAIN_YAML,
             lambda p, tmp: ["train", "--config", str(p), "--out", str(tmp / "run")], YAML_MALFORMED),
    FileKind("train-protocol", "protocol.yaml", lambda tmp: PROTOCOL_YAML, _train_with_protocol, {
        **YAML_MALFORMED,
        "missing-keys": lambda data: b"name: p\ndataset: perov_5\n",
        "bad-holdout": lambda data: b"{name: p, dataset: perov_5, train: [train], test: test, "
                                    b"holdout: {fraction: lots, seed: 1}}\n",
        "holdout-list": lambda data: b"{name: p, dataset: perov_5, train: [train], test: test, holdout: [1]}\n",
        "unknown-dataset": lambda data: data.replace(b"perov_5", b"nosuch"),
        "train-not-a-list": lambda data: data.replace(b"[train]", b"5"),
    }),
    FileKind("data-info-csv", "data/perov_5/train.csv", lambda tmp: _split_csv(tmp / "data"),
             lambda p, tmp: ["data", "info", "perov_5", "--split", "train", "--data-dir", str(tmp / "data")],
             SPLIT_MALFORMED),
    FileKind("data-find-csv", "data/perov_5/train.csv", lambda tmp: _split_csv(tmp / "data"),
             lambda p, tmp: ["data", "find", "perov_5", "--formula", "NaCl", "--split", "train",
                             "--data-dir", str(tmp / "data")],
             SPLIT_MALFORMED),
    FileKind("data-info-csv-gz", "data/perov_5/train.csv.gz", _split_gz,
             lambda p, tmp: ["data", "info", "perov_5", "--split", "train", "--data-dir", str(tmp / "data")],
             {**GZIP_MALFORMED, **{f"gzipped-{k}": _gzipped(f) for k, f in SPLIT_MALFORMED.items()}},
             generic=(DIRECTORY, UNREADABLE, "binary", "png", "empty"), problems=GZIP_PROBLEMS),
    FileKind("sample-compositions", "targets.txt", lambda tmp: COMPOSITIONS,
             lambda p, tmp: _sample_args(tmp, "--model", "template", "--compositions-file", str(p)), {
                 "only-comments": lambda data: b"# nothing here\n\n   # still nothing\n",
                 "bad-formula": lambda data: data + b"Fe2O3!!\n",
                 "bad-spacegroup": lambda data: data + b"NaCl 231\n",
                 "too-many-fields": lambda data: data + b"NaCl 225 extra\n",
             }, generic=NOT_TRUNCATED, problems={"empty": "no compositions", "whitespace": "no compositions"}),
    FileKind("sample-model-config", "ckpt/config.yaml", lambda tmp: CHECKPOINT_YAML,
             lambda p, tmp: _sample_args(tmp, "--model", str(p.parent), "-c", "NaCl"),
             {k: YAML_MALFORMED[k] for k in ("list", "scalar", "tab-indent")},
             fragment="ckpt"),
    FileKind("sample-model-weights", "ckpt/model.safetensors", _checkpoint_with_weights,
             lambda p, tmp: _sample_args(tmp, "--model", str(p.parent), "-c", "NaCl"),
             {"garbage": lambda data: _random_bytes(), "bad-header": lambda data: b"\xff" * 8 + data[8:]},
             generic=GENERIC_BINARY, fragment="ckpt",
             problems={"png": "not a safetensors", "garbage": "not a safetensors", "truncated": "truncated"}),
)


def _cases() -> list:
    cases = []
    for kind in KINDS:
        damages = {**{name: GENERIC[name] for name in kind.generic}, **kind.malformed}
        for case, damage in damages.items():
            cases.append(pytest.param(kind, case, damage, id=f"{kind.name}-{case}"))
    return cases


def _apply(damage: Damage | str, path: Path, good: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if damage == MISSING:
        path.unlink(missing_ok=True)
    elif damage == DIRECTORY:
        path.unlink(missing_ok=True)
        path.mkdir()
    elif damage == UNREADABLE:
        path.write_bytes(good)
        path.chmod(0)
    else:
        path.write_bytes(damage(good))


@pytest.mark.parametrize("kind, case, damage", _cases())
def test_a_bad_file_is_a_one_line_error(kind: FileKind, case: str, damage, tmp_path, capsys, monkeypatch):
    if damage == UNREADABLE and os.geteuid() == 0:
        pytest.skip(ROOT_SKIP_REASON)
    monkeypatch.chdir(tmp_path)
    path = tmp_path / kind.filename
    good = kind.good(tmp_path)
    _apply(damage, path, good)
    try:
        result = run_main(kind.argv(path, tmp_path), capsys)
    finally:
        if path.exists() and not path.is_dir():
            path.chmod(0o644)
    assert_one_line_error(result, *kind.expected(case, path))


def test_the_good_files_of_the_table_are_good(tmp_path, capsys, monkeypatch):
    """The damage above is what fails, not the files it starts from: the cheap commands accept them."""
    monkeypatch.chdir(tmp_path)
    for kind in KINDS:
        if not kind.name.startswith(("convert", "data-")):
            continue  # the others would go on to sample, train or filter
        case_dir = tmp_path / kind.name
        case_dir.mkdir()
        path = case_dir / kind.filename
        good = kind.good(case_dir)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(good)
        result = run_main(kind.argv(path, case_dir), capsys)
        assert result.returncode == 0, (kind.name, result.stderr)


# ------------------------------------------------------------------------------ beyond the table
def test_data_verify_reports_a_truncated_split_as_corrupt(tmp_path, capsys):
    folder = tmp_path / "data" / "perov_5"
    folder.mkdir(parents=True)
    (folder / "train.csv.gz").write_bytes(_half(gzip.compress(_samples_csv() * 20)))
    result = run_main(["data", "verify", "perov_5", "--data-dir", str(tmp_path / "data")], capsys)
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert "corrupt" in result.stdout and "truncated gzip" in " ".join(result.stdout.split())


def test_a_model_config_whose_protocol_is_not_a_name(tmp_path, capsys):
    # Not in the table: the message cannot name the config, as cli/train.py does not prefix
    # load_protocol's errors with the config's path.
    config = tmp_path / "model.yaml"
    config.write_text("family: template\nprotocol: [perov_5]\n")
    result = run_main(["train", "--config", str(config), "--out", str(tmp_path / "run")], capsys)
    assert_one_line_error(result, "a protocol is a name or the path of a YAML file", "['perov_5']")


@pytest.mark.parametrize("name, content, fragment", [
    ("run.json", _random_bytes(), "binary file"),
    ("run.json", b"", "empty file"),
    ("run.json", b'{"settings": {"source": ', "not valid JSON"),
    ("run.json", b"[1, 2]", "not a JSON object"),
    ("run.json", b'{"settings": [1]}', "'settings' is not a mapping"),
    ("filtered.progress.json", b'{"done": "many", "bytes": 10}', "not counts"),
    ("filtered.progress.json", b'{"done": 1, "by', "not valid JSON"),
], ids=["run-binary", "run-empty", "run-truncated", "run-list", "run-settings-list", "progress-not-counts",
        "progress-truncated"])
def test_a_damaged_run_state_in_out_is_a_one_line_error(name, content, fragment, tmp_path, capsys):
    """Sample, filter and benchmark resume from the JSON state in OUT: damaged state stops them, named."""
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(content)
    result = run_main(_filter_args(_good_cif_file(tmp_path), tmp_path), capsys)
    assert_one_line_error(result, name, fragment, "--out")


def test_data_dir_that_is_a_file(tmp_path, capsys):
    (tmp_path / "data").write_text("not a folder")
    result = run_main(["data", "info", "perov_5", "--split", "train", "--data-dir", str(tmp_path / "data")], capsys)
    assert_one_line_error(result, "--data-dir", "is a file")


def test_a_binary_cif_in_a_folder_becomes_a_rejected_row(tmp_path):
    from crystalgen.filters.inputs import read_candidates

    (tmp_path / "a_good.cif").write_bytes(_nacl_cif())
    (tmp_path / "b_binary.cif").write_bytes(_random_bytes())
    (tmp_path / "c_latin1.cif").write_bytes(_nacl_cif().replace(b"\n", b" caf\xe9\n", 1))
    rows, columns = read_candidates(tmp_path)
    assert columns == ("file",)
    assert [r.crystal is not None for r in rows] == [True, False, False]
    assert "binary file" in rows[1].error and "not UTF-8" in rows[2].error


# ------------------------------------------------------------------------------ read_text_file
def test_read_text_file_decompresses_gzip_and_drops_a_bom(tmp_path):
    from crystalgen.io import read_text_file

    (tmp_path / "a.csv.gz").write_bytes(gzip.compress("\ufeffcif,x\n1,2\n".encode()))
    assert read_text_file(tmp_path / "a.csv.gz", "a CSV") == "cif,x\n1,2\n"


def test_read_text_file_permission_denied_even_as_root(tmp_path, monkeypatch):
    from crystalgen.io import read_text_file

    path = tmp_path / "locked.cif"
    path.write_bytes(_nacl_cif())

    def denied(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    with pytest.raises(CrystalgenInputError, match="locked.cif: permission denied"):
        read_text_file(path, "a CIF")


@pytest.mark.parametrize("data, fragment", [
    (_random_bytes(), "binary file"),
    (PNG_HEADER + b"rest", "binary file (PNG image)"),
    ("x: 1\n".encode("utf-16"), "UTF-16"),
    (b"x: caf\xe9\n", "not UTF-8 text (byte 0xe9 on line 1)"),
    (b"", "empty file, expected a thing"),
    (_half(gzip.compress(b"x: 1\n" * 100)), "truncated gzip"),
], ids=["random", "png", "utf16", "latin1", "empty", "truncated-gzip"])
def test_read_text_file_messages(data, fragment, tmp_path):
    from crystalgen.io import read_text_file

    path = tmp_path / "f.txt"
    path.write_bytes(data)
    with pytest.raises(CrystalgenInputError) as info:
        read_text_file(path, "a thing")
    message = str(info.value)
    assert fragment in message and str(path) in message and "\n" not in message


# ------------------------------------------------------------------------------ read_compositions_file
def test_read_compositions_file(tmp_path):
    from crystalgen.validation import read_compositions_file

    path = tmp_path / "targets.txt"
    path.write_text("# perovskites\nSrTiO3 221\n\n  BaTiO3   # no space group\nNa4Cl4\t225\n")
    assert read_compositions_file(path) == [("SrTiO3", "221"), ("BaTiO3", None), ("Na4Cl4", "225")]


@pytest.mark.parametrize("content, fragment", [
    (None, "file not found"),
    (b"# only a comment\n\n", "holds no compositions"),
    (b"", "holds no compositions"),
    (_random_bytes(), "binary file"),
    (b"Fe2O3 caf\xe9\n", "not UTF-8 text"),
    (b"SrTiO3\nFe2O3!!\n", "line 2"),
    (b"SrTiO3\nNaCl 231\n", "231"),
    (b"NaCl 225 extra\n", "line 1"),
], ids=["missing", "only-comments", "empty", "binary", "latin1", "bad-formula", "bad-spacegroup", "extra-field"])
def test_read_compositions_file_errors(content, fragment, tmp_path):
    from crystalgen.validation import read_compositions_file

    path = tmp_path / "targets.txt"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CrystalgenInputError) as info:
        read_compositions_file(path)
    assert fragment in str(info.value) and "targets.txt" in str(info.value)


def test_read_compositions_file_of_a_folder(tmp_path):
    from crystalgen.validation import read_compositions_file

    with pytest.raises(CrystalgenInputError, match="is a directory"):
        read_compositions_file(tmp_path)
