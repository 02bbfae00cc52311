"""How good a surrogate is: errors and calibration of its predictions against known properties."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.surrogate.predictor import Surrogate

#: Quantile bins of the predicted std used for the calibration table and figure.
CALIBRATION_BINS = 5


@dataclass
class PropertyErrors:
    """Prediction against truth for one property, on the crystals that have it."""

    name: str
    truth: np.ndarray
    mean: np.ndarray
    std: np.ndarray

    @property
    def n(self) -> int:
        return len(self.truth)

    @property
    def absolute_errors(self) -> np.ndarray:
        return np.abs(self.mean - self.truth)

    @property
    def mae(self) -> float:
        return float(self.absolute_errors.mean()) if self.n else float("nan")

    @property
    def rmse(self) -> float:
        return float(np.sqrt(np.mean((self.mean - self.truth) ** 2))) if self.n else float("nan")

    @property
    def spearman_error_std(self) -> float:
        """Rank correlation of |error| with the predicted std: > 0 when the spread flags the worse predictions."""
        if self.n < 3:
            return float("nan")
        from scipy.stats import spearmanr

        return float(spearmanr(self.absolute_errors, self.std).statistic)

    def calibration_bins(self, bins: int = CALIBRATION_BINS) -> list[dict[str, float]]:
        """Crystals split into quantile bins of predicted std: per bin, mean std, RMSE and MAE of the mean."""
        if self.n == 0:
            return []
        order = np.argsort(self.std)
        rows = []
        for chunk in np.array_split(order, min(bins, self.n)):
            errors = self.mean[chunk] - self.truth[chunk]
            rows.append({"n": len(chunk), "mean_std": float(self.std[chunk].mean()),
                         "rmse": float(np.sqrt(np.mean(errors ** 2))), "mae": float(np.abs(errors).mean())})
        return rows


def fit_std_calibration(errors: PropertyErrors) -> tuple[float, float, int]:
    """(scale, floor, n) maximising the Gaussian likelihood of the errors under
    std' = sqrt((scale std)^2 + floor^2)."""
    from scipy.optimize import minimize

    residual = errors.mean - errors.truth
    spread = np.maximum(errors.std, 0.0)

    def negative_log_likelihood(log_params: np.ndarray) -> float:
        scale, floor = np.exp(log_params)
        variance = (scale * spread) ** 2 + floor ** 2
        return float(np.mean(np.log(variance) + residual ** 2 / variance))

    start = np.log([1.0, max(float(np.sqrt(np.mean(residual ** 2))), 1e-6)])
    result = minimize(negative_log_likelihood, start, method="Nelder-Mead")
    scale, floor = np.exp(result.x)
    return float(scale), float(floor), errors.n


def property_errors(model: Surrogate, crystals: Sequence[Crystal]) -> dict[str, PropertyErrors]:
    """Per property: truth, ensemble mean and std on the crystals that have that property."""
    predictions = model.predict(crystals)
    result = {}
    for name, (mean, std) in predictions.items():
        has = np.array([name in c.properties for c in crystals], dtype=bool)
        truth = np.array([c.properties.get(name, np.nan) for c in crystals], dtype=np.float64)
        result[name] = PropertyErrors(name, truth[has], mean[has], std[has])
    return result


def heldout_section(model: Surrogate, errors: dict[str, PropertyErrors], structures: int) -> str:
    """A card section with the errors on the protocol's selection (held-out) split of ``structures``
    crystals (as :meth:`Surrogate.calibrate` returns them), and the std calibration fitted there."""
    if not structures:
        return "\n## Held-out errors\n\nThe protocol has no selection split; the spread is uncalibrated.\n"
    lines = ["", "## Held-out errors", "",
             f"On the protocol's selection split ({structures:,} structures, never trained on); the test "
             "split is measured by `crystalgen benchmark surrogate`. The reported std is the ensemble spread "
             "mapped to sqrt((scale std)^2 + floor^2), with scale and floor fitted on this split by Gaussian "
             "likelihood.", "",
             "| property | n | MAE | RMSE | Spearman(|error|, std) | std scale | std floor |", "|---|---|---|---|---|---|---|"]
    calibration = model.config.get("calibration") or {}
    for name, e in errors.items():
        fitted = calibration.get(name, {})
        lines.append(f"| {name} | {e.n:,} | {e.mae:.4f} | {e.rmse:.4f} | "
                     f"{e.spearman_error_std:.3f} | {fitted.get('scale', 1.0):.3f} | {fitted.get('floor', 0.0):.4f} |")
    return "\n".join(lines) + "\n"

