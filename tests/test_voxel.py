"""Voxel images (network-free round trip, decoder rules and failures) and the voxel VAE family.

The generic round trip over every textbook and seeded pyxtal crystal is in
tests/test_representations.py (``voxel`` is registered); this file covers what is voxel-specific.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalgen import Crystal
from crystalgen.representations.cell import niggli_cell
from crystalgen.representations.voxel import SparseGrid, Voxel, VoxelConfig, VoxelError

from conftest import make_perovskite


def _assert_same_metric(fitted: np.ndarray, lattice: np.ndarray) -> None:
    """Lengths to 0.3% (float16 images) and the cosines of the angles to 0.005."""
    lengths, fitted_lengths = np.linalg.norm(lattice, axis=1), np.linalg.norm(fitted, axis=1)
    np.testing.assert_allclose(fitted_lengths, lengths, rtol=3e-3)
    cosines = (lattice @ lattice.T) / np.outer(lengths, lengths)
    np.testing.assert_allclose((fitted @ fitted.T) / np.outer(fitted_lengths, fitted_lengths), cosines, atol=5e-3)


@pytest.mark.parametrize("params", [
    (2.6, 2.6, 2.6, 60, 60, 60),      # a small fcc primitive cell: its images overlap in the cell image
    (4.0, 4.0, 24.0, 90, 90, 120),    # a long hexagonal axis: a narrow blob along c
    (5.1, 6.3, 7.7, 78, 95, 104),     # triclinic
])
def test_lattice_is_recovered_from_the_cell_image(params):
    from pymatgen.core import Lattice

    lattice = Lattice.from_parameters(*params).matrix
    voxel = Voxel()
    fitted = voxel.lattice_from_image(voxel.cell_image(lattice).dense()[0])
    _assert_same_metric(fitted, lattice)
    assert np.linalg.det(fitted) > 0


@pytest.mark.parametrize("grid, width", [(8, 0.75), (16, 1.0), (32, 1.5)])
def test_perovskite_round_trip_is_exact_to_float16(grid, width):
    crystal = make_perovskite("Sr", "Ti", a=3.905, c=4.05, dz=0.07)
    voxel = Voxel(VoxelConfig(grid=grid, width=width, cell_grid=8))
    decoded = voxel.decode(voxel.encode(crystal))
    reduced = niggli_cell(crystal)
    assert sorted(decoded.atomic_numbers) == sorted(reduced.atomic_numbers)
    _assert_same_metric(decoded.lattice, reduced.lattice)
    delta = reduced.frac_coords[:, None] - decoded.frac_coords[None]
    delta -= np.round(delta)
    same = reduced.atomic_numbers[:, None] == decoded.atomic_numbers[None]
    distance = np.where(same, np.linalg.norm(delta @ reduced.lattice, axis=-1), np.inf).min(axis=1)
    assert distance.max() < 1e-3  # Å: sub-voxel refinement, not the voxel size (0.5 Å at grid 8)


def test_sparse_grid_sums_overlaps_drops_small_values_and_remaps_channels():
    grid = SparseGrid.from_values(2, np.array([8, 1]), np.array([0, 0, 1, 1]), np.array([3, 3, 5, 6]),
                                  np.array([0.25, 0.5, 0.7, 1e-5]), threshold=1e-3)
    dense = grid.dense()
    assert dense.shape == (2, 2, 2, 2)
    assert dense[0].reshape(-1)[3] == pytest.approx(0.75)
    assert dense[1].reshape(-1)[5] == pytest.approx(0.7, rel=1e-3)
    assert dense[1].reshape(-1)[6] == 0  # below the threshold: not stored
    reordered = grid.dense(np.array([1, 6, 8]))
    np.testing.assert_array_equal(reordered[0], dense[1])
    np.testing.assert_array_equal(reordered[2], dense[0])
    assert not reordered[1].any()
    with pytest.raises(ValueError, match="channels"):
        grid.dense(np.array([1]))


def _image_of(voxel: Voxel, crystal: Crystal) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    image = voxel.encode(crystal)
    return image.cell.dense()[0], image.basis.dense(), image.basis.labels


def test_duplicate_peaks_are_merged_into_the_strongest():
    voxel = Voxel(VoxelConfig(grid=32, width=1.0))
    lattice = np.eye(3) * 8.0
    # two O peaks 0.25 Å apart (a split blob, as a network may draw) and one Na far away; the
    # width-1 blobs at 0.25 Å per voxel are close enough to show two maxima only when shifted by a
    # voxel, so build the split by hand
    single = Crystal(lattice, [[0.1, 0.1, 0.1], [0.6, 0.6, 0.6]], [8, 11])
    cell, basis, labels = _image_of(voxel, single)
    shifted = np.roll(basis[labels.tolist().index(8)], 1, axis=0) * 0.9
    basis[labels.tolist().index(8)] = np.maximum(basis[labels.tolist().index(8)], shifted)
    raw = voxel.peaks(basis, labels)
    assert (raw[1] == 8).sum() >= 1
    decoded = voxel.decode_dense(cell, basis, labels)
    assert sorted(decoded.atomic_numbers.tolist()) == [8, 11]


def test_composition_trims_extra_peaks_and_refuses_missing_ones():
    voxel = Voxel(VoxelConfig(grid=16, width=1.0))
    crystal = Crystal(np.eye(3) * 6.0, [[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]], [11, 17])
    cell, basis, labels = _image_of(voxel, crystal)
    weak = Voxel(VoxelConfig(grid=16, width=1.0)).encode(Crystal(np.eye(3) * 6.0, [[0.25, 0.0, 0.0]], [11]))
    basis[0] += 0.5 * weak.basis.dense()[0]  # a weaker, spurious Na peak
    assert voxel.decode_dense(cell, basis, labels).num_atoms == 3
    trimmed = voxel.decode_dense(cell, basis, labels, composition={11: 1, 17: 1})
    assert trimmed.num_atoms == 2
    sodium = trimmed.frac_coords[trimmed.atomic_numbers == 11]
    assert np.allclose(sodium - np.round(sodium), 0.0, atol=1e-3)  # the strong peak at the origin, not the weak one
    with pytest.raises(VoxelError) as failure:
        voxel.decode_dense(cell, basis, labels, composition={11: 3, 17: 1})
    assert failure.value.cause == "atom count"
    with pytest.raises(VoxelError) as failure:
        voxel.decode_dense(cell, basis, labels, composition={11: 2})
    assert failure.value.cause == "composition"


def test_images_that_describe_no_crystal_fail_by_cause():
    voxel = Voxel(VoxelConfig(grid=8, width=0.75, cell_grid=8))
    cell, basis, labels = _image_of(voxel, make_perovskite("Sr", "Ti"))
    with pytest.raises(VoxelError) as failure:
        voxel.decode_dense(np.zeros_like(cell), basis, labels)
    assert failure.value.cause == "lattice"
    with pytest.raises(VoxelError) as failure:
        voxel.decode_dense(cell, np.zeros_like(basis), labels)
    assert failure.value.cause == "no atoms"
    noise = np.random.default_rng(0).normal(size=cell.shape)
    with pytest.raises(VoxelError) as failure:
        voxel.decode_dense(noise, basis, labels)
    assert failure.value.cause == "lattice"


def test_same_element_atoms_closer_than_the_resolution_merge():
    """The representation's real limit, which the round-trip benchmark counts: two O atoms 1.2 Å
    apart in a 12 Å cell are 1.6 voxels apart at grid 16 and width 1, and become one peak."""
    crystal = Crystal(np.eye(3) * 12.0, [[0.3, 0.3, 0.3], [0.4, 0.3, 0.3], [0.8, 0.8, 0.8]], [8, 8, 11])
    coarse = Voxel(VoxelConfig(grid=16, width=1.0))
    assert coarse.decode(coarse.encode(crystal)).num_atoms == 2
    fine = Voxel(VoxelConfig(grid=48, width=1.0))
    assert fine.decode(fine.encode(crystal)).num_atoms == 3


def test_periodic_block_commutes_with_circular_shifts():
    from crystalgen.nn.conv3d import periodic_block

    torch.manual_seed(0)
    block = periodic_block(2, 4)
    grid = torch.randn(1, 2, 8, 8, 8)
    shifted = torch.roll(grid, shifts=(3, -2), dims=(2, 4))
    torch.testing.assert_close(block(shifted), torch.roll(block(grid), shifts=(3, -2), dims=(2, 4)))


def test_encoder_and_decoder_shapes_and_grid_check():
    from crystalgen.nn.conv3d import VoxelDecoder, VoxelEncoder

    encoder, decoder = VoxelEncoder(5, 8, (8, 16), 12, stem=4), VoxelDecoder(12, 8, (8, 16), 6)
    code = encoder(torch.randn(3, 5, 8, 8, 8))
    assert code.shape == (3, 12)
    assert decoder(code).shape == (3, 6, 8, 8, 8)
    with pytest.raises(ValueError, match="multiple of 4"):
        VoxelEncoder(5, 10, (8, 16), 12)


# ------------------------------------------------------------------------------ the VAE family
TINY = {"name": "voxel-tiny", "family": "voxel", "task": "gen", "property": "heat_ref",
        "voxel": {"grid": 8, "width": 0.75, "cell_grid": 8},
        "model": {"latent_dim": 4, "cell_code": 8, "basis_code": 16, "cell_widths": [4, 8], "basis_widths": [4, 8],
                  "stem": 4},
        "training": {"steps": 3, "batch_size": 4, "lr": 0.001, "log_every": 1}}


def _perovskites() -> list[Crystal]:
    crystals = [make_perovskite(a, b, a=3.9 + 0.05 * i) for i, (a, b) in
                enumerate([("Sr", "Ti"), ("Ba", "Ti"), ("Ca", "Zr"), ("K", "Nb"), ("La", "Al"), ("Sr", "Zr")])]
    for i, crystal in enumerate(crystals):
        crystal.properties["heat_ref"] = 0.1 * i
    return crystals


@pytest.fixture(scope="module")
def tiny_model(tmp_path_factory):
    from crystalgen.generators.voxel_vae import VoxelVAEGenerator
    from crystalgen.models.base import TrainingRun

    model = VoxelVAEGenerator(dict(TINY))
    model.fit_crystals(_perovskites(), TrainingRun(run_dir=tmp_path_factory.mktemp("voxel-run")))
    return model


def test_vae_losses_are_finite_and_every_term_has_gradients(tiny_model):
    from crystalgen.generators.voxel_vae import VoxelCollate

    model = tiny_model.model.train()
    items = [(tiny_model.representation.encode(c), 0.5) for c in _perovskites()[:3]]
    losses = model(VoxelCollate(tiny_model.elements)(items), torch.Generator().manual_seed(0))
    assert {"cell", "occupancy", "element", "kl_per_dim", "property", "loss"} <= set(losses)
    assert all(torch.isfinite(v) for v in losses.values())
    losses["loss"].backward()
    for part in (model.cell_encoder, model.basis_encoder, model.cell_decoder, model.basis_decoder, model.property_head):
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in part.parameters())
    model.zero_grad()
    model.eval()


def test_fitted_model_records_elements_and_property_scaling(tiny_model):
    assert tiny_model.is_fitted
    assert tiny_model.config["elements"] == sorted({8, 38, 22, 56, 20, 40, 19, 41, 57, 13})
    assert tiny_model.config["property_std"] > 0
    assert tiny_model.training_summary["steps"] == 3


def test_checkpoint_round_trip_and_sampling(tiny_model, tmp_path):
    from crystalgen.generators.target import Target
    from crystalgen.models.registry import load_model, save_model

    save_model(tiny_model, tmp_path / "voxel-tiny", card="# voxel-tiny\n")
    loaded = load_model(str(tmp_path / "voxel-tiny"))
    z = torch.randn(5, 4, generator=torch.Generator().manual_seed(1))
    for a, b in zip(tiny_model.decode(z), loaded.decode(z)):
        assert type(a) is type(b)
    samples = loaded.sample([Target()], n=6, seed=0)
    report = loaded.sampling_report()
    assert report["total"] == 6 and report["valid"] == len(samples[0])
    assert sum(report["failures"].values()) == 6 - len(samples[0])
    assert loaded.predict_property(z).shape == (5,)


def test_a_composition_target_is_refused_in_one_line(tiny_model):
    from crystalgen.errors import CrystalgenInputError
    from crystalgen.generators.target import Target

    with pytest.raises(CrystalgenInputError, match="generates from scratch"):
        tiny_model.sample([Target.parse("SrTiO3")], n=1)


def test_encoding_a_crystal_with_an_unknown_element_is_refused(tiny_model):
    from crystalgen.errors import CrystalgenInputError

    with pytest.raises(CrystalgenInputError, match="no channel"):
        tiny_model.encode([make_perovskite("Cs", "Pb", "I")])


def test_config_widths_are_lists_of_positive_integers():
    from crystalgen.config_sections import section_dataclass
    from crystalgen.errors import CrystalgenInputError
    from crystalgen.generators.voxel_vae import VAEConfig

    assert section_dataclass({"model": {"basis_widths": [8, 16]}}, "model", VAEConfig).basis_widths == (8, 16)
    for bad in ([], [8, 0], [8, 1.5], 8, [True]):
        with pytest.raises(CrystalgenInputError, match="basis_widths must be a list of positive integers"):
            section_dataclass({"model": {"basis_widths": bad}}, "model", VAEConfig)


def test_a_grid_the_widths_cannot_halve_is_a_one_line_error(tmp_path, capsys, synthetic_perov_dir):
    import yaml

    from conftest import assert_one_line_error, run_main

    config = dict(TINY, protocol="perov_5", property=None, voxel={"grid": 10, "width": 0.75, "cell_grid": 8})
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(config))
    result = run_main(["train", "--config", str(path), "--out", str(tmp_path / "out"),
                       "--data-dir", str(synthetic_perov_dir)], capsys)
    assert_one_line_error(result, "grid of 10", "multiple of 4")


# ------------------------------------------------------------------------------ latent mixture prior
def test_mixture_fits_clusters_and_samples_reproducibly():
    from crystalgen.nn.mixture import GaussianMixture

    rng = np.random.default_rng(0)
    centres = np.array([[-5.0, 0.0], [5.0, 0.0]])
    points = np.concatenate([centre + 0.1 * rng.standard_normal((200, 2)) for centre in centres])
    mixture = GaussianMixture.fit(points, 2)
    assert sorted(mixture.means[:, 0].round().tolist()) == [-5.0, 5.0]
    z = mixture.sample(400, torch.Generator().manual_seed(3))
    assert torch.equal(z, mixture.sample(400, torch.Generator().manual_seed(3)))
    # every draw sits near a cluster, none in the gap the N(0, I) prior would fill
    assert (z[:, 0].abs() > 4).all() and 100 < (z[:, 0] > 0).sum() < 300
    wide = mixture.sample(400, torch.Generator().manual_seed(3), temperature=3.0)
    assert wide[:, 1].std() > 2 * z[:, 1].std()
    with pytest.raises(ValueError, match="at least as many points"):
        GaussianMixture.fit(points[:3], 4)


def test_mixture_prior_is_stored_in_the_checkpoint_and_drives_sampling(tiny_model, tmp_path):
    from crystalgen.errors import CrystalgenInputError
    from crystalgen.generators.target import Target
    from crystalgen.models.registry import load_model, save_model
    from crystalgen.models.store import read_checkpoint, write_checkpoint

    mixture = tiny_model.fit_latent_prior(tiny_model.encode(_perovskites()), 2)
    try:
        assert tiny_model.config["sampling"]["prior"] == "mixture" and "mixture" in tiny_model.describe_sampling()
        folder = save_model(tiny_model, tmp_path / "voxel-mixture", card="# voxel-mixture\n")
        loaded = load_model(str(folder))
        assert torch.equal(loaded.latent_prior.scale_tril, mixture.scale_tril)
        first = loaded.sample([Target()], n=4, seed=5)[0]
        again = loaded.sample([Target()], n=4, seed=5)[0]
        assert [c.num_atoms for c in first] == [c.num_atoms for c in again]
        assert all(np.allclose(a.frac_coords, b.frac_coords) for a, b in zip(first, again))
        checkpoint = read_checkpoint(folder)
        weights = {k: v for k, v in checkpoint.tensors.items() if not k.startswith("latent_prior.")}
        write_checkpoint(tmp_path / "no-mixture", checkpoint.config, weights, "# no mixture\n")
        with pytest.raises(CrystalgenInputError, match="weights hold none"):
            load_model(str(tmp_path / "no-mixture"))
    finally:
        tiny_model.set_latent_prior(None)
    assert tiny_model.config["sampling"]["prior"] == "normal" and tiny_model.latent_prior is None


def test_an_unknown_prior_is_a_one_line_error():
    from crystalgen.errors import CrystalgenInputError
    from crystalgen.generators.voxel_vae import VoxelVAEGenerator

    with pytest.raises(CrystalgenInputError, match="sampling.prior must be one of normal, mixture"):
        VoxelVAEGenerator(dict(TINY, sampling={"prior": "flow"}))
