"""The real benchmark files (CRYSTALGEN_DATA_DIR; skipped without it).

These tests share one XDG cache for the session (see conftest), so each split is parsed at most
once: mp_20 test and val take ~25 s each on two cores, the rest a few seconds.
"""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from crystalgen.data import DATASETS, load_protocol, load_split, verify_split
from crystalgen.data.files import find_split_file, git_blob_sha1

PRESENT_CANDIDATES = [(d, s) for d, spec in DATASETS.items() for s in spec.splits]


def _present(data_dir):
    return [(d, s) for d, s in PRESENT_CANDIDATES if find_split_file(d, s, data_dir) is not None]


def test_some_splits_are_present(data_dir):
    present = _present(data_dir)
    assert ("mp_20", "test") in present and ("perov_5", "val") in present
    assert len(present) >= 4


def test_verify_all_present_splits(data_dir):
    for dataset, split in _present(data_dir):
        result = verify_split(dataset, split, data_dir)
        assert result.ok, f"{dataset}/{split}: {result.status} {result.detail}"
        assert result.status in ("canonical", "known-copy")


def test_perov_5_val_is_byte_identical_to_cdvae(data_dir):
    path = find_split_file("perov_5", "val", data_dir)
    assert path is not None
    with gzip.open(path, "rb") if path.name.endswith(".gz") else open(path, "rb") as handle:
        content = handle.read()
    assert git_blob_sha1(content) == "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f"
    assert DATASETS["perov_5"].split("val").git_blob_sha1 == git_blob_sha1(content)


def test_row_counts_match_the_registry(data_dir):
    checked = 0
    for dataset, split in _present(data_dir):
        expected = DATASETS[dataset].split(split).rows
        if expected is None:
            continue
        frame = pd.read_csv(find_split_file(dataset, split, data_dir), index_col=0)
        assert len(frame) == expected, f"{dataset}/{split}"
        assert frame["material_id"].is_unique
        checked += 1
    assert checked >= 4


def test_mp_20_test_loads(data_dir):
    crystals = load_split("mp_20", "test", data_dir)
    assert len(crystals) == 9046
    ids = [c.id for c in crystals]
    assert len(set(ids)) == 9046 and all(i.startswith(("mp-", "mvc-")) for i in ids)  # Materials Project ids
    energies = np.array([c.properties.get("formation_energy_per_atom", np.nan) for c in crystals])
    assert np.isfinite(energies).all()
    assert -5.0 < energies.mean() < 0.0
    assert all(1 <= c.num_atoms <= 20 for c in crystals)
    assert all("spacegroup.number" in c.properties for c in crystals)
    # the same order as the file
    frame = pd.read_csv(find_split_file("mp_20", "test", data_dir), index_col=0, usecols=[0, 1])
    assert ids == frame["material_id"].tolist()


def test_mp_20_reduced_train_protocol(data_dir):
    protocol = load_protocol("mp_20_reduced_train")
    data = protocol.load(data_dir, include_test=False)
    train_ids, select_ids = [c.id for c in data.train], [c.id for c in data.select]
    assert len(train_ids) + len(select_ids) == 10047
    assert len(select_ids) == round(0.05 * 10047)
    assert not set(train_ids) & set(select_ids)
    assert len(set(train_ids)) == len(train_ids)
    assert data.test == []


def test_carbon_24_val_trained_protocol(data_dir):
    data = load_protocol("carbon_24_val_trained").load(data_dir, include_test=False)
    assert len(data.train) + len(data.select) == 2032
    assert len(data.select) == round(0.05 * 2032)
    assert not {c.id for c in data.train} & {c.id for c in data.select}
    assert all(6 <= c.num_atoms <= 24 and set(c.species) == {"C"} for c in data.train + data.select)


def test_standard_protocol_reports_the_missing_train_split(data_dir):
    from crystalgen.errors import DatasetError

    if find_split_file("mp_20", "train", data_dir) is not None:
        pytest.skip("the full mp_20 train split is present")
    with pytest.raises(DatasetError, match="crystalgen data fetch mp_20 --split train"):
        load_protocol("mp_20").load(data_dir)
