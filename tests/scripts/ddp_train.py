"""Run by tests/test_training.py under torchrun: a tiny DDP training on CPU (gloo); each rank
writes a fingerprint of its final parameters so the test can check they stayed identical.

Usage: ddp_train.py OUT [STEPS [resume]]"""

import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from conftest import make_textbook  # noqa: E402

from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig  # noqa: E402
from crystalgen.nn import DenoiserConfig  # noqa: E402
from crystalgen.training import DistributedContext, TrainConfig, Trainer  # noqa: E402

out = Path(sys.argv[1])
steps = int(sys.argv[2]) if len(sys.argv) > 2 else 4
resume = len(sys.argv) > 3 and sys.argv[3] == "resume"
torch.set_num_threads(1)
torch.manual_seed(0)
context = DistributedContext.from_environment()
crystals = [make_textbook(name) for name in ("NaCl", "Si", "SrTiO3", "ZnO")] * 4
model = CrystalDiffusion(DiffusionConfig(denoiser=DenoiserConfig(hidden=16, layers=1, fourier_frequencies=2, time_dim=8)))
model.set_statistics(torch.stack([torch.tensor(c.lattice, dtype=torch.float32) for c in crystals]),
                     torch.tensor([c.num_atoms for c in crystals]))
Trainer(model, crystals, TrainConfig(steps=steps, batch_size=4, log_every=2), out, context).run(resume=resume)
context.close()
flat = torch.cat([p.detach().flatten() for p in model.parameters()])
(out / f"rank{context.rank}.txt").write_text(f"{context.world_size} {flat.double().sum().item():.12e} {flat.abs().sum().item():.12e}")
