"""The diffusion generator family (CDVAE/DiffCSP-style): :class:`CrystalDiffusion` behind the
:class:`Generator` interface, trained with the shared :class:`~crystalgen.training.Trainer` and
sampled with the shared :class:`~crystalgen.diffusion.sampler.ReverseSampler`.

One family serves both tasks; a checkpoint's config says which one it was trained for:

* ``task: csp``: a target composition fixes the atoms, and lattice and coordinates are sampled;
* ``task: gen``: no composition; the atom count (from the training distribution unless the target
  gives one), the types (restricted to the target's element set, if any), the lattice and the
  coordinates are all sampled.

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
from dataclasses import asdict, fields, replace
from typing import Any, Sequence

import numpy as np
import torch

from crystalgen.config_sections import checked_section, dataclass_defaults, section_dataclass
from crystalgen.constants import MAX_EMBEDDED_Z
from crystalgen.crystal import Crystal, crystals_from_arrays
from crystalgen.devices import resolve_device
from crystalgen.diffusion.sampler import SamplerConfig
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators.base import Generator, SampleOptions, Target
from crystalgen.generators.guidance import describe_guidance
from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig, SampledCells
from crystalgen.models.base import TrainingRun, load_weights
from crystalgen.models.capabilities import CSP, GEN, Capabilities
from crystalgen.nn.denoiser import DenoiserConfig
from crystalgen.training.fitting import TrainsOnProtocol

#: Atoms per denoiser call while sampling: large enough to keep the matrix products efficient,
#: small enough that the fully connected edges of mp_20-sized cells stay in a few hundred MB.
SAMPLE_BATCH_ATOMS = 4096
#: Denoiser settings a config may give; the type head, lattice head and per-crystal inputs are
#: fixed by the task (see :class:`CrystalDiffusion`), so they are not settable.
_DENOISER_KEYS = {f.name for f in fields(DenoiserConfig)} - {"num_types", "equivariant_lattice", "crystal_features"}
_DIFFUSION_KEYS = {f.name for f in fields(DiffusionConfig)} - {"denoiser", "task"}
_TASK_CONDITIONS = {CSP: frozenset({"composition"}), GEN: frozenset({"num_atoms", "elements"})}


def _build_config(task: str, settings: Any) -> DiffusionConfig:
    allowed = {**dataclass_defaults(DenoiserConfig, _DENOISER_KEYS), **dataclass_defaults(DiffusionConfig, _DIFFUSION_KEYS)}
    settings = checked_section("model", settings, allowed)
    denoiser = DenoiserConfig(**{k: v for k, v in settings.items() if k in _DENOISER_KEYS})
    return DiffusionConfig(task=task, denoiser=denoiser, **{k: v for k, v in settings.items() if k in _DIFFUSION_KEYS})


class DiffusionGenerator(TrainsOnProtocol, Generator):
    family = "diffusion"
    #: The network and its losses; a constrained family substitutes a subclass.
    model_class: type[CrystalDiffusion] = CrystalDiffusion

    @classmethod
    def capabilities_for(cls, config: dict) -> Capabilities:
        """A checkpoint does the one task it was trained for; the bare family can be trained for either."""
        tasks = [config["task"]] if "task" in config else [CSP, GEN]
        conditions = frozenset().union(*(_TASK_CONDITIONS.get(task, frozenset()) for task in tasks))
        return Capabilities(tasks=frozenset(tasks), conditions=conditions,
                            options=frozenset({"sampler_steps", "guidance", "device"}), trained=True)

    def __init__(self, config: dict | None = None) -> None:
        from crystalgen.training import TrainConfig

        super().__init__(config)
        self.task = self.config.setdefault("task", CSP)
        if self.task not in (CSP, GEN):
            raise CrystalgenInputError(f"diffusion task must be 'csp' or 'gen', got {self.task!r}")
        self.model = self.model_class(_build_config(self.task, self.config.get("model")))
        self.train_config: TrainConfig = section_dataclass(self.config, "training", TrainConfig)
        self.sampler: SamplerConfig = section_dataclass(self.config, "sampling", SamplerConfig)
        self._fitted = False

    # ------------------------------------------------------------------ fitting
    @property
    def is_fitted(self) -> bool:
        return self._fitted

    def fit_crystals(self, train: Sequence[Crystal], run: TrainingRun) -> None:
        """Train on the given crystals (what :meth:`fit` does once it has loaded the protocol's split)."""
        from crystalgen.training import train_model

        self.config.setdefault("max_atoms", max(c.num_atoms for c in train))
        self.model.set_statistics(
            torch.as_tensor(np.stack([c.lattice for c in train]), dtype=torch.float32),
            torch.as_tensor([c.num_atoms for c in train]),
        )
        # ships (and samples from) the EMA weights
        self.training_summary = train_model(self.model, train, self.train_config, run)
        self.model.cpu()
        self._fitted = True

    def state(self) -> dict[str, Any]:
        return {k: v.detach().cpu().float() if v.is_floating_point() else v.detach().cpu()
                for k, v in self.model.state_dict().items()}

    def load_state(self, tensors: dict[str, Any], data_dir: str | os.PathLike | None = None) -> None:
        weights = {k: torch.as_tensor(np.asarray(v)) for k, v in tensors.items()}
        if "num_atoms_distribution" not in weights:
            raise CrystalgenInputError(f"diffusion checkpoint {self.name!r}: weights lack num_atoms_distribution")
        # The atom-count distribution's length is the training set's largest cell, unknown until now.
        self.model.num_atoms_distribution = torch.zeros_like(weights["num_atoms_distribution"])
        load_weights(self.model, weights, f"diffusion checkpoint {self.name!r}")
        self._fitted = True

    # ------------------------------------------------------------------ sampling
    def check_target(self, target: Target) -> None:
        super().check_target(target)
        symbols = [el.symbol for el in target.composition] if target.composition is not None else []
        symbols += sorted(target.elements or ())
        beyond = sorted({s for s in symbols if _atomic_number(s) > MAX_EMBEDDED_Z})
        if beyond:
            raise CrystalgenInputError(f"model {self.name!r} embeds elements up to Z={MAX_EMBEDDED_Z}, not {', '.join(beyond)}")

    def _sample(self, targets: list[Target], n: int, seed: int, options: SampleOptions) -> list[list[Crystal]]:
        device = resolve_device(options.device or "cpu")
        self.model.to(device)
        generator = torch.Generator(device).manual_seed(seed)
        type_mask = None
        if self.task == GEN:
            # atom counts are drawn for every target, then replaced by the targets' own, so that a
            # constrained target leaves the others' counts as they would be (not their crystals: a
            # different total atom count shifts every later draw)
            count_generator = generator if device.type == "cpu" else torch.Generator().manual_seed(seed)
            num_atoms = self.model.draw_num_atoms(len(targets) * n, count_generator).cpu()
            for i, target in enumerate(targets):
                if target.num_atoms is not None:
                    num_atoms[i * n:(i + 1) * n] = target.num_atoms
            types = None
            if any(t.elements is not None for t in targets):
                type_mask = self._type_mask([t for t in targets for _ in range(n)], num_atoms)
        else:
            per_target = [t.atomic_numbers() for t in targets]
            num_atoms = torch.tensor([len(z) for z in per_target for _ in range(n)])
            types = torch.as_tensor(np.concatenate([z for z in per_target for _ in range(n)]))
        crystals = self._sample_cells(num_atoms, types, generator, self._sampler_for(options), options, type_mask)
        return [crystals[i * n:(i + 1) * n] for i in range(len(targets))]

    def refine(self, crystals: Sequence[Crystal], start_time: float, seed: int = 0,
               options: SampleOptions | None = None) -> list[Crystal]:
        """Each crystal noised to ``start_time`` and denoised again (SDEdit-style), with the options'
        guidance: what optimisation from seeds iterates. A CSP model keeps each composition; a
        generation model masks a share ``start_time`` of the atoms' types and re-draws them.

        The sampler takes a share ``start_time`` of its steps, so each step covers as much time as
        in sampling from the prior."""
        options = options or SampleOptions()
        self.require_fitted()
        if not 0.0 < start_time <= 1.0:
            raise CrystalgenInputError(f"a refinement start time must lie in (0, 1], got {start_time!r}")
        self.check_options(options)
        limit = self.max_atoms
        too_big = [c.num_atoms for c in crystals if limit is not None and c.num_atoms > limit]
        if too_big:
            raise CrystalgenInputError(f"a seed has {max(too_big)} atoms, beyond model {self.name!r}'s limit of {limit}")
        device = resolve_device(options.device or "cpu")
        self.model.to(device)
        generator = torch.Generator(device).manual_seed(seed)
        sampler = self._sampler_for(options)
        sampler = replace(sampler, steps=max(1, round(sampler.steps * start_time)))
        num_atoms = torch.tensor([c.num_atoms for c in crystals])
        types = torch.as_tensor(np.concatenate([c.atomic_numbers for c in crystals])).long()
        frac = torch.as_tensor(np.concatenate([c.frac_coords for c in crystals]), dtype=torch.float32)
        lattices = torch.as_tensor(np.stack([c.lattice for c in crystals]), dtype=torch.float32)
        refined: list[Crystal] = []
        for cells, atoms in atom_chunks(num_atoms.numpy()):
            start = {"frac": frac[atoms], "lattice": lattices[cells], "types": types[atoms]}
            sampled = self.model.sample(num_atoms[cells], types[atoms] if self.task == CSP else None, sampler,
                                        generator, guidance=options.guidance, start=start, start_time=start_time)
            refined.extend(sampled_crystals(sampled, [c.id for c in crystals[cells]]))
        return refined

    def _sampler_for(self, options: SampleOptions) -> SamplerConfig:
        """The checkpoint's sampler, with the options' step count where they give one."""
        return self.sampler if options.sampler_steps is None else replace(self.sampler, steps=options.sampler_steps)

    def _type_mask(self, targets: list[Target], num_atoms: torch.Tensor) -> torch.Tensor:
        """(N, types) True where an atom of that crystal may take that type (its target's element set)."""
        allowed = torch.ones(len(targets), self.model.config.denoiser.num_types, dtype=torch.bool)
        for i, target in enumerate(targets):
            if target.elements is not None:
                allowed[i] = False
                allowed[i, [_atomic_number(s) for s in target.elements]] = True
        return allowed.repeat_interleave(num_atoms, dim=0)

    def _sample_cells(self, num_atoms: torch.Tensor, types: torch.Tensor | None, generator: torch.Generator,
                      sampler: SamplerConfig, options: SampleOptions, type_mask: torch.Tensor | None) -> list[Crystal]:
        """Sample crystals of the given sizes (and types), in chunks of about SAMPLE_BATCH_ATOMS atoms."""
        crystals: list[Crystal] = []
        for cells, atoms in atom_chunks(num_atoms.numpy()):
            sampled = self.model.sample(num_atoms[cells], None if types is None else types[atoms], sampler,
                                        generator, guidance=options.guidance,
                                        type_mask=None if type_mask is None else type_mask[atoms])
            crystals.extend(sampled_crystals(sampled))
        return crystals

    def describe_sampling(self, options: SampleOptions | None = None) -> str:
        options = options or SampleOptions()
        text = ", ".join(f"{key}={value}" for key, value in asdict(self._sampler_for(options)).items())
        return text + describe_guidance(options.guidance)

    def describe_architecture(self) -> str:
        config = self.model.config
        parameters = sum(p.numel() for p in self.model.parameters())
        return (f"{parameters:,} parameters; denoiser hidden {config.denoiser.hidden}, {config.denoiser.layers} "
                f"message-passing layers, {config.denoiser.fourier_frequencies} Fourier frequencies; "
                f"torus sigma {config.sigma_min}-{config.sigma_max}")

    def card_notes(self, fit_wall_s: float) -> str:
        kind = "ancestral" if self.sampler.stochastic else "probability-flow ODE / DDIM"
        return (f"- **Sampler:** {self.sampler.steps} steps, {kind}, "
                f"{self.sampler.corrector_steps} corrector steps per step\n")

    def with_sampler(self, **settings: Any) -> "DiffusionGenerator":
        """This model with other sampler settings (e.g. ``stochastic=False``), sharing its weights."""
        other = copy.copy(self)
        other.sampler = SamplerConfig(**{**asdict(self.sampler), **settings})
        other.config = {**self.config, "sampling": asdict(other.sampler)}
        return other


def atom_chunks(num_atoms: np.ndarray, max_atoms: int | None = None) -> list[tuple[slice, slice]]:
    """Consecutive (crystals, their atoms) slices of about ``max_atoms`` (default SAMPLE_BATCH_ATOMS)
    atoms each, and at least one crystal each."""
    max_atoms = max_atoms or SAMPLE_BATCH_ATOMS
    ends = np.cumsum(num_atoms)
    chunks, start = [], 0
    while start < len(num_atoms):
        offset = int(ends[start - 1]) if start else 0
        stop = max(start + 1, int(np.searchsorted(ends, offset + max_atoms, side="right")))
        chunks.append((slice(start, stop), slice(offset, int(ends[stop - 1]))))
        start = stop
    return chunks


def sampled_crystals(cells: SampledCells, ids: Sequence[str | None] | None = None,
                     properties: Sequence[dict] | None = None) -> list[Crystal]:
    """The sampled cells as crystals (on the CPU, float64)."""
    crystals = crystals_from_arrays(
        cells.lattices.detach().cpu().double().numpy(), cells.frac_coords.detach().cpu().double().numpy(),
        cells.atom_types.cpu().numpy(), cells.num_atoms.cpu().numpy())
    for i, crystal in enumerate(crystals):
        crystal.id = None if ids is None else ids[i]
        crystal.properties = {} if properties is None else dict(properties[i])
    return crystals


def _atomic_number(symbol: str) -> int:
    from pymatgen.core.periodic_table import Element

    return Element(symbol).Z


__all__ = ["DiffusionGenerator", "SamplerConfig"]
