"""The design oracle: descriptors that are invariant where they should be, trees exported from
scikit-learn that predict exactly as scikit-learn does, and a fit-save-load round trip."""

from __future__ import annotations

import numpy as np
import pytest

from crystalgen.crystal import Crystal
from crystalgen.design.descriptors import CELL_FEATURES, describe, feature_names
from crystalgen.design.oracle import Oracle, TreeEnsemble
from crystalgen.errors import CrystalgenInputError


def _column(name: str) -> int:
    return feature_names().index(name)


def test_descriptors_have_one_column_per_name(textbook_crystals):
    features = describe(list(textbook_crystals.values()))
    assert features.shape == (len(textbook_crystals), len(feature_names()))
    assert np.isfinite(features).all()


def test_descriptors_know_rock_salt(nacl):
    row = describe([nacl])[0]
    assert row[_column("num_elements")] == 2
    assert row[_column("min_distance")] == pytest.approx(5.64 / 2, abs=1e-6)
    assert row[_column("density")] == pytest.approx(nacl.to_structure().density, rel=1e-6)
    assert row[_column("Electronegativity:range")] == pytest.approx(3.16 - 0.93, abs=1e-6)
    # six first-shell neighbours at a/2 per atom, all in one distance bin
    first_shell = [i for i, n in enumerate(feature_names()) if n == "neighbours_2.75-3.00A"]
    assert row[first_shell[0]] == pytest.approx(6.0)


def test_descriptors_ignore_atom_order_and_origin(zno):
    order = np.array([3, 1, 0, 2])
    shuffled = Crystal(zno.lattice, (zno.frac_coords[order] + 0.37) % 1.0, zno.atomic_numbers[order])
    assert np.allclose(describe([zno]), describe([shuffled]))


def test_intensive_descriptors_survive_a_supercell(srtio3):
    structure = srtio3.to_structure()
    structure.make_supercell([2, 1, 1])
    double = describe([Crystal.from_structure(structure)])[0]
    single = describe([srtio3])[0]
    extensive = {_column(n) for n in CELL_FEATURES if n == "log_atoms" or "/V^1/3" in n}
    keep = [i for i in range(len(single)) if i not in extensive]
    assert np.allclose(single[keep], double[keep])
    assert not np.allclose(single[sorted(extensive)], double[sorted(extensive)])


def test_exported_trees_predict_as_sklearn_does():
    from sklearn.ensemble import HistGradientBoostingRegressor

    rng = np.random.default_rng(0)
    x = rng.normal(size=(400, 6))
    y = np.sin(x[:, 0]) + x[:, 1] * x[:, 2] + rng.normal(scale=0.05, size=400)
    x[rng.random(x.shape) < 0.05] = np.nan  # missing values take each node's learned side
    booster = HistGradientBoostingRegressor(max_iter=60, max_leaf_nodes=15, random_state=0).fit(x, y)
    trees = TreeEnsemble.from_sklearn(booster)
    probe = rng.normal(size=(300, 6))
    probe[rng.random(probe.shape) < 0.1] = np.nan
    assert np.allclose(trees.predict(probe), booster.predict(probe), atol=1e-10)
    restored = TreeEnsemble.from_state(trees.state("p"), "p")
    assert np.array_equal(restored.predict(probe), trees.predict(probe))


def test_oracle_needs_properties_and_a_fit(nacl):
    with pytest.raises(CrystalgenInputError, match="properties"):
        Oracle({"name": "o"})
    with pytest.raises(CrystalgenInputError, match="not fitted"):
        Oracle({"name": "o", "properties": ["heat_ref"]}).predict([nacl])


def test_oracle_fits_saves_and_loads(tmp_path, data_dir):
    from crystalgen.data import load_protocol
    from crystalgen.models import PROPERTY, load_model, save_model

    config = {"name": "oracle-test", "family": "oracle", "properties": ["heat_ref"],
              "boosting": {"max_iterations": 40, "patience": 10}}
    oracle = Oracle(config)
    oracle.fit("perov_5", data_dir)
    card = oracle.after_fit(data_dir)
    assert "| test | heat_ref |" in card
    test = load_protocol("perov_5").load(data_dir).test[:200]
    truth = np.array([c.properties["heat_ref"] for c in test])
    predicted = oracle.predict(test)["heat_ref"][0]
    assert np.abs(predicted - truth).mean() < 0.6 * np.abs(truth.mean() - truth).mean()
    save_model(oracle, tmp_path / "oracle", card)
    loaded = load_model(tmp_path / "oracle", kind=PROPERTY)
    assert np.array_equal(loaded.predict(test)["heat_ref"][0], predicted)
