"""The design oracle: a property model that judges design results and never guides them.

A different architecture from the guiding surrogate (a graph-network ensemble) and a different
seed, so that a search which exploits the surrogate's mistakes does not also fool its judge:
gradient-boosted trees (scikit-learn's histogram GBM) on fixed descriptors
(:mod:`crystalgen.design.descriptors`), one booster per property, early-stopped on the protocol's
selection split.

The fitted trees are flattened into arrays (feature, threshold, children, leaf value) and stored in
``model.safetensors``, so a checkpoint is plain numbers, never a pickle; predictions walk all trees
for all crystals at once in numpy. scikit-learn is needed to fit, not to predict.

Config (see ``configs/models/oracle-*.yaml``)::

    name: oracle-perov_5
    family: oracle
    protocol: perov_5
    properties: [heat_ref]
    boosting: {max_iterations: 1500, learning_rate: 0.06, max_leaf_nodes: 31}
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from crystalgen.config_sections import section_dataclass
from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.models.base import PROPERTY, Model, TrainingRun
from crystalgen.models.capabilities import Capabilities

FAMILY = "oracle"
#: Crystals whose tree walk runs at once: (crystals x trees) node indices stay under ~50 MB.
PREDICT_CHUNK = 4096
_NODE_FIELDS = ("feature", "threshold", "left", "right", "value", "is_leaf", "missing_left")


@dataclass(frozen=True)
class BoostingConfig:
    max_iterations: int = 1500
    learning_rate: float = 0.06
    max_leaf_nodes: int = 31
    min_samples_leaf: int = 10
    l2_regularization: float = 1.0
    #: Rounds without improvement on the selection split before boosting stops.
    patience: int = 50
    seed: int = 1


@dataclass
class TreeEnsemble:
    """Regression trees flattened into node arrays; a node's children are indices into the same arrays."""

    feature: np.ndarray  # (nodes,) int64: feature tested
    threshold: np.ndarray  # (nodes,) float64: go left when x <= threshold
    left: np.ndarray  # (nodes,) int64
    right: np.ndarray  # (nodes,) int64
    value: np.ndarray  # (nodes,) float64: leaf output, learning rate included
    is_leaf: np.ndarray  # (nodes,) bool
    missing_left: np.ndarray  # (nodes,) bool: where a NaN feature goes
    roots: np.ndarray  # (trees,) int64
    baseline: float
    depth: int

    @classmethod
    def from_sklearn(cls, booster: Any) -> "TreeEnsemble":
        """Flatten a fitted ``HistGradientBoostingRegressor`` (numerical features only)."""
        parts, roots, offset = [], [], 0
        for (predictor,) in booster._predictors:  # noqa: SLF001 - the fitted trees have no public accessor
            nodes = predictor.nodes
            if nodes["is_categorical"].any():
                raise ValueError("categorical splits are not supported")
            parts.append((nodes, offset))
            roots.append(offset)
            offset += len(nodes)
        cat = lambda key, shift=False: np.concatenate(  # noqa: E731
            [nodes[key].astype(np.int64) + (start if shift else 0) for nodes, start in parts]) if parts else np.zeros(0, np.int64)
        return cls(feature=cat("feature_idx"),
                   threshold=np.concatenate([n["num_threshold"] for n, _ in parts]).astype(np.float64),
                   left=cat("left", True), right=cat("right", True),
                   value=np.concatenate([n["value"] for n, _ in parts]).astype(np.float64),
                   is_leaf=cat("is_leaf").astype(bool), missing_left=cat("missing_go_to_left").astype(bool),
                   roots=np.array(roots, dtype=np.int64), baseline=float(np.ravel(booster._baseline_prediction)[0]),
                   depth=int(max((int(n["depth"].max()) for n, _ in parts), default=0)))

    def predict(self, features: np.ndarray) -> np.ndarray:
        out = np.full(len(features), self.baseline)
        for start in range(0, len(features), PREDICT_CHUNK):
            x = features[start:start + PREDICT_CHUNK]
            node = np.broadcast_to(self.roots, (len(x), len(self.roots))).copy()
            rows = np.arange(len(x))[:, None]
            for _ in range(self.depth):
                value = x[rows, self.feature[node]]
                go_left = np.where(np.isnan(value), self.missing_left[node], value <= self.threshold[node])
                node = np.where(self.is_leaf[node], node, np.where(go_left, self.left[node], self.right[node]))
            out[start:start + len(x)] += self.value[node].sum(axis=1)
        return out

    def state(self, prefix: str) -> dict[str, np.ndarray]:
        arrays = {f"{prefix}.{key}": np.asarray(getattr(self, key)) for key in _NODE_FIELDS}
        arrays[f"{prefix}.is_leaf"] = self.is_leaf.astype(np.uint8)
        arrays[f"{prefix}.missing_left"] = self.missing_left.astype(np.uint8)
        arrays[f"{prefix}.roots"] = self.roots
        arrays[f"{prefix}.scalars"] = np.array([self.baseline, self.depth], dtype=np.float64)
        return arrays

    @classmethod
    def from_state(cls, tensors: dict[str, Any], prefix: str) -> "TreeEnsemble":
        get = lambda key: np.asarray(tensors[f"{prefix}.{key}"])  # noqa: E731
        baseline, depth = get("scalars")
        return cls(feature=get("feature").astype(np.int64), threshold=get("threshold").astype(np.float64),
                   left=get("left").astype(np.int64), right=get("right").astype(np.int64),
                   value=get("value").astype(np.float64), is_leaf=get("is_leaf").astype(bool),
                   missing_left=get("missing_left").astype(bool), roots=get("roots").astype(np.int64),
                   baseline=float(baseline), depth=int(depth))


class Oracle(Model):
    """Judge-only property predictions for lists of :class:`Crystal` (no uncertainty: std is NaN)."""

    family = FAMILY
    kind = PROPERTY

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        return Capabilities()

    def __init__(self, config: dict | None = None) -> None:
        super().__init__(config)
        properties = self.config.get("properties")
        if not properties or not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            raise CrystalgenInputError("an oracle config needs 'properties': a list of property names")
        self.boosting: BoostingConfig = section_dataclass(self.config, "boosting", BoostingConfig)
        self.trees: dict[str, TreeEnsemble] = {}

    @property
    def properties(self) -> tuple[str, ...]:
        return tuple(self.config["properties"])

    @property
    def is_fitted(self) -> bool:
        return set(self.trees) == set(self.properties)

    def fit(self, protocol: str, data_dir: str | os.PathLike | None = None, run: TrainingRun | None = None) -> None:
        """Boost on the protocol's training split, early-stopped on its selection split (one pass; ``run`` is unused)."""
        from crystalgen.data import load_protocol
        from crystalgen.design.descriptors import describe

        spec = load_protocol(protocol)
        data = spec.load(data_dir, include_test=False)
        self.config.update({"protocol": spec.name, "dataset": spec.dataset})
        train_x, select_x = describe(data.train), describe(data.select)
        for name in self.properties:
            self.trees[name] = self._boost(name, train_x, _targets(data.train, name), select_x, _targets(data.select, name))

    def _boost(self, name: str, x: np.ndarray, y: np.ndarray, x_val: np.ndarray, y_val: np.ndarray) -> TreeEnsemble:
        from sklearn.ensemble import HistGradientBoostingRegressor

        known, known_val = np.isfinite(y), np.isfinite(y_val)
        if not known.any() or not known_val.any():
            raise CrystalgenInputError(f"oracle: no training or selection crystal has {name!r}")
        b = self.boosting
        booster = HistGradientBoostingRegressor(
            max_iter=b.max_iterations, learning_rate=b.learning_rate, max_leaf_nodes=b.max_leaf_nodes,
            min_samples_leaf=b.min_samples_leaf, l2_regularization=b.l2_regularization, early_stopping=True,
            n_iter_no_change=b.patience, random_state=b.seed)
        booster.fit(x[known], y[known], X_val=x_val[known_val], y_val=y_val[known_val])
        return TreeEnsemble.from_sklearn(booster)

    def predict(self, crystals: Sequence[Crystal]) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """property -> (mean, std) over ``crystals``; std is NaN (the oracle judges, it does not hedge)."""
        from crystalgen.design.descriptors import describe

        if not self.is_fitted:
            raise CrystalgenInputError(f"oracle {self.name!r} is not fitted; train it with `crystalgen train`")
        features = describe(list(crystals))
        nan = np.full(len(crystals), np.nan)
        return {name: (self.trees[name].predict(features), nan) for name in self.properties}

    def state(self) -> dict[str, np.ndarray]:
        return {k: v for name, trees in self.trees.items() for k, v in trees.state(name).items()}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        try:
            self.trees = {name: TreeEnsemble.from_state(tensors, name) for name in self.properties}
        except KeyError as exc:
            raise CrystalgenInputError(f"oracle checkpoint {self.name!r}: no trees for {exc}") from None

    def checkpoint_config(self) -> dict[str, Any]:
        return {**self.config, "family": FAMILY, "properties": list(self.properties), "boosting": asdict(self.boosting)}

    def describe_architecture(self) -> str:
        from crystalgen.design.descriptors import feature_names

        trees = ", ".join(f"{len(t.roots)} trees for {name}" for name, t in self.trees.items())
        return (f"gradient-boosted regression trees (scikit-learn HistGradientBoostingRegressor, up to "
                f"{self.boosting.max_leaf_nodes} leaves, learning rate {self.boosting.learning_rate}, seed "
                f"{self.boosting.seed}) on {len(feature_names())} Magpie composition, cell and radial descriptors; {trees}")

    def card_notes(self, fit_wall_s: float) -> str:
        return (f"- **Architecture:** {self.describe_architecture()}\n"
                f"- **Fit wall time:** {fit_wall_s:.1f} s (featurising and boosting)\n"
                f"- **Properties:** {', '.join(self.properties)}\n"
                "- **Role:** judges design results; never guides them\n")

    def after_fit(self, data_dir: str | os.PathLike | None = None) -> str:
        """Selection- and test-split errors (the test split is read here only, never used to fit or stop)."""
        from crystalgen.data import load_protocol

        data = load_protocol(self.protocol).load(data_dir, include_test=True)
        rows = []
        for split, crystals in (("selection", data.select), ("test", data.test)):
            predicted = self.predict(crystals)
            for name in self.properties:
                truth = _targets(crystals, name)
                known = np.isfinite(truth)
                error = np.abs(predicted[name][0][known] - truth[known])
                baseline = np.abs(np.nanmean(_targets(data.train, name)) - truth[known])
                rows.append(f"| {split} | {name} | {known.sum():,} | {error.mean():.4f} | {baseline.mean():.4f} |")
                self.measured_metrics[f"{self.dataset}_{name}_{split}_mae"] = round(float(error.mean()), 5)
        return ("\n## Measured errors\n\n| split | property | n | MAE | MAE of the training mean |\n"
                "|---|---|---|---|---|\n" + "\n".join(rows) + "\n")


def check_independent(guide: Any, judge: Any) -> None:
    """Refuse a judge of the same family as the guide: success is never judged by the kind of model
    whose mistakes the search may have exploited."""
    if judge.family == guide.family:
        raise CrystalgenInputError(f"the oracle {judge.name!r} is a {judge.family!r} model like the guide "
                                   f"{guide.name!r}; the judge must be another architecture than the guide")


def _targets(crystals: Sequence[Crystal], name: str) -> np.ndarray:
    return np.array([c.properties.get(name, np.nan) for c in crystals], dtype=np.float64)
