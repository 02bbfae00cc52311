"""The extension points new families plug into: targets with constraints, declared capabilities,
sample options, the hook-based reverse sampler (projection, guidance) and a trainer that takes any
batch type."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from crystalgen.diffusion.processes import EuclideanVP, TorusVE
from crystalgen.diffusion.sampler import Guidance, Projection, ReverseSampler, SamplerConfig, Variable
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import PropertyTarget, SampleOptions, Target, load_model
from crystalgen.generators.guidance import volume_guidance
from crystalgen.models import CSP, GEN, Capabilities
from crystalgen.models.registry import FAMILIES, build_model, family_entry
from crystalgen.training import TrainConfig, Trainer


# ------------------------------------------------------------------------------ targets
@pytest.mark.parametrize("text, expected", [
    ("band_gap=1.5", PropertyTarget("band_gap", value=1.5)),
    ("band_gap=1:2.5", PropertyTarget("band_gap", range=(1.0, 2.5))),
    ("formation_energy_per_atom=min", PropertyTarget("formation_energy_per_atom", direction="minimise")),
    ("heat_ref=maximise", PropertyTarget("heat_ref", direction="maximise")),
])
def test_property_targets_parse(text, expected):
    assert PropertyTarget.parse(text) == expected
    assert PropertyTarget.parse(expected.label) == expected  # the label reads back


@pytest.mark.parametrize("text, message", [
    ("band_gap", "write NAME=VALUE"), ("band_gap=", "write NAME=VALUE"), ("=1", "needs a property name"),
    ("band_gap=abc", "is not a number"), ("band_gap=2:1", "low <= high"), ("band_gap=nan", "finite numbers"),
    ("band_gap=inf", "finite numbers"), ("band gap=1", "needs a property name"), ("band_gap=1:2:3", "is not a number"),
])
def test_bad_property_targets_are_one_line_errors(text, message):
    with pytest.raises(CrystalgenInputError, match=message) as error:
        PropertyTarget.parse(text)
    assert "\n" not in str(error.value)


def test_target_conditions_and_constraints():
    assert Target().conditions() == []
    assert Target.parse("SrTiO3").conditions() == ["composition"] and Target.parse("SrTiO3").num_atoms == 5
    target = Target.parse(None, "225", elements="Li-Mn-O", num_atoms="12", properties=("band_gap=1",))
    assert target.conditions() == ["spacegroup", "elements", "num_atoms", "properties"]
    assert target.elements == frozenset({"Li", "Mn", "O"}) and target.label == "12atoms|Li-Mn-O|sg225|band_gap=1"
    assert Target.parse("LiMnO2", elements="Li,Mn,O").conditions() == ["composition", "elements"]
    for bad in ({"formula": "NaCl", "elements": "Li-O"}, {"elements": "Li-Xx"}, {"elements": ""}, {"elements": "-"},
                {"num_atoms": "0"}, {"num_atoms": "many"}):
        with pytest.raises(CrystalgenInputError):
            Target.parse(**bad)
    with pytest.raises(CrystalgenInputError, match="has 5 atoms"):
        Target(Target.parse("SrTiO3").composition, num_atoms=4)


# ------------------------------------------------------------------------------ capabilities
def test_every_registered_family_declares_its_capabilities():
    for entry in FAMILIES.values():
        capabilities = entry.load().capabilities_for({})
        assert isinstance(capabilities, Capabilities)
        if entry.kind == "generator":
            assert capabilities.tasks, entry.name


def test_capabilities_refuse_what_a_model_cannot_serve():
    csp_only = Capabilities(tasks=frozenset({CSP}), conditions=frozenset({"composition"}))
    csp_only.check_target(Target.parse("NaCl"), "m")
    with pytest.raises(CrystalgenInputError, match="give a composition"):
        csp_only.check_target(Target(), "m")
    with pytest.raises(CrystalgenInputError, match="cannot condition on a space group"):
        csp_only.check_target(Target.parse("Na4Cl4", 225), "m")
    gen_only = Capabilities(tasks=frozenset({GEN}), conditions=frozenset({"elements"}))
    gen_only.check_target(Target.parse(elements="Li-O"), "m")
    with pytest.raises(CrystalgenInputError, match="takes no composition"):
        gen_only.check_target(Target.parse("NaCl"), "m")
    with pytest.raises(CrystalgenInputError, match="property targets"):
        gen_only.check_target(Target.parse(properties=("band_gap=1",)), "m")
    with pytest.raises(ValueError):
        Capabilities(tasks=frozenset({"dance"}))


def test_shipped_models_reject_targets_and_options_they_cannot_serve():
    perov = load_model("diffusion-perov_5")
    with pytest.raises(CrystalgenInputError, match="cannot condition on a space group"):
        perov.sample([Target.parse("SrTiO3", 221)])
    with pytest.raises(CrystalgenInputError, match="temperature"):
        perov.sample([Target.parse("SrTiO3")], options=SampleOptions(temperature=0.7))
    with pytest.raises(CrystalgenInputError, match="is a property model, not a generator"):
        load_model("surrogate-perov_5")
    assert not build_model({"family": "template"}).capabilities.options >= {"sampler_steps"}
    with pytest.raises(CrystalgenInputError, match="unknown model family"):
        family_entry("transformer")


@pytest.mark.parametrize("options", [{"sampler_steps": 0}, {"batch_size": -1}, {"temperature": 0.0},
                                     {"device": "tpu"}, {"top_k": 1.5}])
def test_bad_sample_options_are_refused(options):
    with pytest.raises(CrystalgenInputError):
        SampleOptions(**options)


def test_generation_within_an_element_set_and_atom_count():
    model = load_model("diffusion-mp_20-gen")
    crystals = model.sample([Target.parse(elements="Li-Mn-O", num_atoms=8)], n=3, seed=0,
                            options=SampleOptions(sampler_steps=10))[0]
    assert len(crystals) == 3
    for crystal in crystals:
        assert crystal.num_atoms == 8 and set(crystal.species) <= {"Li", "Mn", "O"}
    # the unconstrained draw of another target in the same call is what it would be alone
    alone = model.sample([Target()], n=2, seed=4, options=SampleOptions(sampler_steps=10))[0]
    mixed = model.sample([Target(), Target.parse(elements="Si-O")], n=2, seed=4, options=SampleOptions(sampler_steps=10))
    assert [c.num_atoms for c in mixed[0]] == [c.num_atoms for c in alone]


# ------------------------------------------------------------------------------ sampler hooks
def _gaussian_variable(batch: int, dims: int = 2) -> Variable:
    return Variable("x", EuclideanVP(), (batch, dims))


def _exact_gaussian_predictor(process: EuclideanVP):
    """Data ~ N(0, I): then x_t ~ N(0, I) at every t and E[eps | x_t] = sqrt(1 - ab) x_t exactly."""
    def predict(state, t):
        return {"x": (1 - process.alpha_bar(t)).sqrt().unsqueeze(1) * state["x"]}
    return predict


def test_exact_score_samples_the_data_distribution():
    variable = _gaussian_variable(4000)
    state = ReverseSampler([variable], _exact_gaussian_predictor(variable.process), SamplerConfig(steps=200)).run(
        4000, torch.Generator().manual_seed(0))
    x = state["x"]
    assert abs(float(x.mean())) < 0.05 and abs(float(x.std()) - 1.0) < 0.05


def test_guidance_pulls_to_a_known_answer():
    """Guidance toward c on the denoised estimate moves the samples to c, more so with more strength."""
    variable, target = _gaussian_variable(500), 2.0
    predictor = _exact_gaussian_predictor(variable.process)

    def objective(denoised):
        return (denoised["x"] - target).square().sum(1)

    means = []
    for strength in (0.0, 1.0, 20.0):
        sampler = ReverseSampler([variable], predictor, SamplerConfig(steps=100), guidance=Guidance(objective, strength))
        means.append(float(sampler.run(500, torch.Generator().manual_seed(1))["x"].mean()))
    assert abs(means[0]) < 0.1 < means[1] < means[2] and abs(means[2] - target) < 0.15


class _FreezeFirstAxis(Projection):
    """Keeps the first coordinate of every row at 0.25: a stand-in for a Wyckoff constraint."""

    def state(self, name, x):
        return torch.cat([torch.full_like(x[:, :1], 0.25), x[:, 1:]], dim=1) if name == "frac" else x

    def vector(self, name, v):
        return torch.cat([torch.zeros_like(v[:, :1]), v[:, 1:]], dim=1) if name == "frac" else v


def test_projection_confines_states_and_updates():
    torus = TorusVE()
    seen = []

    def predict(state, t):
        seen.append(state["frac"][:, 0].clone())
        return {"frac": torch.randn(state["frac"].shape, generator=torch.Generator().manual_seed(len(seen)))}

    sampler = ReverseSampler([Variable("frac", torus, (6, 3), corrector=True)], predict,
                             SamplerConfig(steps=5, corrector_steps=1), projection=_FreezeFirstAxis())
    out = sampler.run(6, torch.Generator().manual_seed(0))["frac"]
    assert torch.all(out[:, 0] == 0.25) and all(torch.all(s == 0.25) for s in seen)
    assert out[:, 1:].std() > 0.05  # the free coordinates did move


def test_volume_guidance_on_a_shipped_model():
    """The toy objective with a known answer, through the real denoiser: pull SrTiO3 cells to 30 Å^3/atom."""
    model = load_model("diffusion-perov_5")
    targets = [Target.parse("SrTiO3")]
    options = SampleOptions(sampler_steps=30)
    free = model.sample(targets, n=8, seed=0, options=options)[0]
    guided = model.sample(targets, n=8, seed=0, options=SampleOptions(sampler_steps=30,
                                                                      guidance=volume_guidance(30.0, strength=1000.0)))[0]
    free_error = np.mean([abs(c.volume / c.num_atoms - 30.0) for c in free])
    guided_error = np.mean([abs(c.volume / c.num_atoms - 30.0) for c in guided])
    assert free_error > 10 and guided_error < 1.5, (free_error, guided_error)  # unguided: ~12-17 Å^3/atom
    assert "guidance: cell volume" in model.describe_sampling(SampleOptions(guidance=volume_guidance(30.0)))


# ------------------------------------------------------------------------------ trainer
class _TokenModel(nn.Module):
    """A next-token model on integer sequences: a batch type the crystal collate knows nothing of."""

    def __init__(self) -> None:
        super().__init__()
        self.embed = nn.Embedding(8, 16)
        self.head = nn.Linear(16, 8)

    def forward(self, batch: "_Tokens", generator=None) -> dict[str, torch.Tensor]:
        logits = self.head(self.embed(batch.tokens[:, :-1]))
        return {"loss": nn.functional.cross_entropy(logits.reshape(-1, 8), batch.tokens[:, 1:].reshape(-1))}


class _Tokens:
    def __init__(self, tokens: torch.Tensor) -> None:
        self.tokens = tokens

    def to(self, device) -> "_Tokens":
        return _Tokens(self.tokens.to(device))


def _collate_tokens(items: list[list[int]]) -> _Tokens:
    return _Tokens(torch.tensor(items))


def test_trainer_takes_a_model_supplied_collate(tmp_path):
    sequences = [[i % 8, (i + 1) % 8, (i + 2) % 8, (i + 3) % 8] for i in range(64)]  # always "next = +1"
    torch.manual_seed(0)
    model = _TokenModel()
    trainer = Trainer(model, sequences, TrainConfig(steps=150, batch_size=16, lr=0.05, log_every=50), tmp_path,
                      collate_fn=_collate_tokens)
    logged = trainer.run()
    assert logged["loss"] < 0.1 * math.log(8), logged


def test_device_choice():
    from crystalgen.devices import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    if not torch.cuda.is_available():
        with pytest.raises(CrystalgenInputError, match="no CUDA device"):
            resolve_device("cuda")


def test_capabilities_know_every_sample_option():
    from dataclasses import fields

    from crystalgen.models.capabilities import OPTIONS

    assert OPTIONS == tuple(f.name for f in fields(SampleOptions))


def test_sample_cli_constrained_generation_writes_per_sample(tmp_path):
    import json

    from conftest import cli_in_process, read_rows

    out = tmp_path / "limno"
    args = ["sample", "--model", "diffusion-mp_20-gen", "--elements", "Li-O", "--num-atoms", "4", "-n", "3",
            "--sampler-steps", "5", "--batch-size", "1", "--out", str(out)]
    result = cli_in_process(args)
    assert result.returncode == 0, result.stderr
    rows = read_rows(out / "samples.csv")
    assert len(rows) == 3 and {r["target"] for r in rows} == {"4atoms|Li-O"}
    assert all(r["num_atoms"] == "4" and set(r["formula"]) <= set("LiO0123456789") for r in rows)
    assert json.loads((out / "samples.progress.json").read_text())["done"] == 3  # one committed batch per sample


def test_sample_cli_refuses_a_missing_gpu_before_any_work(tmp_path, synthetic_template_ckpt, synthetic_perov_dir):
    from conftest import assert_one_line_error, cli_in_process

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible: --device cuda is valid here")
    out = tmp_path / "gpu"
    result = cli_in_process(["sample", "--model", "diffusion-perov_5", "-c", "SrTiO3", "--device", "cuda",
                             "--out", str(out)])
    assert_one_line_error(result, "no CUDA device")
    assert not out.exists()
    template = cli_in_process(["sample", "--model", str(synthetic_template_ckpt), "--data-dir", str(synthetic_perov_dir),
                               "-c", "SrTiO3", "--sampler-steps", "5", "--out", str(out)])
    assert_one_line_error(template, "sampler_steps")


def test_required_conditions_are_enforced_and_supplied_by_the_csp_benchmark(srtio3):
    from crystalgen.benchmarks.csp import csp_targets

    needs_group = Capabilities(tasks=frozenset({CSP}), conditions=frozenset({"composition", "spacegroup"}),
                               requires=frozenset({"spacegroup"}))
    with pytest.raises(CrystalgenInputError, match="needs a space group for every target"):
        needs_group.check_target(Target.parse("SrTiO3"), "wyckoff-like")
    (target,) = csp_targets([srtio3], needs_group)
    assert target.spacegroup == 221 and target.composition == srtio3.composition
    needs_group.check_target(target, "wyckoff-like")
    (plain,) = csp_targets([srtio3], build_model({"family": "template"}).capabilities)
    assert plain.spacegroup is None
    with pytest.raises(ValueError, match="must be accepted"):
        Capabilities(tasks=frozenset({CSP}), requires=frozenset({"spacegroup"}))


def test_batch_size_is_the_sampling_loops_for_every_model():
    from crystalgen.models.capabilities import LOOP_OPTIONS

    template = build_model({"family": "template"}).capabilities
    assert "batch_size" in LOOP_OPTIONS and "batch_size" not in template.options
    template.check_options(SampleOptions(batch_size=4), "template")  # no error
