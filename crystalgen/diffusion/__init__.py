"""Crystal-agnostic diffusion pieces (manifolds, noise processes), reused by every diffusion generator."""

from crystalgen.diffusion.torus import (
    geometric_sigmas,
    minimum_image,
    sample_wrapped_normal,
    wrap,
    wrapped_normal_score,
    wrapped_normal_score_norm,
)

__all__ = [
    "geometric_sigmas",
    "minimum_image",
    "sample_wrapped_normal",
    "wrap",
    "wrapped_normal_score",
    "wrapped_normal_score_norm",
]
