"""Numbers shared across crystalgen, each defined once.

Changing one changes every place that uses it; :data:`MAX_EMBEDDED_Z` is also fixed by the shipped
weights (the embedding tables have ``MAX_EMBEDDED_Z + 1`` rows), so it cannot change without retraining.
"""

#: The largest atomic number of a named element (oganesson).
MAX_Z = 118
#: The largest atomic number the networks (denoiser, surrogate) have an embedding for.
MAX_EMBEDDED_Z = 100

#: Symmetry tolerance (Å) for spglib / pymatgen space-group detection.
SYMPREC = 0.1
#: Angle tolerance (degrees) for space-group detection.
ANGLE_TOLERANCE = 5.0

#: StructureMatcher site tolerance, as a fraction of the average free length per atom, (V/N)^(1/3).
MATCHER_STOL = 0.5
#: StructureMatcher fractional lattice-length tolerance.
MATCHER_LTOL = 0.3
#: StructureMatcher lattice-angle tolerance in degrees.
MATCHER_ANGLE_TOL = 10.0

#: Default stability threshold: energy above the convex hull, eV/atom.
DEFAULT_MAX_E_ABOVE_HULL = 0.1
