"""The checks every generated CIF must pass (CrystaLLM's, written in-house), and why one failed.

In order, the first that fails names the cause:

1. ``parse``, ``cell``, ``multiplicity``, ``overlap``, ``composition``: the sequence decodes to a
   crystal whose sites' multiplicities add up to the formula
   (:func:`crystalgen.representations.cif_tokens.expand`);
2. ``formula``: the formula is the prompt's (the same element counts per primitive cell);
3. ``cell-sanity``: lengths within :data:`CELL_LENGTHS` Å, angles within :data:`CELL_ANGLES` degrees;
4. ``bond-length``: no two atoms closer than :data:`~crystalgen.metrics.validity.MIN_DISTANCE` Å
   (the structural-validity rule of every benchmark here);
5. ``spacegroup``: spglib at symprec 0.1 finds the stated space group.
"""

from __future__ import annotations

from dataclasses import dataclass

from crystalgen.crystal import Crystal
from crystalgen.metrics.validity import MIN_DISTANCE, min_interatomic_distance
from crystalgen.representations.cif_tokens import CifDecodeError, expand, symmetrised_cell
from crystalgen.representations.cif_vocab import CanonicalCif, CifTokenError, Vocabulary

#: Sane cell lengths (Å) and angles (degrees), inclusive.
CELL_LENGTHS, CELL_ANGLES = (1.0, 60.0), (20.0, 160.0)
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


def cell_is_sane(parameters) -> bool:
    """Whether cell parameters (a, b, c, alpha, beta, gamma) are within :data:`CELL_LENGTHS` and :data:`CELL_ANGLES`."""
    lengths, angles = parameters[:3], parameters[3:]
    return (CELL_LENGTHS[0] <= min(lengths) and max(lengths) <= CELL_LENGTHS[1]
            and CELL_ANGLES[0] <= min(angles) and max(angles) <= CELL_ANGLES[1])


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
    if not cell_is_sane(params):
        return CheckedCif(cif, None, "cell-sanity")
    if crystal.num_atoms > 1 and min_interatomic_distance(crystal) < MIN_DISTANCE:
        return CheckedCif(cif, None, "bond-length")
    found = spglib.get_symmetry_dataset((crystal.lattice, crystal.frac_coords, crystal.atomic_numbers),
                                        symprec=CHECK_SYMPREC)
    if found is None or int(found.number) != cif.spacegroup:
        return CheckedCif(cif, None, "spacegroup")
    return CheckedCif(cif, crystal)


__all__ = ["CELL_ANGLES", "CELL_LENGTHS", "CHECKS", "CheckedCif", "cell_is_sane", "check_sequence"]
