"""What every learned model's ``fit`` does before its own training: load the protocol's training
split and record the protocol in the model's config (so its checkpoint and card name it)."""

from __future__ import annotations

import os
from collections.abc import Sequence

from crystalgen.crystal import Crystal


class TrainsOnProtocol:
    """Mixin: ``fit(protocol, ...)`` on top of the class's ``fit_crystals(train, ...)``."""

    config: dict

    def fit_crystals(self, train: Sequence[Crystal], run_dir: str | os.PathLike | None = None, resume: bool = False,
                     time_limit_s: float | None = None) -> None:
        raise NotImplementedError

    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None, run_dir: str | os.PathLike | None = None,
            resume: bool = False, time_limit_s: float | None = None) -> None:
        """Train on the protocol's training split; ``run_dir`` keeps the resumable training state and log."""
        from crystalgen.data.protocols import load_training_split

        spec, train = load_training_split(protocol, data_dir)
        self.config.update({"protocol": spec.name, "dataset": spec.dataset})
        self.fit_crystals(train, run_dir, resume, time_limit_s)
