"""Surrogate property models: a deep ensemble of periodic GNN regressors (:mod:`.model`)."""

from crystalgen.surrogate.model import EncoderConfig, Prediction, PropertyNet, SurrogateConfig, SurrogateEnsemble

__all__ = ["EncoderConfig", "Prediction", "PropertyNet", "SurrogateConfig", "SurrogateEnsemble"]
