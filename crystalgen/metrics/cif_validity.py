"""The checks every generated CIF must pass (CrystaLLM's, written in-house), and why one failed.

In order, the first that fails names the cause:

1. ``parse``, ``cell``, ``multiplicity``, ``overlap``, ``composition``: the sequence decodes to a
   crystal whose sites' multiplicities add up to the formula
   (:func:`crystalgen.representations.cif_tokens.expand`);
2. ``formula``: the formula is the prompt's (the same element counts per primitive cell);
3. ``cell-sanity``: lengths within [:data:`MIN_LENGTH`, :data:`MAX_LENGTH`] Å, angles within
   [:data:`MIN_ANGLE`, :data:`MAX_ANGLE`] degrees;
4. ``bond-length``: no two atoms closer than :data:`~crystalgen.metrics.validity.MIN_DISTANCE` Å
   (the structural-validity rule of every benchmark here);
5. ``spacegroup``: spglib at symprec 0.1 finds the stated space group.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from crystalgen.crystal import Crystal
from crystalgen.metrics.validity import MIN_DISTANCE, min_interatomic_distance
from crystalgen.representations.cif_tokens import CifDecodeError, expand, symmetrised_cell
from crystalgen.representations.cif_vocab import CanonicalCif, CifTokenError, Vocabulary

MIN_LENGTH, MAX_LENGTH = 1.0, 60.0
MIN_ANGLE, MAX_ANGLE = 20.0, 160.0
#: The tolerance at which the stated space group must be found (the issue's, and spglib's usual).
CHECK_SYMPREC = 0.1
CHECKS = ("parse", "cell", "multiplicity", "overlap", "composition", "formula", "cell-sanity", "bond-length",
          "spacegroup")


@dataclass
class CheckedCif:
    """One generated sequence: its crystal when every check passed, else the failing check."""

    cif: CanonicalCif | None
    crystal: Crystal | None
    failure: str | None = None


@dataclass
class CifCheckCounts:
    """Failures by check over many generated sequences."""

    total: int = 0
    failures: Counter = field(default_factory=Counter)

    def add(self, checked: CheckedCif) -> None:
        self.total += 1
        if checked.failure:
            self.failures[checked.failure] += 1

    @property
    def valid_rate(self) -> float:
        return 1.0 - sum(self.failures.values()) / self.total if self.total else float("nan")

    def as_dict(self) -> dict:
        return {"total": self.total, "valid": self.total - sum(self.failures.values()),
                "valid_rate": self.valid_rate, "failures": dict(self.failures.most_common())}


def check_sequence(vocabulary: Vocabulary, ids: list[int], prompt_formula: dict[str, int] | None = None,
                   id: str | None = None) -> CheckedCif:
    """Decode ``ids`` and run every check (see the module docstring)."""
    import spglib

    try:
        cif = vocabulary.decode(ids)
    except CifTokenError:
        return CheckedCif(None, None, "parse")
    try:
        crystal = expand(cif, id=id)
    except CifDecodeError as exc:
        return CheckedCif(cif, None, exc.cause)
    if prompt_formula is not None and dict(cif.formula) != dict(prompt_formula):
        return CheckedCif(cif, None, "formula")
    params = symmetrised_cell(cif.spacegroup, cif.cell)
    if not (MIN_LENGTH <= params[:3].min() and params[:3].max() <= MAX_LENGTH
            and MIN_ANGLE <= params[3:].min() and params[3:].max() <= MAX_ANGLE):
        return CheckedCif(cif, None, "cell-sanity")
    if crystal.num_atoms > 1 and min_interatomic_distance(crystal) < MIN_DISTANCE:
        return CheckedCif(cif, None, "bond-length")
    found = spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, crystal.atomic_numbers),
                                        symprec=CHECK_SYMPREC)
    if found is None or int(found.number) != cif.spacegroup:
        return CheckedCif(cif, None, "spacegroup")
    return CheckedCif(cif, crystal)


__all__ = ["CHECKS", "CheckedCif", "CifCheckCounts", "check_sequence"]
