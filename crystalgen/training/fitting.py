"""What every trained model's ``fit`` does before its own training: load the protocol's training
split and record the protocol in the model's config (so its checkpoint and card name it)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from crystalgen.crystal import Crystal
from crystalgen.models.base import TrainingRun


class TrainsOnProtocol:
    """Mixin: ``fit(protocol, data_dir, run)`` on top of the class's ``fit_crystals(train, run)``."""

    config: dict

    def fit_crystals(self, train: Sequence[Crystal], run: TrainingRun) -> None:
        raise NotImplementedError

    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None, run: TrainingRun | None = None) -> None:
        """Train on the protocol's training split; ``run`` says where the resumable state goes, and on what device."""
        from crystalgen.data.protocols import load_training_split

        spec, train = load_training_split(protocol, data_dir)
        self.config.update({"protocol": spec.name, "dataset": spec.dataset})
        self.fit_crystals(train, run or TrainingRun())
