"""The diffusion generator family behind the :class:`Generator` interface: fitting with the shared
Trainer, CSP and from-scratch sampling, seeds, checkpoints, target refusals, config validation,
sampler overrides and chunked sampling, and the Trainer's time limit.

Every model here is tiny (hidden 16, one layer) and trained for a handful of steps on the
textbook crystals, so the whole module runs in seconds on one thread. Nothing is asserted about
sample quality; what is asserted is what the interface promises whatever the weights.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch

from conftest import TEXTBOOK_NAMES, assert_one_line_error, make_textbook, read_rows, run_main
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Target
from crystalgen.generators.diffusion import DiffusionGenerator
from crystalgen.models import TrainingRun, save_model

torch.set_num_threads(1)

TINY_MODEL = {"hidden": 16, "layers": 1, "fourier_frequencies": 2, "time_dim": 8}
TRAIN_STEPS = 3


def tiny_config(task: str = "csp", **overrides) -> dict:
    config = {
        "name": f"tiny-{task}",
        "task": task,
        "model": dict(TINY_MODEL),
        "training": {"steps": TRAIN_STEPS, "batch_size": 4, "log_every": 1},
        "sampling": {"steps": 3},
    }
    config.update(overrides)
    return config


def training_crystals():
    return [make_textbook(name) for name in TEXTBOOK_NAMES]  # 8, 8, 5 and 4 atoms


def composition_counts(composition) -> dict[str, int]:
    return {el.symbol: int(round(amount)) for el, amount in composition.items()}


def crystal_counts(crystal) -> dict[str, int]:
    from pymatgen.core.periodic_table import Element

    return {Element.from_Z(int(z)).symbol: n for z, n in Counter(crystal.atomic_numbers.tolist()).items()}


def assert_valid_cell(crystal) -> None:
    lattice = np.asarray(crystal.lattice)
    frac = np.asarray(crystal.frac_coords)
    assert lattice.shape == (3, 3) and np.isfinite(lattice).all()
    assert abs(np.linalg.det(lattice)) > 1e-6  # non-degenerate
    assert crystal.volume > 0 and np.isfinite(crystal.volume)
    assert np.isfinite(frac).all()
    assert (frac >= 0).all() and (frac < 1).all(), frac


def same_samples(a, b) -> bool:
    flat_a = [c for group in a for c in group]
    flat_b = [c for group in b for c in group]
    return len(flat_a) == len(flat_b) and all(
        np.array_equal(x.atomic_numbers, y.atomic_numbers)
        and np.array_equal(x.lattice, y.lattice)
        and np.array_equal(x.frac_coords, y.frac_coords)
        for x, y in zip(flat_a, flat_b)
    )


@pytest.fixture(scope="module")
def csp_fit(tmp_path_factory):
    """A tiny CSP model fitted for three steps, and its run folder."""
    torch.manual_seed(0)
    run_dir = tmp_path_factory.mktemp("csp-run")
    model = DiffusionGenerator(tiny_config("csp"))
    model.fit_crystals(training_crystals(), TrainingRun(run_dir))
    return model, run_dir


@pytest.fixture(scope="module")
def csp_model(csp_fit) -> DiffusionGenerator:
    return csp_fit[0]


@pytest.fixture(scope="module")
def gen_model(tmp_path_factory) -> DiffusionGenerator:
    torch.manual_seed(0)
    model = DiffusionGenerator(tiny_config("gen"))
    model.fit_crystals(training_crystals(), TrainingRun(tmp_path_factory.mktemp("gen-run")))
    return model


TARGETS = ("SrTiO3", "Na2Cl2")


# ------------------------------------------------------------------------------ fitting
def test_fit_crystals_trains_and_logs(csp_fit):
    model, run_dir = csp_fit
    assert model.is_fitted
    assert model.training_summary["steps"] == TRAIN_STEPS
    assert model.training_summary["finished"] is True
    assert model.training_summary["train_structures"] == len(TEXTBOOK_NAMES)
    assert model.training_summary["wall_s"] > 0
    assert model.max_atoms == 8  # set from the training data
    rows = read_rows(run_dir / "metrics.csv")
    assert [int(r["step"]) for r in rows] == [1, 2, 3]
    assert all(np.isfinite(float(r["loss"])) for r in rows)
    assert (run_dir / "train_state.safetensors").is_file()


def test_unfitted_model_refuses_to_sample():
    model = DiffusionGenerator(tiny_config("csp"))
    assert not model.is_fitted
    with pytest.raises(CrystalgenInputError, match="not fitted"):
        model.sample([Target.parse("SrTiO3")])


# ------------------------------------------------------------------------------ CSP sampling
def test_csp_samples_have_the_target_composition_and_valid_cells(csp_model):
    targets = [Target.parse(f) for f in TARGETS]
    samples = csp_model.sample(targets, n=3, seed=0)
    assert len(samples) == len(targets)
    for target, crystals in zip(targets, samples):
        assert len(crystals) == 3
        for crystal in crystals:
            assert crystal_counts(crystal) == composition_counts(target.composition)
            assert crystal.num_atoms == target.num_atoms
            assert_valid_cell(crystal)


def test_na2cl2_keeps_the_full_cell_not_the_reduced_formula(csp_model):
    (crystals,) = csp_model.sample([Target.parse("Na2Cl2")], n=1, seed=0)
    assert crystal_counts(crystals[0]) == {"Na": 2, "Cl": 2}


def test_same_seed_same_samples_other_seed_other_samples(csp_model):
    targets = [Target.parse(f) for f in TARGETS]
    first = csp_model.sample(targets, n=2, seed=7)
    again = csp_model.sample(targets, n=2, seed=7)
    other = csp_model.sample(targets, n=2, seed=8)
    assert same_samples(first, again)
    assert not same_samples(first, other)
    flat_first = [c for g in first for c in g]
    flat_other = [c for g in other for c in g]
    assert not any(np.allclose(a.frac_coords, b.frac_coords) for a, b in zip(flat_first, flat_other))


# ------------------------------------------------------------------------------ checkpoints
def test_save_and_load_round_trip(csp_model, tmp_path):
    from crystalgen.models import load_model, save_model

    folder = save_model(csp_model, tmp_path / "ckpt", card="# tiny\n")
    names = sorted(p.name for p in folder.iterdir())
    assert {"model.safetensors", "config.yaml", "card.md"} <= set(names), names
    assert not [n for n in names if n.endswith((".pt", ".pth", ".pkl", ".pickle", ".ckpt", ".bin"))], names
    raw = (folder / "model.safetensors").read_bytes()
    assert not raw.startswith(b"\x80") and not raw.startswith(b"PK")  # neither a pickle nor a torch zip
    parameters = sum(p.numel() for p in csp_model.model.parameters())
    assert len(raw) < 4 * parameters + 64_000  # float32 weights plus a header, nothing else

    loaded = load_model(folder)
    assert isinstance(loaded, DiffusionGenerator)
    assert loaded.is_fitted and loaded.task == "csp" and loaded.max_atoms == csp_model.max_atoms
    assert loaded.sampler == csp_model.sampler
    targets = [Target.parse(f) for f in TARGETS]
    assert same_samples(loaded.sample(targets, n=2, seed=3), csp_model.sample(targets, n=2, seed=3))


def test_gen_checkpoint_round_trip_keeps_the_atom_count_distribution(gen_model, tmp_path):
    from crystalgen.models import load_model, save_model

    loaded = load_model(save_model(gen_model, tmp_path / "gen", card="# gen\n"))
    assert loaded.task == "gen"
    assert torch.equal(loaded.model.num_atoms_distribution, gen_model.model.num_atoms_distribution)
    assert same_samples(loaded.sample([Target()], n=3, seed=1), gen_model.sample([Target()], n=3, seed=1))


# ------------------------------------------------------------------------------ generation from scratch
def test_gen_samples_training_sizes_and_real_elements(gen_model):
    training_sizes = {c.num_atoms for c in training_crystals()}
    samples = gen_model.sample([Target()] * 2, n=2, seed=0)
    assert [len(group) for group in samples] == [2, 2]
    for crystal in (c for group in samples for c in group):
        assert crystal.num_atoms in training_sizes
        z = np.asarray(crystal.atomic_numbers)
        assert ((z >= 1) & (z <= 100)).all(), z
        assert_valid_cell(crystal)


def test_gen_atom_counts_follow_the_training_distribution(gen_model):
    distribution = gen_model.model.num_atoms_distribution
    expected = torch.zeros(9)
    for n in (8, 8, 5, 4):
        expected[n] += 0.25
    assert torch.allclose(distribution, expected)


def test_sample_cli_without_targets_generates_from_scratch(gen_model, tmp_path, capsys):
    """``crystalgen sample -n N`` with no target draws N unconditional crystals, the same ones as
    ``benchmark gen`` (one target per sample, batch seeds from ``--seed``)."""
    checkpoint = save_model(gen_model, tmp_path / "gen", card="# gen\n")
    out = tmp_path / "samples"
    result = run_main(["sample", "--model", str(checkpoint), "-n", "5", "--seed", "2", "--out", str(out)], capsys)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "samples.csv")
    assert [r["sample_id"] for r in rows] == [f"t{i:04d}-000" for i in range(5)]
    assert {r["target"] for r in rows} == {"unconditional"}
    expected = [group[0] for group in gen_model.sample([Target()] * 5, n=1, seed=2)]
    for row, want in zip(rows, expected):
        got = Crystal.from_cif(row["cif"])
        assert got.formula == want.formula and int(row["num_atoms"]) == want.num_atoms
        np.testing.assert_allclose(got.volume, want.volume, rtol=1e-5)


def test_sample_cli_without_targets_needs_a_from_scratch_model(csp_model, tmp_path, capsys):
    checkpoint = save_model(csp_model, tmp_path / "csp", card="# csp\n")
    result = run_main(["sample", "--model", str(checkpoint), "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(result, "crystal structure prediction", "give a composition")
    assert not (tmp_path / "s" / "samples.csv").exists()
    empty = tmp_path / "empty.txt"
    empty.write_text("# only a comment\n")
    result = run_main(["sample", "--model", str(checkpoint), "--compositions-file", str(empty),
                       "--out", str(tmp_path / "s")], capsys)
    assert_one_line_error(result, "empty.txt", "no compositions")


# ------------------------------------------------------------------------------ refusals
def test_csp_model_needs_a_composition(csp_model):
    with pytest.raises(CrystalgenInputError, match="composition"):
        csp_model.check_target(Target())
    with pytest.raises(CrystalgenInputError):
        csp_model.sample([Target()])


def test_gen_model_refuses_a_composition(gen_model):
    with pytest.raises(CrystalgenInputError, match="no composition"):
        gen_model.check_target(Target.parse("SrTiO3"))


@pytest.mark.parametrize("which", ["csp", "gen"])
def test_space_group_targets_are_refused(which, csp_model, gen_model):
    model = csp_model if which == "csp" else gen_model
    composition = Target.parse("SrTiO3").composition if which == "csp" else None
    with pytest.raises(CrystalgenInputError, match="space group"):
        model.check_target(Target(composition, 221))


def test_targets_beyond_max_atoms_are_refused(csp_model):
    assert csp_model.max_atoms == 8
    csp_model.check_target(Target.parse("Si8"))  # at the limit: fine
    with pytest.raises(CrystalgenInputError, match="limit of 8"):
        csp_model.check_target(Target.parse("Si9"))
    with pytest.raises(CrystalgenInputError):
        csp_model.sample([Target.parse("SrTiO3"), Target.parse("Si9")])


def test_elements_beyond_the_type_embedding_are_refused(csp_model):
    # Fm (Z=100) is the last embedded type; No (Z=102) would index past the embedding table.
    csp_model.check_target(Target.parse("Fm1O2"))
    with pytest.raises(CrystalgenInputError, match="Z=100, not No"):
        csp_model.check_target(Target.parse("No1O2"))


# ------------------------------------------------------------------------------ config validation
@pytest.mark.parametrize("section", ["model", "training", "sampling"])
def test_unknown_settings_are_refused(section):
    config = tiny_config("csp")
    config[section] = {**config[section], "bogus": 1}
    with pytest.raises(CrystalgenInputError, match="bogus"):
        DiffusionGenerator(config)


def test_unknown_task_is_refused():
    with pytest.raises(CrystalgenInputError, match="foo"):
        DiffusionGenerator(tiny_config("foo"))


def test_default_task_is_csp():
    config = tiny_config()
    del config["task"]
    assert DiffusionGenerator(config).task == "csp"


# ------------------------------------------------------------------------------ sampler override and chunks
def test_with_sampler_changes_the_copy_only(csp_model):
    before = csp_model.sampler
    faster = csp_model.with_sampler(steps=5)
    assert faster.sampler.steps == 5
    assert faster.config["sampling"]["steps"] == 5
    assert faster.sampler.stochastic == before.stochastic
    assert csp_model.sampler == before and csp_model.sampler.steps == 3
    assert csp_model.config["sampling"]["steps"] == 3
    assert faster.model is csp_model.model  # weights shared, not copied
    (crystals,) = faster.sample([Target.parse("SrTiO3")], n=1, seed=0)
    assert crystal_counts(crystals[0]) == {"Sr": 1, "Ti": 1, "O": 3}


def test_with_sampler_steps_are_used(csp_model, monkeypatch):
    seen = []
    real = csp_model.model.sample

    def spy(*args, **kwargs):
        seen.append(args[2].steps)  # the SamplerConfig
        return real(*args, **kwargs)

    monkeypatch.setattr(csp_model.model, "sample", spy)
    csp_model.with_sampler(steps=2).sample([Target.parse("SrTiO3")], n=1)
    csp_model.sample([Target.parse("SrTiO3")], n=1)
    assert seen == [2, 3]


@pytest.mark.parametrize("limit", [3, 7, 10])
def test_chunked_sampling_keeps_count_composition_and_order(csp_model, monkeypatch, limit):
    import crystalgen.generators.diffusion as diffusion

    monkeypatch.setattr(diffusion, "SAMPLE_BATCH_ATOMS", limit)
    calls = []
    real = csp_model.model.sample

    def spy(num_atoms, *args, **kwargs):
        calls.append(int(num_atoms.sum()))
        return real(num_atoms, *args, **kwargs)

    monkeypatch.setattr(csp_model.model, "sample", spy)
    formulas = ["SrTiO3", "Na2Cl2", "Si", "SrTiO3", "Zn2O2"]
    targets = [Target.parse(f) for f in formulas]
    samples = csp_model.sample(targets, n=3, seed=0)
    assert [len(group) for group in samples] == [3] * len(formulas)
    for target, crystals in zip(targets, samples):
        for crystal in crystals:
            assert crystal_counts(crystal) == composition_counts(target.composition)
            assert_valid_cell(crystal)
    total = sum(t.num_atoms for t in targets) * 3
    assert sum(calls) == total
    assert len(calls) > 1  # the batch was split
    # every chunk stays within the limit unless it is a single crystal bigger than the limit
    assert all(atoms <= max(limit, 5) for atoms in calls), calls


# ------------------------------------------------------------------------------ trainer time limit
def _trainer(model, crystals, steps, out):
    from crystalgen.training import TrainConfig, Trainer

    return Trainer(model, crystals, TrainConfig(steps=steps, batch_size=4, log_every=1), out)


def _fresh_model(crystals):
    from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig
    from crystalgen.nn import DenoiserConfig

    torch.manual_seed(0)
    model = CrystalDiffusion(DiffusionConfig(denoiser=DenoiserConfig(**TINY_MODEL)))
    model.set_statistics(torch.stack([torch.tensor(c.lattice, dtype=torch.float32) for c in crystals]),
                         torch.tensor([c.num_atoms for c in crystals]))
    return model


def test_trainer_time_limit_stops_saves_and_resumes(tmp_path):
    from crystalgen.training.state import STATE_FILE, load_training_state

    crystals = training_crystals()
    first = _trainer(_fresh_model(crystals), crystals, 4, tmp_path)
    first.run(time_limit_s=0)
    assert first.step < 4 and not first.finished
    assert (tmp_path / STATE_FILE).is_file()
    _, metadata = load_training_state(tmp_path / STATE_FILE)
    assert metadata["step"] == first.step

    second = _trainer(_fresh_model(crystals), crystals, 4, tmp_path)
    second.run(resume=True)
    assert second.step == 4 and second.finished
    assert second.elapsed_s > 0
    _, metadata = load_training_state(tmp_path / STATE_FILE)
    assert metadata["step"] == 4
    assert metadata["elapsed_s"] == pytest.approx(second.elapsed_s)


def test_trainer_elapsed_time_is_summed_over_sessions(tmp_path):
    crystals = training_crystals()
    first = _trainer(_fresh_model(crystals), crystals, 2, tmp_path)
    first.run()
    assert first.finished and first.elapsed_s > 0

    # a longer run, resumed but out of time at once: no step, the earlier time kept
    stalled = _trainer(_fresh_model(crystals), crystals, 4, tmp_path)
    assert stalled.elapsed_s == 0.0
    stalled.run(resume=True, time_limit_s=0)
    assert stalled.step == 2 and not stalled.finished
    assert stalled.elapsed_s == pytest.approx(first.elapsed_s)

    resumed = _trainer(_fresh_model(crystals), crystals, 4, tmp_path)
    assert resumed.resume()
    assert resumed.elapsed_s == pytest.approx(first.elapsed_s) and resumed.elapsed_s > 0
    resumed.run(resume=True)
    assert resumed.step == 4 and resumed.finished
    assert resumed.elapsed_s > first.elapsed_s


def test_fit_with_time_limit_reports_unfinished(tmp_path):
    model = DiffusionGenerator(tiny_config("csp", training={"steps": 50, "batch_size": 4, "log_every": 1}))
    model.fit_crystals(training_crystals(), TrainingRun(tmp_path, time_limit_s=0))
    assert model.is_fitted
    assert model.training_summary["finished"] is False
    assert model.training_summary["steps"] < 50
    # resuming with no limit finishes
    again = DiffusionGenerator(tiny_config("csp", training={"steps": 2, "batch_size": 4, "log_every": 1}))
    again.fit_crystals(training_crystals(), TrainingRun(tmp_path, resume=True))
    assert again.training_summary["finished"] is True and again.training_summary["steps"] >= 2


# ------------------------------------------------------------------------------ registry
def test_diffusion_family_is_registered_and_listed():
    from crystalgen.models import FAMILIES, list_models, load_model

    assert FAMILIES["diffusion"].load() is DiffusionGenerator
    infos = list_models()
    families = [i for i in infos if i.name == "diffusion" and i.path is None]
    assert len(families) == 1 and families[0].family == "diffusion"
    bare = load_model("diffusion")
    assert isinstance(bare, DiffusionGenerator) and not bare.is_fitted


# ------------------------------------------------------------------------------ resume safety, log, EMA
def test_resume_refuses_changed_settings_and_a_different_model(tmp_path):
    from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig
    from crystalgen.nn import DenoiserConfig
    from crystalgen.training import TrainConfig, Trainer

    crystals = training_crystals()
    _trainer(_fresh_model(crystals), crystals, 2, tmp_path).run()
    other_batch = Trainer(_fresh_model(crystals), crystals, TrainConfig(steps=4, batch_size=2, log_every=1), tmp_path)
    with pytest.raises(CrystalgenInputError, match="batch_size: 4 -> 2"):
        other_batch.resume()
    wider = CrystalDiffusion(DiffusionConfig(denoiser=DenoiserConfig(**{**TINY_MODEL, "hidden": 24})))
    with pytest.raises(CrystalgenInputError, match="does not match"):
        _trainer(wider, crystals, 4, tmp_path).resume()


def test_log_keeps_one_row_per_step_across_an_interrupted_run(tmp_path):
    from crystalgen.training.trainer import LOG_FILE

    crystals = training_crystals()
    _trainer(_fresh_model(crystals), crystals, 2, tmp_path).run()
    with open(tmp_path / LOG_FILE, "a") as handle:  # rows logged after the last save, then a crash
        handle.write("3,9,9,9,9,9\n4,9,9,9,9,9\n")
    _trainer(_fresh_model(crystals), crystals, 4, tmp_path).run(resume=True)
    rows = read_rows(tmp_path / LOG_FILE)
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4]
    assert all(r["loss"] != "9" for r in rows)
    # a fresh run in the same folder starts a fresh log
    (tmp_path / "train_state.safetensors").unlink()
    _trainer(_fresh_model(crystals), crystals, 1, tmp_path).run()
    assert [int(r["step"]) for r in read_rows(tmp_path / LOG_FILE)] == [1]


def test_ema_warms_up_instead_of_keeping_the_initial_weights():
    from crystalgen.training.trainer import EMA

    model = torch.nn.Linear(2, 1)
    initial = model.weight.detach().clone()
    ema = EMA(model, decay=0.999)
    with torch.no_grad():
        model.weight.fill_(1.0)
    ema.update(model, step=0)  # decay (1+0)/(10+0) = 0.1: 90% of the new weights
    assert torch.allclose(ema.shadow["weight"], 0.1 * initial + 0.9)
    ema.update(model, step=10_000)  # warmed up: the configured 0.999
    assert torch.allclose(ema.shadow["weight"], 0.999 * (0.1 * initial + 0.9) + 0.001)


@pytest.mark.parametrize("config, message", [
    ({"training": {"steps": "abc"}}, "training.steps must be int"),
    ({"training": {"lr": "1e-3"}}, "write 0.001"),
    ({"training": {"batch_size": 0}}, "must be > 0"),
    ({"model": {"hidden": -1}}, "model.hidden must be > 0"),
    ({"training": 5}, "must be a mapping"),
    ({"sampling": {"steps": 0}}, "sampling.steps must be > 0"),
    ({"sampling": {"stochastic": 1}}, "true or false"),
    ({"model": {"num_types": 5}}, "unknown model settings: num_types"),
])
def test_bad_config_values_are_one_line_errors(config, message):
    with pytest.raises(CrystalgenInputError, match=message):
        DiffusionGenerator(config)
