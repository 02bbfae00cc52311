"""Shared fixtures: textbook crystals, seeded random crystals, the data directory, cache isolation.

Every test runs with its own empty ``XDG_CACHE_HOME`` (a tmp dir) and without
``CRYSTALGEN_DATA_DIR``, so no test reads or writes the user's caches or silently picks up the
benchmark data. Tests that use the ``data_dir`` fixture share one session-scoped cache instead, so
that a large split (mp_20 test: ~25 s to parse) is parsed once per session.
"""

from __future__ import annotations

import csv
import functools
import os
import warnings
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from crystalgen import Crystal

DATA_DIR_ENV = "CRYSTALGEN_DATA_DIR"
#: Read once at import, before the autouse fixture removes it from each test's environment.
_ENV_DATA_DIR = os.environ.get(DATA_DIR_ENV)
DATA_DIR_SKIP_REASON = "needs the benchmark data directory: set CRYSTALGEN_DATA_DIR (CI points it at ../shared/data)"

#: StructureMatcher tolerances used for every "same crystal" check in the suite.
MATCHER_KWARGS = {"stol": 0.5, "ltol": 0.3, "angle_tol": 10}

TEXTBOOK_NAMES = ("NaCl", "Si", "SrTiO3", "ZnO")

#: (space group, species, counts, seed). Chosen to cover all seven crystal systems; chiral groups
#: (19, 76) included. Counts are sums of Wyckoff multiplicities of the conventional cell.
RANDOM_CASES = (
    (1, ("Na", "Cl"), (2, 2), 1),  # triclinic
    (2, ("Na", "Cl"), (2, 2), 1),  # triclinic
    (14, ("Na", "Cl"), (4, 4), 1),  # monoclinic
    (15, ("Na", "Cl"), (4, 4), 1),  # monoclinic, C-centred
    (19, ("Mg", "O"), (4, 4), 1),  # orthorhombic, chiral
    (62, ("Ca", "O"), (4, 4), 1),  # orthorhombic
    (76, ("Si", "O"), (4, 8), 7),  # tetragonal, chiral (enantiomorph of 78)
    (88, ("Ca", "W", "O"), (4, 4, 16), 1),  # tetragonal, I-centred
    (139, ("Ba", "O"), (2, 4), 1),  # tetragonal
    (148, ("Ni", "Ti", "O"), (6, 6, 18), 3),  # trigonal, rhombohedral
    (166, ("Bi", "Te"), (6, 9), 3),  # trigonal, rhombohedral
    (186, ("Zn", "O"), (2, 2), 1),  # hexagonal, polar
    (194, ("Zn", "O"), (2, 2), 1),  # hexagonal
    (221, ("Cs", "Cl"), (1, 1), 1),  # cubic, primitive
    (227, ("Si",), (8,), 1),  # cubic, F-centred
)
RANDOM_NAMES = tuple(f"random-sg{sg}" for sg, *_ in RANDOM_CASES)
ALL_CRYSTAL_NAMES = TEXTBOOK_NAMES + RANDOM_NAMES


# ------------------------------------------------------------------------------ isolation
@pytest.fixture(scope="session")
def shared_data_cache(tmp_path_factory) -> Path:
    """One XDG cache for every data-directory test of the session (parsed splits are reused)."""
    return tmp_path_factory.mktemp("xdg-cache-data")


@pytest.fixture(autouse=True)
def _isolated_environment(request, monkeypatch, tmp_path_factory):
    """A fresh XDG_CACHE_HOME per test (shared for data tests); CRYSTALGEN_DATA_DIR unset."""
    if "data_dir" in request.fixturenames:
        cache = request.getfixturevalue("shared_data_cache")
    else:
        cache = tmp_path_factory.mktemp("xdg-cache")
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    monkeypatch.delenv(DATA_DIR_ENV, raising=False)
    yield cache


@pytest.fixture(autouse=True)
def _no_network(monkeypatch):
    """Tests never download: only file:// URLs may be opened (the fetch tests serve local files)."""
    import urllib.request

    real_urlopen = urllib.request.urlopen

    def local_only(url, *args, **kwargs):
        target = getattr(url, "full_url", url)
        if not str(target).startswith("file:"):
            raise AssertionError(f"a test tried to open {target}; tests must not use the network")
        return real_urlopen(url, *args, **kwargs)

    monkeypatch.setattr(urllib.request, "urlopen", local_only)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The benchmark data directory from CRYSTALGEN_DATA_DIR, or skip."""
    if not _ENV_DATA_DIR or not Path(_ENV_DATA_DIR).expanduser().is_dir():
        pytest.skip(DATA_DIR_SKIP_REASON)
    return Path(_ENV_DATA_DIR).expanduser().resolve()


def pytest_configure(config):
    # spglib 2.x warns on every call made through pymatgen; it is noise, not a finding of this suite.
    config.addinivalue_line("filterwarnings", "ignore:Set OLD_ERROR_HANDLING:DeprecationWarning")


def pytest_collection_modifyitems(config, items):
    for item in items:
        if "data_dir" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.data)


# ------------------------------------------------------------------------------ crystals
def _from_spacegroup(symbol, lattice, species, coords) -> Crystal:
    from pymatgen.core import Structure

    return Crystal.from_structure(Structure.from_spacegroup(symbol, lattice, species, coords))


def make_textbook(name: str) -> Crystal:
    """A fresh copy of a textbook crystal (built once: Fm-3m expansion takes ~1 s in pymatgen)."""
    return _build_textbook(name).copy()


@functools.lru_cache(maxsize=None)
def _build_textbook(name: str) -> Crystal:
    from pymatgen.core import Lattice

    if name == "NaCl":  # rock salt, conventional cell, 8 atoms
        return _from_spacegroup("Fm-3m", Lattice.cubic(5.64), ["Na", "Cl"], [[0, 0, 0], [0.5, 0.5, 0.5]])
    if name == "Si":  # diamond, conventional cell, 8 atoms
        return _from_spacegroup("Fd-3m", Lattice.cubic(5.43), ["Si"], [[0, 0, 0]])
    if name == "SrTiO3":  # cubic perovskite, 5 atoms
        return _from_spacegroup(
            "Pm-3m", Lattice.cubic(3.905), ["Sr", "Ti", "O"], [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0]]
        )
    if name == "ZnO":  # wurtzite, 4 atoms
        u = 0.382
        return _from_spacegroup(
            "P6_3mc", Lattice.hexagonal(3.25, 5.2), ["Zn", "O"], [[1 / 3, 2 / 3, 0], [1 / 3, 2 / 3, u]]
        )
    raise KeyError(name)


@pytest.fixture
def nacl() -> Crystal:
    return make_textbook("NaCl")


@pytest.fixture
def si() -> Crystal:
    return make_textbook("Si")


@pytest.fixture
def srtio3() -> Crystal:
    return make_textbook("SrTiO3")


@pytest.fixture
def zno() -> Crystal:
    return make_textbook("ZnO")


@pytest.fixture
def textbook_crystals() -> dict[str, Crystal]:
    return {name: make_textbook(name) for name in TEXTBOOK_NAMES}


def make_random(sg: int, species, counts, seed: int) -> Crystal:
    """A pyxtal random crystal; deterministic for a given seed."""
    from pyxtal import pyxtal

    xtal = pyxtal()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        xtal.from_random(3, sg, list(species), list(counts), random_state=seed)
        structure = xtal.to_pymatgen()
    return Crystal.from_structure(structure, id=f"random-sg{sg}")


@pytest.fixture(scope="session")
def _random_crystal_store() -> dict[str, Crystal | str]:
    store: dict[str, Crystal | str] = {}
    for sg, species, counts, seed in RANDOM_CASES:
        try:
            store[f"random-sg{sg}"] = make_random(sg, species, counts, seed)
        except Exception as exc:  # pyxtal could not build this group: skip it, say why
            store[f"random-sg{sg}"] = f"pyxtal could not make space group {sg}: {exc}"
    return store


@pytest.fixture
def random_crystals(_random_crystal_store) -> dict[str, Crystal]:
    """Seeded pyxtal crystals across all crystal systems (those pyxtal could build), as copies."""
    return {k: v.copy() for k, v in _random_crystal_store.items() if isinstance(v, Crystal)}


@pytest.fixture(params=ALL_CRYSTAL_NAMES)
def any_crystal(request, _random_crystal_store) -> Crystal:
    """Each textbook crystal and each random crystal, one test per crystal."""
    name = request.param
    if name in TEXTBOOK_NAMES:
        return make_textbook(name)
    value = _random_crystal_store[name]
    if isinstance(value, str):
        pytest.skip(value)
    return value.copy()


# ------------------------------------------------------------------------------ helpers
@pytest.fixture(scope="session")
def matcher():
    from pymatgen.analysis.structure_matcher import StructureMatcher

    return StructureMatcher(**MATCHER_KWARGS)


@pytest.fixture(scope="session")
def same_crystal(matcher):
    """``same_crystal(a, b)``: True if StructureMatcher says a and b are the same crystal."""

    def check(a: Crystal, b: Crystal) -> bool:
        return bool(matcher.fit(a.to_structure(), b.to_structure()))

    return check


def _assert_same_cell(a: Crystal, b: Crystal, atol: float = 1e-6, rotation_free: bool = True) -> None:
    """Same cell, atom for atom (in any order): metric (or matrix), species and fractional coords."""
    assert a.num_atoms == b.num_atoms, f"{a.num_atoms} atoms vs {b.num_atoms}"
    if rotation_free:
        np.testing.assert_allclose(a.lattice @ a.lattice.T, b.lattice @ b.lattice.T, atol=atol * 100)
    else:
        np.testing.assert_allclose(a.lattice, b.lattice, atol=atol)
    unused = set(range(b.num_atoms))
    for z, frac in zip(a.atomic_numbers, a.frac_coords):
        d = b.frac_coords - frac
        dist = np.abs(d - np.round(d)).max(axis=1)
        candidates = [j for j in unused if b.atomic_numbers[j] == z and dist[j] < atol]
        assert candidates, f"no site of Z={z} at {frac} in the other crystal (closest {dist.min():.2e})"
        unused.remove(candidates[0])


@pytest.fixture(scope="session")
def assert_same_cell():
    """``assert_same_cell(a, b, atol=1e-6, rotation_free=True)``: identical cells up to atom order."""
    return _assert_same_cell


# ------------------------------------------------------------------------------ synthetic datasets
def make_perovskite(a_site: str, b_site: str, x_site: str = "O", a: float = 3.9, c: float | None = None,
                    dz: float = 0.0, id: str | None = None) -> Crystal:
    """An ABX3 perovskite, 5 atoms: cubic Pm-3m (221), or P4mm (99) with ``c != a`` and B shifted by ``dz``."""
    from pymatgen.core.periodic_table import Element

    c = a if c is None else c
    z = [Element(s).Z for s in (a_site, b_site, x_site, x_site, x_site)]
    frac = [[0, 0, 0], [0.5, 0.5, 0.5 + dz], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]]
    return Crystal(np.diag([a, a, c]), frac, z, id=id)


def write_dataset(root: Path, dataset: str, splits: dict[str, list[Crystal]]) -> Path:
    """Write ``<root>/<dataset>/<split>.csv`` files (``material_id``, ``cif``) as a dataset folder; returns root.

    Loading does not verify checksums, so any registered dataset name (``perov_5``) can be faked.
    """
    import pandas as pd

    folder = Path(root) / dataset
    folder.mkdir(parents=True, exist_ok=True)
    for split, crystals in splits.items():
        frame = pd.DataFrame({
            "material_id": [c.id or f"{split}-{i}" for i, c in enumerate(crystals)],
            "cif": [c.to_cif() for c in crystals],
        })
        frame.to_csv(folder / f"{split}.csv")
    return Path(root)


def synthetic_perov_splits() -> dict[str, list[Crystal]]:
    """A tiny fake perov_5: five training perovskites, two for validation, four test structures.

    Test: ``te-SrTiO3`` is a copy of ``tr-SrTiO3``; ``te-BaTiO3`` is cubic while the only BaTiO3
    template is tetragonal (P4mm); ``te-ZnO`` (Zn2O2) has no template of its stoichiometry;
    ``te-NaCl`` has 8 atoms, beyond a template model fitted on 5-atom cells.
    """
    train = [
        make_perovskite("Sr", "Ti", a=3.905, id="tr-SrTiO3"),
        make_perovskite("Ba", "Ti", a=3.99, c=4.04, dz=0.05, id="tr-BaTiO3"),
        make_perovskite("Ca", "Zr", a=4.02, id="tr-CaZrO3"),
        make_perovskite("K", "Nb", a=4.02, id="tr-KNbO3"),
        make_perovskite("La", "Al", a=3.79, id="tr-LaAlO3"),
    ]
    val = [make_perovskite("Pb", "Ti", a=3.97, id="va-PbTiO3"), make_perovskite("Sr", "Zr", a=4.1, id="va-SrZrO3")]
    test = [
        make_perovskite("Sr", "Ti", a=3.905, id="te-SrTiO3"),
        make_perovskite("Ba", "Ti", a=4.0, id="te-BaTiO3"),
        Crystal(make_textbook("ZnO").lattice, make_textbook("ZnO").frac_coords, make_textbook("ZnO").atomic_numbers,
                id="te-ZnO"),
        Crystal(make_textbook("NaCl").lattice, make_textbook("NaCl").frac_coords,
                make_textbook("NaCl").atomic_numbers, id="te-NaCl"),
    ]
    return {"train": train, "val": val, "test": test}


@pytest.fixture(scope="session")
def synthetic_perov_dir(tmp_path_factory) -> Path:
    """A data directory holding the fake perov_5 of :func:`synthetic_perov_splits` (read-only: share it)."""
    return write_dataset(tmp_path_factory.mktemp("synthetic-data"), "perov_5", synthetic_perov_splits())


# ------------------------------------------------------------------------------ in-process CLI
@dataclass
class Result:
    args: list[str]
    returncode: int
    stdout: str
    stderr: str


def run_main(argv: list[str], capsys) -> Result:
    """Run ``crystalgen.cli.main`` in-process; it always ends in SystemExit with the exit code."""
    from crystalgen.cli import main

    capsys.readouterr()
    with pytest.raises(SystemExit) as info:
        main(list(argv))
    captured = capsys.readouterr()
    return Result(list(argv), info.value.code, captured.out, captured.err)


def assert_one_line_error(result: Result, *fragments: str) -> None:
    """Exit code 2 and exactly one ``crystalgen: error: ...`` line on stderr, holding every fragment."""
    report = f"args={result.args}\nrc={result.returncode}\nstderr={result.stderr!r}\nstdout={result.stdout[-500:]!r}"
    assert "Traceback" not in result.stderr, report
    assert result.returncode == 2, report
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].strip(), report
    assert lines[0].startswith("crystalgen: error: "), report
    assert len(lines[0]) > len("crystalgen: error: ") + 5, report
    for fragment in fragments:
        assert fragment in lines[0], report


def cli_in_process(argv: list[str]) -> Result:
    """Like :func:`run_main`, without capsys (for module- and session-scoped fixtures)."""
    import contextlib
    import io

    from crystalgen.cli import main

    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        try:
            main(list(argv))
            code = 0
        except SystemExit as exc:
            code = exc.code
    return Result(list(argv), code, out.getvalue(), err.getvalue())


@contextmanager
def isolated_cache(cache: Path):
    """The per-test isolation of ``_isolated_environment``, for fixtures wider than one test."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("XDG_CACHE_HOME", str(cache))
        patch.delenv(DATA_DIR_ENV, raising=False)
        yield cache


@pytest.fixture(scope="session")
def synthetic_template_ckpt(synthetic_perov_dir, tmp_path_factory) -> Path:
    """A template model fitted on the fake perov_5 and saved as a checkpoint (read-only: copy it to edit its card)."""
    from crystalgen.generators import TemplateGenerator, save_model

    with isolated_cache(tmp_path_factory.mktemp("xdg-cache-ckpt")):
        model = TemplateGenerator({"name": "tpl"})
        model.fit("perov_5", synthetic_perov_dir)
        return save_model(model, tmp_path_factory.mktemp("ckpt") / "tpl", card="# card\n\nA test model.\n")


#: Sample and prediction CSVs hold whole CIFs in one field, past csv's default field size limit.
CSV_FIELD_LIMIT = 1 << 28


def read_rows(path: Path) -> list[dict[str, str]]:
    """Every row of a CSV file (crystalgen's samples, predictions or metrics log) as a dict."""
    csv.field_size_limit(CSV_FIELD_LIMIT)
    with open(path, newline="") as handle:
        return list(csv.DictReader(handle))
