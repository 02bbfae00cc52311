"""The batched Wyckoff constraints (``crystalgen.representations.wyckoff_batch``): orbits rebuilt from
their anchors, displacements and noise confined to each orbit's free parameters, lattices kept in
their family's subspace, and a reverse sampler that keeps every sample in its space group. The
crystal -> batch -> crystal round trip is in tests/test_representations.py (registered as
``wyckoff-batch``)."""

from __future__ import annotations

import pytest
import torch

from conftest import RANDOM_CASES, make_random, make_textbook
from crystalgen.crystal import crystals_from_arrays
from crystalgen.diffusion.processes import EuclideanVP, TorusVE
from crystalgen.diffusion.sampler import ReverseSampler, SamplerConfig, Variable
from crystalgen.metrics.symmetry import invariant_under
from crystalgen.representations.cell import space_group_number
from crystalgen.representations.lattice import log_polar_to_lattice
from crystalgen.representations.wyckoff_batch import (
    FAMILIES,
    WyckoffProjection,
    WyckoffTensors,
    collate_wyckoff,
    crystal_family,
    lattice_subspace,
)

#: Free lattice parameters per crystal family (the issue's table).
FREE_LATTICE_PARAMETERS = {"cubic": 1, "tetragonal": 2, "hexagonal": 2, "orthorhombic": 3, "monoclinic": 4,
                           "triclinic": 6}


@pytest.fixture(scope="module")
def batch():
    crystals = [make_textbook(n) for n in ("NaCl", "ZnO")] + [make_random(*case) for case in RANDOM_CASES]
    encoder = WyckoffTensors()
    return collate_wyckoff([encoder.encode(c) for c in crystals]), [space_group_number(c) for c in crystals]


def test_lattice_subspaces_have_the_families_free_parameters():
    for family, free in FREE_LATTICE_PARAMETERS.items():
        projector, offset = lattice_subspace(family)
        assert int(torch.linalg.matrix_rank(projector)) == free, family
        assert torch.allclose(projector @ projector, projector)  # a projector
        assert (offset != 0).any() == (family == "hexagonal")  # gamma = 120 degrees is the only fixed value
    assert [crystal_family(n) for n in (1, 3, 16, 75, 143, 168, 195)] == [
        "triclinic", "monoclinic", "orthorhombic", "tetragonal", "hexagonal", "hexagonal", "cubic"]
    assert set(FREE_LATTICE_PARAMETERS) == set(FAMILIES)


def test_rebuilt_orbits_keep_the_space_group(batch):
    wyckoff, groups = batch
    jittered = wyckoff.frac_coords + 0.03 * torch.randn(wyckoff.frac_coords.shape, generator=torch.Generator().manual_seed(0),
                                                         dtype=torch.float64)
    rebuilt = wyckoff.rebuild(jittered)
    assert torch.allclose(wyckoff.rebuild(rebuilt), rebuilt, atol=1e-9)  # idempotent
    crystals = wyckoff.to_crystals(frac=jittered)
    assert [space_group_number(c) for c in crystals] == groups


def test_displacements_and_noise_are_tangent_to_the_orbits(batch):
    wyckoff, _ = batch
    generator = torch.Generator().manual_seed(1)
    raw = torch.randn(wyckoff.frac_coords.shape, generator=generator, dtype=torch.float64)
    for projected in (wyckoff.project_displacement(raw), wyckoff.project_noise(raw)):
        assert torch.allclose(wyckoff.project_displacement(projected), projected, atol=1e-9)
        step = 1e-3 * projected
        moved = wyckoff.frac_coords + step
        drift = (wyckoff.rebuild(moved) - moved + 0.5) % 1.0 - 0.5
        assert drift.abs().max() < 1e-9  # a projected step stays on the Wyckoff manifold
    # the anchor's draw, not an average over the orbit: the free parameters keep unit variance
    draws = torch.randn((4000, *wyckoff.frac_coords.shape), generator=generator, dtype=torch.float64)
    free_general = [i for i in range(len(wyckoff.anchor)) if wyckoff.anchor[i] == i
                    and torch.allclose(wyckoff.rotation[i], torch.eye(3, dtype=torch.float64))]
    assert free_general, "the fixture should hold a general position"
    noise = torch.stack([wyckoff.project_noise(d) for d in draws[:, :, :]])
    assert abs(float(noise[:, free_general].std()) - 1.0) < 0.05


def test_lattice_projection(batch):
    wyckoff, _ = batch
    projected = wyckoff.project_lattice(wyckoff.lattice_vector)
    assert torch.allclose(projected, wyckoff.lattice_vector, atol=1e-6)  # data already lie in their subspace
    noisy = wyckoff.lattice_vector + torch.randn(wyckoff.lattice_vector.shape, dtype=torch.float64,
                                                 generator=torch.Generator().manual_seed(2))
    once = wyckoff.project_lattice(noisy)
    assert torch.allclose(wyckoff.project_lattice(once), once)


def test_a_reverse_sampler_with_the_projection_keeps_every_sample_in_its_space_group(batch):
    """Random scores: whatever the network says, every sample is invariant under its template's
    space group, and its lattice keeps its family's shape."""
    wyckoff, groups = batch
    mean, std = wyckoff.lattice_vector.mean(0), wyckoff.lattice_vector.std(0).clamp(min=0.1)
    lattice_process = EuclideanVP(x0_clip=5.0)
    generator = torch.Generator().manual_seed(3)

    def predict(state, t):
        exact_for_unit_gaussian = (1 - lattice_process.alpha_bar(t)).sqrt().unsqueeze(1) * state["lattice"]
        return {"frac": torch.randn(state["frac"].shape, generator=generator, dtype=state["frac"].dtype),
                "lattice": exact_for_unit_gaussian}

    n_atoms, n_crystals = len(wyckoff.atomic_numbers), len(wyckoff.num_atoms)
    variables = [Variable("frac", TorusVE(), (n_atoms, 3), owner=wyckoff.crystal_index, dtype=torch.float64,
                          corrector=True),
                 Variable("lattice", lattice_process, (n_crystals, 6), dtype=torch.float64)]
    state = ReverseSampler(variables, predict, SamplerConfig(steps=20, corrector_steps=1),
                           WyckoffProjection(wyckoff, mean, std)).run(n_crystals, torch.Generator().manual_seed(4))
    # the sampler's own output, not passed through the batch's projections again
    lattices = log_polar_to_lattice(state["lattice"] * std + mean).numpy()
    crystals = crystals_from_arrays(lattices, state["frac"].numpy(), wyckoff.atomic_numbers.numpy(),
                                    wyckoff.num_atoms.numpy())
    assert all(invariant_under(c, group, 1e-4) for c, group in zip(crystals, groups))
    for crystal, family in zip(crystals, wyckoff.family):
        a, b, c, alpha, beta, gamma = crystal.to_structure().lattice.parameters
        if FAMILIES[int(family)] in ("tetragonal", "hexagonal", "cubic"):
            assert abs(a - b) < 1e-6
        if FAMILIES[int(family)] == "hexagonal":
            assert abs(gamma - 120) < 1e-4 and abs(alpha - 90) < 1e-4
        if FAMILIES[int(family)] in ("orthorhombic", "tetragonal", "cubic"):
            assert max(abs(alpha - 90), abs(beta - 90), abs(gamma - 90)) < 1e-4
