"""A Gaussian mixture over latent vectors, fitted after training to where the encoder puts the
training crystals (the aggregate posterior), and sampled in torch.

A VAE's N(0, I) prior and its aggregate posterior never agree exactly; draws from the prior that
fall between the posterior's clusters decode to images of no crystal in the data. Sampling from
a density fitted to the posterior means instead ("ex-post density estimation", Ghosh et al.,
ICLR 2020) keeps the network and only changes where ``z`` comes from.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

#: Added to each covariance's diagonal so that a component fitted to a few points stays positive definite.
COVARIANCE_FLOOR = 1e-4


@dataclass
class GaussianMixture:
    weights: torch.Tensor  # (components,)
    means: torch.Tensor  # (components, dim)
    scale_tril: torch.Tensor  # (components, dim, dim), Cholesky factors of the covariances

    @classmethod
    def fit(cls, points: np.ndarray, components: int, seed: int = 0) -> "GaussianMixture":
        """Full-covariance mixture of ``components`` Gaussians, by EM (scikit-learn)."""
        from sklearn.mixture import GaussianMixture as SklearnMixture

        points = np.asarray(points, dtype=np.float64)
        if components > len(points):
            raise ValueError(f"a mixture of {components} components needs at least as many points, got {len(points)}")
        fitted = SklearnMixture(components, covariance_type="full", reg_covar=COVARIANCE_FLOOR,
                                random_state=seed).fit(points)
        return cls(torch.tensor(fitted.weights_, dtype=torch.float32),
                   torch.tensor(fitted.means_, dtype=torch.float32),
                   torch.tensor(np.linalg.cholesky(fitted.covariances_), dtype=torch.float32))

    @property
    def components(self) -> int:
        return len(self.weights)

    def sample(self, n: int, generator: torch.Generator | None = None, temperature: float = 1.0,
               device: torch.device | str = "cpu") -> torch.Tensor:
        """``n`` draws on ``device``, made on the CPU (``generator`` is a CPU generator) so that a seed gives
        the same draws everywhere; ``temperature`` scales every component's standard deviation."""
        picked = torch.multinomial(self.weights, n, replacement=True, generator=generator)
        noise = torch.randn(n, self.means.shape[1], generator=generator)
        z = self.means[picked] + temperature * (self.scale_tril[picked] @ noise.unsqueeze(-1)).squeeze(-1)
        return z.to(device)

    def state(self, prefix: str) -> dict[str, torch.Tensor]:
        return {f"{prefix}.weights": self.weights, f"{prefix}.means": self.means,
                f"{prefix}.scale_tril": self.scale_tril}

    @classmethod
    def from_state(cls, tensors: dict, prefix: str) -> "GaussianMixture":
        """The mixture stored by :meth:`state`; ``KeyError`` when it is not there."""
        return cls(*(torch.as_tensor(np.asarray(tensors[f"{prefix}.{name}"]), dtype=torch.float32)
                     for name in ("weights", "means", "scale_tril")))

