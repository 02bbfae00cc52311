"""Small numeric helpers shared by the metric result classes."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def json_float(x: Any) -> float | None:
    """A float for JSON: ``None`` for ``None``, NaN and infinities (JSON has no NaN)."""
    if x is None:
        return None
    x = float(x)
    return x if math.isfinite(x) else None


def finite_mean(values: np.ndarray) -> float:
    """Mean of the finite entries; NaN when there are none."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    return float(finite.mean()) if len(finite) else float("nan")


def share(hits: np.ndarray, n: int) -> float:
    """hits.sum() / n, NaN for an empty set."""
    return float(np.count_nonzero(hits)) / n if n else float("nan")
