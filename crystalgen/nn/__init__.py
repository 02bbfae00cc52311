"""Shared neural-network layers: periodic features, batched graphs, the periodic denoiser, and the
distance-based layers of the surrogate (periodic radius graphs, Gaussian distance features, gated
convolutions, element descriptors)."""

from crystalgen.nn.convolution import GatedConvolution, GaussianDistanceBasis, cosine_envelope
from crystalgen.nn.denoiser import DenoiserConfig, DenoiserOutput, PeriodicDenoiser
from crystalgen.nn.elements import element_feature_table
from crystalgen.nn.features import PeriodicFourierFeatures, SinusoidalEmbedding, lattice_invariants
from crystalgen.nn.graph import fully_connected_edges, segment_mean
from crystalgen.nn.radius_graph import PeriodicEdges, periodic_radius_graph

__all__ = [
    "DenoiserConfig",
    "DenoiserOutput",
    "GatedConvolution",
    "GaussianDistanceBasis",
    "PeriodicDenoiser",
    "PeriodicEdges",
    "PeriodicFourierFeatures",
    "SinusoidalEmbedding",
    "cosine_envelope",
    "element_feature_table",
    "fully_connected_edges",
    "lattice_invariants",
    "periodic_radius_graph",
    "segment_mean",
]
