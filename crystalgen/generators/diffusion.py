"""The diffusion generator family (CDVAE/DiffCSP-style): :class:`CrystalDiffusion` behind the
:class:`Generator` interface, trained with the shared :class:`~crystalgen.training.Trainer`.

One family serves both tasks; a checkpoint's config says which one it was trained for:

* ``task: csp``: a target composition fixes the atoms, and lattice and coordinates are sampled;
* ``task: gen``: no target, and the atom count (from the training distribution), the types, the
  lattice and the coordinates are all sampled.

Config (YAML, see ``configs/models/diffusion-*.yaml``)::

    name: diffusion-perov_5
    family: diffusion
    task: csp
    protocol: perov_5
    model: {hidden: 128, layers: 4, fourier_frequencies: 16, time_dim: 64}
    training: {steps: 20000, batch_size: 128, lr: 0.001}
    sampling: {steps: 100, stochastic: true, corrector_steps: 0}
"""

from __future__ import annotations

import copy
import os
from dataclasses import asdict, dataclass, fields
from typing import Any, Sequence

import numpy as np
import torch

from crystalgen.config_sections import checked_section, dataclass_defaults, section_dataclass
from crystalgen.crystal import Crystal, crystals_from_arrays
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, Target
from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig
from crystalgen.nn.denoiser import MAX_Z, DenoiserConfig
from crystalgen.training.fitting import TrainsOnProtocol

#: Atoms per denoiser call while sampling: large enough to keep the matrix products efficient,
#: small enough that the fully connected edges of mp_20-sized cells stay in a few hundred MB.
SAMPLE_BATCH_ATOMS = 4096
#: Denoiser settings a config may give; the type head, lattice head and per-crystal inputs are
#: fixed by the task (see :class:`CrystalDiffusion`), so they are not settable.
_DENOISER_KEYS = {f.name for f in fields(DenoiserConfig)} - {"num_types", "equivariant_lattice", "crystal_features"}
_DIFFUSION_KEYS = {f.name for f in fields(DiffusionConfig)} - {"denoiser", "task"}


@dataclass(frozen=True)
class SamplerConfig:
    """How reverse diffusion is run: ``steps`` on a uniform grid, ancestral steps (``stochastic``)
    or the probability-flow ODE / DDIM, and Langevin corrector steps per step."""

    steps: int = 100
    stochastic: bool = True
    corrector_steps: int = 0


def _build_config(task: str, settings: Any) -> DiffusionConfig:
    allowed = {**dataclass_defaults(DenoiserConfig, _DENOISER_KEYS), **dataclass_defaults(DiffusionConfig, _DIFFUSION_KEYS)}
    settings = checked_section("model", settings, allowed)
    denoiser = DenoiserConfig(**{k: v for k, v in settings.items() if k in _DENOISER_KEYS})
    return DiffusionConfig(task=task, denoiser=denoiser, **{k: v for k, v in settings.items() if k in _DIFFUSION_KEYS})


class DiffusionGenerator(TrainsOnProtocol, Generator):
    family = "diffusion"
    task = "both"  # per checkpoint: ``config["task"]`` is "csp" or "gen"
    learned = True

    def __init__(self, config: dict | None = None) -> None:
        from crystalgen.training import TrainConfig

        super().__init__(config)
        self.task = self.config.setdefault("task", "csp")
        if self.task not in ("csp", "gen"):
            raise CrystalgenInputError(f"diffusion task must be 'csp' or 'gen', got {self.task!r}")
        self.model = CrystalDiffusion(_build_config(self.task, self.config.get("model")))
        self.train_config: TrainConfig = section_dataclass(self.config, "training", TrainConfig)
        self.sampler: SamplerConfig = section_dataclass(self.config, "sampling", SamplerConfig)
        self._fitted = False
        #: Set by :meth:`fit`: training steps done, seconds spent, the last logged losses.
        self.training_summary: dict[str, Any] = {}

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit_crystals(self, train: Sequence[Crystal], run_dir: str | os.PathLike | None = None, resume: bool = False,
                     time_limit_s: float | None = None) -> None:
        """Train on the given crystals (what :meth:`fit` does once it has loaded the protocol's split)."""
        from crystalgen.training import train_model

        self.config.setdefault("max_atoms", max(c.num_atoms for c in train))
        self.model.set_statistics(
            torch.as_tensor(np.stack([c.lattice for c in train]), dtype=torch.float32),
            torch.as_tensor([c.num_atoms for c in train]),
        )
        # ships (and samples from) the EMA weights
        self.training_summary = train_model(self.model, train, self.train_config, run_dir, resume, time_limit_s)
        self._fitted = True

    def state(self) -> dict[str, Any]:
        return {k: v.detach().float() if v.is_floating_point() else v.detach() for k, v in self.model.state_dict().items()}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        weights = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
        # The atom-count distribution's length is the training set's largest cell, unknown until now.
        self.model.num_atoms_distribution = torch.zeros_like(weights["num_atoms_distribution"])
        self.model.load_state_dict(weights)
        self.model.eval()
        self._fitted = True

    # ------------------------------------------------------------------ sampling
    def check_target(self, target: Target) -> None:
        if target.spacegroup is not None:
            raise CrystalgenInputError(
                f"model {self.name!r} cannot condition on a space group; the Wyckoff generator can")
        if self.task == "csp" and target.composition is None:
            raise CrystalgenInputError(f"model {self.name!r} does crystal structure prediction: give a composition")
        if self.task == "gen" and target.composition is not None:
            raise CrystalgenInputError(
                f"model {self.name!r} generates from scratch and takes no composition; use a CSP model")
        if target.composition is not None:
            beyond = [el.symbol for el in target.composition if el.Z > MAX_Z]
            if beyond:
                raise CrystalgenInputError(f"model {self.name!r} embeds elements up to Z={MAX_Z}, not {', '.join(beyond)}")
        super().check_target(target)

    def sample(self, targets: Sequence[Target], n: int = 1, seed: int = 0) -> list[list[Crystal]]:
        if not self._fitted:
            raise CrystalgenInputError(f"model {self.name!r} is not trained")
        for target in targets:
            self.check_target(target)
        generator = torch.Generator().manual_seed(seed)
        if self.task == "gen":
            num_atoms = self.model.draw_num_atoms(len(targets) * n, generator)
            types = None
        else:
            per_target = [np.repeat([el.Z for el in t.composition], [int(round(a)) for a in t.composition.values()])
                          for t in targets]
            num_atoms = torch.tensor([len(z) for z in per_target for _ in range(n)])
            types = torch.as_tensor(np.concatenate([z for z in per_target for _ in range(n)]))
        crystals = self._sample_cells(num_atoms, types, generator)
        return [crystals[i * n:(i + 1) * n] for i in range(len(targets))]

    def _sample_cells(self, num_atoms: torch.Tensor, types: torch.Tensor | None,
                      generator: torch.Generator) -> list[Crystal]:
        """Sample crystals of the given sizes (and types), in chunks of about SAMPLE_BATCH_ATOMS atoms."""
        ends = np.cumsum(num_atoms.numpy())
        crystals: list[Crystal] = []
        start = 0
        while start < len(num_atoms):
            offset = ends[start - 1] if start else 0
            stop = max(start + 1, int(np.searchsorted(ends, offset + SAMPLE_BATCH_ATOMS, side="right")))
            chunk_types = None if types is None else types[offset:ends[stop - 1]]
            cells = self.model.sample(num_atoms[start:stop], chunk_types, steps=self.sampler.steps,
                                      stochastic=self.sampler.stochastic,
                                      corrector_steps=self.sampler.corrector_steps, generator=generator)
            crystals.extend(crystals_from_arrays(
                cells.lattices.double().numpy(), cells.frac_coords.double().numpy(),
                cells.atom_types.numpy(), cells.num_atoms.numpy()))
            start = stop
        return crystals

    def describe_architecture(self) -> str:
        """One line for a card: parameter count and the main sizes."""
        config = self.model.config
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"{parameters:,} parameters; denoiser hidden {config.denoiser.hidden}, {config.denoiser.layers} "
                f"message-passing layers, {config.denoiser.fourier_frequencies} Fourier frequencies; "
                f"torus sigma {config.sigma_min}-{config.sigma_max}")

    def with_sampler(self, **settings: Any) -> "DiffusionGenerator":
        """This model with other sampler settings (e.g. ``steps=1000``), sharing its weights."""
        other = copy.copy(self)
        other.sampler = SamplerConfig(**{**asdict(self.sampler), **settings})
        other.config = {**self.config, "sampling": asdict(other.sampler)}
        return other


__all__ = ["DiffusionGenerator", "SamplerConfig"]
