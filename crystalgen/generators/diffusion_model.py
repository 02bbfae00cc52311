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

import torch
from torch import nn

from crystalgen.batch import CrystalBatch
from crystalgen.diffusion.processes import AbsorbingDiscrete, EuclideanVP, TorusVE
from crystalgen.diffusion.torus import minimum_image
from crystalgen.nn.denoiser import DenoiserConfig, PeriodicDenoiser
from crystalgen.representations.lattice import lattice_to_log_polar, log_polar_to_lattice

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

    def loss(self, batch: CrystalBatch, generator: torch.Generator | None = None) -> dict[str, torch.Tensor]:
        """Denoising losses at random times; ``"loss"`` is their weighted sum."""
        num_atoms = batch.num_atoms
        crystal_index = batch.crystal_index
        t = MIN_TIME + (1 - MIN_TIME) * torch.rand(len(num_atoms), generator=generator, device=num_atoms.device)
        t_atoms = t[crystal_index]
        frac_t, score, _ = self.torus.corrupt(batch.frac_coords, t_atoms, generator)
        score_scale = self.torus.score_norm(t_atoms).sqrt().unsqueeze(1).to(score.dtype)
        lattice_t, lattice_eps = self.lattice_process.corrupt(self.encode_lattice(batch.lattices), t, generator)
        types = batch.atomic_numbers
        masked = None
        if self.config.task == "gen":
            types, masked = self.types.corrupt(types, t_atoms, generator)
        pred_frac, pred_eps, logits = self._predict(types, frac_t, lattice_t, num_atoms, t)
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
    def sample(self, num_atoms: torch.Tensor, atom_types: torch.Tensor | None = None, steps: int = 200,
               stochastic: bool = True, corrector_steps: int = 0,
               generator: torch.Generator | None = None) -> SampledCells:
        """Reverse diffusion from t=1 to 0 on a uniform grid of ``steps``.

        Args:
            num_atoms: (B,) atoms per crystal.
            atom_types: (N,) given types (CSP); ``None`` diffuses them too (generation).
            stochastic: ancestral steps; ``False`` follows the probability-flow ODE / DDIM, which
                holds up better with few steps.
            corrector_steps: Langevin corrections on the coordinates after each step (DiffCSP uses 1).
        """
        device = self.lattice_mean.device
        num_atoms = num_atoms.to(device).long()
        n = int(num_atoms.sum())
        frac = self.torus.prior((n, 3), generator, device=device)
        lattice = self.lattice_process.prior((len(num_atoms), LATTICE_DIM), generator, device=device)
        diffuse_types = atom_types is None
        types = self.types.prior((n,), device=device) if diffuse_types else atom_types.to(device).long()
        crystal_index = torch.repeat_interleave(torch.arange(len(num_atoms), device=device), num_atoms)
        grid = torch.linspace(1.0, 0.0, steps + 1, device=device)
        for i in range(steps):
            t = grid[i].expand(len(num_atoms))
            s = grid[i + 1].expand(len(num_atoms))
            pred_frac, pred_eps, logits = self._predict(types, frac, lattice, num_atoms, t)
            score = pred_frac * self.torus.score_norm(t[crystal_index]).sqrt().unsqueeze(1)
            frac = self.torus.reverse_step(frac, score, t[crystal_index], s[crystal_index], generator, stochastic)
            lattice = self.lattice_process.reverse_step(lattice, pred_eps, t, s, generator, stochastic)
            if diffuse_types:
                types = self.types.reverse_step(types, logits, t[crystal_index], s[crystal_index], generator)
            for _ in range(corrector_steps if float(s[0]) > 0 else 0):
                pred_frac, _, _ = self._predict(types, frac, lattice, num_atoms, s)
                score = pred_frac * self.torus.score_norm(s[crystal_index]).sqrt().unsqueeze(1)
                frac = self.torus.corrector_step_(frac, score, s[crystal_index], generator)
        if diffuse_types:  # any token still masked takes its most likely type
            _, _, logits = self._predict(types, frac, lattice, num_atoms, grid[-1].expand(len(num_atoms)))
            logits[:, MASK_TYPE] = -torch.inf
            types = torch.where(types == MASK_TYPE, logits.argmax(1), types)
        return SampledCells(types, minimum_image(frac) % 1.0, self.decode_lattice(lattice), num_atoms)


__all__ = ["CrystalDiffusion", "DiffusionConfig", "SampledCells"]
