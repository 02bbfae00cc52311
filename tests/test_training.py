"""The shared training loop: exact resume, pickle-free state, the metrics log, EMA, and DDP on CPU."""

from __future__ import annotations

import csv
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from crystalgen.generators.diffusion_model import CrystalDiffusion, DiffusionConfig
from crystalgen.nn import DenoiserConfig
from crystalgen.training import TrainConfig, Trainer
from crystalgen.training.state import STATE_FILE, load_training_state

TINY = DenoiserConfig(hidden=16, layers=1, fourier_frequencies=2, time_dim=8)


@pytest.fixture
def crystals(textbook_crystals):
    return list(textbook_crystals.values()) * 4


def make_model(crystals) -> CrystalDiffusion:
    torch.manual_seed(0)
    model = CrystalDiffusion(DiffusionConfig(denoiser=TINY))
    model.set_statistics(torch.stack([torch.tensor(c.lattice, dtype=torch.float32) for c in crystals]),
                         torch.tensor([c.num_atoms for c in crystals]))
    return model


def parameters(model) -> torch.Tensor:
    return torch.cat([p.detach().flatten() for p in model.parameters()])


def test_resumed_training_equals_uninterrupted_training(crystals, tmp_path):
    torch.set_num_threads(1)
    config = TrainConfig(steps=12, batch_size=4, log_every=3)
    straight = make_model(crystals)
    Trainer(straight, crystals, config, tmp_path / "straight").run()

    first = make_model(crystals)
    Trainer(first, crystals, TrainConfig(steps=5, batch_size=4, log_every=3), tmp_path / "split").run()
    second = make_model(crystals)  # a fresh process would start from fresh weights
    Trainer(second, crystals, config, tmp_path / "split").run(resume=True)
    assert torch.equal(parameters(second), parameters(straight))
    assert not torch.equal(parameters(second), parameters(make_model(crystals)))  # it did train


def test_state_file_is_safetensors_with_model_ema_optimizer_and_step(crystals, tmp_path):
    model = make_model(crystals)
    Trainer(model, crystals, TrainConfig(steps=3, batch_size=4, log_every=1, ema_decay=0.5), tmp_path).run()
    raw = (tmp_path / STATE_FILE).read_bytes()
    assert b"\x80\x04" not in raw[:16] and not raw.startswith(b"PK")  # not a pickle, not a torch zip
    tensors, metadata = load_training_state(tmp_path / STATE_FILE)
    assert metadata["step"] == 3
    assert any(k.startswith("optim.") and k.endswith(".exp_avg") for k in tensors)
    ema = {k[4:]: v for k, v in tensors.items() if k.startswith("ema.")}
    name = "denoiser.frac_head.weight"
    current = dict(model.named_parameters())[name].detach()
    assert not torch.equal(ema[name], current)  # the average lags the weights


def test_metrics_log(crystals, tmp_path):
    Trainer(make_model(crystals), crystals, TrainConfig(steps=5, batch_size=4, log_every=2), tmp_path).run()
    with open(tmp_path / "metrics.csv", newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [int(r["step"]) for r in rows] == [2, 4, 5]
    assert {"loss", "frac", "lattice", "grad_norm", "structures_per_s"} <= set(rows[0])
    assert all(float(r["structures_per_s"]) > 0 for r in rows)


def _torchrun(out: Path, *args: str) -> None:
    script = Path(__file__).parent / "scripts" / "ddp_train.py"
    result = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(script), str(out), *args],
        capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def test_ddp_resume_matches_an_uninterrupted_run(tmp_path):
    # Each rank draws its own noise; a resumed run must restore every rank's random state, not rank 0's.
    _torchrun(tmp_path / "straight", "4")
    _torchrun(tmp_path / "resumed", "2")
    _torchrun(tmp_path / "resumed", "4", "resume")
    for rank in (0, 1):
        assert (tmp_path / "straight" / f"rank{rank}.txt").read_text() == (
            tmp_path / "resumed" / f"rank{rank}.txt").read_text()


def test_ddp_with_two_gloo_processes_keeps_replicas_identical(tmp_path):
    _torchrun(tmp_path)
    ranks = [(tmp_path / f"rank{r}.txt").read_text().split() for r in (0, 1)]
    assert ranks[0][0] == ranks[1][0] == "2"
    assert ranks[0] == ranks[1]  # gradients were averaged: both replicas took the same steps
    assert (tmp_path / STATE_FILE).is_file()


def _bucketed_trainer(tmp_path, sizes, seed=0):
    items = list(range(len(sizes)))
    return Trainer(torch.nn.Linear(1, 1), items, TrainConfig(batch_size=8, seed=seed), tmp_path, sizes=sizes)


def test_sized_items_are_batched_with_similar_sizes_and_each_epoch_is_a_permutation(tmp_path):
    sizes = torch.randint(10, 400, (1600,), generator=torch.Generator().manual_seed(3)).tolist()
    bucketed = _bucketed_trainer(tmp_path, sizes)
    plain = Trainer(torch.nn.Linear(1, 1), list(range(1600)), TrainConfig(batch_size=8), tmp_path)
    per_epoch = 1600 // 8

    def padding(trainer):  # padded positions over a whole epoch
        return sum(max(sizes[i] for i in b) * len(b) - sum(sizes[i] for i in b)
                   for b in (trainer.batch_indices(s) for s in range(per_epoch)))

    assert padding(bucketed) < 0.2 * padding(plain)
    epoch = [i for s in range(per_epoch) for i in bucketed.batch_indices(s)]
    assert sorted(epoch) == list(range(1600))
    # batches come in a random order, not from shortest to longest
    means = [sum(sizes[i] for i in bucketed.batch_indices(s)) / 8 for s in range(per_epoch)]
    assert means != sorted(means)
    # seeded: another trainer with the same seed draws the same batches, another seed others
    assert _bucketed_trainer(tmp_path, sizes).batch_indices(5) == bucketed.batch_indices(5)
    assert _bucketed_trainer(tmp_path, sizes, seed=1).batch_indices(5) != bucketed.batch_indices(5)
    with pytest.raises(ValueError, match="sizes"):
        Trainer(torch.nn.Linear(1, 1), list(range(1600)), TrainConfig(), tmp_path, sizes=sizes[:-1])
