"""The trained surrogate (``crystalgen.surrogate.predictor``): config validation, fitting, saving and
loading; its error measures (``surrogate.evaluation``); learning-rate schedules and validated config
sections; and ``crystalgen benchmark surrogate`` on a fake mp_20 with known answers."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from crystalgen.config_sections import MAY_BE_ZERO, checked_section, dataclass_defaults, section_dataclass
from crystalgen.errors import CrystalgenInputError
from crystalgen.models.store import CONFIG_FILE
from crystalgen.resources import checkpoints_dir
from crystalgen.surrogate.evaluation import PropertyErrors, property_errors
from crystalgen.models import save_model
from crystalgen.surrogate.predictor import Surrogate, load_surrogate
from crystalgen.training import TrainConfig

from conftest import assert_one_line_error, run_main
from surrogate_helpers import (
    ENERGY,
    FAKE_HULL,
    TINY_CONFIG,
    fake_mp20_splits,
    fit_tiny_surrogate,
    textbook_training_set,
    write_fake_mp20,
)

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    """A TINY_CONFIG surrogate fitted for five steps on the textbook crystals (read-only: share it)."""
    return fit_tiny_surrogate()


@pytest.fixture(scope="module")
def tiny_ckpt(tiny, tmp_path_factory) -> Path:
    return save_model(tiny, tmp_path_factory.mktemp("surrogate") / "tiny", "# tiny\n\nA test surrogate.\n")


def config_with(section: str | None = None, **values):
    """TINY_CONFIG with ``values`` set in ``section`` (or at the top level)."""
    config = json.loads(json.dumps(TINY_CONFIG))
    (config[section] if section else config).update(values)
    return config


# ------------------------------------------------------------------------------ fitting and predicting
def test_fit_summary_and_standardisation(tiny):
    summary = tiny.training_summary
    assert summary["steps"] == 5 and summary["finished"] is True and summary["train_structures"] == 4
    assert summary["processes"] == 1 and math.isfinite(summary["last_losses"]["loss"])
    energies = torch.tensor(list({"NaCl": -2.0, "Si": 0.0, "SrTiO3": -3.4, "ZnO": -1.7}.values()))
    assert tiny.ensemble.property_mean.item() == pytest.approx(energies.mean().item(), abs=1e-6)
    assert tiny.ensemble.property_std.item() == pytest.approx(energies.std().item(), abs=1e-6)
    assert not tiny.ensemble.training  # ready to predict
    assert tiny.train_config.lr_schedule == "cosine" and tiny.train_config.steps == 5


def test_fit_skips_crystals_without_any_property():
    crystals = textbook_training_set()
    crystals[1].properties = {"band_gap": 2.0}  # not a property this surrogate predicts
    model = fit_tiny_surrogate(config_with("training", steps=2), crystals)
    assert model.training_summary["train_structures"] == 3
    with pytest.raises(CrystalgenInputError, match="no training crystal"):
        fit_tiny_surrogate(config_with("training", steps=2), [crystals[1]])


def test_predict_returns_mean_and_spread_per_property(tiny):
    crystals = textbook_training_set()
    predictions = tiny.predict(crystals)
    assert set(predictions) == {ENERGY}
    mean, std = predictions[ENERGY]
    assert mean.shape == std.shape == (4,) and mean.dtype == np.float64
    assert np.isfinite(mean).all() and (std > 0).all()  # two members from different initial weights
    assert len(np.unique(mean.round(6))) == 4
    # the same numbers whatever the batching
    one_by_one = tiny.predict(crystals, batch_size=1)[ENERGY]
    np.testing.assert_allclose(one_by_one[0], mean, atol=1e-5)
    np.testing.assert_allclose(one_by_one[1], std, atol=1e-5)
    empty_mean, empty_std = tiny.predict([])[ENERGY]
    assert empty_mean.shape == empty_std.shape == (0,)


def test_predictions_are_the_ensemble_mean_and_std(tiny):
    from crystalgen.batch import collate

    crystals = textbook_training_set()
    members = tiny.ensemble.predict_batch(collate(crystals)).members[:, :, 0].detach().double().numpy()
    mean, std = tiny.predict(crystals)[ENERGY]
    np.testing.assert_allclose(mean, members.mean(0), atol=1e-5)
    np.testing.assert_allclose(std, members.std(0, ddof=1), atol=1e-5)


def test_training_reaches_the_targets_with_more_steps():
    crystals = textbook_training_set() * 2
    model = fit_tiny_surrogate(config_with("training", steps=60, lr=0.01, batch_size=8), crystals)
    mean, _ = model.predict(crystals[:4])[ENERGY]
    truth = np.array([c.properties[ENERGY] for c in crystals[:4]])
    assert np.abs(mean - truth).max() < 0.3 * truth.std(), (mean, truth)


# ------------------------------------------------------------------------------ persistence
def test_save_and_load_round_trip(tiny, tiny_ckpt):
    loaded = load_surrogate(tiny_ckpt)
    crystals = textbook_training_set()
    before, after = tiny.predict(crystals), loaded.predict(crystals)
    assert list(before) == list(after) == [ENERGY]
    np.testing.assert_array_equal(before[ENERGY][0], after[ENERGY][0])
    np.testing.assert_array_equal(before[ENERGY][1], after[ENERGY][1])
    assert loaded.name == "tiny" and loaded.properties == (ENERGY,) and loaded.protocol == "mp_20"
    assert loaded.train_config == tiny.train_config
    assert loaded.ensemble.config == tiny.ensemble.config
    saved = yaml.safe_load((tiny_ckpt / CONFIG_FILE).read_text())
    assert saved["family"] == "surrogate"
    assert saved["model"] == {"members": 2, "hidden": 8, "layers": 1, "cutoff": 4.0, "distance_features": 8}
    assert (tiny_ckpt / "card.md").read_text().startswith("# tiny")
    architecture = loaded.describe_architecture()
    assert "2 CGCNN-style" in architecture and "4.0 Å" in architecture and "8 Gaussian" in architecture


def test_a_saved_config_builds_the_same_surrogate(tiny):
    config = tiny.checkpoint_config()
    rebuilt = Surrogate(config)
    assert rebuilt.ensemble.config == tiny.ensemble.config and rebuilt.train_config == tiny.train_config
    rebuilt.load_state(tiny.state())
    crystals = textbook_training_set()
    np.testing.assert_array_equal(rebuilt.predict(crystals)[ENERGY][0], tiny.predict(crystals)[ENERGY][0])


def test_load_surrogate_refuses_a_diffusion_checkpoint():
    folder = checkpoints_dir() / "diffusion-perov_5"
    if not folder.is_dir():
        pytest.skip("the shipped diffusion-perov_5 checkpoint is absent")
    with pytest.raises(CrystalgenInputError, match="generator model, not a property model"):
        load_surrogate(folder)
    with pytest.raises(CrystalgenInputError, match="generator model, not a property model"):
        load_surrogate("diffusion-perov_5")  # by shipped name


def test_load_surrogate_refuses_unknown_names_and_mismatched_weights(tiny_ckpt, tmp_path):
    with pytest.raises(CrystalgenInputError, match="unknown property model"):
        load_surrogate(tmp_path / "nothing-here")
    with pytest.raises(CrystalgenInputError, match="unknown property model"):
        load_surrogate("surrogate-that-does-not-exist")
    import shutil

    copy = Path(shutil.copytree(tiny_ckpt, tmp_path / "edited"))
    config = yaml.safe_load((copy / CONFIG_FILE).read_text())
    config["model"]["hidden"] = 16  # the weights are for 8
    (copy / CONFIG_FILE).write_text(yaml.safe_dump(config))
    with pytest.raises(CrystalgenInputError, match="do not match"):
        load_surrogate(copy)


@pytest.mark.parametrize("config, fragment", [
    (config_with("model", members=-1), "model.members must be > 0"),
    (config_with("model", members=0), "model.members must be > 0"),
    (config_with("model", hidden=8.5), "model.hidden must be int"),
    (config_with("model", cutoff="4"), "model.cutoff must be float"),
    (config_with("model", depth=3), "unknown model settings: depth"),
    (config_with("training", lr_schedule="bogus"), "lr_schedule must be one of constant, cosine"),
    (config_with("training", lr="1e-3"), "YAML reads 1e-3 as text"),
    (config_with("training", steps=-5), "training.steps must be > 0"),
    (config_with("training", warmup_steps=-1), "training.warmup_steps must be >= 0"),
    (config_with("training", epochs=3), "unknown training settings: epochs"),
    (config_with(properties=[]), "needs 'properties'"),
    (config_with(properties="formation_energy_per_atom"), "needs 'properties'"),
    (config_with(properties=[ENERGY, 3]), "needs 'properties'"),
    ({k: v for k, v in TINY_CONFIG.items() if k != "properties"}, "needs 'properties'"),
    (config_with(model=[4, 8]), "'model' must be a mapping"),
])
def test_bad_surrogate_configs_are_one_line_input_errors(config, fragment):
    with pytest.raises(CrystalgenInputError) as info:
        Surrogate(config)
    assert fragment in str(info.value) and "\n" not in str(info.value)


def test_good_edge_values_are_accepted():
    model = Surrogate(config_with("training", warmup_steps=0, weight_decay=0, lr=1))  # ints may stand for floats
    assert model.train_config.lr == 1 and model.train_config.warmup_steps == 0
    defaults = Surrogate({"properties": [ENERGY]})
    assert defaults.ensemble.config.members == 4 and defaults.ensemble.config.encoder.hidden == 64


def test_a_single_distance_feature_is_a_config_error_not_a_crash():
    with pytest.raises(CrystalgenInputError):
        Surrogate(config_with("model", distance_features=1))


# ------------------------------------------------------------------------------ evaluation
def test_property_errors_on_hand_made_arrays():
    errors = PropertyErrors("e", truth=np.array([0.0, 1.0, 2.0, 3.0]), mean=np.array([0.5, 1.0, 1.0, 5.0]),
                            std=np.array([0.4, 0.1, 0.9, 1.5]))
    assert errors.n == 4
    np.testing.assert_allclose(errors.absolute_errors, [0.5, 0.0, 1.0, 2.0])
    assert errors.mae == pytest.approx(3.5 / 4)
    assert errors.rmse == pytest.approx(math.sqrt((0.25 + 0 + 1 + 4) / 4))
    assert errors.spearman_error_std == pytest.approx(1.0)  # |error| ranks exactly as std does
    bins = errors.calibration_bins(bins=2)  # by std: (0.1, 0.4) then (0.9, 1.5)
    assert [b["n"] for b in bins] == [2, 2]
    assert bins[0]["mean_std"] == pytest.approx(0.25) and bins[1]["mean_std"] == pytest.approx(1.2)
    assert bins[0]["mae"] == pytest.approx(0.25) and bins[0]["rmse"] == pytest.approx(math.sqrt(0.125))
    assert bins[1]["mae"] == pytest.approx(1.5) and bins[1]["rmse"] == pytest.approx(math.sqrt(2.5))
    assert len(errors.calibration_bins()) == 4  # more bins asked for than crystals: one crystal each
    assert sum(b["n"] for b in errors.calibration_bins(3)) == 4


def test_property_errors_without_rows():
    empty = PropertyErrors("e", np.zeros(0), np.zeros(0), np.zeros(0))
    assert empty.n == 0 and math.isnan(empty.mae) and math.isnan(empty.rmse)
    assert math.isnan(empty.spearman_error_std) and empty.calibration_bins() == []


def test_property_errors_of_a_model_use_only_crystals_with_the_property(tiny):
    crystals = textbook_training_set()
    crystals[2].properties = {}  # SrTiO3 has no known value
    errors = property_errors(tiny, crystals)[ENERGY]
    assert errors.n == 3
    np.testing.assert_allclose(errors.truth, [-2.0, 0.0, -1.7])
    mean, std = tiny.predict(crystals)[ENERGY]
    np.testing.assert_allclose(errors.mean, mean[[0, 1, 3]])
    np.testing.assert_allclose(errors.std, std[[0, 1, 3]])


# ------------------------------------------------------------------------------ learning rate
def test_constant_learning_rate():
    config = TrainConfig(steps=100, lr=0.01)
    assert [config.learning_rate(s) for s in (0, 1, 50, 99, 100)] == [0.01] * 5


def test_warmup_then_constant():
    config = TrainConfig(steps=100, lr=0.01, warmup_steps=10)
    assert config.learning_rate(0) == pytest.approx(0.001)
    assert config.learning_rate(4) == pytest.approx(0.005)
    assert config.learning_rate(9) == pytest.approx(0.01)  # warm-up ends at full rate
    assert config.learning_rate(10) == config.learning_rate(99) == 0.01


def test_cosine_learning_rate():
    config = TrainConfig(steps=100, lr=0.01, lr_schedule="cosine")
    assert config.learning_rate(0) == pytest.approx(0.01)
    assert config.learning_rate(50) == pytest.approx(0.005)
    assert config.learning_rate(25) == pytest.approx(0.005 * (1 + math.cos(math.pi / 4)))
    assert config.learning_rate(100) == pytest.approx(0.0, abs=1e-12)
    assert config.learning_rate(150) == pytest.approx(0.0, abs=1e-12)  # past the end: stays at 0
    rates = [config.learning_rate(s) for s in range(101)]
    assert all(a >= b for a, b in zip(rates, rates[1:]))


def test_cosine_learning_rate_with_warmup():
    config = TrainConfig(steps=110, lr=0.02, lr_schedule="cosine", warmup_steps=10)
    assert config.learning_rate(0) == pytest.approx(0.002)
    assert config.learning_rate(9) == pytest.approx(0.02)  # end of warm-up
    assert config.learning_rate(10) == pytest.approx(0.02)  # decay starts from the full rate
    assert config.learning_rate(60) == pytest.approx(0.01)  # half way through the decay
    assert config.learning_rate(110) == pytest.approx(0.0, abs=1e-12)
    rates = [config.learning_rate(s) for s in range(111)]
    assert all(r > 0 for r in rates[:110]) and max(rates) == pytest.approx(0.02)


def test_bad_learning_rate_schedule():
    with pytest.raises(CrystalgenInputError, match="lr_schedule must be one of constant, cosine, got 'linear'"):
        TrainConfig(lr_schedule="linear")


def test_the_trainer_applies_the_schedule_and_refuses_to_resume_with_another(tmp_path):
    from crystalgen.surrogate import EncoderConfig, SurrogateConfig, SurrogateEnsemble
    from crystalgen.training import Trainer

    torch.manual_seed(0)
    config = TrainConfig(steps=4, batch_size=2, lr=0.01, lr_schedule="cosine", warmup_steps=2, log_every=2)
    model = SurrogateEnsemble(SurrogateConfig((ENERGY,), 1, EncoderConfig(hidden=8, layers=1, cutoff=4.0,
                                                                          distance_features=8)))
    trainer = Trainer(model, textbook_training_set(), config, tmp_path)
    seen = []
    original_step = trainer.optimizer.step

    def recording_step(*args, **kwargs):
        seen.append(trainer.optimizer.param_groups[0]["lr"])
        return original_step(*args, **kwargs)

    trainer.optimizer.step = recording_step
    trainer.run()
    assert seen == pytest.approx([config.learning_rate(s) for s in range(4)])
    assert seen == pytest.approx([0.005, 0.01, 0.01, 0.005])
    constant = TrainConfig(steps=6, batch_size=2, lr=0.01, lr_schedule="constant", warmup_steps=2, log_every=2)
    with pytest.raises(CrystalgenInputError, match="lr_schedule: cosine -> constant"):
        Trainer(model, textbook_training_set(), constant, tmp_path).run(resume=True)


# ------------------------------------------------------------------------------ config sections
ALLOWED = {"steps": 10, "lr": 0.001, "name": "x", "flag": True, "weight_decay": 0.0}


def test_checked_section_accepts_good_values():
    assert checked_section("s", None, ALLOWED) == {}
    values = {"steps": 3, "lr": 1, "name": "y", "flag": False, "weight_decay": 0}
    out = checked_section("s", values, ALLOWED)
    assert out == values and out is not values


@pytest.mark.parametrize("values, message", [
    ({"step": 3}, "unknown s settings: step"),
    ({"b": 1, "a": 2}, "unknown s settings: a, b"),
    ({"steps": 2.5}, "s.steps must be int, got 2.5"),
    ({"steps": True}, "s.steps must be int, got True"),
    ({"lr": "0.1"}, "s.lr must be float, got '0.1'"),
    ({"lr": "1e-3"}, "(YAML reads 1e-3 as text: write 0.001 or 1.0e-3)"),
    ({"lr": -0.1}, "s.lr must be > 0, got -0.1"),
    ({"steps": 0}, "s.steps must be > 0, got 0"),
    ({"weight_decay": -1}, "s.weight_decay must be >= 0, got -1"),
    ({"name": 3}, "s.name must be text, got 3"),
    ({"flag": 1}, "s.flag must be true or false, got 1"),
    ({"lr": None}, "s.lr must be float, got None"),
])
def test_checked_section_errors(values, message):
    with pytest.raises(CrystalgenInputError) as info:
        checked_section("s", values, ALLOWED)
    assert message in str(info.value)


def test_checked_section_needs_a_mapping():
    with pytest.raises(CrystalgenInputError, match="config section 's' must be a mapping, got list"):
        checked_section("s", [1, 2], ALLOWED)


def test_zero_is_allowed_only_for_some_settings():
    assert {"weight_decay", "seed", "warmup_steps"} <= MAY_BE_ZERO and "lr" not in MAY_BE_ZERO
    assert checked_section("t", {"seed": 0, "warmup_steps": 0}, dataclass_defaults(TrainConfig)) == {
        "seed": 0, "warmup_steps": 0}


def test_section_dataclass_fills_defaults_and_validates():
    config = section_dataclass({"training": {"steps": 7, "lr_schedule": "cosine"}}, "training", TrainConfig)
    assert config == TrainConfig(steps=7, lr_schedule="cosine")
    assert section_dataclass({}, "training", TrainConfig) == TrainConfig()
    assert dataclass_defaults(TrainConfig, {"steps", "lr"}) == {"steps": 10_000, "lr": 1e-3}
    with pytest.raises(CrystalgenInputError, match="unknown training settings: stepz"):
        section_dataclass({"training": {"stepz": 7}}, "training", TrainConfig)


# ------------------------------------------------------------------------------ benchmark surrogate
def test_precision_recall_on_synthetic_verdicts():
    from crystalgen.benchmarks.surrogate import _precision_recall

    predicted = np.array([True, True, False, True, False])
    actual = np.array([True, False, False, True, True])
    assert _precision_recall(predicted, actual) == {"precision": 2 / 3, "recall": 2 / 3, "predicted_stable": 3,
                                                    "actually_stable": 3, "n": 5}
    none = _precision_recall(np.zeros(3, bool), np.zeros(3, bool))
    assert none["precision"] == 0 and none["recall"] == 0 and none["n"] == 3


def test_stability_agreement_on_synthetic_inputs():
    from crystalgen.benchmarks.surrogate import stability_agreement
    from crystalgen.filters.hull import ReferenceHull

    test = [c for c in fake_mp20_splits()["test"] if ENERGY in c.properties]
    hull = ReferenceHull.from_crystals(fake_mp20_splits()["train"], ENERGY, "formation")
    truth = np.array([c.properties[ENERGY] for c in test])
    predicted_energy = truth + np.array([0.0, 0.2, -0.25, 0.3, 0.0])  # te-NaCl, ZnO, SrTiO3, MgO, NaCl-expanded
    errors = PropertyErrors(ENERGY, truth, predicted_energy, np.full(len(test), 0.1))
    agreement = stability_agreement(test, errors, hull, ENERGY, 0.1)
    # rows with e_above_hull: NaCl 0.08, ZnO 0.0, SrTiO3 0.3, MgO 0.5 -> actual stable: NaCl, ZnO
    # truth - hull: NaCl 0.05, ZnO 0, SrTiO3 0.2, MgO 0 -> the DFT energies call NaCl, ZnO, MgO stable
    assert agreement["dft_energy_reference_hull"] == {"precision": 2 / 3, "recall": 1.0, "predicted_stable": 3,
                                                      "actually_stable": 2, "n": 4}
    # predicted - hull: NaCl 0.05, ZnO 0.2, SrTiO3 -0.05, MgO 0.3 -> NaCl and SrTiO3 called stable
    assert agreement["surrogate"] == {"precision": 0.5, "recall": 0.5, "predicted_stable": 2,
                                      "actually_stable": 2, "n": 4}
    assert agreement["threshold"] == 0.1
    no_known = [c.copy() for c in test]
    for c in no_known:
        c.properties.pop("e_above_hull", None)
    assert stability_agreement(no_known, errors, hull, ENERGY, 0.1) is None


@pytest.fixture(scope="module")
def fake_mp20(tmp_path_factory) -> Path:
    return write_fake_mp20(tmp_path_factory.mktemp("fake-mp20"))


def test_benchmark_surrogate_metrics_on_a_fake_mp20(tiny, tiny_ckpt, fake_mp20, tmp_path):
    from crystalgen.benchmarks.surrogate import ON_HULL, SurrogateBenchmarkSettings, run_surrogate_benchmark

    out = tmp_path / "bench"
    metrics = run_surrogate_benchmark(SurrogateBenchmarkSettings(str(tiny_ckpt), "mp_20"), out, fake_mp20)
    assert json.loads((out / "metrics.json").read_text())["properties"] == json.loads(json.dumps(metrics["properties"]))
    assert (out / "report.md").is_file() and (out / "report.html").is_file()
    assert metrics["protocol"] == "mp_20" and metrics["model"] == "tiny"
    # independent scoring: the model's predictions on the test rows with a formation energy
    test = [c for c in fake_mp20_splits()["test"] if ENERGY in c.properties]
    mean, std = tiny.predict(test)[ENERGY]
    truth = np.array([c.properties[ENERGY] for c in test])
    m = metrics["properties"][ENERGY]
    assert m["n"] == 5
    assert m["mae"] == pytest.approx(np.abs(mean - truth).mean(), abs=1e-5)
    assert m["rmse"] == pytest.approx(np.sqrt(np.mean((mean - truth) ** 2)), abs=1e-5)
    assert m["within_1_std"] == pytest.approx(np.mean(np.abs(mean - truth) <= std))
    assert sum(b["n"] for b in m["calibration"]) == 5
    # stability: by hand, with the hull of the fake training set (one compound per system)
    thresholds = [a["threshold"] for a in metrics["stability"]]
    assert thresholds == [0.1, ON_HULL]
    known = [i for i, c in enumerate(test) if "e_above_hull" in c.properties]
    hull = np.array([FAKE_HULL[c.id.split("-")[1]] for c in test])[known]
    actual_above = np.array([test[i].properties["e_above_hull"] for i in known])
    for agreement in metrics["stability"]:
        t = agreement["threshold"]
        for key, energy in (("surrogate", mean[known]), ("dft_energy_reference_hull", truth[known])):
            predicted, actual = energy - hull <= t, actual_above <= t
            tp = int(np.sum(predicted & actual))
            assert agreement[key]["n"] == 4
            assert agreement[key]["predicted_stable"] == predicted.sum(), (key, t)
            assert agreement[key]["precision"] == pytest.approx(tp / max(predicted.sum(), 1)), (key, t)
            assert agreement[key]["recall"] == pytest.approx(tp / max(actual.sum(), 1)), (key, t)
    assert metrics["stability"][1]["dft_energy_reference_hull"]["precision"] == pytest.approx(0.5)


def test_benchmark_surrogate_command_on_a_fake_mp20(tiny_ckpt, fake_mp20, tmp_path, capsys):
    result = run_main(["benchmark", "surrogate", "--model", str(tiny_ckpt), "--dataset", "mp_20", "--data-dir",
                       str(fake_mp20), "--out", str(tmp_path / "bench")], capsys)
    assert result.returncode == 0, result.stderr
    assert "MAE" in result.stdout + result.stderr


def test_benchmark_surrogate_refuses_a_foreign_protocol(tiny_ckpt, fake_mp20, tmp_path, capsys):
    result = run_main(["benchmark", "surrogate", "--model", str(tiny_ckpt), "--dataset", "perov_5", "--data-dir",
                       str(fake_mp20), "--out", str(tmp_path / "bench")], capsys)
    assert_one_line_error(result, "protocol 'mp_20' is on dataset 'mp_20', not 'perov_5'")


def test_benchmark_surrogate_refuses_a_generator_checkpoint(fake_mp20, tmp_path, capsys):
    if not (checkpoints_dir() / "template-perov_5").is_dir():
        pytest.skip("the shipped template-perov_5 checkpoint is absent")
    result = run_main(["benchmark", "surrogate", "--model", "template-perov_5", "--dataset", "mp_20", "--data-dir",
                       str(fake_mp20), "--out", str(tmp_path / "bench")], capsys)
    assert_one_line_error(result, "not a property model")



# ------------------------------------------------------------------------------ std calibration
def test_std_calibration_recovers_a_known_scale_and_floor():
    from crystalgen.surrogate.evaluation import fit_std_calibration

    rng = np.random.default_rng(0)
    spread = rng.uniform(0.01, 0.2, 4000)
    true_scale, true_floor = 3.0, 0.05
    errors = rng.normal(0.0, np.sqrt((true_scale * spread) ** 2 + true_floor ** 2))
    truth = rng.normal(size=4000)
    scale, floor, n = fit_std_calibration(PropertyErrors("e", truth, truth + errors, spread))
    assert n == 4000
    assert scale == pytest.approx(true_scale, rel=0.1) and floor == pytest.approx(true_floor, rel=0.2)


def test_calibrate_changes_only_the_std_and_survives_a_save(tmp_path):
    model = fit_tiny_surrogate()
    crystals = textbook_training_set()
    before = model.predict(crystals)[ENERGY]
    model.calibrate(crystals)
    fitted = model.config["calibration"][ENERGY]
    assert set(fitted) == {"scale", "floor", "n"} and fitted["n"] == len(crystals)
    after = model.predict(crystals)[ENERGY]
    np.testing.assert_array_equal(after[0], before[0])  # the mean is untouched
    expected = np.sqrt((fitted["scale"] * before[1]) ** 2 + fitted["floor"] ** 2)
    np.testing.assert_allclose(after[1], expected, rtol=1e-6)
    reloaded = load_surrogate(save_model(model, tmp_path / "ckpt", "# card\n"))
    np.testing.assert_allclose(reloaded.predict(crystals)[ENERGY][1], after[1], rtol=1e-6)


def test_an_element_beyond_the_embedding_gets_nan_not_a_crash():
    model = fit_tiny_surrogate()
    crystals = textbook_training_set()
    heavy = crystals[0].copy()
    heavy.atomic_numbers = heavy.atomic_numbers.copy()
    heavy.atomic_numbers[0] = 101  # Md: beyond the Z <= 100 embedding
    mean, std = model.predict([crystals[1], heavy, crystals[2]])[ENERGY]
    assert np.isnan(mean[1]) and np.isnan(std[1])
    reference = model.predict([crystals[1], crystals[2]])[ENERGY][0]
    np.testing.assert_allclose(mean[[0, 2]], reference, rtol=1e-6)  # the others are unaffected
