"""collate / CrystalBatch: flat layout, crystal_index, Cartesian coordinates, exact inversion."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalgen import Crystal, CrystalBatch, collate


@pytest.fixture
def crystals(textbook_crystals, random_crystals):
    chosen = [textbook_crystals[n] for n in ("NaCl", "SrTiO3", "ZnO", "Si")]
    chosen += [random_crystals[k] for k in sorted(random_crystals)[:4]]
    for i, c in enumerate(chosen):
        c.id = f"id-{i}"
    chosen[0].properties = {"energy": -1.25, "gap": 3.5}
    chosen[2].properties = {"energy": 0.5}
    return chosen


def test_collate_shapes_and_dtypes(crystals):
    batch = collate(crystals)
    n_atoms = sum(c.num_atoms for c in crystals)
    assert isinstance(batch, CrystalBatch)
    assert batch.num_crystals == len(crystals)
    assert batch.lattices.shape == (len(crystals), 3, 3)
    assert batch.frac_coords.shape == (n_atoms, 3)
    assert batch.atomic_numbers.shape == (n_atoms,)
    assert batch.crystal_index.shape == (n_atoms,)
    assert batch.num_atoms.tolist() == [c.num_atoms for c in crystals]
    assert batch.lattices.dtype == torch.float32 and batch.frac_coords.dtype == torch.float32
    assert batch.atomic_numbers.dtype == torch.int64 and batch.crystal_index.dtype == torch.int64
    assert batch.ids == [c.id for c in crystals]
    double = collate(crystals, dtype=torch.float64)
    assert double.lattices.dtype == torch.float64 and double.frac_coords.dtype == torch.float64


def test_crystal_index(crystals):
    batch = collate(crystals)
    expected = np.concatenate([np.full(c.num_atoms, i) for i, c in enumerate(crystals)])
    np.testing.assert_array_equal(batch.crystal_index.numpy(), expected)
    # The documented use: per-crystal reductions with index_add_ over crystal_index.
    sums = torch.zeros(batch.num_crystals, dtype=torch.int64).index_add_(0, batch.crystal_index, batch.atomic_numbers)
    assert sums.tolist() == [int(c.atomic_numbers.sum()) for c in crystals]
    counts = torch.bincount(batch.crystal_index, minlength=batch.num_crystals)
    assert counts.tolist() == batch.num_atoms.tolist()


def test_atoms_are_concatenated_in_order(crystals):
    batch = collate(crystals, dtype=torch.float64)
    offset = 0
    for i, c in enumerate(crystals):
        stop = offset + c.num_atoms
        np.testing.assert_array_equal(batch.frac_coords[offset:stop].numpy(), c.frac_coords)
        np.testing.assert_array_equal(batch.atomic_numbers[offset:stop].numpy(), c.atomic_numbers)
        np.testing.assert_array_equal(batch.lattices[i].numpy(), c.lattice)
        offset = stop


@pytest.mark.parametrize("dtype, atol", [(torch.float64, 1e-12), (torch.float32, 1e-4)])
def test_cart_coords_match_per_crystal(crystals, dtype, atol):
    batch = collate(crystals, dtype=dtype)
    cart = batch.cart_coords
    assert cart.shape == batch.frac_coords.shape and cart.dtype == dtype
    expected = np.concatenate([c.frac_coords @ c.lattice for c in crystals])
    np.testing.assert_allclose(cart.numpy(), expected, atol=atol)


def test_to_crystals_inverts_collate_exactly(crystals):
    back = collate(crystals, dtype=torch.float64).to_crystals()
    assert len(back) == len(crystals)
    for a, b in zip(crystals, back):
        assert isinstance(b, Crystal)
        np.testing.assert_array_equal(b.lattice, a.lattice)
        np.testing.assert_array_equal(b.frac_coords, a.frac_coords)
        np.testing.assert_array_equal(b.atomic_numbers, a.atomic_numbers)
        assert b.id == a.id
        assert b.properties == a.properties


def test_to_crystals_float32_is_close(crystals):
    back = collate(crystals).to_crystals()
    for a, b in zip(crystals, back):
        np.testing.assert_allclose(b.lattice, a.lattice, atol=1e-5)
        np.testing.assert_allclose(
            np.abs((b.frac_coords - a.frac_coords + 0.5) % 1.0 - 0.5), 0.0, atol=1e-6
        )
        np.testing.assert_array_equal(b.atomic_numbers, a.atomic_numbers)


def test_properties_nan_for_missing(crystals):
    batch = collate(crystals, dtype=torch.float64)
    assert sorted(batch.properties) == ["energy", "gap"]
    energy, gap = batch.properties["energy"], batch.properties["gap"]
    assert energy.shape == (len(crystals),) and energy.dtype == torch.float64
    assert energy[0].item() == -1.25 and energy[2].item() == 0.5
    assert gap[0].item() == 3.5
    missing_energy = [i for i in range(len(crystals)) if i not in (0, 2)]
    assert torch.isnan(energy[missing_energy]).all()
    assert torch.isnan(gap[1:]).all()
    # ... and NaN means "absent" again after to_crystals.
    back = batch.to_crystals()
    assert back[0].properties == {"energy": -1.25, "gap": 3.5}
    assert back[2].properties == {"energy": 0.5}
    assert back[1].properties == {}


def test_properties_follow_dtype(crystals):
    assert collate(crystals).properties["energy"].dtype == torch.float32


def test_to_device_keeps_everything(crystals):
    batch = collate(crystals)
    moved = batch.to("cpu")
    for name in ("lattices", "frac_coords", "atomic_numbers", "crystal_index", "num_atoms"):
        assert torch.equal(getattr(moved, name), getattr(batch, name))
    assert moved.ids == batch.ids
    assert moved.properties.keys() == batch.properties.keys()


def test_single_crystal_and_no_ids(nacl):
    batch = collate([nacl])
    assert batch.num_crystals == 1 and batch.crystal_index.unique().tolist() == [0]
    assert batch.ids == [None] and batch.properties == {}
    (back,) = batch.to_crystals()
    assert back.id is None and back.num_atoms == 8


def test_empty_batch():
    batch = collate([])
    assert batch.num_crystals == 0
    assert batch.frac_coords.shape == (0, 3) and batch.lattices.shape == (0, 3, 3)
    assert batch.cart_coords.shape == (0, 3)
    assert batch.to_crystals() == []


def test_cart_coords_are_differentiable(crystals):
    batch = collate(crystals, dtype=torch.float64)
    batch.lattices.requires_grad_(True)
    batch.cart_coords.sum().backward()
    grad = batch.lattices.grad
    assert grad is not None and torch.isfinite(grad).all()
    # d(sum of cart)/dL[b, i, j] = sum over atoms of crystal b of frac[:, i]
    for b, c in enumerate(crystals):
        np.testing.assert_allclose(grad[b].numpy(), np.repeat(c.frac_coords.sum(0)[:, None], 3, axis=1), atol=1e-12)
