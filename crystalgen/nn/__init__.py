"""Shared neural-network layers: periodic features, batched graphs, the periodic denoiser."""

from crystalgen.nn.denoiser import DenoiserConfig, DenoiserOutput, PeriodicDenoiser
from crystalgen.nn.features import PeriodicFourierFeatures, SinusoidalEmbedding, lattice_invariants
from crystalgen.nn.graph import fully_connected_edges, segment_mean

__all__ = [
    "DenoiserConfig",
    "DenoiserOutput",
    "PeriodicDenoiser",
    "PeriodicFourierFeatures",
    "SinusoidalEmbedding",
    "fully_connected_edges",
    "lattice_invariants",
    "segment_mean",
]
