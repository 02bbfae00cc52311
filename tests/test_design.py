"""Design objectives, the denoised estimate of discrete variables, refinement from seeds, and
optimisation from seeds with surrogate guidance (on the shipped perov_5 checkpoints)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalgen.design.objectives import DENSITY, Objective, PropertyEvaluator, hits, property_guidance, total_penalty
from crystalgen.design.strategies import OptimiseSettings, optimise_from_seeds
from crystalgen.diffusion.processes import AbsorbingDiscrete
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.options import SampleOptions
from crystalgen.metrics.validity import evaluate_validity


# ------------------------------------------------------------------ objectives
@pytest.mark.parametrize("spec, goal", [("min", "minimise"), ("max", "maximise"), ("1.5:2.5", "range"), (2.0, "value"),
                                        ({"at_most": 0.1}, "range"), ({"minimise": True, "hit_below": 0.4}, "minimise")])
def test_objective_parse(spec, goal):
    assert Objective.parse("band_gap", spec).goal == goal


@pytest.mark.parametrize("spec, message", [
    ({"range": [2, 1]}, "low <= high"), ({"value": 1, "range": [0, 1]}, "exactly one"), ({"minimise": True, "cap": 1}, "cap"),
    ({"maximise": True, "hit_below": 1}, "hit_below goes with minimise"), ("often", "not a number"),
    ({"value": 1, "tolerance": -1}, "tolerance"), ({"at_least": float("nan")}, "finite"),
])
def test_objective_errors_name_the_problem(spec, message):
    with pytest.raises(CrystalgenInputError, match=message):
        Objective.parse("band_gap", spec)


def test_penalties_and_hits_agree_on_numpy_and_torch():
    x = np.array([0.5, 1.5, 2.0, 3.0, np.nan])
    window = Objective.parse("band_gap", "1.5:2.5")
    assert window.hit(x).tolist() == [False, True, True, False, False]
    assert window.penalty(x[:4], 0.5).tolist() == [4.0, 0.0, 0.0, 1.0]
    assert np.allclose(window.penalty(torch.tensor(x[:4]), 0.5).numpy(), window.penalty(x[:4], 0.5))
    below = Objective("e", "minimise", hit_below=2.0)
    assert below.hit(x).tolist() == [True, True, True, False, False]
    assert below.penalty(x[:2], 2.0).tolist() == [0.25, 0.75]
    values = {"band_gap": (x, np.full(5, 0.1)), "e": (x, np.zeros(5))}
    assert hits([window, below], values).tolist() == [False, True, True, False, False]
    # the uncertainty term makes the score pessimistic
    scales = {"band_gap": 0.5, "e": 2.0}
    assert np.all(total_penalty([window], values, scales, 1.0)[:4] > total_penalty([window], values, scales, 0.0)[:4])


# ------------------------------------------------------------------ discrete denoised estimate
def test_absorbing_denoise_fills_only_masked_tokens():
    process = AbsorbingDiscrete(0)
    xt = torch.tensor([0, 8, 0])
    logits = torch.tensor([[9.0, 1.0, 5.0], [9.0, 1.0, 2.0], [9.0, 3.0, 2.0]]).repeat_interleave(1, 0)
    logits = torch.nn.functional.pad(logits, (0, 6))  # 9 classes, the mask most likely everywhere
    assert process.denoise(xt, logits, torch.ones(3)).tolist() == [2, 8, 1]


# ------------------------------------------------------------------ refinement and optimisation
@pytest.fixture(scope="module")
def perov_models():
    from crystalgen.models.registry import load_model
    from crystalgen.surrogate.predictor import load_surrogate

    return load_model("diffusion-perov_5"), load_model("diffusion-perov_5-gen"), load_surrogate("surrogate-perov_5")


@pytest.fixture
def perovskites(srtio3):
    from pymatgen.core import Lattice, Structure

    from crystalgen.crystal import Crystal

    cells = [srtio3]
    for a, b in (("Ba", "Ti"), ("Ca", "Zr"), ("K", "Nb")):
        structure = Structure(Lattice.cubic(4.0), [a, b, "O", "O", "O"],
                              [[0, 0, 0], [0.5, 0.5, 0.5], [0.5, 0.5, 0], [0.5, 0, 0.5], [0, 0.5, 0.5]])
        cells.append(Crystal.from_structure(structure))
    return cells


def test_refine_keeps_composition_for_csp_and_redraws_types_for_gen(perov_models, perovskites):
    csp, gen, _ = perov_models
    refined = csp.refine(perovskites, 0.5, seed=0)
    assert [sorted(c.atomic_numbers) for c in refined] == [sorted(c.atomic_numbers) for c in perovskites]
    early = gen.refine(perovskites * 4, 0.05, seed=0)
    late = gen.refine(perovskites * 4, 1.0, seed=0)
    same = lambda cells: np.mean([sorted(a.atomic_numbers) == sorted(b.atomic_numbers)
                                  for a, b in zip(cells, perovskites * 4)])
    assert same(early) > same(late)  # masking a share t of the types: a late start re-draws most of them
    assert csp.refine(perovskites, 0.3, seed=3)[0].frac_coords.tolist() == \
        csp.refine(perovskites, 0.3, seed=3)[0].frac_coords.tolist()


def test_refine_rejects_bad_start_time(perov_models, perovskites):
    with pytest.raises(CrystalgenInputError, match="start time"):
        perov_models[0].refine(perovskites, 0.0)


def test_density_guidance_moves_refined_cells(perov_models, perovskites):
    csp, _, surrogate = perov_models
    evaluator = PropertyEvaluator(surrogate)
    seeds = perovskites * 4
    for goal in ("maximise", "minimise"):
        guidance = property_guidance(evaluator, [Objective(DENSITY, goal)], strength=2.0)
        plain = evaluator.evaluate(csp.refine(seeds, 0.6, seed=1))[DENSITY][0]
        guided = evaluator.evaluate(csp.refine(seeds, 0.6, seed=1, options=SampleOptions(guidance=guidance)))[DENSITY][0]
        assert (guided.mean() > plain.mean()) == (goal == "maximise")
    with pytest.raises(CrystalgenInputError, match="band_gap"):
        property_guidance(evaluator, [Objective("band_gap", "minimise")], 1.0)


def test_optimise_from_seeds_only_improves_by_the_guiding_score(perov_models, perovskites):
    _, gen, surrogate = perov_models
    evaluator = PropertyEvaluator(surrogate)
    objectives = [Objective("heat_ref", "minimise")]
    settings = OptimiseSettings(strength=0.5, start_time=0.4, iterations=2, proposals=2)
    result = optimise_from_seeds(gen, perovskites, evaluator, objectives, settings, seed=0)
    assert len(result.best) == len(perovskites) and len(result.history) == 2
    assert all(evaluate_validity(result.best).valid | ~np.isfinite(result.best_penalty))
    start = total_penalty(objectives, evaluator.evaluate(perovskites), evaluator.scales(), settings.uncertainty_weight)
    assert np.all(result.best_penalty <= start + 1e-9)
    assert [c.id for c in result.best] == [c.id for c in perovskites]
    with pytest.raises(CrystalgenInputError, match="refine"):
        optimise_from_seeds(object(), perovskites, evaluator, objectives, settings)


# ------------------------------------------------------------------ latent-space optimisation (voxel family)
def test_latent_optimisation_follows_the_head_and_only_improves(perov_models, perovskites):
    from crystalgen.design.strategies import LatentSettings, optimise_in_latent_space
    from crystalgen.models.registry import load_model

    voxel, surrogate = load_model("voxel-perov_5"), perov_models[2]
    evaluator = PropertyEvaluator(surrogate)
    settings = LatentSettings(steps=30, lr=0.05, decodes=3)
    paths = {}
    for goal in ("minimise", "maximise"):
        objectives = [Objective("heat_ref", goal)]
        result = optimise_in_latent_space(voxel, perovskites, evaluator, objectives, settings)
        assert [h["step"] for h in result.history] == [10, 20, 30]
        start = total_penalty(objectives, evaluator.evaluate(perovskites), evaluator.scales(), settings.uncertainty_weight)
        assert np.all(result.best_penalty <= start + 1e-9)
        assert [c.id for c in result.best] == [c.id for c in perovskites]
        paths[goal] = [h["mean_head_prediction"] for h in result.history]
    start_head = float(voxel.predict_property(voxel.encode(perovskites)).mean())
    assert paths["minimise"][-1] < start_head < paths["maximise"][-1]
    assert paths["minimise"] == sorted(paths["minimise"], reverse=True)


def test_latent_optimisation_refuses_models_and_objectives_it_cannot_steer(perov_models, perovskites):
    from crystalgen.design.strategies import LatentSettings, optimise_in_latent_space
    from crystalgen.models.registry import load_model

    evaluator = PropertyEvaluator(perov_models[2])
    with pytest.raises(CrystalgenInputError, match="no property head on a latent space"):
        optimise_in_latent_space(perov_models[1], perovskites, evaluator, [Objective("heat_ref", "minimise")])
    with pytest.raises(CrystalgenInputError, match="predicts heat_ref only, not density"):
        optimise_in_latent_space(load_model("voxel-perov_5"), perovskites, evaluator, [Objective(DENSITY, "minimise")])
    with pytest.raises(CrystalgenInputError, match="decodes"):
        LatentSettings(steps=2, decodes=3)
