"""S.U.N.: the arithmetic on textbook crystals with a stand-in for CHGNet (exact denominators,
thresholds, duplicates, non-novel samples, resuming), the reference set, the command, and one
small relaxation with the real CHGNet."""

from __future__ import annotations

import json

import numpy as np
import pytest

from crystalgen import Crystal
from crystalgen.data import load_protocol
from crystalgen.errors import CrystalgenInputError
from crystalgen.filters.hull import ReferenceHull
from crystalgen.filters.inputs import CandidateRow
from crystalgen.filters.relax import RELAX_CHUNK_ROWS, Relaxation
from crystalgen.filters.stages import Stage, StageResult
from crystalgen.metrics.sun import (
    E_HULL_TOLERANCE,
    SunConfig,
    SunReference,
    evaluate_sun,
    formation_energy_property,
    load_sun_reference,
    sun_from_rows,
    sun_stages,
)

from conftest import assert_one_line_error, make_textbook, run_main
from surrogate_helpers import fake_mp20_splits, magnesia, with_species, write_fake_mp20

ENERGY = "formation_energy_per_atom"


class StandInRelaxation(Stage):
    """The CHGNet stage's columns with E_hull chosen per formula; records what it relaxed."""

    name, columns, only_survivors, chunk_rows = "relax", Relaxation.columns, True, RELAX_CHUNK_ROWS

    def __init__(self, e_hull: dict[str, float], failing: tuple[str, ...] = (), reference=(), crash_on_call=0):
        self.e_hull, self.failing, self.crash_on_call = e_hull, set(failing), crash_on_call
        self.relaxed: list[str] = []
        self.calls = 0
        with_energy = [c for c in reference if ENERGY in c.properties]
        self.reference_formation = np.array([c.properties[ENERGY] for c in with_energy])
        self.hull = ReferenceHull(with_energy, self.reference_formation, "formation")
        self.mu, self.reference_cost = {}, {"structures": len(with_energy), "seconds": 0.0}

    def evaluate(self, crystals, row_ids):
        self.calls += 1
        if self.calls == self.crash_on_call:
            raise RuntimeError("interrupted")
        self.relaxed += [c.formula for c in crystals]
        valid = np.array([c.formula not in self.failing for c in crystals], dtype=bool)
        above = np.array([self.e_hull.get(c.formula, np.nan) for c in crystals], dtype=np.float64)
        return StageResult({"relaxed_valid_struct": valid, "chgnet_energy_per_atom": np.full(len(crystals), -5.0),
                            "e_above_hull_chgnet": above, "relax_s": np.full(len(crystals), 2.0),
                            "relaxed_cif": np.array([c.to_cif() for c in crystals], dtype=object)}, valid)


def caesium_chloride() -> Crystal:
    return Crystal(np.eye(3) * 4.12, np.array([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]]), np.array([55, 17]))


def overlapping() -> Crystal:
    """KBr with its two atoms 0.1 Å apart: structurally invalid."""
    return Crystal(np.eye(3) * 4.0, np.array([[0.0, 0.0, 0.0], [0.025, 0.0, 0.0]]), np.array([19, 35]))


def reference_set() -> list[Crystal]:
    zno = make_textbook("ZnO")
    zno.id, zno.properties = "ref-ZnO", {ENERGY: -1.7}
    return [zno]


#: Per sample: (crystal, E_hull the stand-in reports). Expected: 10 sampled of 11 requested, one
#: unreadable, one invalid, one duplicate, one not novel, one failed relaxation, one without hull.
def samples() -> list[tuple[Crystal | None, float]]:
    return [
        (make_textbook("NaCl"), -0.05),  # S.U.N. at 0 and 0.1
        (make_textbook("NaCl"), -0.05),  # a duplicate of the first: not counted
        (make_textbook("Si"), 0.0),  # exactly on the hull: S.U.N. at 0
        (make_textbook("SrTiO3"), 0.1),  # exactly at 0.1: S.U.N. at 0.1 only
        (make_textbook("ZnO"), -1.0),  # in the reference set: not novel
        (caesium_chloride(), 0.25),  # relaxed and valid, above both thresholds
        (magnesia(), -0.3),  # fails its relaxation (see FAILING)
        (overlapping(), -0.3),  # structurally invalid
        (None, 0.0),  # unreadable
        (with_species(make_textbook("NaCl"), {11: 3, 17: 9}), float("nan")),  # LiF: no hull for it
    ]


FAILING = ("MgO",)
N_REQUESTED = 11  # one request more than samples: the model returned nothing for it


def candidate_rows() -> list[CandidateRow]:
    return [CandidateRow({"sample_id": f"s{i}"}, crystal, "" if crystal is not None else "not a CIF")
            for i, (crystal, _) in enumerate(samples())]


def stand_in(**kwargs) -> StandInRelaxation:
    return StandInRelaxation({c.formula: e for c, e in samples() if c is not None}, FAILING, reference_set(), **kwargs)


def run_sun(out, relaxation: Stage):
    config = SunConfig()
    return evaluate_sun(candidate_rows(), ("sample_id",), sun_stages(config, reference_set(), relaxation), out,
                        N_REQUESTED, config)


def test_sun_counts_every_condition_against_every_requested_sample(tmp_path):
    relaxation = stand_in()
    result = run_sun(tmp_path / "sun", relaxation)
    assert (result.n_requested, result.n_sampled, result.n_readable) == (11, 10, 9)
    assert (result.n_valid, result.n_unique, result.n_novel, result.n_relaxed_valid) == (8, 7, 6, 5)
    assert result.n_without_hull == 1
    assert result.sun_count == {"0": 2, "0.1": 3}
    summary = result.to_dict()["sun"]
    assert summary["0"]["share_of_requested"] == pytest.approx(2 / 11)
    assert summary["0.1"]["share_of_requested"] == pytest.approx(3 / 11)
    assert summary["0.1"]["share_of_valid"] == pytest.approx(3 / 8)
    assert summary["0.1"]["stable_share_of_relaxed"] == pytest.approx(3 / 5)
    assert sorted(result.e_above_hull) == [-0.05, 0.0, 0.1, 0.25]
    # only valid, unique, novel samples pay for a relaxation: not the copy, not ZnO, not the broken cell
    assert sorted(relaxation.relaxed) == sorted(["NaCl", "Si", "SrTiO3", "CsCl", "MgO", "LiF"])
    assert result.relax_seconds == [2.0] * 6
    assert [n for _, n in result.funnel()] == [11, 10, 9, 8, 7, 6, 5, 3, 2]


def test_a_resumed_run_relaxes_nothing_twice_and_remembers_the_samples_it_saw(tmp_path):
    out = tmp_path / "sun"
    with pytest.raises(RuntimeError, match="interrupted"):
        run_sun(out, stand_in(crash_on_call=2))  # after the first chunk was written
    resumed = stand_in()
    result = run_sun(out, resumed)
    first_chunk = [c.formula for c, _ in samples()[:RELAX_CHUNK_ROWS] if c is not None]
    assert resumed.relaxed and not set(resumed.relaxed) & set(first_chunk)
    assert result.sun_count == {"0": 2, "0.1": 3} and result.n_unique == 7
    again = stand_in()
    assert run_sun(out, again).to_dict() == result.to_dict() and again.calls == 0


def row(e_hull: str, unique: bool = True, novel: bool = True, relaxed: bool = True) -> dict[str, str]:
    return {"valid_struct": "True", "is_unique": str(unique), "is_novel": str(novel),
            "relaxed_valid_struct": str(relaxed), "e_above_hull_chgnet": e_hull, "relax_s": "1.0", "reject_reason": ""}


def test_thresholds_are_inclusive_up_to_the_named_tolerance():
    assert E_HULL_TOLERANCE == 1e-6
    values = ["-0.2", "0.0", "1e-06", "2e-06", "0.1", "0.100001", "0.100002", ""]
    rows = [row(v) for v in values]
    rows += [row("-1.0", novel=False), row("-1.0", unique=False), row("-1.0", relaxed=False)]
    result = sun_from_rows(rows, 20, SunConfig(thresholds=(0.0, 0.1)))
    assert result.sun_count == {"0": 3, "0.1": 6}
    assert result.n_without_hull == 1 and result.n_relaxed_valid == len(values)
    assert result.share(0.1, result.n_requested) == pytest.approx(6 / 20)


def test_sun_config_checks_its_values_and_resumes_after_json():
    config = SunConfig(thresholds=(0.0, 0.05))
    assert json.loads(json.dumps(config.settings())) == config.settings()
    for bad in ({"thresholds": ()}, {"thresholds": (float("nan"),)}, {"relax_steps": 0}, {"relax_fmax": 0.0}):
        with pytest.raises(CrystalgenInputError):
            SunConfig(**bad)


@pytest.fixture(scope="module")
def fake_mp20(tmp_path_factory):
    return write_fake_mp20(tmp_path_factory.mktemp("fake-mp20"))


def test_the_reference_is_training_and_selection_never_test(fake_mp20, tmp_path):
    splits = fake_mp20_splits()
    standard = load_sun_reference(load_protocol("mp_20"), fake_mp20)  # select: val
    assert sorted(c.id for c in standard.crystals) == sorted(c.id for c in splits["train"] + splits["val"])
    assert (standard.n_train, standard.n_select) == (5, 1) and "test split `test` excluded" in standard.describe()
    protocol = tmp_path / "held.yaml"
    protocol.write_text("name: held\ndataset: mp_20\ntrain: [train]\nholdout: {fraction: 0.4, seed: 1}\ntest: test\n")
    held = load_sun_reference(load_protocol(protocol), fake_mp20)
    assert sorted(c.id for c in held.crystals) == sorted(c.id for c in splits["train"])
    assert (held.n_train, held.n_select) == (3, 2) and "hold-out" in held.describe()


def test_a_dataset_without_a_formation_energy_has_no_sun_hull():
    assert formation_energy_property("mp_20") == ENERGY
    assert formation_energy_property("perov_5") == "heat_ref"
    with pytest.raises(CrystalgenInputError, match="formation energy"):
        formation_energy_property("carbon_24")


# ------------------------------------------------------------------------------ the command
@pytest.fixture(scope="module")
def template_ckpt(fake_mp20, tmp_path_factory):
    from conftest import isolated_cache
    from crystalgen.generators import TemplateGenerator, save_model

    with isolated_cache(tmp_path_factory.mktemp("xdg-cache-tpl")):
        model = TemplateGenerator({"name": "tpl-mp20"})
        model.fit("mp_20", fake_mp20)
        return save_model(model, tmp_path_factory.mktemp("ckpt") / "tpl", card="# card\n")


def test_benchmark_sun_writes_the_report_and_resumes(template_ckpt, fake_mp20, tmp_path, capsys, monkeypatch):
    import crystalgen.metrics.sun as sun

    built: list[StandInRelaxation] = []

    def relaxation(reference, config, cache_dir=None):
        built.append(StandInRelaxation({}, reference=reference.crystals))
        return built[-1]

    monkeypatch.setattr(sun, "chgnet_relaxation", relaxation)
    out = tmp_path / "run"
    argv = ["benchmark", "sun", "--model", str(template_ckpt), "-n", "3", "--out", str(out), "--data-dir", str(fake_mp20)]
    result = run_main(argv, capsys)
    assert result.returncode == 0, result.stderr
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["n_requested"] == 3 and set(metrics["sun"]) == {"0", "0.1"}
    assert metrics["protocol"] == "mp_20" and metrics["hull"]["n_reference"] == 6
    report = (out / "report.md").read_text()
    for words in ("not directly comparable", "Crystalite", "48.60", "test split `test` excluded", "fmax 0.1"):
        assert words in report
    assert (out / "report.html").is_file() and (out / "figures" / "e_above_hull.png").is_file()
    again = run_main(argv, capsys)
    assert again.returncode == 0 and built[-1].calls == 0
    assert json.loads((out / "metrics.json").read_text())["sun"] == metrics["sun"]


@pytest.mark.parametrize("args, fragment", [
    (["--model", "no-such-model", "-n", "2"], "unknown model 'no-such-model'"),
    (["--model", "diffusion-mp_20-gen", "-n", "0"], "0 is not in the range"),
    (["--model", "diffusion-mp_20", "-n", "2"], "does 'csp', not 'gen'"),
])
def test_bad_input_is_one_line(args, fragment, tmp_path, capsys):
    assert_one_line_error(run_main(["benchmark", "sun", *args, "--out", str(tmp_path / "o")], capsys), fragment)
    assert not (tmp_path / "o" / "samples.csv").exists()


# ------------------------------------------------------------------------------ the real CHGNet
def test_chgnet_puts_simple_cubic_silicon_above_the_diamond_hull(tmp_path):
    pytest.importorskip("chgnet", reason="the relax stage needs the 'relax' extra (CHGNet)")
    from crystalgen.metrics.sun import chgnet_relaxation

    nacl, diamond = make_textbook("NaCl"), make_textbook("Si")
    nacl.id, nacl.properties = "ref-NaCl", {ENERGY: -2.0}
    diamond.id, diamond.properties = "ref-Si", {ENERGY: 0.0}
    reference = SunReference(load_protocol("mp_20"), [nacl, diamond], ENERGY, 2, 0)
    config = SunConfig(relax_steps=50)
    relaxation = chgnet_relaxation(reference, config, tmp_path / "cache")
    simple_cubic = Crystal(np.eye(3) * 2.55, np.zeros((1, 3)), np.array([14]))
    result = evaluate_sun([CandidateRow({"sample_id": "s0"}, simple_cubic)], ("sample_id",),
                          sun_stages(config, reference.crystals, relaxation), tmp_path / "sun", 1, config)
    assert result.n_relaxed_valid == 1
    # diamond is silicon's ground state; simple cubic sits well above it (~0.3 eV/atom in DFT)
    assert 0.05 < result.e_above_hull[0] < 1.0
    assert result.sun_count == {"0": 0, "0.1": 0}
    assert len(list((tmp_path / "cache").glob("*.csv"))) == 1
