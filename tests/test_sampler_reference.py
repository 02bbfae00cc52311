"""The shipped diffusion checkpoints draw exactly the crystals they drew before the sampler became
the generic hook-based one (``tests/fixtures/sampler_reference.json``, recorded at commit 0f6f7bb
by ``tests/fixtures/make_sampler_reference.py``)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

FIXTURES = Path(__file__).parent / "fixtures"
sys.path.insert(0, str(FIXTURES))
from make_sampler_reference import sample_case  # noqa: E402

REFERENCE = json.loads((FIXTURES / "sampler_reference.json").read_text())
#: float32 sampling; a different summation order would show up far above this
TOLERANCE = 1e-5


@pytest.mark.parametrize("case", REFERENCE["cases"], ids=lambda c: f"{c['model']}-seed{c['seed']}")
def test_shipped_checkpoints_sample_as_before(case):
    crystals = sample_case(case["model"], case["compositions"], case["n"], case["seed"], case["sampler"])
    assert len(crystals) == len(case["crystals"])
    for got, want in zip(crystals, case["crystals"]):
        np.testing.assert_array_equal(got.atomic_numbers, want["atomic_numbers"])
        np.testing.assert_allclose(got.lattice, want["lattice"], atol=TOLERANCE)
        np.testing.assert_allclose(got.frac_coords, want["frac_coords"], atol=TOLERANCE)
