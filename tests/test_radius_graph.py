"""The periodic radius graph against pymatgen's neighbour list, its gradients, and the building
blocks of the CGCNN-style surrogate: the Gaussian distance basis, the gated convolution and the
fixed element descriptor table."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from crystalgen import Crystal
from crystalgen.nn.convolution import GatedConvolution, GaussianDistanceBasis, cosine_envelope
from crystalgen.nn.elements import ELEMENT_FEATURES, element_feature_table
from crystalgen.nn.radius_graph import image_ranges, periodic_radius_graph

from conftest import make_textbook

torch.set_num_threads(1)

#: Distances closer than this to the cutoff make "inside or outside" a matter of rounding: avoided.
CUTOFF_MARGIN = 1e-3


def skewed_triclinic() -> Crystal:
    """A small, strongly sheared triclinic cell (3 atoms), thinner than the cutoffs used here along two axes."""
    from pymatgen.core import Lattice

    lattice = Lattice.from_parameters(2.9, 3.4, 4.7, 58.0, 71.0, 117.0).matrix
    frac = np.array([[0.05, 0.10, 0.20], [0.55, 0.35, 0.70], [0.90, 0.80, 0.45]])
    return Crystal(lattice, frac, [8, 14, 26], id="triclinic")


def crystal_named(name: str) -> Crystal:
    return skewed_triclinic() if name == "triclinic" else make_textbook(name)


def pymatgen_edges(crystal: Crystal, cutoff: float) -> dict[tuple[int, int, tuple[int, int, int]], float]:
    """(center, neighbour, image) -> distance from pymatgen (checked to have no distance at the cutoff)."""
    structure = crystal.to_structure()
    np.testing.assert_allclose(structure.frac_coords, crystal.frac_coords, atol=1e-12)  # same atoms, same images
    centers, neighbours, images, distances = structure.get_neighbor_list(cutoff)
    assert not np.any(np.abs(distances - cutoff) < CUTOFF_MARGIN), "pick a cutoff away from every distance"
    return {(int(c), int(n), tuple(int(round(x)) for x in im)): float(d)
            for c, n, im, d in zip(centers, neighbours, images, distances)}


def graph_of(crystals: list[Crystal], cutoff: float, dtype=torch.float64, frac=None):
    frac = torch.tensor(np.concatenate([c.frac_coords for c in crystals]), dtype=dtype) if frac is None else frac
    lattices = torch.tensor(np.stack([c.lattice for c in crystals]), dtype=dtype)
    num_atoms = torch.tensor([c.num_atoms for c in crystals])
    return periodic_radius_graph(frac, lattices, num_atoms, cutoff)


def edge_dict(edges, offset: int = 0, atoms: range | None = None) -> dict[tuple[int, int, tuple[int, int, int]], float]:
    out = {}
    for s, d, im, dist in zip(edges.src.tolist(), edges.dst.tolist(), edges.image.round().long().tolist(),
                              edges.distances.tolist()):
        if atoms is None or d in atoms:
            key = (d - offset, s - offset, tuple(im))
            assert key not in out, f"edge {key} listed twice"
            out[key] = dist
    return out


# ------------------------------------------------------------------------------ against pymatgen
@pytest.mark.parametrize("name, cutoff", [("NaCl", 4.3), ("Si", 4.0), ("SrTiO3", 5.0), ("ZnO", 3.7),
                                          ("triclinic", 6.1)])
def test_neighbours_match_pymatgen(name, cutoff):
    crystal = crystal_named(name)
    expected = pymatgen_edges(crystal, cutoff)
    edges = graph_of([crystal], cutoff)
    got = edge_dict(edges)
    assert set(got) == set(expected)  # same (center, neighbour, image) triples, none twice
    keys = sorted(expected)
    np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], atol=1e-9)
    # the edge vectors are Cartesian dst -> image of src, so their norms are the distances
    np.testing.assert_allclose(edges.vectors.norm(dim=1).numpy(), edges.distances.numpy(), atol=1e-9)
    assert not torch.any((edges.src == edges.dst) & (edges.image.abs().sum(1) == 0))  # no self-edge at zero shift


def test_textbook_neighbour_shells_are_the_known_ones():
    """Rock salt: 6 neighbours at a/2 and 12 at a/sqrt(2) for every atom (a = 5.64 Å)."""
    edges = graph_of([make_textbook("NaCl")], 4.3)
    counts = torch.bincount(edges.dst, minlength=8)
    assert counts.tolist() == [18] * 8
    distances = np.sort(edges.distances.numpy())
    np.testing.assert_allclose(distances[:6 * 8], 5.64 / 2, atol=1e-9)
    np.testing.assert_allclose(distances[6 * 8:], 5.64 / np.sqrt(2), atol=1e-9)


def test_thin_cell_needs_several_images_and_finds_them():
    crystal = skewed_triclinic()
    lattice = torch.tensor(crystal.lattice)[None]
    assert image_ranges(lattice, 6.1).item() >= 3  # thinner than 6.1 / 2 Å along some axis
    assert image_ranges(lattice, 1.0).item() == 1
    edges = graph_of([crystal], 6.1)
    assert edges.image.abs().max().item() >= 3  # images beyond the first shell were needed ...
    assert set(edge_dict(edges)) == set(pymatgen_edges(crystal, 6.1))  # ... and are all there


def test_batch_mixing_crystals_matches_each_crystal_alone():
    """Crystals of different sizes and image ranges in one batch: no edge crosses two crystals and
    each crystal's edges are exactly pymatgen's."""
    names = ["NaCl", "triclinic", "SrTiO3", "ZnO", "Si"]
    crystals = [crystal_named(n) for n in names]
    cutoff = 4.9
    edges = graph_of(crystals, cutoff)
    sizes = [c.num_atoms for c in crystals]
    owner = torch.repeat_interleave(torch.arange(len(sizes)), torch.tensor(sizes))
    assert torch.equal(owner[edges.src], owner[edges.dst])
    offset = 0
    for crystal in crystals:
        expected = pymatgen_edges(crystal, cutoff)
        got = edge_dict(edges, offset, range(offset, offset + crystal.num_atoms))
        assert set(got) == set(expected), crystal.id
        keys = sorted(expected)
        np.testing.assert_allclose([got[k] for k in keys], [expected[k] for k in keys], atol=1e-9)
        offset += crystal.num_atoms
    assert len(edges.src) == sum(len(pymatgen_edges(c, cutoff)) for c in crystals)


def test_float32_inputs_give_the_same_graph():
    crystals = [make_textbook("SrTiO3"), skewed_triclinic()]
    exact = graph_of(crystals, 5.3)
    single = graph_of(crystals, 5.3, dtype=torch.float32)
    assert single.distances.dtype == torch.float32
    np.testing.assert_allclose(np.sort(single.distances.numpy()), np.sort(exact.distances.numpy()), atol=1e-4)


def test_no_edges_below_the_shortest_distance():
    edges = graph_of([make_textbook("NaCl")], 2.0)
    assert len(edges.src) == 0 and edges.vectors.shape == (0, 3) and edges.distances.shape == (0,)


# ------------------------------------------------------------------------------ raw coordinates
@pytest.mark.parametrize("name", ["ZnO", "triclinic"])
def test_coordinates_outside_the_unit_cell_give_the_same_distances(name):
    crystal = crystal_named(name)
    cutoff = 5.3
    reference = graph_of([crystal], cutoff)
    raw = torch.tensor(crystal.frac_coords)
    shifts = torch.zeros_like(raw)
    shifts[0] = 1.0
    shifts[1] = -2.0
    shifts[2, 1] = 3.0  # a single axis of one atom
    shifted = graph_of([crystal], cutoff, frac=raw + shifts)
    assert len(shifted.src) == len(reference.src)
    np.testing.assert_allclose(np.sort(shifted.distances.numpy()), np.sort(reference.distances.numpy()), atol=1e-9)
    # the same edges (dst, src) carry the same Cartesian vectors: images absorb the shift
    def by_pair(edges):
        rows = torch.cat([edges.dst[:, None].double(), edges.src[:, None].double(), edges.vectors], dim=1).numpy()
        return rows[np.lexsort(rows.T[::-1])]
    np.testing.assert_allclose(by_pair(shifted), by_pair(reference), atol=1e-9)
    # the returned image is the shift applied to the raw inputs
    lattice = torch.tensor(crystal.lattice)
    frac = raw + shifts
    recomputed = (frac[shifted.src] - frac[shifted.dst] + shifted.image) @ lattice
    np.testing.assert_allclose(recomputed.numpy(), shifted.vectors.detach().numpy(), atol=1e-9)


def test_coordinates_just_below_zero_and_at_one():
    crystal = make_textbook("SrTiO3")
    frac = torch.tensor(crystal.frac_coords)
    reference = graph_of([crystal], 4.5)
    frac[0] = torch.tensor([-1e-12, 1.0, -0.0])  # the same point as (0, 0, 0)
    edges = graph_of([crystal], 4.5, frac=frac)
    np.testing.assert_allclose(np.sort(edges.distances.numpy()), np.sort(reference.distances.numpy()), atol=1e-9)


# ------------------------------------------------------------------------------ gradients
def test_gradients_flow_to_coordinates_and_lattice():
    crystals = [make_textbook("ZnO"), skewed_triclinic()]
    frac = torch.tensor(np.concatenate([c.frac_coords for c in crystals]), requires_grad=True)
    lattices = torch.tensor(np.stack([c.lattice for c in crystals]), requires_grad=True)
    edges = periodic_radius_graph(frac, lattices, torch.tensor([4, 3]), 4.5)
    edges.distances.sum().backward()
    assert torch.isfinite(frac.grad).all() and torch.isfinite(lattices.grad).all()
    assert frac.grad.abs().sum() > 0 and (lattices.grad.abs().sum(dim=(1, 2)) > 0).all()
    # scaling the cell by s scales every distance by s: d(sum d)/ds at s=1 = sum d = <L, dL>
    total = edges.distances.detach().sum()
    assert torch.isclose((lattices.grad * lattices.detach()).sum(), total, rtol=1e-9)


def test_gradients_match_finite_differences():
    crystal = skewed_triclinic()
    num_atoms = torch.tensor([3])

    def total(frac, lattice):
        return periodic_radius_graph(frac, lattice, num_atoms, 4.4).distances.square().sum()

    frac = torch.tensor(crystal.frac_coords, requires_grad=True)
    lattice = torch.tensor(crystal.lattice[None], requires_grad=True)
    assert torch.autograd.gradcheck(total, (frac, lattice), eps=1e-7, atol=1e-5)


def test_atoms_on_top_of_each_other_have_finite_gradients():
    crystal = make_textbook("SrTiO3")
    frac = torch.tensor(crystal.frac_coords)
    frac[1] = frac[0]  # Ti sits exactly on Sr
    frac.requires_grad_(True)
    lattice = torch.tensor(crystal.lattice[None], requires_grad=True)
    edges = periodic_radius_graph(frac, lattice, torch.tensor([5]), 4.5)
    on_top = ((edges.src == 0) & (edges.dst == 1) & (edges.image.abs().sum(1) == 0))
    assert on_top.sum() == 1 and edges.distances[on_top].item() < 1e-5  # the pair is an edge, at ~0 Å
    edges.distances.sum().backward()
    assert torch.isfinite(frac.grad).all() and torch.isfinite(lattice.grad).all()
    assert lattice.grad.abs().sum() > 0


# ------------------------------------------------------------------------------ convolution
def test_distance_basis_is_one_at_its_centres():
    basis = GaussianDistanceBasis(cutoff=4.0, size=9)
    assert basis.out_features == 9
    features = basis(torch.tensor([0.0, 2.0, 4.0]))
    assert features.shape == (3, 9)
    assert features[0, 0].item() == pytest.approx(1.0)
    assert features[1].argmax().item() == 4 and features[1, 4].item() == pytest.approx(1.0)  # centred at 2.0 Å
    assert features[2, -1].item() == pytest.approx(1.0)
    with pytest.raises(ValueError):
        GaussianDistanceBasis(cutoff=4.0, size=1)


def test_envelope_goes_smoothly_to_zero_at_the_cutoff():
    d = torch.tensor([0.0, 2.0, 3.9, 3.99, 3.999, 4.0, 4.5], requires_grad=True)
    w = cosine_envelope(d, 4.0)
    assert w[0].item() == pytest.approx(1.0) and w[1].item() == pytest.approx(0.5, abs=1e-6)
    assert w[2] < 0.01 and w[3] < 1e-4 and w[4] < 1e-6  # quadratic approach to 0
    assert torch.all(w[5:] == 0)  # at and beyond the cutoff: exactly nothing
    w.sum().backward()
    assert abs(d.grad[4].item()) < 1e-3  # slope vanishing too: no kink at the cutoff


def test_gated_convolution_adds_messages_only_where_edges_arrive():
    torch.manual_seed(0)
    layer = GatedConvolution(hidden=6, edge_features=3)
    h = torch.randn(4, 6)
    src, dst = torch.tensor([0, 1, 1]), torch.tensor([1, 0, 2])
    edge_features = torch.randn(3, 3)
    out = layer(h, src, dst, edge_features, torch.ones(3))
    assert out.shape == (4, 6)
    assert not torch.allclose(out[:3], h[:3])
    # atom 3 receives nothing: only the update's bias moves it, the same shift as for any empty sum
    assert torch.allclose(out[3] - h[3], layer.update.bias)
    # an edge weighted 0 (at the cutoff) contributes exactly nothing
    zero_weight = layer(h, src, dst, edge_features, torch.tensor([1.0, 1.0, 0.0]))
    assert torch.allclose(zero_weight[2] - h[2], layer.update.bias)
    assert torch.allclose(zero_weight[:2], out[:2])


def test_gated_convolution_is_permutation_equivariant():
    torch.manual_seed(1)
    layer = GatedConvolution(hidden=5, edge_features=4)
    h = torch.randn(6, 5)
    src, dst = torch.randint(0, 6, (14,)), torch.randint(0, 6, (14,))
    edge_features, weights = torch.randn(14, 4), torch.rand(14)
    reference = layer(h, src, dst, edge_features, weights)
    perm = torch.randperm(6)
    inverse = torch.argsort(perm)
    edge_order = torch.randperm(14)
    out = layer(h[perm], inverse[src][edge_order], inverse[dst][edge_order], edge_features[edge_order],
                weights[edge_order])
    assert torch.allclose(out, reference[perm], atol=1e-5)


# ------------------------------------------------------------------------------ element descriptors
def test_element_feature_table():
    table = element_feature_table()
    assert table.shape == (101, ELEMENT_FEATURES) and table.dtype == torch.float32
    assert torch.isfinite(table).all()
    assert torch.all(table[0] == 0)  # "no element"
    body = table[1:]
    assert torch.allclose(body.mean(dim=0), torch.zeros(ELEMENT_FEATURES), atol=0.05)  # standardised
    assert (body.std(dim=0) > 0.5).all()  # no constant column
    assert len(torch.unique(body, dim=0)) == 100  # every element distinguishable
    row, group, electronegativity, mendeleev = 0, 1, 2, 4
    blocks = {"s": 6, "p": 7, "d": 8, "f": 9}
    na, cl, fe, o, f, he, la = table[11], table[17], table[26], table[8], table[9], table[2], table[57]
    assert na[group] < cl[group] and o[row] < na[row]
    assert f[electronegativity] > o[electronegativity] > fe[electronegativity] > na[electronegativity]
    assert na[mendeleev] < cl[mendeleev]
    for element, block in ((na, "s"), (cl, "p"), (fe, "d")):
        assert element[blocks[block]] == max(element[b] for b in blocks.values()), block
    assert la[blocks["f"]] > 0 or la[blocks["d"]] > 0
    missing_x = 10
    assert he[missing_x] > 0 > fe[missing_x]  # helium has no Pauling electronegativity
    assert element_feature_table() is table  # computed once


def test_a_singular_lattice_does_not_crash_the_graph():
    frac = torch.tensor([[0.0, 0.0, 0.0], [0.5, 0.5, 0.5]])
    flat = torch.tensor([[[3.0, 0.0, 0.0], [0.0, 3.0, 0.0], [0.0, 0.0, 0.0]]])  # zero third vector
    edges = periodic_radius_graph(frac, flat, torch.tensor([2]), 2.0)
    assert torch.isfinite(edges.distances).all()
