"""The surrogate ensemble: symmetry of its predictions, gradients with respect to the structure,
missing properties in the loss, and that training lowers the error on a learnable toy property."""

import numpy as np
import pytest
import torch

from crystalgen import Crystal
from crystalgen.batch import collate
from crystalgen.surrogate import EncoderConfig, SurrogateConfig, SurrogateEnsemble

from conftest import make_textbook

torch.set_num_threads(1)
TINY = EncoderConfig(hidden=16, layers=1, cutoff=4.0, distance_features=8)


def _crystals():
    crystals = [make_textbook(name) for name in ("NaCl", "Si", "SrTiO3", "ZnO")]
    for c in crystals:  # a property the network can learn from composition alone
        c.properties = {"toy": float(np.mean(c.atomic_numbers)) / 10, "other": 1.0}
    crystals[0].properties.pop("other")
    return crystals


def _model(members=3, properties=("toy", "other")):
    torch.manual_seed(0)
    return SurrogateEnsemble(SurrogateConfig(properties=properties, members=members, encoder=TINY))


def test_prediction_is_invariant_to_permutation_translation_and_rotation():
    model = _model()
    batch = collate(_crystals())
    reference = model.predict_batch(batch).mean
    # permute atoms within each crystal: sort a random key per atom that keeps crystals in order
    order = torch.argsort(batch.crystal_index * 10 + torch.rand(len(batch.atomic_numbers)))
    shifted = (batch.frac_coords[order] + torch.tensor([0.3, -0.2, 0.7])) % 1.0
    q, _ = torch.linalg.qr(torch.randn(3, 3))
    out = model.predict(batch.atomic_numbers[order], shifted, batch.lattices @ q.T, batch.num_atoms).mean
    assert torch.allclose(out, reference, atol=1e-4)
    assert (reference[1:] - reference[:1]).abs().max() > 1e-3  # ... and it does tell the crystals apart
    # unwrapped coordinates (whole cells added to some atoms) are the same crystal
    raw = batch.frac_coords + torch.randint(-2, 3, batch.frac_coords.shape).float()
    assert torch.allclose(model.predict(batch.atomic_numbers, raw, batch.lattices, batch.num_atoms).mean, reference,
                          atol=1e-4)


def test_prediction_is_the_same_for_a_supercell():
    """Radius-graph messages and mean pooling see the same environments in a supercell."""
    model = _model()
    crystal = make_textbook("ZnO")
    supercell = Crystal.from_structure(crystal.to_structure() * (2, 1, 1))
    out = model.predict_batch(collate([crystal, supercell])).mean
    assert torch.allclose(out[0], out[1], atol=1e-4)


def test_gradients_match_finite_differences():
    model = _model(members=2).double()
    batch = collate(_crystals()[2:])  # SrTiO3 and ZnO: no distance within 1e-3 Å of the cutoff
    frac = batch.frac_coords.double().requires_grad_(True)
    lattices = batch.lattices.double().requires_grad_(True)

    def energy(frac, lattices):
        return model.predict(batch.atomic_numbers, frac, lattices, batch.num_atoms).mean.sum()

    assert torch.autograd.gradcheck(energy, (frac, lattices), eps=1e-6, atol=1e-5)


def test_prediction_is_continuous_when_an_atom_crosses_the_cutoff():
    """Two atoms in a 10 Å box moved apart through the 4 Å cutoff: the prediction must not jump there."""
    model = _model(members=2).double()
    lattice = 10 * torch.eye(3, dtype=torch.float64)[None]

    def predict(distance: float) -> float:
        frac = torch.tensor([[0.1, 0.2, 0.3], [0.1 + distance / 10, 0.2, 0.3]], dtype=torch.float64)
        return model.predict(torch.tensor([11, 17]), frac, lattice, torch.tensor([2])).mean[0, 0].item()

    inside, outside = predict(TINY.cutoff - 1e-4), predict(TINY.cutoff + 1e-4)
    typical = abs(predict(TINY.cutoff - 1.0) - predict(TINY.cutoff - 0.5))  # change over half an Ångström
    assert typical > 0
    assert abs(inside - outside) < 0.01 * typical, (inside, outside, typical)


def test_gradients_flow_to_coordinates_and_lattice_and_std_is_spread():
    model = _model()
    batch = collate(_crystals())
    frac = batch.frac_coords.clone().requires_grad_(True)
    lattices = batch.lattices.clone().requires_grad_(True)
    prediction = model.predict(batch.atomic_numbers, frac, lattices, batch.num_atoms)
    prediction.mean[:, 0].sum().backward()
    assert frac.grad is not None and frac.grad.abs().sum() > 0
    assert lattices.grad is not None and lattices.grad.abs().sum() > 0
    assert prediction.members.shape == (3, 4, 2)
    assert torch.allclose(prediction.std, prediction.members.std(0))
    assert (prediction.std > 0).all()  # members start from different weights


def test_missing_properties_do_not_enter_the_loss():
    model = _model(members=1)
    crystals = _crystals()
    losses = model(collate(crystals))
    assert torch.isfinite(losses["loss"]) and set(losses) == {"loss", "mse_toy", "mse_other"}
    crystals[1].properties["other"] = 1e6  # a huge error on a present value changes the loss
    assert model(collate(crystals))["mse_other"] > losses["mse_other"] * 10
    crystals[1].properties.pop("other")
    for c in crystals:
        c.properties.pop("other", None)
    assert model(collate(crystals))["mse_other"] == 0


def test_training_with_the_shared_trainer_lowers_the_error(tmp_path):
    from crystalgen.training import TrainConfig, Trainer

    crystals = _crystals() * 4
    model = _model(members=2, properties=("toy",))
    model.set_statistics(torch.tensor([[c.properties["toy"]] for c in crystals]))
    before = model(collate(crystals))["loss"].item()
    Trainer(model, crystals, TrainConfig(steps=60, batch_size=8, lr=3e-3, log_every=50), tmp_path).run()
    after = model(collate(crystals))["loss"].item()
    assert after < 0.05 * before, (before, after)
    mean = model.predict_batch(collate(crystals[:4])).mean[:, 0]
    truth = torch.tensor([c.properties["toy"] for c in crystals[:4]])
    assert torch.allclose(mean, truth, atol=0.25 * float(truth.std()))


def test_a_surrogate_needs_properties():
    with pytest.raises(ValueError):
        SurrogateEnsemble(SurrogateConfig(properties=()))
