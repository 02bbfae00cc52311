"""The joint crystal diffusion model: losses, statistics, learning on a toy set, and sampling shapes."""

from __future__ import annotations

import pytest
import torch

from crystalgen.batch import collate
from crystalgen.diffusion.sampler import SamplerConfig
from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig
from crystalgen.nn import DenoiserConfig

TINY = DenoiserConfig(hidden=32, layers=2, fourier_frequencies=4, time_dim=16)


@pytest.fixture
def toy_batch(srtio3, nacl):
    return collate([srtio3, nacl] * 8)


def make_model(task: str, batch) -> CrystalDiffusion:
    torch.manual_seed(0)
    model = CrystalDiffusion(DiffusionConfig(task=task, denoiser=TINY))
    scaled = batch.lattices * (1 + 0.1 * torch.randn(len(batch.lattices), 1, 1, generator=torch.Generator().manual_seed(0)))
    model.set_statistics(scaled, batch.num_atoms)
    return model


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_loss_terms_are_finite_and_reach_every_parameter(task, toy_batch):
    model = make_model(task, toy_batch)
    losses = model.loss(toy_batch, torch.Generator().manual_seed(1))
    assert set(losses) == ({"frac", "lattice", "loss"} | ({"types"} if task == "gen" else set()))
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    assert all(p.grad is not None for p in model.parameters())


def test_lattice_standardisation_round_trips(toy_batch):
    model = make_model("csp", toy_batch)
    decoded = model.decode_lattice(model.encode_lattice(toy_batch.lattices))
    gram = lambda m: m @ m.transpose(1, 2)  # noqa: E731  (decoding drops the orientation, keeps the metric)
    assert torch.allclose(gram(decoded), gram(toy_batch.lattices), rtol=1e-4, atol=1e-3)


def test_the_lattice_is_learned_on_a_toy_set(toy_batch):
    """A few hundred steps on two crystals must cut the lattice noise-prediction loss several-fold."""
    torch.set_num_threads(1)
    model = make_model("csp", toy_batch)
    optimizer = torch.optim.Adam(model.parameters(), lr=2e-3)
    generator = torch.Generator().manual_seed(2)
    history = []
    for _ in range(300):
        losses = model.loss(toy_batch, generator)
        optimizer.zero_grad()
        losses["loss"].backward()
        optimizer.step()
        history.append(float(losses["lattice"].detach()))
    first, last = sum(history[:50]) / 50, sum(history[-50:]) / 50
    assert last < 0.4 * first, (first, last)


@pytest.mark.parametrize("task", ["csp", "gen"])
def test_sampling_returns_valid_cells(task, toy_batch):
    model = make_model(task, toy_batch).eval()
    generator = torch.Generator().manual_seed(3)
    num_atoms = toy_batch.num_atoms[:4]
    types = toy_batch.atomic_numbers[: int(num_atoms.sum())] if task == "csp" else None
    out = model.sample(num_atoms, types, SamplerConfig(steps=5, corrector_steps=1), generator)
    assert out.frac_coords.shape == (int(num_atoms.sum()), 3) and out.lattices.shape == (4, 3, 3)
    assert ((out.frac_coords >= 0) & (out.frac_coords < 1)).all()
    assert (torch.linalg.eigvalsh(out.lattices) > 0).all()  # decoded log-polar vectors are always valid cells
    if task == "csp":
        assert torch.equal(out.atom_types, types)
    else:
        assert ((out.atom_types >= 1) & (out.atom_types <= 100)).all()
    sizes = model.draw_num_atoms(1000, torch.Generator().manual_seed(4))
    assert set(sizes.tolist()) == {5, 8}  # the sizes seen in training (SrTiO3, conventional NaCl)
