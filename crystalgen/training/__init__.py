"""The shared training loop (:mod:`~crystalgen.training.trainer`) and pickle-free training state."""

from crystalgen.training.trainer import EMA, DistributedContext, TrainConfig, Trainer, train_model

__all__ = ["EMA", "DistributedContext", "TrainConfig", "Trainer", "train_model"]
