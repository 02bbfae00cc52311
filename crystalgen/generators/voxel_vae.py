"""The voxel family (iMatGen-style, written in-house): a VAE over voxel images of the cell and the
per-element basis (:mod:`crystalgen.representations.voxel`), with 3D convolutions from
:mod:`crystalgen.nn.conv3d`, trained by the shared :class:`~crystalgen.training.Trainer`.

**Model.** A cell encoder and a basis encoder each turn their image into a code; the posterior
``q(z | codes)`` is a diagonal Gaussian over ``latent_dim`` dimensions; from ``z`` the decoder
rebuilds both codes and, from them, the cell image and the basis image. The basis decoder
predicts an occupancy grid (where atoms are) and per-voxel element logits (which element): the
basis channel of element k is ``occupancy * softmax(logits)_k``, which the network-free voxel
decoder turns into a crystal. Trained end to end on

    Σ (image - reconstruction)² / 2σ² + element_weight · Σ occupancy · CE  +  kl_weight · KL(q || N(0, I))

(``σ`` = ``noise_scale``) plus, with ``property`` set, ``property_weight`` times the squared
error of a head that predicts the standardised property from the posterior mean: the latent
space CDVAE-style optimisation works in. With ``kl_weight`` 1 this is the ELBO of a Gaussian
likelihood of width σ, so the prior is really what samples are drawn from.

**Sampling from scratch.** ``z`` is drawn from the prior N(0, temperature² I), or, with
``sampling.prior: mixture``, from a Gaussian mixture fitted after training to the training
crystals' posterior means (:mod:`crystalgen.nn.mixture`; ``temperature`` then scales each
component), and decoded; an image that describes no crystal is counted by cause in
:attr:`VoxelVAEGenerator.decode_failures` and gives no sample.

Config (YAML, see ``configs/models/voxel-perov_5.yaml``)::

    family: voxel
    protocol: perov_5
    voxel: {grid: 16, width: 1.0, cell_grid: 8}
    model: {latent_dim: 64, basis_widths: [32, 64, 128], cell_widths: [16, 32]}
    training: {steps: 6000, batch_size: 32, lr: 0.001}
"""

from __future__ import annotations

import math
import os
from collections import Counter
from dataclasses import asdict, dataclass
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crystalgen.config_sections import section_dataclass
from crystalgen.crystal import Crystal
from crystalgen.devices import resolve_device
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, SampleOptions, Target
from crystalgen.models.base import TrainingRun, load_weights
from crystalgen.models.capabilities import GEN, Capabilities
from crystalgen.nn.conv3d import VoxelDecoder, VoxelEncoder
from crystalgen.nn.mixture import GaussianMixture
from crystalgen.representations.voxel import Voxel, VoxelConfig, VoxelError, VoxelImage
from crystalgen.training.fitting import TrainsOnProtocol

#: Voxels whose target occupancy is below this carry no element label in the loss.
ELEMENT_SUPPORT = 0.05
#: Where the latent mixture's arrays sit in ``model.safetensors``.
MIXTURE_PREFIX = "latent_prior"
PRIORS = ("normal", "mixture")


@dataclass(frozen=True)
class VAEConfig:
    latent_dim: int = 64
    cell_code: int = 64
    basis_code: int = 256
    cell_widths: tuple[int, ...] = (16, 32)
    basis_widths: tuple[int, ...] = (32, 64, 128)
    #: Channels the 1x1x1 stem mixes the element channels into.
    stem: int = 16
    kl_weight: float = 1.0
    #: σ of the Gaussian likelihood of each voxel.
    noise_scale: float = 0.1
    element_weight: float = 1.0
    property_weight: float = 1.0


@dataclass(frozen=True)
class SamplingConfig:
    #: Scale of the prior's standard deviation when sampling from scratch.
    temperature: float = 1.0
    batch_size: int = 256
    #: ``normal`` (N(0, I)) or ``mixture`` (fitted to the training posterior means after training).
    prior: str = "normal"
    mixture_components: int = 50


@dataclass
class VoxelBatch:
    cell: torch.Tensor  # (batch, 1, cell_grid³)
    basis: torch.Tensor  # (batch, elements, grid³)
    property: torch.Tensor  # (batch,), standardised; NaN where unknown

    def to(self, device: torch.device | str) -> "VoxelBatch":
        return VoxelBatch(self.cell.to(device), self.basis.to(device), self.property.to(device))


class VoxelCollate:
    """Dense batches from sparse :class:`VoxelImage` s, channels in the model's element order."""

    def __init__(self, elements: np.ndarray):
        self.elements = np.asarray(elements)

    def __call__(self, items: list[tuple[VoxelImage, float]]) -> VoxelBatch:
        cells = np.stack([image.cell.dense() for image, _ in items])
        basis = np.stack([image.basis.dense(self.elements) for image, _ in items])
        values = torch.tensor([value for _, value in items], dtype=torch.float32)
        return VoxelBatch(torch.from_numpy(cells), torch.from_numpy(basis), values)


class VoxelVAE(nn.Module):
    def __init__(self, config: VAEConfig, voxel: VoxelConfig, num_elements: int, has_property: bool):
        super().__init__()
        self.config = config
        self.cell_encoder = VoxelEncoder(1, voxel.cell_grid, config.cell_widths, config.cell_code)
        self.basis_encoder = VoxelEncoder(num_elements, voxel.grid, config.basis_widths, config.basis_code, config.stem)
        self.posterior = nn.Linear(config.cell_code + config.basis_code, 2 * config.latent_dim)
        self.expand = nn.Sequential(nn.Linear(config.latent_dim, config.cell_code + config.basis_code), nn.SiLU())
        self.cell_decoder = VoxelDecoder(config.cell_code, voxel.cell_grid, config.cell_widths, 1)
        self.basis_decoder = VoxelDecoder(config.basis_code, voxel.grid, config.basis_widths, 1 + num_elements)
        self.property_head = (nn.Sequential(nn.Linear(config.latent_dim, 128), nn.SiLU(), nn.Linear(128, 1))
                              if has_property else None)

    def encode(self, cell: torch.Tensor, basis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Posterior mean and log-variance."""
        codes = torch.cat([self.cell_encoder(cell), self.basis_encoder(basis)], dim=1)
        mean, log_var = self.posterior(codes).chunk(2, dim=1)
        return mean, log_var.clamp(-12, 6)

    def decode(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Cell image, occupancy and element logits."""
        cell_code, basis_code = self.expand(z).split([self.config.cell_code, self.config.basis_code], dim=1)
        basis = self.basis_decoder(basis_code)
        return self.cell_decoder(cell_code), basis[:, :1], basis[:, 1:]

    def forward(self, batch: VoxelBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        c = self.config
        mean, log_var = self.encode(batch.cell, batch.basis)
        noise = torch.randn(mean.shape, generator=generator, device=mean.device, dtype=mean.dtype)
        cell, occupancy, logits = self.decode(mean + noise * (0.5 * log_var).exp())
        target_occupancy = batch.basis.sum(1, keepdim=True)
        per_crystal = lambda x: x.flatten(1).sum(1).mean()  # noqa: E731
        cell_error = per_crystal((cell - batch.cell) ** 2) / (2 * c.noise_scale ** 2)
        occupancy_error = per_crystal((occupancy - target_occupancy) ** 2) / (2 * c.noise_scale ** 2)
        labelled = target_occupancy > ELEMENT_SUPPORT
        label = batch.basis / target_occupancy.clamp(min=ELEMENT_SUPPORT)
        element_ce = per_crystal(-(label * F.log_softmax(logits, dim=1)).sum(1, keepdim=True)
                                 * target_occupancy * labelled)
        kl = 0.5 * (mean ** 2 + log_var.exp() - 1 - log_var)
        loss = cell_error + occupancy_error + c.element_weight * element_ce + c.kl_weight * kl.sum(1).mean()
        losses = {"cell": cell_error.detach(), "occupancy": occupancy_error.detach(), "element": element_ce.detach(),
                  "kl_per_dim": kl.mean().detach()}
        if self.property_head is not None:
            known = torch.isfinite(batch.property)
            predicted = self.property_head(mean).squeeze(1)
            error = ((predicted - batch.property.nan_to_num()) ** 2 * known).sum() / known.sum().clamp(min=1)
            loss = loss + c.property_weight * error
            losses["property"] = error.detach()
        # per basis voxel, so that the loss (and gradient clipping) does not scale with the grid
        losses["loss"] = loss / batch.basis[0, 0].numel()
        return losses


class VoxelVAEGenerator(TrainsOnProtocol, Generator):
    family = "voxel"

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        return Capabilities(tasks=frozenset({GEN}), options=frozenset({"temperature", "device"}), trained=True)

    def __init__(self, config: dict | None = None) -> None:
        from crystalgen.training import TrainConfig

        super().__init__(config)
        self.voxel_config: VoxelConfig = section_dataclass(self.config, "voxel", VoxelConfig)
        self.vae_config: VAEConfig = section_dataclass(self.config, "model", VAEConfig)
        self.train_config: TrainConfig = section_dataclass(self.config, "training", TrainConfig)
        self.sampling: SamplingConfig = section_dataclass(self.config, "sampling", SamplingConfig)
        if self.sampling.prior not in PRIORS:
            raise CrystalgenInputError(f"sampling.prior must be one of {', '.join(PRIORS)}, got {self.sampling.prior!r}")
        self.representation = Voxel(self.voxel_config)
        self.latent_prior: GaussianMixture | None = None
        self.decode_failures: Counter = Counter()
        self.decode_attempts = 0
        self.model: VoxelVAE | None = None
        self._fitted = False
        if self.config.get("elements"):
            self._build()

    def _build(self) -> None:
        self.elements = np.array(self.config["elements"], dtype=np.int64)
        try:
            self.model = VoxelVAE(self.vae_config, self.voxel_config, len(self.elements),
                                  bool(self.config.get("property")))
        except ValueError as exc:  # a grid the encoder widths cannot halve often enough
            raise CrystalgenInputError(f"voxel model {self.name!r}: {exc}") from None

    @property
    def is_fitted(self) -> bool:
        return self._fitted

    # ------------------------------------------------------------------ fitting
    def fit_crystals(self, train: Sequence[Crystal], run: TrainingRun) -> None:
        from crystalgen.progress import progress_bar
        from crystalgen.training import train_model

        name = self.config.get("property")
        self.config["elements"] = sorted({int(z) for c in train for z in c.atomic_numbers})
        values = np.array([c.properties.get(name, np.nan) if name else np.nan for c in train], dtype=np.float64)
        if name:
            if not np.isfinite(values).any():
                raise CrystalgenInputError(f"no training structure has the property {name!r}")
            self.config["property_mean"] = float(np.nanmean(values))
            self.config["property_std"] = float(np.nanstd(values)) or 1.0
            values = (values - self.config["property_mean"]) / self.config["property_std"]
        self._build()
        items = []
        with progress_bar() as progress:
            task = progress.add_task("voxel images", total=len(train))
            for crystal, value in zip(train, values):
                items.append((self.representation.encode(crystal), float(value)))
                progress.advance(task)
        self.config.setdefault("max_atoms", max(c.num_atoms for c in train))
        self.training_summary = train_model(self.model, items, self.train_config, run,
                                            collate_fn=VoxelCollate(self.elements))
        self.training_summary["image_bytes"] = int(sum(image.nbytes for image, _ in items))
        self.model.cpu()
        self._fitted = True
        if self.sampling.prior == "mixture":
            self.fit_latent_prior(self._posterior_means([image for image, _ in items]), self.sampling.mixture_components)

    def fit_latent_prior(self, means: torch.Tensor, components: int) -> GaussianMixture:
        """Fit the latent mixture to posterior ``means`` (of the training split: ``encode(train)``)
        and sample from it from now on."""
        try:
            mixture = GaussianMixture.fit(means.cpu().numpy(), components, self.train_config.seed)
        except ValueError as exc:
            raise CrystalgenInputError(f"voxel model {self.name!r}: {exc}") from None
        self.set_latent_prior(mixture)
        return mixture

    def set_latent_prior(self, mixture: GaussianMixture | None) -> None:
        """Sample from ``mixture``, or from N(0, I) with ``None``; the checkpoint config follows."""
        self.latent_prior = mixture
        sampling = {**(self.config.get("sampling") or {}), "prior": "mixture" if mixture else "normal"}
        if mixture:
            sampling["mixture_components"] = mixture.components
        self.config["sampling"] = sampling
        self.sampling = section_dataclass(self.config, "sampling", SamplingConfig)

    @torch.no_grad()
    def _posterior_means(self, images: list[VoxelImage], device: str = "cpu") -> torch.Tensor:
        """Posterior means of ``images``, densified and encoded a batch at a time."""
        collate, size = VoxelCollate(self.elements), self.sampling.batch_size
        self.model.to(device)
        means = []
        for start in range(0, len(images), size):
            batch = collate([(image, math.nan) for image in images[start:start + size]]).to(device)
            means.append(self.model.encode(batch.cell, batch.basis)[0])
        return torch.cat(means) if means else torch.zeros(0, self.vae_config.latent_dim, device=device)

    def state(self) -> dict[str, Any]:
        tensors = {k: v.detach().cpu().float() for k, v in self.model.state_dict().items()}
        return {**tensors, **(self.latent_prior.state(MIXTURE_PREFIX) if self.latent_prior else {})}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        if self.model is None:
            raise CrystalgenInputError(f"voxel checkpoint {self.name!r} has no element list in its config")
        mixture = {k: v for k, v in tensors.items() if k.startswith(MIXTURE_PREFIX + ".")}
        load_weights(self.model, {k: v for k, v in tensors.items() if k not in mixture},
                     f"voxel checkpoint {self.name!r}")
        if self.sampling.prior == "mixture":
            try:
                self.latent_prior = GaussianMixture.from_state(mixture, MIXTURE_PREFIX)
            except KeyError:
                raise CrystalgenInputError(f"voxel checkpoint {self.name!r} samples from a latent mixture "
                                           "but its weights hold none") from None
        self._fitted = True

    # ------------------------------------------------------------------ latent space
    @torch.no_grad()
    def encode(self, crystals: Sequence[Crystal], device: str = "cpu") -> torch.Tensor:
        """Posterior means of ``crystals`` (elements outside the model's list are refused)."""
        unknown = sorted({int(z) for c in crystals for z in c.atomic_numbers} - set(self.elements.tolist()))
        if unknown:
            raise CrystalgenInputError(f"model {self.name!r} has no channel for atomic numbers {unknown}")
        return self._posterior_means([self.representation.encode(c) for c in crystals], device)

    @torch.no_grad()
    def decode(self, z: torch.Tensor, compositions: Sequence[dict[int, int] | None] | None = None
               ) -> list[Crystal | VoxelError]:
        """Crystals decoded from latent vectors, or the :class:`VoxelError` of each that describes none."""
        self.model.to(z.device)
        cells, occupancy, logits = self.model.decode(z)
        basis = (occupancy.clamp(min=0) * logits.softmax(dim=1)).cpu().numpy()
        cells = cells[:, 0].cpu().numpy()
        compositions = compositions or [None] * len(z)
        out: list[Crystal | VoxelError] = []
        for cell, channels, composition in zip(cells, basis, compositions):
            try:
                out.append(self.representation.decode_dense(cell, channels, self.elements, composition))
            except VoxelError as failure:
                out.append(failure)
        return out

    def reconstruct(self, crystals: Sequence[Crystal], with_composition: bool = True) -> list[Crystal | VoxelError]:
        """Encode to the posterior mean and decode; with the composition, the decoder keeps its atom counts."""
        compositions = ([dict(zip(*np.unique(c.atomic_numbers, return_counts=True))) for c in crystals]
                        if with_composition else None)
        return self.decode(self.encode(crystals), compositions)

    @property
    def latent_property_name(self) -> str | None:
        """The property the latent head predicts (None without a head): what latent design can steer."""
        return self.config.get("property") if self.model is not None and self.model.property_head is not None else None

    def latent_property(self, z: torch.Tensor) -> torch.Tensor:
        """The property head's prediction (in the property's units) at latent vectors ``z``, differentiable."""
        if self.latent_property_name is None:
            raise CrystalgenInputError(f"model {self.name!r} was trained without a property head")
        standardised = self.model.property_head(z).squeeze(1)
        return standardised * self.config["property_std"] + self.config["property_mean"]

    @torch.no_grad()
    def predict_property(self, z: torch.Tensor) -> torch.Tensor:
        """:meth:`latent_property` without gradients."""
        return self.latent_property(z)

    # ------------------------------------------------------------------ sampling
    def _sample(self, targets: list[Target], n: int, seed: int, options: SampleOptions) -> list[list[Crystal]]:
        device = resolve_device(options.device or "cpu")
        # the mixture draws on the CPU, so a seed gives the same crystals on every device
        generator = torch.Generator("cpu" if self.latent_prior else device).manual_seed(seed)
        temperature = options.temperature or self.sampling.temperature
        out: list[list[Crystal]] = []
        for _ in targets:
            samples: list[Crystal] = []
            for start in range(0, n, self.sampling.batch_size):
                size = min(self.sampling.batch_size, n - start)
                if self.latent_prior is not None:
                    z = self.latent_prior.sample(size, generator, temperature, device)
                else:
                    z = temperature * torch.randn(size, self.vae_config.latent_dim, generator=generator, device=device)
                for decoded in self.decode(z):
                    self.decode_attempts += 1
                    if isinstance(decoded, VoxelError):
                        self.decode_failures[decoded.cause] += 1
                    else:
                        samples.append(decoded)
            out.append(samples)
        return out

    def sampling_report(self) -> dict:
        failed = sum(self.decode_failures.values())
        return {"total": self.decode_attempts, "valid": self.decode_attempts - failed,
                "valid_rate": 1 - failed / self.decode_attempts if self.decode_attempts else float("nan"),
                "failures": dict(self.decode_failures.most_common())}

    def describe_sampling(self, options: SampleOptions | None = None) -> str:
        options = options or SampleOptions()
        temperature = options.temperature or self.sampling.temperature
        source = (f"a {self.latent_prior.components}-component Gaussian mixture fitted to the training posterior "
                  f"means (component scales x {temperature:g})" if self.latent_prior
                  else f"N(0, {temperature:g}² I)")
        return (f"z from {source}, decoded to images and by the network-free voxel decoder "
                "(failed decodes give no sample)")

    def describe_architecture(self) -> str:
        c, v = self.vae_config, self.voxel_config
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"{parameters:,} parameters; VAE with a {c.latent_dim}-dimensional latent, cell image {v.cell_grid}³ "
                f"(widths {list(c.cell_widths)}), basis image {len(self.elements)} elements x {v.grid}³ (widths "
                f"{list(c.basis_widths)}), KL weight {c.kl_weight:g}, σ {c.noise_scale:g}"
                + (f", property head on {self.config['property']}" if self.config.get("property") else ""))

    def card_notes(self, fit_wall_s: float) -> str:
        summary = self.training_summary
        lines = f"- **Voxel images:** {asdict(self.voxel_config)}\n- **Sampler:** {self.describe_sampling()}\n"
        if "image_bytes" in summary:
            lines += (f"- **Training images in memory:** {summary['image_bytes'] / 1e6:.1f} MB sparse for "
                      f"{summary['train_structures']:,} crystals\n")
        return lines

__all__ = ["VAEConfig", "VoxelBatch", "VoxelCollate", "VoxelVAE", "VoxelVAEGenerator"]
