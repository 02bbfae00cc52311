"""Helpers shared by the surrogate and filter tests: a tiny surrogate fitted in a second, and a fake
mp_20 data directory whose structures carry made-up formation energies and energies above the hull.

Not a test module (no ``test_`` prefix): imported by ``test_surrogate_training.py`` and ``test_filter.py``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from crystalgen import Crystal
from crystalgen.models import TrainingRun

from conftest import make_textbook

ENERGY = "formation_energy_per_atom"

#: The config of the brief: two members, 8 hidden features, one convolution, five steps.
TINY_CONFIG = {
    "name": "tiny",
    "properties": [ENERGY],
    "model": {"members": 2, "hidden": 8, "layers": 1, "cutoff": 4.0, "distance_features": 8},
    "training": {"steps": 5, "batch_size": 4, "lr": 0.001, "lr_schedule": "cosine"},
}

#: Made-up formation energies (eV/atom) of the textbook crystals.
TEXTBOOK_ENERGIES = {"NaCl": -2.0, "Si": 0.0, "SrTiO3": -3.4, "ZnO": -1.7}


def with_species(crystal: Crystal, mapping: dict[int, int], id: str | None = None, scale: float = 1.0) -> Crystal:
    """The crystal with its elements swapped (Z -> Z) and its cell scaled."""
    z = np.array([mapping.get(int(a), int(a)) for a in crystal.atomic_numbers])
    return Crystal(crystal.lattice * scale, crystal.frac_coords.copy(), z, id=id)


def magnesia() -> Crystal:
    """MgO in the rock-salt structure (NaCl with Na -> Mg, Cl -> O, a = 4.21 Å)."""
    return with_species(make_textbook("NaCl"), {11: 12, 17: 8}, id="MgO", scale=4.21 / 5.64)


def textbook_training_set() -> list[Crystal]:
    crystals = []
    for name, energy in TEXTBOOK_ENERGIES.items():
        crystal = make_textbook(name)
        crystal.id, crystal.properties = name, {ENERGY: energy, "band_gap": 1.0 + abs(energy)}
        crystals.append(crystal)
    return crystals


def fit_tiny_surrogate(config: dict | None = None, crystals: list[Crystal] | None = None,
                       protocol: str | None = "mp_20"):
    """A :class:`Surrogate` of ``TINY_CONFIG`` fitted on the textbook crystals (about a second)."""
    import torch

    from crystalgen.surrogate.predictor import Surrogate

    torch.manual_seed(0)
    config = dict(config or TINY_CONFIG)
    if protocol is not None:
        config.update({"protocol": protocol, "dataset": "mp_20"})
    model = Surrogate(config)
    model.fit_crystals(crystals if crystals is not None else textbook_training_set(), TrainingRun())
    return model


# ------------------------------------------------------------------------------ a fake mp_20
#: The reference hull's energy per atom at each training compound (its own energy: one per system).
FAKE_HULL = {"NaCl": -2.0, "MgO": -3.0, "ZnO": -1.7, "SrTiO3": -3.4, "Si": 0.0}


def fake_mp20_splits() -> dict[str, list[Crystal]]:
    """Training formation energies make a tiny reference hull: NaCl -2.0, MgO -3.0, ZnO -1.7,
    SrTiO3 -3.4, Si 0 (one compound per chemical system, elements at 0). Test rows carry the
    dataset's own ``e_above_hull`` (one lacks it, one lacks the formation energy too); no row's
    energy above the reference hull ties with the thresholds 0.1 and 1e-6."""
    def tagged(crystal: Crystal, id: str, **properties: float) -> Crystal:
        crystal = crystal.copy()
        crystal.id, crystal.properties = id, dict(properties)
        return crystal

    nacl, si, srtio3, zno = (make_textbook(n) for n in ("NaCl", "Si", "SrTiO3", "ZnO"))
    train = [tagged(nacl, "tr-NaCl", formation_energy_per_atom=-2.0, band_gap=5.0, e_above_hull=0.0),
             tagged(magnesia(), "tr-MgO", formation_energy_per_atom=-3.0, band_gap=6.0, e_above_hull=0.0),
             tagged(zno, "tr-ZnO", formation_energy_per_atom=-1.7, band_gap=1.5, e_above_hull=0.0),
             tagged(srtio3, "tr-SrTiO3", formation_energy_per_atom=-3.4, band_gap=2.0, e_above_hull=0.0),
             tagged(si, "tr-Si", formation_energy_per_atom=0.0, band_gap=0.6, e_above_hull=0.0)]
    val = [tagged(nacl, "va-NaCl", formation_energy_per_atom=-1.95, band_gap=5.0, e_above_hull=0.05)]
    test = [tagged(nacl, "te-NaCl", formation_energy_per_atom=-1.95, band_gap=5.0, e_above_hull=0.08),
            tagged(zno, "te-ZnO", formation_energy_per_atom=-1.7, band_gap=1.5, e_above_hull=0.0),
            tagged(srtio3, "te-SrTiO3", formation_energy_per_atom=-3.2, band_gap=2.0, e_above_hull=0.3),
            tagged(magnesia(), "te-MgO", formation_energy_per_atom=-3.0, band_gap=6.0, e_above_hull=0.5),
            tagged(with_species(nacl, {}, scale=1.03), "te-NaCl-expanded", formation_energy_per_atom=-1.8,
                   band_gap=4.0),  # e_above_hull unknown
            tagged(si, "te-Si", band_gap=0.6)]  # no formation energy
    return {"train": train, "val": val, "test": test}


def write_fake_mp20(root: Path) -> Path:
    """``root/mp_20/{train,val,test}.csv`` with material_id, cif and the property columns; returns root."""
    import pandas as pd

    folder = Path(root) / "mp_20"
    folder.mkdir(parents=True, exist_ok=True)
    columns = ("formation_energy_per_atom", "band_gap", "e_above_hull")
    for split, crystals in fake_mp20_splits().items():
        frame = pd.DataFrame({"material_id": [c.id for c in crystals], "cif": [c.to_cif() for c in crystals],
                              **{p: [c.properties.get(p, np.nan) for c in crystals] for p in columns}})
        frame.to_csv(folder / f"{split}.csv", index=False)
    return Path(root)
