"""A trained surrogate: the ensemble plus its provenance, fitted on a data protocol, saved as a
checkpoint folder, and applied to lists of crystals.

Config (YAML, see ``configs/models/surrogate-*.yaml``)::

    name: surrogate-mp_20
    family: surrogate
    protocol: mp_20_reduced_train
    properties: [formation_energy_per_atom, band_gap]
    model: {members: 4, hidden: 64, layers: 3, cutoff: 4.0, distance_features: 32}
    training: {steps: 5000, batch_size: 64, lr: 0.002, lr_schedule: cosine, warmup_steps: 200}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from crystalgen.batch import collate
from crystalgen.config_sections import checked_section, dataclass_defaults, section_dataclass
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.constants import MAX_EMBEDDED_Z
from crystalgen.models.base import PROPERTY, Model, TrainingRun, load_weights
from crystalgen.models.capabilities import Capabilities
from crystalgen.training.fitting import TrainsOnProtocol

if TYPE_CHECKING:
    from crystalgen.surrogate.evaluation import PropertyErrors
from crystalgen.surrogate.model import EncoderConfig, SurrogateConfig, SurrogateEnsemble

FAMILY = "surrogate"
#: Crystals per forward pass when predicting: big enough for efficient matrix products, small
#: enough that the radius graphs of mp_20-sized cells stay well under a GB.
PREDICT_BATCH = 256


class Surrogate(TrainsOnProtocol, Model):
    """Property predictions with an ensemble spread, for lists of :class:`Crystal`."""

    family = FAMILY
    kind = PROPERTY

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        return Capabilities(trained=True)

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        properties = self.config.get("properties")
        if not properties or not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise CrystalgenInputError("a surrogate config needs 'properties': a list of property names")
        model = checked_section("model", self.config.get("model"),
                                {"members": SurrogateConfig().members, **dataclass_defaults(EncoderConfig)})
        members = model.pop("members", SurrogateConfig().members)
        self.ensemble = SurrogateEnsemble(SurrogateConfig(tuple(properties), members, EncoderConfig(**model)))
        from crystalgen.training import TrainConfig

        self.train_config: TrainConfig = section_dataclass(self.config, "training", TrainConfig)
        self._loaded = False

    @property
    def properties(self) -> tuple[str, ...]:
        return self.ensemble.config.properties

    @property
    def is_fitted(self) -> bool:
        return bool(self.training_summary) or self._loaded

    # ------------------------------------------------------------------ fitting
    def fit_crystals(self, train: Sequence[Crystal], run: TrainingRun) -> None:
        from crystalgen.training import train_model

        train = [c for c in train if any(p in c.properties for p in self.properties)]
        if not train:
            raise CrystalgenInputError(f"no training crystal has any of the properties {', '.join(self.properties)}")
        values = torch.tensor([[c.properties.get(p, np.nan) for p in self.properties] for c in train])
        self.ensemble.set_statistics(values)
        self.training_summary = train_model(self.ensemble, train, self.train_config, run)
        self.ensemble.cpu()

    # ------------------------------------------------------------------ prediction
    def predict(self, crystals: Sequence[Crystal], batch_size: int = PREDICT_BATCH) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """property -> (mean, std) arrays over ``crystals``, in the property's own units (NaN for a
        crystal with an element beyond Z = 100, which the network has no embedding for)."""
        known = np.array([int(c.atomic_numbers.max(initial=0)) <= MAX_EMBEDDED_Z for c in crystals], dtype=bool)
        usable = [c for c, ok in zip(crystals, known) if ok]
        mean = np.full((len(crystals), len(self.properties)), np.nan)  # NaN: an element the model cannot embed
        std = mean.copy()
        with torch.no_grad():
            for start in range(0, len(usable), batch_size):
                prediction = self.ensemble.predict_batch(collate(usable[start:start + batch_size]))
                rows = np.flatnonzero(known)[start:start + batch_size]
                mean[rows] = prediction.mean.detach().cpu().double().numpy()
                std[rows] = prediction.std.detach().cpu().double().numpy()
        return {name: (mean[:, j], self.calibrated_std(name, std[:, j])) for j, name in enumerate(self.properties)}

    def calibrated_std(self, name: str, ensemble_std: np.ndarray) -> np.ndarray:
        """The ensemble spread mapped to an error estimate: ``sqrt((scale std)^2 + floor^2)``, with
        ``scale`` and ``floor`` fitted on held-out structures (:meth:`calibrate`); the raw spread if uncalibrated.

        Deep ensembles trained on the same data agree more than their errors warrant; this keeps the
        ranking (a larger spread still means a larger estimate) and fixes the scale."""
        fitted = (self.config.get("calibration") or {}).get(name)
        if not fitted:
            return ensemble_std
        return np.sqrt((fitted["scale"] * ensemble_std) ** 2 + fitted["floor"] ** 2)

    def calibrate(self, held_out: Sequence[Crystal]) -> dict[str, "PropertyErrors"]:
        """Fit each property's (scale, floor) by Gaussian likelihood of the held-out errors; returns
        those errors (with the raw spread, whose ranking the calibration keeps)."""
        from crystalgen.surrogate.evaluation import fit_std_calibration, property_errors

        self.config.pop("calibration", None)
        errors = property_errors(self, held_out)
        fitted = {name: fit_std_calibration(e) for name, e in errors.items() if e.n}
        self.config["calibration"] = {name: {"scale": round(a, 6), "floor": round(b, 6), "n": n}
                                      for name, (a, b, n) in fitted.items()}
        return errors

    # ------------------------------------------------------------------ persistence
    def state(self) -> dict[str, torch.Tensor]:
        return {k: v.detach().float() for k, v in self.ensemble.state_dict().items()}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        load_weights(self.ensemble, tensors, f"surrogate checkpoint {self.name!r}")
        self._loaded = True

    def checkpoint_config(self) -> dict[str, Any]:
        model = {"members": self.ensemble.config.members, **asdict(self.ensemble.config.encoder)}
        return {**self.config, "family": FAMILY, "properties": list(self.properties), "model": model,
                "training": asdict(self.train_config)}

    def card_notes(self, fit_wall_s: float) -> str:
        return f"- **Properties:** {', '.join(self.properties)}\n"

    def after_fit(self, data_dir: str | os.PathLike | None = None) -> str:
        """Calibrate the ensemble spread on the protocol's held-out split; its card section."""
        from crystalgen.data import load_protocol
        from crystalgen.surrogate.evaluation import heldout_section

        held_out = load_protocol(self.protocol).load(data_dir, include_test=False).select if self.protocol else []
        errors = self.calibrate(held_out) if held_out else {}
        return heldout_section(self, errors, len(held_out))

    def describe_architecture(self) -> str:
        encoder = self.ensemble.config.encoder
        parameters = sum(p.numel() for p in self.ensemble.parameters())
        return (f"deep ensemble of {self.ensemble.config.members} CGCNN-style networks, {parameters:,} parameters "
                f"in all; hidden {encoder.hidden}, {encoder.layers} gated convolutions over a {encoder.cutoff} Å "
                f"periodic radius graph, {encoder.distance_features} Gaussian distance features")


def load_surrogate(name_or_path: str | os.PathLike) -> Surrogate:
    """A trained surrogate from a checkpoint folder or a shipped checkpoint name (through the model store)."""
    from crystalgen.models.registry import load_model

    model = load_model(name_or_path, kind=PROPERTY)
    if not isinstance(model, Surrogate):
        raise CrystalgenInputError(f"{name_or_path} is a {model.family!r} property model, not a surrogate")
    return model
