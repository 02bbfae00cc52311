"""The template-retrieval baseline (``TemplateGenerator``) and the ``crystalgen sample`` command.

The model is fitted on a fake perov_5 whose cell volumes are exactly additive in per-element
volumes (``ELEMENT_VOLUMES``), so the fitted volume model can be checked against known values.
Expected template rankings are computed here by brute force over element mappings, with
pymatgen's Mendeleev numbers.
"""

from __future__ import annotations

import json
import itertools
import warnings
from pathlib import Path

import numpy as np
import pytest

from conftest import assert_one_line_error, isolated_cache, make_perovskite, make_textbook, read_rows, run_main, write_dataset
from crystalgen import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Target, TemplateGenerator, load_model, save_model
from crystalgen.models.store import card_metrics
from crystalgen.representations.cell import space_group_number

#: Å^3 per atom of each element; every training cell's volume is the sum over its atoms.
ELEMENT_VOLUMES = {"Sr": 25.0, "Ba": 30.0, "Ca": 20.0, "Ti": 10.0, "Zr": 14.0, "K": 28.0, "Nb": 13.0, "O": 10.0,
                   "S": 20.0, "Na": 20.0, "Cl": 25.0, "Zn": 12.0, "Pb": 32.0}
SAMPLE_COLUMNS = ["sample_id", "target", "formula", "spacegroup", "num_atoms", "template", "template_spacegroup", "cif",
                  "cif_symmetric"]


def additive_volume(crystal: Crystal) -> float:
    return sum(ELEMENT_VOLUMES[s] for s in crystal.species)


def scaled(crystal: Crystal, id: str) -> Crystal:
    """The crystal isotropically rescaled to its additive volume."""
    factor = (additive_volume(crystal) / crystal.volume) ** (1 / 3)
    return Crystal(crystal.lattice * factor, crystal.frac_coords, crystal.atomic_numbers, id=id)


def retyped(crystal: Crystal, mapping: dict[str, str]) -> Crystal:
    """The same cell with elements renamed, e.g. rock-salt NaCl -> BaO."""
    from pymatgen.core.periodic_table import Element

    return Crystal(crystal.lattice, crystal.frac_coords, [Element(mapping.get(s, s)).Z for s in crystal.species])


def template_train() -> list[Crystal]:
    """Thirteen training cells; their compositions determine every element's volume (full-rank design)."""
    rocksalt, wurtzite = make_textbook("NaCl"), make_textbook("ZnO")
    return [
        scaled(make_perovskite("Ca", "Zr"), "tr-CaZrO3"),
        scaled(make_perovskite("Ba", "Ti"), "tr-BaTiO3-cubic"),
        scaled(make_perovskite("Ba", "Ti", a=3.99, c=3.99 * 1.05, dz=0.05), "tr-BaTiO3-P4mm"),
        scaled(make_perovskite("K", "Nb"), "tr-KNbO3"),
        scaled(make_perovskite("Sr", "Ti", "S"), "tr-SrTiS3"),
        scaled(rocksalt, "tr-NaCl"),  # Na4Cl4, 8 atoms
        scaled(wurtzite, "tr-ZnO"),  # Zn2O2, P6_3mc
        scaled(retyped(wurtzite, {"O": "S"}), "tr-ZnS"),
        *(scaled(retyped(rocksalt, {"Na": a, "Cl": x}), f"tr-{a}{x}")
          for a, x in (("Ba", "O"), ("Ca", "O"), ("Sr", "O"), ("K", "Cl"), ("Ti", "O"), ("K", "O"))),
    ]


@pytest.fixture(scope="module")
def template_data(tmp_path_factory) -> Path:
    splits = {"train": template_train(), "val": [scaled(make_perovskite("Pb", "Ti"), "va-PbTiO3")],
              "test": [scaled(make_perovskite("Sr", "Ti"), "te-SrTiO3")]}
    return write_dataset(tmp_path_factory.mktemp("template-data"), "perov_5", splits)


@pytest.fixture(scope="module")
def model(template_data, tmp_path_factory) -> TemplateGenerator:
    with isolated_cache(tmp_path_factory.mktemp("template-cache")):
        fitted = TemplateGenerator({"name": "tpl-test"})
        fitted.fit("perov_5", template_data)
    return fitted


@pytest.fixture(scope="module")
def checkpoint(model, tmp_path_factory) -> Path:
    return save_model(model, tmp_path_factory.mktemp("template-ckpt") / "tpl", card="# tpl-test\n")


# ------------------------------------------------------------------------------ expected values, computed here
def mendeleev(symbol: str) -> float:
    from pymatgen.core.periodic_table import Element

    return float(Element(symbol).mendeleev_no)


def substitution_cost(template: Crystal, target: dict[str, int]) -> float | None:
    """Smallest count-weighted Mendeleev distance over count-preserving element maps; None if none exists."""
    counts = {s: template.species.count(s) for s in set(template.species)}
    if sorted(counts.values()) != sorted(target.values()):
        return None
    best = None
    for image in itertools.permutations(target):
        mapping = dict(zip(counts, image))
        if all(counts[s] == target[t] for s, t in mapping.items()):
            cost = sum(counts[s] * abs(mendeleev(s) - mendeleev(t)) for s, t in mapping.items())
            best = cost if best is None else min(best, cost)
    return best


def expected_ranking(train: list[Crystal], target: dict[str, int], spacegroup: int | None = None) -> list[int]:
    costs = []
    for row, crystal in enumerate(train):
        cost = substitution_cost(crystal, target)
        if cost is not None and (spacegroup is None or space_group_number(crystal) == spacegroup):
            costs.append((cost, row))
    return [row for _, row in sorted(costs)]


def spacegroup_pymatgen(crystal: Crystal) -> int:
    from pymatgen.symmetry.analyzer import SpacegroupAnalyzer

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return SpacegroupAnalyzer(crystal.to_structure(), symprec=0.1, angle_tolerance=5).get_space_group_number()


# ------------------------------------------------------------------------------ fitting
def test_fit_reads_the_protocol(model):
    assert model.is_fitted
    assert model.config == {"name": "tpl-test", "protocol": "perov_5", "dataset": "perov_5", "max_atoms": 8}
    assert [c.id for c in model.train] == [c.id for c in template_train()]  # train only, not val


def test_volume_fit_recovers_additive_volumes(model):
    from pymatgen.core.periodic_table import Element

    seen = np.flatnonzero(np.isfinite(model.element_volumes))
    fitted = {Element.from_Z(int(z)).symbol: model.element_volumes[z] for z in seen}
    assert set(fitted) == set(ELEMENT_VOLUMES) - {"Pb"}  # Pb is only in the validation split
    for symbol, volume in fitted.items():  # up to the small ridge bias of the least-squares fit
        assert volume == pytest.approx(ELEMENT_VOLUMES[symbol], rel=2e-2), symbol
    for crystal in template_train():
        assert model.estimate_volume(crystal.atomic_numbers) == pytest.approx(crystal.volume, rel=2e-3), crystal.id
    # Unseen elements fall back to 18 Å^3 per atom.
    assert model.estimate_volume(np.array([79, 79])) == pytest.approx(36.0)
    # The per-element volumes are sums over the model's table, one entry per atom.
    z = np.array([38, 22, 8, 8, 8])
    assert model.estimate_volume(z) == pytest.approx(model.element_volumes[[38, 22, 8]] @ [1, 1, 3])


def test_srtio3_ranking_follows_mendeleev_distance(model):
    train = template_train()
    target = Target.parse("SrTiO3")
    rows, mappings = model.rank_templates(target)
    expected = expected_ranking(train, {"Sr": 1, "Ti": 1, "O": 3})
    assert rows.tolist() == expected
    # Written out: the BaTiO3 templates (|Ba-Sr| = 1) beat CaZrO3 (|Ca-Sr| + |Zr-Ti| = 1 + 2), then KNbO3, then
    # SrTiS3 (3 |S-O| = 21); the two BaTiO3 tie and keep training order.
    ids = [train[r].id for r in rows]
    assert ids == ["tr-BaTiO3-cubic", "tr-BaTiO3-P4mm", "tr-CaZrO3", "tr-KNbO3", "tr-SrTiS3"]
    first = dict(zip(mappings[0][0].tolist(), mappings[0][1].tolist()))
    assert first == {56: 38, 22: 22, 8: 8}  # Ba -> Sr, Ti -> Ti, O -> O


@pytest.mark.parametrize("formula, counts", [
    ("BaZrS3", {"Ba": 1, "Zr": 1, "S": 3}),
    ("KTaO3", {"K": 1, "Ta": 1, "O": 3}),
    ("CaTiO3", {"Ca": 1, "Ti": 1, "O": 3}),
    ("MgO", {"Mg": 1, "O": 1}),  # no (1, 1) template
    ("Mg2S2", {"Mg": 2, "S": 2}),  # ZnO and ZnS
    ("K4Br4", {"K": 4, "Br": 4}),  # the rock-salt cells
])
def test_rankings_for_other_targets(model, formula, counts):
    rows, mappings = model.rank_templates(Target.parse(formula))
    assert rows.tolist() == expected_ranking(template_train(), counts)
    assert len(mappings) == len(rows)


def test_substitution_keeps_fractional_coordinates_and_rescales_the_volume(model):
    train = template_train()
    rows, _ = model.rank_templates(Target.parse("SrTiO3"))
    samples = model.sample([Target.parse("SrTiO3")], n=10)[0]
    assert len(samples) == len(rows) == 5  # fewer than n: only five templates share the (1, 1, 3) pattern
    for sample, row in zip(samples, rows):
        template = model.train[row]
        assert sample.formula == "SrTiO3"
        np.testing.assert_array_equal(sample.frac_coords, template.frac_coords)
        # Same species order, each template element replaced by its mapped one.
        mapping = {"Ba": "Sr", "Ca": "Sr", "K": "Sr", "Zr": "Ti", "Nb": "Ti", "Ti": "Ti", "O": "O", "S": "O", "Sr": "Sr"}
        assert sample.species == [mapping[s] for s in template.species]
        # An isotropic rescaling of the template cell to the estimated volume.
        nonzero = template.lattice != 0
        assert np.all(sample.lattice[~nonzero] == 0)
        scale = sample.lattice[nonzero] / template.lattice[nonzero]
        np.testing.assert_allclose(scale, scale[0], rtol=1e-12)
        assert sample.volume == pytest.approx(model.estimate_volume(sample.atomic_numbers), rel=1e-12)
        assert sample.volume == pytest.approx(25 + 10 + 30, rel=2e-3)  # Sr + Ti + 3 O, from the additive fit
        assert train[row].id == template.id


def test_spacegroup_restricts_templates(model):
    srtio3 = Target.parse("SrTiO3").composition
    train = template_train()
    counts = {"Sr": 1, "Ti": 1, "O": 3}
    for group in (99, 221, 225):
        rows, _ = model.rank_templates(Target(srtio3, group))
        assert rows.tolist() == expected_ranking(train, counts, group), group
    assert [train[r].id for r in model.rank_templates(Target(srtio3, 99))[0]] == ["tr-BaTiO3-P4mm"]
    (sample,) = model.sample([Target(srtio3, 99)], n=3)[0]
    assert sample.formula == "SrTiO3" and space_group_number(sample) == 99 == spacegroup_pymatgen(sample)
    assert model.sample([Target(srtio3, 225)], n=3) == [[]]


def test_sampling_without_composition_returns_training_structures(model):
    train = {c.id: c for c in model.train}
    picks = model.sample([Target()], n=4, seed=3)[0]
    assert len(picks) == 4
    ids = [c.id for c in picks]
    assert len(set(ids)) == 4 and set(ids) <= set(train)
    for crystal in picks:
        original = train[crystal.id]
        assert crystal is not original
        np.testing.assert_array_equal(crystal.lattice, original.lattice)
        np.testing.assert_array_equal(crystal.frac_coords, original.frac_coords)
        np.testing.assert_array_equal(crystal.atomic_numbers, original.atomic_numbers)
    assert [c.id for c in model.sample([Target()], n=4, seed=3)[0]] == ids  # seeded
    assert len(model.sample([Target()], n=100)[0]) == len(train)  # without replacement
    assert sorted(c.id for c in model.sample([Target(spacegroup=186)], n=5)[0]) == ["tr-ZnO", "tr-ZnS"]
    assert [c.id for c in model.sample([Target(spacegroup=99)], n=5)[0]] == ["tr-BaTiO3-P4mm"]


def test_check_target_rejects_too_many_atoms(model):
    big = Target.parse("Sr2Ti2O6")
    with pytest.raises(CrystalgenInputError, match=r"10 atoms.*limit of 8"):
        model.check_target(big)
    with pytest.raises(CrystalgenInputError, match="10 atoms"):
        model.sample([big])
    model.check_target(Target.parse("Na4Cl4"))  # 8 atoms: at the limit
    (rocksalt,) = model.sample([Target.parse("K4Br4")])[0]
    assert rocksalt.formula == "KBr" and rocksalt.num_atoms == 8


def test_unfitted_model_refuses_to_sample():
    with pytest.raises(CrystalgenInputError, match="fitted"):
        TemplateGenerator().sample([Target.parse("SrTiO3")])
    with pytest.raises(CrystalgenInputError, match="protocol"):
        TemplateGenerator({"name": "x"}).load_state({"element_volumes": np.zeros(119)})


def test_checkpoint_round_trip(model, checkpoint, template_data, tmp_path):
    loaded = load_model(checkpoint, template_data)
    assert isinstance(loaded, TemplateGenerator) and loaded.is_fitted
    assert loaded.config == model.config and loaded.name == "tpl-test"
    np.testing.assert_array_equal(loaded.element_volumes, model.element_volumes)
    targets = [Target.parse("SrTiO3"), Target.parse("BaZrS3"), Target()]
    for a, b in zip(model.sample(targets, n=3, seed=1), loaded.sample(targets, n=3, seed=1)):
        assert len(a) == len(b)
        for x, y in zip(a, b):
            np.testing.assert_array_equal(x.lattice, y.lattice)
            np.testing.assert_array_equal(x.atomic_numbers, y.atomic_numbers)


# ------------------------------------------------------------------------------ crystalgen sample
def sample_args(checkpoint: Path, data: Path, out: Path, *extra: str) -> list[str]:
    return ["sample", "--model", str(checkpoint), "--data-dir", str(data), "--out", str(out), *extra]


def test_sample_cli_writes_csv_and_cifs(model, checkpoint, template_data, tmp_path, capsys):
    out = tmp_path / "out"
    result = run_main(sample_args(checkpoint, template_data, out, "-c", "SrTiO3", "-c", "BaZrS3", "-n", "2"), capsys)
    assert result.returncode == 0, result.stderr
    text = (out / "samples.csv").read_text()
    assert text.splitlines()[0] == ",".join(SAMPLE_COLUMNS)
    rows = read_rows(out / "samples.csv")
    assert [(r["sample_id"], r["target"], r["formula"]) for r in rows] == [
        ("t0000-000", "Sr1Ti1O3", "SrTiO3"), ("t0000-001", "Sr1Ti1O3", "SrTiO3"),
        ("t0001-000", "Ba1Zr1S3", "BaZrS3"), ("t0001-001", "Ba1Zr1S3", "BaZrS3"),
    ]
    from crystalgen.representations.cif import from_symmetric_cif

    for row in rows:  # the symmetric CIF names the space group spglib finds and reads back to the same crystal
        assert "_symmetry_space_group_name_H-M" in row["cif_symmetric"]
        assert from_symmetric_cif(row["cif_symmetric"]).formula == row["formula"]
    assert sorted(p.name for p in (out / "cifs").iterdir()) == [f"{r['sample_id']}.cif" for r in rows]
    expected = model.sample([Target.parse("SrTiO3")], n=2)[0] + model.sample([Target.parse("BaZrS3")], n=2, seed=1)[0]
    for row, want in zip(rows, expected):
        assert (out / "cifs" / f"{row['sample_id']}.cif").read_text() == row["cif"]
        got = Crystal.from_cif(row["cif"])
        assert int(row["num_atoms"]) == got.num_atoms == 5
        assert int(row["spacegroup"]) == spacegroup_pymatgen(got)
        np.testing.assert_allclose(got.lattice @ got.lattice.T, want.lattice @ want.lattice.T, atol=1e-5)
        np.testing.assert_allclose(got.frac_coords, want.frac_coords, atol=1e-6)
    # SrTiO3 from the cubic BaTiO3 template first, then from the P4mm one.
    assert [int(r["spacegroup"]) for r in rows[:2]] == [221, 99]


def test_sample_cli_resumes(checkpoint, template_data, tmp_path, capsys):
    out = tmp_path / "out"
    args = sample_args(checkpoint, template_data, out, "-c", "SrTiO3", "-c", "BaZrS3", "-n", "2")
    assert run_main(args, capsys).returncode == 0
    complete = (out / "samples.csv").read_bytes()
    first_cif = out / "cifs" / "t0000-000.cif"
    stamp = first_cif.stat().st_mtime_ns

    assert run_main(args, capsys).returncode == 0  # everything done: nothing rewritten
    assert (out / "samples.csv").read_bytes() == complete

    # As if interrupted while writing the second target: one target committed, a torn tail after it.
    cut = complete.index(b"\r\nt0001-000,") + 2
    (out / "samples.csv").write_bytes(complete[:cut] + b"t0001-000,Ba1Zr1S3,BaZ")
    (out / "samples.progress.json").write_text(json.dumps({"done": 1, "bytes": cut}))
    for name in ("t0001-000.cif", "t0001-001.cif"):
        (out / "cifs" / name).unlink()
    assert run_main(args, capsys).returncode == 0
    assert (out / "samples.csv").read_bytes() == complete
    assert first_cif.stat().st_mtime_ns == stamp  # the finished target was skipped
    assert (out / "cifs" / "t0001-001.cif").is_file()


def test_sample_cli_spacegroup_only(checkpoint, template_data, tmp_path, capsys):
    result = run_main(sample_args(checkpoint, template_data, tmp_path / "o", "-s", "99", "-n", "3"), capsys)
    assert result.returncode == 0, result.stderr
    rows = read_rows(tmp_path / "o" / "samples.csv")
    # from scratch, each sample is its own draw: the one sg99 training structure, three times
    assert [(r["target"], r["formula"], r["spacegroup"]) for r in rows] == [("sg99", "BaTiO3", "99")] * 3


def test_sample_cli_user_errors(checkpoint, template_data, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    result = run_main(sample_args(checkpoint, template_data, tmp_path / "big", "-c", "Sr2Ti2O6"), capsys)
    assert_one_line_error(result, "10 atoms", "limit of 8")
    assert not (tmp_path / "big").exists()
    result = run_main(["sample", "--model", "template", "-c", "SrTiO3", "--out", "x"], capsys)
    assert_one_line_error(result, "unfitted")
    result = run_main(sample_args(checkpoint, template_data, tmp_path / "x", "-c", "SrTiO3", "-s", "225"), capsys)
    assert_one_line_error(result, "225")


def test_sample_cli_rerun_after_an_empty_run_keeps_one_header(checkpoint, template_data, tmp_path, capsys):
    args = sample_args(checkpoint, template_data, tmp_path / "o", "-c", "NaCl")
    for attempt in range(2):
        result = run_main(args, capsys)
        assert result.returncode == 0, result.stderr
        assert ("no sample for" in result.stderr) == (attempt == 0)  # the re-run finds the target done
    assert (tmp_path / "o" / "samples.csv").read_text().splitlines() == [",".join(SAMPLE_COLUMNS)]


def test_sample_cli_other_command_into_same_folder_does_not_corrupt_it(checkpoint, template_data, tmp_path, capsys):
    out = tmp_path / "o"
    assert run_main(sample_args(checkpoint, template_data, out, "-c", "SrTiO3"), capsys).returncode == 0
    before = (out / "samples.csv").read_bytes()
    result = run_main(sample_args(checkpoint, template_data, out, "-c", "BaZrS3"), capsys)
    assert_one_line_error(result, "other settings", "targets")
    assert (out / "samples.csv").read_bytes() == before
    for row in read_rows(out / "samples.csv"):
        assert (out / "cifs" / f"{row['sample_id']}.cif").read_text() == row["cif"]


# ------------------------------------------------------------------------------ with the benchmark data
@pytest.mark.slow
def test_sample_srtio3_from_the_shipped_perov_5_template(data_dir, tmp_path, capsys):
    out = tmp_path / "srtio3"
    result = run_main(["sample", "--model", "template-perov_5", "-c", "SrTiO3", "-n", "3", "--out", str(out),
                       "--data-dir", str(data_dir)], capsys)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "samples.csv")
    assert [r["sample_id"] for r in rows] == ["t0000-000", "t0000-001", "t0000-002"]
    crystals = [Crystal.from_cif((out / "cifs" / f"{r['sample_id']}.cif").read_text()) for r in rows]
    for row, crystal in zip(rows, crystals):
        assert row["formula"] == crystal.formula == "SrTiO3" and row["target"] == "Sr1Ti1O3"
        assert crystal.num_atoms == int(row["num_atoms"]) == 5
        assert int(row["spacegroup"]) == spacegroup_pymatgen(crystal)
    # One composition, one estimated volume: every proposal is rescaled to it.
    volumes = [c.volume for c in crystals]
    assert max(volumes) == pytest.approx(min(volumes), rel=1e-6)
    assert 40.0 < volumes[0] < 90.0  # SrTiO3 is 59.5 Å^3 per formula unit


def test_models_lists_shipped_checkpoints_with_card_metrics(capsys):
    result = run_main(["models", "--json"], capsys)
    assert result.returncode == 0, result.stderr
    entries = {entry["name"]: entry for entry in json.loads(result.stdout)}
    assert {"template-perov_5", "template-mp_20", "template-carbon_24", "template"} <= set(entries)
    perov = entries["template-perov_5"]
    assert (perov["family"], perov["kind"], perov["task"], perov["dataset"], perov["protocol"]) == (
        "template", "generator", "csp+gen", "perov_5", "perov_5")
    assert perov["conditions"] == ["composition", "spacegroup"] and perov["baseline"]
    card = (Path(perov["path"]) / "card.md").read_text()
    assert perov["metrics"] == card_metrics(card)  # whatever the card's front matter measured, nothing else
    table = run_main(["models"], capsys).stdout
    assert all(name in table for name in entries)
