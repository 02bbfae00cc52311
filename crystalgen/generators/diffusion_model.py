"""The joint crystal diffusion model (CDVAE/DiffCSP-style): the crystal-specific glue between the
periodic denoiser (:mod:`crystalgen.nn`) and the crystal-agnostic processes (:mod:`crystalgen.diffusion`).

Three variables are diffused at once, all at the same time t per crystal:

* fractional coordinates: wrapped-normal VE diffusion on the torus; the network predicts the
  score divided by its root-mean-square (a unit-scale target at every noise level);
* the lattice: VP DDPM on its rotation-invariant log-polar vector (six numbers, standardised with
  training statistics); every noisy vector decodes to a valid cell, and rotation invariance
  means no orientation has to be learned;
* atom types, for generation from scratch only: absorbing-state D3PM. For CSP the types are given
  and never noised, which is the only difference between the two tasks.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import torch
from torch import nn

from crystalgen.batch import CrystalBatch
from crystalgen.diffusion.processes import AbsorbingDiscrete, EuclideanVP, TorusVE
from crystalgen.diffusion.sampler import Projection, ReverseSampler, SamplerConfig, Variable
from crystalgen.diffusion.torus import minimum_image
from crystalgen.nn.denoiser import DenoiserConfig, PeriodicDenoiser
from crystalgen.representations.lattice import lattice_to_log_polar, log_polar_to_lattice

if TYPE_CHECKING:
    from crystalgen.generators.guidance import CrystalGuidance

LATTICE_DIM = 6
#: Training times are drawn from [MIN_TIME, 1]: at t=0 the targets are degenerate.
MIN_TIME = 1e-3
#: Bound on the predicted clean (standardised) lattice vector while sampling: data lie well inside
#: it, and an early bad prediction must not blow the cell up.
LATTICE_X0_CLIP = 5.0
#: The absorbing "mask" type; real atomic numbers start at 1.
MASK_TYPE = 0


@dataclass(frozen=True)
class DiffusionConfig:
    task: str = "csp"  # "csp" (types given) or "gen" (types diffused too)
    denoiser: DenoiserConfig = field(default_factory=DenoiserConfig)
    sigma_min: float = 0.005
    sigma_max: float = 0.5
    lattice_loss_weight: float = 1.0
    type_loss_weight: float = 1.0


@dataclass
class SampledCells:
    atom_types: torch.Tensor  # (N,)
    frac_coords: torch.Tensor  # (N, 3)
    lattices: torch.Tensor  # (B, 3, 3)
    num_atoms: torch.Tensor  # (B,)


class CrystalDiffusion(nn.Module):
    def __init__(self, config: DiffusionConfig = DiffusionConfig()):
        super().__init__()
        if config.task not in ("csp", "gen"):
            raise ValueError(f"task must be 'csp' or 'gen', got {config.task!r}")
        self.config = config
        # The network also sees the noisy lattice vector itself: through the decoded cell alone,
        # small standardised differences would be hard to resolve.
        self.denoiser = PeriodicDenoiser(replace(
            config.denoiser, crystal_features=LATTICE_DIM, equivariant_lattice=False,
            num_types=config.denoiser.num_types if config.task == "gen" else 0,
        ))
        self.lattice_head = nn.Linear(config.denoiser.hidden, LATTICE_DIM)
        self.torus = TorusVE(config.sigma_min, config.sigma_max)
        self.lattice_process = EuclideanVP(x0_clip=LATTICE_X0_CLIP)
        self.types = AbsorbingDiscrete(MASK_TYPE)
        self.register_buffer("lattice_mean", torch.zeros(LATTICE_DIM))
        self.register_buffer("lattice_std", torch.ones(LATTICE_DIM))
        #: Share of training crystals per atom count, for drawing sizes in generation from scratch.
        self.register_buffer("num_atoms_distribution", torch.zeros(0))

    # ------------------------------------------------------------------ data statistics
    @torch.no_grad()
    def set_statistics(self, lattices: torch.Tensor, num_atoms: torch.Tensor) -> None:
        """Lattice standardisation and the atom-count distribution, from the training set."""
        vectors = lattice_to_log_polar(lattices.double())
        self.lattice_mean.copy_(vectors.mean(0).float())
        self.lattice_std.copy_(vectors.std(0).clamp(min=1e-3).float())
        counts = torch.bincount(num_atoms.long()).float()
        self.num_atoms_distribution = (counts / counts.sum()).to(self.lattice_mean.device)

    def encode_lattice(self, lattices: torch.Tensor) -> torch.Tensor:
        return (lattice_to_log_polar(lattices.double()).to(lattices.dtype) - self.lattice_mean) / self.lattice_std

    def decode_lattice(self, vectors: torch.Tensor) -> torch.Tensor:
        return log_polar_to_lattice(vectors * self.lattice_std + self.lattice_mean)

    # ------------------------------------------------------------------ training
    def _predict(self, types: torch.Tensor, frac: torch.Tensor, lattice_vec: torch.Tensor, num_atoms: torch.Tensor,
                 t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        out = self.denoiser(types, frac, self.decode_lattice(lattice_vec), num_atoms, t, lattice_vec)
        return out.frac_score, self.lattice_head(out.pooled), out.type_logits

    def forward(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """The training losses (what :class:`~crystalgen.training.trainer.Trainer` calls)."""
        return self.loss(batch, generator)

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None,
             projection: Projection | None = None) -> dict[str, torch.Tensor]:
        """Denoising losses at random times; ``"loss"`` is their weighted sum.

        With a ``projection`` (a symmetry-constrained model), each noisy state is projected onto the
        constraint set as the sampler does, the targets are recomputed from the projected state,
        and targets and predictions are compared in the constraint's tangent space.
        """
        num_atoms = batch.num_atoms
        crystal_index = batch.crystal_index
        t = MIN_TIME + (1 - MIN_TIME) * torch.rand(len(num_atoms), generator=generator, device=num_atoms.device)
        t_atoms = t[crystal_index]
        frac_t, score, _ = self.torus.corrupt(batch.frac_coords, t_atoms, generator)
        score_scale = self.torus.score_norm(t_atoms).sqrt().unsqueeze(1).to(score.dtype)
        lattice_0 = self.encode_lattice(batch.lattices)
        lattice_t, lattice_eps = self.lattice_process.corrupt(lattice_0, t, generator)
        types = batch.atomic_numbers
        masked = None
        if self.config.task == "gen":
            types, masked = self.types.corrupt(types, t_atoms, generator)
        if projection is not None:
            frac_t = projection.state("frac", frac_t)
            score = projection.vector("frac", self.torus.target_score(batch.frac_coords, frac_t, t_atoms))
            lattice_t = projection.state("lattice", lattice_t)
            lattice_eps = self.lattice_process.noise_of(lattice_0, lattice_t, t)
            if masked is not None:
                types = projection.state("types", types)
                masked = types == MASK_TYPE
        pred_frac, pred_eps, logits = self._predict(types, frac_t, lattice_t, num_atoms, t)
        if projection is not None:
            pred_frac, pred_eps = projection.vector("frac", pred_frac), projection.vector("lattice", pred_eps)
        losses = {
            "frac": (pred_frac - score / score_scale).square().mean(),
            "lattice": (pred_eps - lattice_eps).square().mean(),
        }
        total = losses["frac"] + self.config.lattice_loss_weight * losses["lattice"]
        if masked is not None:
            ce = nn.functional.cross_entropy(logits, batch.atomic_numbers, reduction="none")
            losses["types"] = (ce * masked).sum() / masked.sum().clamp(min=1)
            total = total + self.config.type_loss_weight * losses["types"]
        losses["loss"] = total
        return losses

    # ------------------------------------------------------------------ sampling
    def draw_num_atoms(self, count: int, generator: torch.Generator | None = None) -> torch.Tensor:
        if len(self.num_atoms_distribution) == 0:
            raise RuntimeError("no atom-count distribution: the model was never given training statistics")
        return torch.multinomial(self.num_atoms_distribution.float().cpu(), count, replacement=True,
                                 generator=generator).to(self.lattice_mean.device)

    @torch.no_grad()
    def sample(self, num_atoms: torch.Tensor, atom_types: torch.Tensor | None = None,
               sampler: SamplerConfig = SamplerConfig(), generator: torch.Generator | None = None,
               guidance: "CrystalGuidance | None" = None, projection: Projection | None = None,
               type_mask: torch.Tensor | None = None, start: dict[str, torch.Tensor] | None = None,
               start_time: float = 1.0) -> SampledCells:
        """Reverse diffusion from t=1 to 0 with the shared :class:`ReverseSampler`.

        Args:
            num_atoms: (B,) atoms per crystal.
            atom_types: (N,) given types (CSP); ``None`` diffuses them too (generation).
            sampler: steps; ancestral steps, or (``stochastic=False``) the probability-flow ODE /
                DDIM, which holds up better with few steps; Langevin corrector steps on the
                coordinates after each step (DiffCSP uses 1).
            guidance: an objective on the denoised crystal and its strength.
            projection: constrains states and updates of the variables ``frac``, ``lattice`` and ``types``.
            type_mask: (N, types) the types each atom may take (generation within an element set).
            start, start_time: refine given crystals instead of generating from the prior:
                ``start["frac"]`` (N, 3) and ``start["lattice"]`` (B, 3, 3) are noised to
                ``start_time`` and denoised from there (``sampler.steps`` steps over [start_time, 0]);
                a generation model also takes ``start["types"]`` (N,), of which it masks a share
                ``start_time`` and re-draws those.
        """
        device = self.lattice_mean.device
        num_atoms = num_atoms.to(device).long()
        n = int(num_atoms.sum())
        crystal_index = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), num_atoms)
        given_types = None if atom_types is None else atom_types.to(device).long()
        variables = [
            Variable("frac", self.torus, (n, 3), owner=crystal_index, corrector=True),
            Variable("lattice", self.lattice_process, (len(num_atoms), LATTICE_DIM)),
        ]
        if given_types is None:
            variables.append(Variable("types", self.types, (n,), owner=crystal_index, dtype=torch.long))

        mask = None if type_mask is None else type_mask.to(device)

        def predict(state: dict[str, torch.Tensor], t: torch.Tensor) -> dict[str, torch.Tensor]:
            types = state["types"] if given_types is None else given_types
            pred_frac, pred_eps, logits = self._predict(types, state["frac"], state["lattice"], num_atoms, t)
            if mask is not None:
                logits = logits.masked_fill(~mask, -torch.inf)
            score = pred_frac * self.torus.score_norm(t[crystal_index]).sqrt().unsqueeze(1)
            return {"frac": score, "lattice": pred_eps, "types": logits}

        hook = None if guidance is None else guidance.on_variables(self.decode_lattice, given_types, num_atoms, crystal_index)
        initial = {}
        if start is not None:
            initial = {"frac": start["frac"].to(device), "lattice": self.encode_lattice(start["lattice"].to(device))}
            if given_types is None and "types" in start:
                initial["types"] = start["types"].to(device).long()
        state = ReverseSampler(variables, predict, sampler, projection, hook).run(len(num_atoms), generator, device,
                                                                                  initial, start_time)
        frac, lattice = state["frac"], state["lattice"]
        types = given_types
        if types is None:  # any token still masked takes its most likely type
            types = state["types"]
            _, _, logits = predict({"types": types, "frac": frac, "lattice": lattice},
                                   torch.zeros(len(num_atoms), device=device)).values()
            logits[:, MASK_TYPE] = -torch.inf
            types = torch.where(types == MASK_TYPE, logits.argmax(1), types)
            if projection is not None:
                types = projection.state("types", types)
        return SampledCells(types, minimum_image(frac) % 1.0, self.decode_lattice(lattice), num_atoms)


__all__ = ["CrystalDiffusion", "DiffusionConfig", "SampledCells"]
