"""Surrogate property models: a deep ensemble of periodic GNN regressors (:mod:`.model`)."""

from crystalgen.surrogate.model import Prediction, PropertyNet, SurrogateConfig, SurrogateEnsemble

__all__ = ["Prediction", "PropertyNet", "SurrogateConfig", "SurrogateEnsemble"]
