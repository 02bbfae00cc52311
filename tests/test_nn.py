"""The periodic denoiser's symmetries, checked numerically, and the batched graph helpers."""

from __future__ import annotations

import pytest
import torch

from crystalgen.nn import DenoiserConfig, PeriodicDenoiser, fully_connected_edges, lattice_invariants, segment_mean

TOL = dict(atol=1e-8, rtol=1e-6)


@pytest.fixture(scope="module")
def model() -> PeriodicDenoiser:
    torch.manual_seed(0)
    net = PeriodicDenoiser(DenoiserConfig(hidden=32, layers=2, fourier_frequencies=4, time_dim=16))
    return net.double().eval()


@pytest.fixture
def batch() -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(1)
    num_atoms = torch.tensor([3, 5, 1])
    n = int(num_atoms.sum())
    lattices = torch.randn(3, 3, 3, generator=generator, dtype=torch.float64) + 4 * torch.eye(3, dtype=torch.float64)
    return {
        "atom_types": torch.randint(1, 90, (n,), generator=generator),
        "frac_coords": torch.rand(n, 3, generator=generator, dtype=torch.float64),
        "lattices": lattices,
        "num_atoms": num_atoms,
        "t": torch.rand(3, generator=generator, dtype=torch.float64),
    }


def random_orthogonal(seed: int, reflect: bool) -> torch.Tensor:
    q, _ = torch.linalg.qr(torch.randn(3, 3, generator=torch.Generator().manual_seed(seed), dtype=torch.float64))
    if (torch.det(q) < 0) != reflect:
        q[:, 0] = -q[:, 0]
    return q


def test_fully_connected_edges_matches_brute_force():
    num_atoms = torch.tensor([2, 0, 3, 1])
    src, dst = fully_connected_edges(num_atoms)
    offsets = [0, 2, 2, 5]
    expected = {(o + i, o + j) for o, n in zip(offsets, num_atoms.tolist()) for i in range(n) for j in range(n) if i != j}
    assert set(zip(src.tolist(), dst.tolist())) == expected and len(src) == len(expected)
    src, dst = fully_connected_edges(num_atoms, self_loops=True)
    assert len(src) == 4 + 9 + 1


def test_segment_mean():
    values = torch.tensor([[1.0], [3.0], [5.0]])
    out = segment_mean(values, torch.tensor([0, 0, 2]), 3)
    assert out.squeeze(1).tolist() == [2.0, 0.0, 5.0]


def test_lattice_invariants_are_lengths_and_angles():
    cubic = torch.diag(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)).unsqueeze(0)
    inv = lattice_invariants(cubic)[0]
    assert torch.allclose(inv[:3], torch.log(torch.tensor([2.0, 3.0, 4.0], dtype=torch.float64)))
    assert torch.allclose(inv[3:], torch.zeros(3, dtype=torch.float64), atol=1e-12)


def test_output_shapes(model, batch):
    out = model(**batch)
    assert out.frac_score.shape == (9, 3) and out.lattice.shape == (3, 3, 3) and out.type_logits.shape == (9, 101)


def test_permutation_equivariance(model, batch):
    out = model(**batch)
    perm = torch.tensor([2, 0, 1, 7, 3, 6, 4, 5, 8])  # shuffles atoms within each crystal
    moved = dict(batch, atom_types=batch["atom_types"][perm], frac_coords=batch["frac_coords"][perm])
    again = model(**moved)
    assert torch.allclose(again.frac_score, out.frac_score[perm], **TOL)
    assert torch.allclose(again.type_logits, out.type_logits[perm], **TOL)
    assert torch.allclose(again.lattice, out.lattice, **TOL)


def test_periodic_translation_invariance(model, batch):
    out = model(**batch)
    shift = torch.tensor([0.31, -0.77, 0.5], dtype=torch.float64)
    images = torch.randint(-2, 3, batch["frac_coords"].shape, generator=torch.Generator().manual_seed(3))
    crystal_index = torch.repeat_interleave(torch.arange(3), batch["num_atoms"])
    per_crystal_shift = torch.stack([shift, -shift, 2 * shift])[crystal_index]
    moved = dict(batch, frac_coords=(batch["frac_coords"] + per_crystal_shift) % 1.0 + images)
    again = model(**moved)
    assert torch.allclose(again.frac_score, out.frac_score, **TOL)
    assert torch.allclose(again.type_logits, out.type_logits, **TOL)
    assert torch.allclose(again.lattice, out.lattice, **TOL)


@pytest.mark.parametrize("reflect", [False, True], ids=["rotation", "reflection"])
def test_o3_equivariance(model, batch, reflect):
    out = model(**batch)
    q = random_orthogonal(5, reflect)
    again = model(**dict(batch, lattices=batch["lattices"] @ q.T))
    assert torch.allclose(again.frac_score, out.frac_score, **TOL)  # fractional outputs do not rotate
    assert torch.allclose(again.type_logits, out.type_logits, **TOL)
    assert torch.allclose(again.lattice, out.lattice @ q.T, **TOL)  # the lattice output rotates with the cell


def test_crystals_do_not_interact(model, batch):
    out = model(**batch)
    alone = model(batch["atom_types"][:3], batch["frac_coords"][:3], batch["lattices"][:1], batch["num_atoms"][:1],
                  batch["t"][:1])
    assert torch.allclose(alone.frac_score, out.frac_score[:3], **TOL)
    assert torch.allclose(alone.lattice, out.lattice[:1], **TOL)


def test_symmetry_breaking_inputs_change_the_output(model, batch):
    """The checks above would pass for a constant network; the outputs must depend on the inputs."""
    out = model(**batch)
    moved = batch["frac_coords"].clone()
    moved[0] += 0.1  # one atom moves relative to the others
    assert not torch.allclose(model(**dict(batch, frac_coords=moved)).frac_score, out.frac_score)
    stretched = batch["lattices"].clone()
    stretched[:, 0] *= 1.2
    assert not torch.allclose(model(**dict(batch, lattices=stretched)).frac_score, out.frac_score)
    assert not torch.allclose(model(**dict(batch, t=batch["t"] * 0.5)).frac_score, out.frac_score)


def test_backward_reaches_every_parameter(model, batch):
    model.zero_grad()
    out = model(**batch)
    (out.frac_score.square().sum() + out.lattice.square().sum() + out.type_logits.logsumexp(1).sum()).backward()
    missing = [name for name, p in model.named_parameters() if p.grad is None or not torch.isfinite(p.grad).all()]
    assert not missing
