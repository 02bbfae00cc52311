"""The Wyckoff family (``crystalgen.generators.wyckoff``): one code path on the shared sampler for CSP
and generation, every sample in its template's space group, each template source named in the
output, a learned template ranker, refinement from an intermediate noise level, and the
space-group compliance metric that checks it all."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest import make_random, make_textbook
from crystalgen.diffusion.processes import TorusVE
from crystalgen.diffusion.sampler import ReverseSampler, SamplerConfig, Variable
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Target
from crystalgen.generators.options import SampleOptions
from crystalgen.generators.template import SPACEGROUP_PROPERTY
from crystalgen.metrics.symmetry import invariant_under, spacegroup_compliance
from crystalgen.models.base import TrainingRun
from crystalgen.representations.wyckoff_batch import WyckoffTensors, collate_wyckoff

TINY_MODEL = {"hidden": 32, "layers": 1, "fourier_frequencies": 4, "time_dim": 16}
#: (space group, species, conventional-cell counts): cubic and tetragonal perovskites, rock salt, rutile.
TRAINING_CASES = ((221, ("Sr", "Ti", "O"), (1, 1, 3)), (221, ("Ba", "Zr", "O"), (1, 1, 3)),
                  (99, ("K", "Nb", "O"), (1, 1, 3)), (99, ("Pb", "Ti", "O"), (1, 1, 3)),
                  (225, ("Na", "Cl"), (4, 4)), (225, ("Mg", "O"), (4, 4)), (136, ("Ti", "O"), (2, 4)))


def _training_set() -> list:
    crystals = []
    for seed in range(3):
        for index, (sg, species, counts) in enumerate(TRAINING_CASES):
            crystal = make_random(sg, species, counts, seed)
            crystal.id = f"train-{seed}-{index}"
            crystals.append(crystal)
    return crystals


def _generator(task: str):
    from crystalgen.generators.wyckoff import WyckoffGenerator

    torch.manual_seed(0)
    model = WyckoffGenerator({"name": f"wyckoff-test-{task}", "task": task, "model": TINY_MODEL,
                              "training": {"steps": 4, "batch_size": 8, "log_every": 2},
                              "sampling": {"steps": 6}, "templates": {"refine_time": 0.2, "refine_steps": 4}})
    model.fit_crystals(_training_set(), TrainingRun())
    return model


@pytest.fixture(scope="module")
def csp_model():
    return _generator("csp")


@pytest.fixture(scope="module")
def gen_model():
    return _generator("gen")


def _compliant(crystals) -> bool:
    return all(invariant_under(c, int(c.properties[SPACEGROUP_PROPERTY]), 1e-4) for c in crystals)


# ---------------------------------------------------------------------------------- training
def test_training_losses_are_taken_on_the_orbit_manifold():
    from crystalgen.generators.diffusion_model import DiffusionConfig
    from crystalgen.generators.wyckoff import WyckoffDiffusion
    from crystalgen.nn.denoiser import DenoiserConfig

    batch = collate_wyckoff([WyckoffTensors().encode(c) for c in _training_set()[:6]])
    model = WyckoffDiffusion(DiffusionConfig(denoiser=DenoiserConfig(**TINY_MODEL)))
    model.set_statistics(batch.lattices.float(), batch.num_atoms)
    losses = model(batch, torch.Generator().manual_seed(0))
    assert set(losses) == {"frac", "lattice", "loss"} and torch.isfinite(losses["loss"])
    losses["loss"].backward()
    assert model.lattice_head.weight.grad.abs().sum() > 0
    # the projected targets are what the sampler can follow: a zero network is penalised by them only
    with torch.no_grad():
        for p in model.parameters():
            p.zero_()
        zero = model(batch, torch.Generator().manual_seed(0))
    assert zero["frac"] > 0 and zero["lattice"] > 0


def test_a_reverse_sampler_started_from_a_structure_refines_it():
    """With start_time < 1 the sampler starts from the given state noised to that time, not the prior."""
    x0 = torch.full((50, 3), 0.25, dtype=torch.float64)
    torus = TorusVE(0.005, 0.5)

    def exact_score(state, t):  # the score of a point mass at x0, smoothed by the current noise
        sigma = torus.sigma(t)[0]
        return {"frac": -(((state["frac"] - x0 + 0.5) % 1.0) - 0.5) / sigma ** 2}

    variables = [Variable("frac", torus, (50, 3), dtype=torch.float64)]
    sampler = ReverseSampler(variables, exact_score, SamplerConfig(steps=20))
    refined = sampler.run(1, torch.Generator().manual_seed(0), start={"frac": x0}, start_time=0.1)["frac"]
    assert float((((refined - x0 + 0.5) % 1.0) - 0.5).abs().max()) < 0.05
    with pytest.raises(ValueError, match="start_time"):
        sampler.run(1, start={"frac": x0}, start_time=0.0)


# ---------------------------------------------------------------------------------- CSP
def test_retrieved_templates_are_refined_in_their_space_group(csp_model):
    targets = [Target.parse("SrTiO3"), Target.parse("Ca4O4"), Target.parse("Sn2O4")]
    samples = csp_model.sample(targets, n=2, seed=0)
    for target, crystals in zip(targets, samples):
        assert len(crystals) == 2
        for crystal in crystals:
            assert crystal.id.startswith("retrieval:train-")
            assert crystal.composition.reduced_formula == target.composition.reduced_formula
    assert _compliant([c for group in samples for c in group])


def test_a_user_space_group_is_kept_even_without_a_training_template(csp_model):
    """Space group 123 (P4/mmm) has no training template: pyxtal places the atoms, the model generates."""
    samples = csp_model.sample([Target.parse("SrTiO3", spacegroup=123), Target.parse("SrTiO3", spacegroup=221)],
                               n=2, seed=1)
    new, known = samples
    assert new and all(c.id.startswith("spacegroup:123-") for c in new)
    assert known and all(c.id.startswith("retrieval:") for c in known)
    for crystals, group in ((new, 123), (known, 221)):
        assert all(int(c.properties[SPACEGROUP_PROPERTY]) == group for c in crystals)
        assert _compliant(crystals)


def test_the_random_placement_control_uses_the_retrieved_group_and_letters(csp_model):
    retrieved = csp_model.sample([Target.parse("Ti2O4")], n=1, seed=0)[0]
    control = csp_model.sample([Target.parse("Ti2O4")], n=1, seed=0,
                               options=SampleOptions(template_source="random-placement"))[0]
    assert control[0].id == retrieved[0].id.replace("retrieval:", "random-placement:")
    assert invariant_under(control[0], int(retrieved[0].properties[SPACEGROUP_PROPERTY]), 0.01)


def test_template_sources_are_checked_before_any_work(csp_model, gen_model):
    with pytest.raises(CrystalgenInputError, match="unknown template source"):
        csp_model.check_options(SampleOptions(template_source="oracle"))
    with pytest.raises(CrystalgenInputError, match="takes template sources"):
        csp_model.check_options(SampleOptions(template_source="scratch"))
    with pytest.raises(CrystalgenInputError, match="takes template sources"):
        gen_model.check_options(SampleOptions(template_source="retrieval"))


def test_the_ranker_reorders_only_the_candidates_it_scores(csp_model):
    from crystalgen.generators.template_ranker import RERANK_POOL, rerank

    sources = csp_model.sources
    target = Target.parse("SrTiO3")
    rows, mappings = csp_model.retrieval.rank_templates(target, mappings_per_template=2)
    numbers = np.array([38, 22, 8, 8, 8])
    reranked, remapped = rerank(sources.ranker, csp_model.retrieval, sources.structure_types, numbers, rows, mappings,
                                sources.log_type_counts)
    pool = min(len(rows), RERANK_POOL)
    assert sorted(reranked[:pool].tolist()) == sorted(rows[:pool].tolist())
    # each candidate keeps its own element mapping
    assert sorted((r, m.tobytes()) for r, m in zip(reranked.tolist(), remapped)) == \
        sorted((r, m.tobytes()) for r, m in zip(rows.tolist(), mappings))
    summary = csp_model.ranker_summary
    assert summary["pairs"] > 0 and 0 <= summary["ranker_top1_type_accuracy"] <= 1


def test_template_settings_are_validated():
    from crystalgen.generators.wyckoff import TemplateSettings

    for bad in ({"ranking": "alphabetical"}, {"refine_time": 0.0}, {"refine_steps": 0}):
        with pytest.raises(CrystalgenInputError, match="templates"):
            TemplateSettings(**bad)


def test_the_known_polymorph_setting_reaches_the_template_sources():
    from crystalgen.generators.wyckoff import WyckoffGenerator

    config = {"name": "wyckoff-settings", "task": "csp", "model": TINY_MODEL}
    assert WyckoffGenerator(config).sources.avoid_known_polymorphs
    off = WyckoffGenerator({**config, "templates": {"avoid_known_polymorphs": False}})
    assert not off.sources.avoid_known_polymorphs
    with pytest.raises(CrystalgenInputError, match="avoid_known_polymorphs"):
        WyckoffGenerator({**config, "templates": {"avoid_known_polymorphs": "sometimes"}})


# ---------------------------------------------------------------------------------- generation
def test_generation_draws_templates_and_one_type_per_orbit(gen_model):
    samples = gen_model.sample([Target()], n=6, seed=0)[0]
    assert len(samples) == 6 and all(c.id.startswith("scratch:train-") for c in samples)
    assert _compliant(samples)
    restricted = gen_model.sample([Target(spacegroup=225)], n=3, seed=0)[0]
    assert restricted and all(int(c.properties[SPACEGROUP_PROPERTY]) == 225 for c in restricted)


def test_generation_within_an_element_set(gen_model):
    samples = gen_model.sample([Target(elements=frozenset({"Mg", "O"}))], n=4, seed=2)[0]
    assert samples and all(set(c.composition.chemical_system.split("-")) <= {"Mg", "O"} for c in samples)


# ---------------------------------------------------------------------------------- compliance metric
def test_spacegroup_compliance_tells_exact_from_supergroup_from_violated():
    rock_salt = make_textbook("NaCl")  # Fm-3m, 225
    broken = rock_salt.copy()
    broken.frac_coords[0] += 0.08
    result = spacegroup_compliance([rock_salt, rock_salt, broken], [225, 221, 225])
    # 221 (Pm-3m) is a subgroup of 225 in the same conventional cell; the displaced atom breaks 225
    assert (result.exact, result.supergroup, result.violated) == (1, 1, 1)
    assert result.compliance == pytest.approx(2 / 3) and result.exact_share == pytest.approx(1 / 3)
