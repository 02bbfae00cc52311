"""Fixed per-element descriptors (periodic-table position, electronegativity, size), so that a
model trained on a few thousand crystals still knows how rarely seen elements relate to common ones."""

from __future__ import annotations

import warnings
from functools import lru_cache

import numpy as np
import torch

from crystalgen.constants import MAX_EMBEDDED_Z

#: Descriptors per element: row, group, Pauling electronegativity, atomic radius, Mendeleev number,
#: log atomic mass, four block flags (s, p, d, f), and a flag for a missing electronegativity.
ELEMENT_FEATURES = 11
_BLOCKS = ("s", "p", "d", "f")


def _describe(z: int) -> list[float]:
    from pymatgen.core import Element

    element = Element.from_Z(z)
    electronegativity = element.X if element.X == element.X else float("nan")  # X is NaN for noble gases
    radius = element.atomic_radius or element.atomic_radius_calculated or float("nan")
    row = [float(element.row), float(element.group), electronegativity, float(radius),
           float(element.mendeleev_no or 0), float(np.log(float(element.atomic_mass)))]
    row += [float(element.block == b) for b in _BLOCKS]
    row.append(float(np.isnan(electronegativity)))
    return row


@lru_cache(maxsize=1)
def element_feature_table() -> torch.Tensor:
    """(MAX_EMBEDDED_Z + 1, ELEMENT_FEATURES), standardised column-wise; row 0 (no element) and missing values are 0."""
    with warnings.catch_warnings():  # pymatgen warns for every element lacking a value; those become 0 below
        warnings.simplefilter("ignore")
        rows = [_describe(z) for z in range(1, MAX_EMBEDDED_Z + 1)]
    table = np.array([[0.0] * ELEMENT_FEATURES] + rows, dtype=np.float64)
    body = table[1:]
    mean, std = np.nanmean(body, axis=0), np.nanstd(body, axis=0)
    body = (body - mean) / np.where(std > 0, std, 1.0)
    table[1:] = np.nan_to_num(body)
    return torch.tensor(table, dtype=torch.float32)
