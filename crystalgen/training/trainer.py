"""One training loop for every learned model: seeded batches, EMA, periodic atomic checkpoints,
resume, a CSV metrics log, and DistributedDataParallel when launched by ``torchrun``.

A model plugs in by returning its losses from ``forward(batch, generator)`` as a dict with a
``"loss"`` entry (the other entries are logged); going through ``forward`` is what lets DDP
average gradients. The training items can be anything (crystals, Wyckoff batches, token
sequences, voxel grids): a ``collate_fn`` supplied with them turns a list of items into a batch
with a ``.to(device)`` method (by default :func:`crystalgen.batch.collate` of crystals). Batches
are drawn from a per-epoch permutation of the items seeded by (seed, epoch), so a resumed run sees
exactly the batches an uninterrupted one would have; under DDP each rank takes every
world_size-th item of it. When the items have sizes (token sequences of different lengths), each
epoch's batches are cut from size-sorted pools of :data:`BUCKET_POOL_BATCHES` batches, then put
in a seeded random order, so padding costs little and every batch is still a random draw.

Devices: the model, its batches and its random generator live on one device (``cpu`` or
``cuda``; ``auto`` picks CUDA when present); DDP uses NCCL on CUDA and gloo on the CPU, and
``bf16`` autocasts the forward pass on CUDA. Saved states are on the CPU; the random
state of a CUDA generator differs from a CPU one, so a run resumes on the device type it started on.
"""

from __future__ import annotations

import csv
import io
import math
import os
import time
from collections.abc import Callable, Sequence
from contextlib import nullcontext
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from crystalgen.batch import collate
from crystalgen.devices import resolve_device
from crystalgen.errors import CrystalgenInputError, first_line
from crystalgen.models.base import TrainingRun
from crystalgen.progress import progress_bar
from crystalgen.runs import atomic_write_text
from crystalgen.training.state import (
    STATE_FILE,
    load_optimizer_tensors,
    load_training_state,
    optimizer_tensors,
    save_training_state,
)

LOG_FILE = "metrics.csv"
#: Steps over which the EMA decay ramps up to its configured value (see :class:`EMA`).
EMA_WARMUP = 10
#: Training settings a resumed run must share with the saved one (the checkpoint/log cadence may
#: change between sessions, and with a constant learning rate the step budget too).
RESUME_INVARIANT = ("batch_size", "lr", "lr_schedule", "weight_decay", "grad_clip", "ema_decay", "seed")
#: ... and, with a decaying schedule, the step budget it decays over.
SCHEDULE_INVARIANT = ("steps", "warmup_steps")
LR_SCHEDULES = ("constant", "cosine")
TENSORBOARD_DIR = "tensorboard"


def _truncate_log(path: Path, step: int) -> None:
    """Drop log rows after ``step``: those logged after the last saved state of an interrupted run
    are logged again when it resumes, and a fresh run starts a fresh log."""
    if not path.is_file():
        return
    if step == 0:
        path.unlink()
        return
    with open(path, newline="") as handle:
        rows = list(csv.DictReader(handle))
    if not rows or all(int(float(r["step"])) <= step for r in rows):
        return
    text = io.StringIO()
    writer = csv.DictWriter(text, list(rows[0]))
    writer.writeheader()
    writer.writerows(r for r in rows if int(float(r["step"])) <= step)
    atomic_write_text(path, text.getvalue())


def _tensorboard_writer(out: Path):
    """A TensorBoard writer under ``out`` when tensorboard is installed, else ``False`` (the CSV log always exists)."""
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        return False
    return SummaryWriter(str(out / TENSORBOARD_DIR))


#: Batches per size-sorted pool when items have sizes: large enough that batches are nearly
#: uniform in size, small enough that every part of an epoch mixes long and short items.
BUCKET_POOL_BATCHES = 50


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 10_000
    batch_size: int = 64
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    ema_decay: float = 0.999
    seed: int = 0
    checkpoint_every_s: float = 300.0
    log_every: int = 50
    #: "constant", or "cosine": decay from ``lr`` to 0 over ``steps`` (after a linear warm-up).
    lr_schedule: str = "constant"
    warmup_steps: int = 0

    def __post_init__(self) -> None:
        if self.lr_schedule not in LR_SCHEDULES:
            raise CrystalgenInputError(f"training.lr_schedule must be one of {', '.join(LR_SCHEDULES)}, "
                                       f"got {self.lr_schedule!r}")

    def learning_rate(self, step: int) -> float:
        """The rate at ``step``: a pure function of the step, so a resumed run needs no scheduler state."""
        if step < self.warmup_steps:
            return self.lr * (step + 1) / self.warmup_steps
        if self.lr_schedule == "constant":
            return self.lr
        progress = min(1.0, (step - self.warmup_steps) / max(1, self.steps - self.warmup_steps))
        return 0.5 * self.lr * (1.0 + math.cos(math.pi * progress))


@dataclass
class DistributedContext:
    rank: int = 0
    world_size: int = 1
    #: Whether :meth:`from_environment` created the process group (and :meth:`close` should end it).
    owns_group: bool = False

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls, device: torch.device | None = None) -> "DistributedContext":
        """Join the process group ``torchrun`` set up (NCCL on CUDA, gloo on the CPU); a single process otherwise."""
        world_size = int(os.environ.get("WORLD_SIZE", "1"))
        if world_size <= 1:
            return cls()
        import torch.distributed as dist

        owns = not dist.is_initialized()
        if owns:
            dist.init_process_group("nccl" if device is not None and device.type == "cuda" else "gloo")
        return cls(dist.get_rank(), world_size, owns)

    def close(self) -> None:
        """End the process group this context created, once every rank is done with it. A process
        that exits with a live gloo group can abort in its worker threads ("terminate called without
        an active exception"), failing a run that finished."""
        if not self.owns_group:
            return
        import torch.distributed as dist

        if dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
        self.owns_group = False

    @staticmethod
    def local_device(device: torch.device) -> torch.device:
        """This process's GPU under torchrun (``LOCAL_RANK``), or ``device`` itself."""
        if device.type != "cuda" or device.index is not None:
            return device
        return torch.device("cuda", int(os.environ.get("LOCAL_RANK", "0")))


class EMA:
    """Exponential moving average of a model's parameters (and a copy of its buffers).

    The decay warms up as ``min(decay, (1 + step) / (EMA_WARMUP + step))``: with a fixed 0.999 the
    average of a short run would still be mostly the random initial weights.
    """

    def __init__(self, model: nn.Module, decay: float):
        self.decay = decay
        self.shadow = {k: v.detach().clone() for k, v in model.state_dict().items()}

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        decay = min(self.decay, (1 + step) / (EMA_WARMUP + step))
        for name, value in model.state_dict().items():
            if value.is_floating_point():
                self.shadow[name].lerp_(value.detach(), 1 - decay)
            else:
                self.shadow[name].copy_(value)


class Trainer:
    def __init__(self, model: nn.Module, train: Sequence[Any], config: TrainConfig, out: str | os.PathLike,
                 context: DistributedContext | None = None, collate_fn: Callable[[list[Any]], Any] = collate,
                 device: torch.device | str = "cpu", bf16: bool = False, sizes: Sequence[int] | None = None):
        self.train, self.config, self.out = list(train), config, Path(out)
        if sizes is not None and len(sizes) != len(self.train):
            raise ValueError(f"{len(sizes)} sizes for {len(self.train)} training items")
        self.sizes = None if sizes is None else torch.as_tensor(list(sizes))
        self._epoch_batches: tuple[int, list[torch.Tensor]] | None = None
        self.context = context or DistributedContext()
        self.collate_fn = collate_fn
        self.device = torch.device(device)
        if self.device.type == "cuda" and self.device.index is not None:
            torch.cuda.set_device(self.device)
        self.model = model.to(self.device)
        #: bf16 autocast of the forward pass; only on CUDA, where it is fast and the loss stays stable.
        self.autocast = bf16 and self.device.type == "cuda"
        self.optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
        self.ema = EMA(model, config.ema_decay)
        self.step = 0
        #: Seconds spent in :meth:`run`, summed over resumed sessions (what a model card reports).
        self.elapsed_s = 0.0
        self.generator = torch.Generator(self.device).manual_seed(config.seed + 1000 * self.context.rank)
        self._tensorboard = None  # created at the first log line; False when tensorboard is not installed
        self.wrapped: nn.Module = self.model
        if self.context.world_size > 1:
            device_ids = [self.device.index] if self.device.type == "cuda" else None
            self.wrapped = nn.parallel.DistributedDataParallel(self.model, device_ids=device_ids)

    # ------------------------------------------------------------------ batches
    def batch_indices(self, step: int) -> list[int]:
        """Indices of this rank's batch at ``step``: a slice of the seeded permutation of its epoch."""
        global_batch = self.config.batch_size * self.context.world_size
        per_epoch = max(1, len(self.train) // global_batch)
        epoch, position = divmod(step, per_epoch)
        if self._epoch_batches is None or self._epoch_batches[0] != epoch:
            self._epoch_batches = (epoch, self._batches_of_epoch(epoch, global_batch, per_epoch))
        chunk = self._epoch_batches[1][position]
        return chunk[self.context.rank::self.context.world_size].tolist()

    def _batches_of_epoch(self, epoch: int, global_batch: int, per_epoch: int) -> list[torch.Tensor]:
        generator = torch.Generator().manual_seed(self.config.seed * 100_003 + epoch)
        order = torch.randperm(len(self.train), generator=generator)
        if self.sizes is None:
            return [order[k * global_batch:(k + 1) * global_batch] for k in range(per_epoch)]
        pool = BUCKET_POOL_BATCHES * global_batch
        # within each pool, sorted by size; a stable sort keeps the random order among equal sizes
        pools = [chunk[torch.sort(self.sizes[chunk], stable=True).indices] for chunk in order.split(pool)]
        batches = [b for chunk in pools for b in chunk.split(global_batch) if len(b) == global_batch]
        if len(batches) < per_epoch:  # pools that do not divide into full batches: top up from the permutation
            batches += [order[k * global_batch:(k + 1) * global_batch] for k in range(per_epoch - len(batches))]
        shuffle = torch.randperm(len(batches), generator=generator)[:per_epoch]
        return [batches[k] for k in shuffle.tolist()]

    # ------------------------------------------------------------------ checkpoints
    @property
    def state_path(self) -> Path:
        return self.out / STATE_FILE

    def _rank_rng_states(self) -> list[torch.Tensor]:
        """Every rank's random state (collective under DDP: all ranks must call it together)."""
        state = self.generator.get_state()
        if self.context.world_size == 1:
            return [state]
        import torch.distributed as dist

        # NCCL gathers CUDA tensors only; the states are saved on the CPU either way
        local = state.to(self.device)
        states = [torch.empty_like(local) for _ in range(self.context.world_size)]
        dist.all_gather(states, local)
        return [s.cpu() for s in states]

    def save(self) -> None:
        """Write the training state (all ranks call it; rank 0 writes)."""
        rng_states = self._rank_rng_states()
        if not self.context.is_main:
            return
        optim_tensors, optim_scalars = optimizer_tensors(self.optimizer)
        tensors = {
            **{f"model.{k}": v for k, v in self.model.state_dict().items()},
            **{f"ema.{k}": v for k, v in self.ema.shadow.items()},
            **optim_tensors,
            **{f"rng.{rank}": state for rank, state in enumerate(rng_states)},
        }
        save_training_state(self.state_path, tensors, {"step": self.step, "elapsed_s": self.elapsed_s,
                                                       "world_size": self.context.world_size,
                                                       "optimizer": optim_scalars,
                                                       "config": asdict(self.config)})

    def resume(self) -> bool:
        """Load the last checkpoint if there is one; ``True`` if it did."""
        if not self.state_path.is_file():
            return False
        tensors, metadata = load_training_state(self.state_path)
        saved = metadata.get("config", {})
        # a cosine schedule is laid out over the step budget, so that budget is fixed too
        invariant = RESUME_INVARIANT + (SCHEDULE_INVARIANT if self.config.lr_schedule != "constant" else ())
        changed = [f"{k}: {saved[k]} -> {getattr(self.config, k)}" for k in invariant
                   if k in saved and saved[k] != getattr(self.config, k)]
        if changed:
            raise CrystalgenInputError(f"cannot resume {self.state_path}: training settings changed ({'; '.join(changed)})")
        if int(metadata.get("world_size", 1)) != self.context.world_size:
            raise CrystalgenInputError(f"cannot resume {self.state_path}: it was written by "
                                       f"{metadata.get('world_size', 1)} processes, this run has {self.context.world_size}")
        try:
            self.model.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        except RuntimeError as exc:
            raise CrystalgenInputError(f"cannot resume {self.state_path}: the model does not match it "
                                       f"({first_line(exc)})") from None
        self.ema.shadow = {k[4:]: v.to(self.device) for k, v in tensors.items() if k.startswith("ema.")}
        load_optimizer_tensors(self.optimizer, {k: v for k, v in tensors.items() if k.startswith("optim.")},
                               metadata["optimizer"])
        try:
            self.generator.set_state(tensors.get(f"rng.{self.context.rank}", tensors.get("rng")))
        except RuntimeError:
            raise CrystalgenInputError(f"cannot resume {self.state_path} on {self.device.type}: it was written on "
                                       "another device type (resume with the --device it started with)") from None
        self.step = int(metadata["step"])
        self.elapsed_s = float(metadata.get("elapsed_s", 0.0))
        return True

    # ------------------------------------------------------------------ loop
    @property
    def finished(self) -> bool:
        return self.step >= self.config.steps

    def run(self, resume: bool = False, time_limit_s: float | None = None) -> dict[str, float]:
        """Train up to ``config.steps`` (or until ``time_limit_s`` of this session has passed; a
        later ``run(resume=True)`` continues); returns the last logged means."""
        resumed = self.resume() if resume else False
        self.out.mkdir(parents=True, exist_ok=True)
        log_path = self.out / LOG_FILE
        if self.context.is_main:
            _truncate_log(log_path, self.step if resumed else 0)
        last_save = time.monotonic()
        sums: dict[str, float] = {}
        accumulated = 0
        logged: dict[str, float] = {}
        start_step, start_time, start_elapsed = self.step, time.monotonic(), self.elapsed_s
        with progress_bar(enabled=self.context.is_main) as progress:
            task = progress.add_task("training", total=self.config.steps, completed=self.step)
            while self.step < self.config.steps:
                now = time.monotonic()
                out_of_time, save_due = self._rank0_says(
                    time_limit_s is not None and now - start_time > time_limit_s,
                    now - last_save > self.config.checkpoint_every_s,
                )
                if out_of_time:
                    break
                if save_due:
                    self.save()
                    last_save = time.monotonic()
                batch = self.collate_fn([self.train[i] for i in self.batch_indices(self.step)]).to(self.device)
                for group in self.optimizer.param_groups:
                    group["lr"] = self.config.learning_rate(self.step)
                with torch.autocast("cuda", dtype=torch.bfloat16) if self.autocast else nullcontext():
                    losses = self.wrapped(batch, self.generator)
                self.optimizer.zero_grad(set_to_none=True)
                losses["loss"].backward()
                norm = nn.utils.clip_grad_norm_(self.model.parameters(), self.config.grad_clip)
                self.optimizer.step()
                self.ema.update(self.model, self.step)
                self.step += 1
                for name, value in losses.items():
                    sums[name] = sums.get(name, 0.0) + float(value.detach())
                sums["grad_norm"] = sums.get("grad_norm", 0.0) + float(norm)
                accumulated += 1
                if self.step % self.config.log_every == 0 or self.step == self.config.steps:
                    logged = {k: v / accumulated for k, v in sums.items()}
                    rate = (self.step - start_step) * self.config.batch_size * self.context.world_size / max(
                        time.monotonic() - start_time, 1e-9)
                    self._log(log_path, {"step": self.step, **logged, "structures_per_s": rate})
                    sums, accumulated = {}, 0
                progress.advance(task)
                self.elapsed_s = start_elapsed + time.monotonic() - start_time
        self.save()
        if self._tensorboard:
            self._tensorboard.close()
        return logged

    def _rank0_says(self, *conditions: bool) -> tuple[bool, ...]:
        """Rank 0's values of clock-based conditions, shared by all ranks (one broadcast) so that
        they stop and save together."""
        if self.context.world_size == 1:
            return conditions
        import torch.distributed as dist

        flags = torch.tensor([float(c) for c in conditions], device=self.device)
        dist.broadcast(flags, src=0)
        return tuple(bool(f) for f in flags.tolist())

    def _log(self, path: Path, row: dict[str, float]) -> None:
        if not self.context.is_main:
            return
        if self._tensorboard is None:
            self._tensorboard = _tensorboard_writer(self.out)
        if self._tensorboard:
            for name, value in row.items():
                if name != "step":
                    self._tensorboard.add_scalar(name, value, int(row["step"]))
        new = not path.is_file()
        with open(path, "a", newline="") as handle:
            writer = csv.DictWriter(handle, list(row))
            if new:
                writer.writeheader()
            writer.writerow({k: (round(v, 6) if isinstance(v, float) and math.isfinite(v) else v) for k, v in row.items()})


def train_model(model: nn.Module, train: Sequence[Any], config: TrainConfig, run: TrainingRun | None = None,
                collate_fn: Callable[[list[Any]], Any] = collate, sizes: Sequence[int] | None = None) -> dict:
    """Run the training loop on ``model`` (in ``run.run_dir``, or a scratch folder, on ``run.device``),
    then load the EMA weights into it (``sizes``: batch items of similar size together); returns the summary a model card reports (steps, wall time,
    whether finished, the training settings, processes, device, last logged losses)."""
    import tempfile

    run = run or TrainingRun()
    device = resolve_device(run.device)
    context = DistributedContext.from_environment(device)
    with tempfile.TemporaryDirectory() as scratch:
        trainer = Trainer(model, train, config, run.run_dir or scratch, context, collate_fn,
                          context.local_device(device), run.bf16, sizes)
        logged = trainer.run(resume=run.resume, time_limit_s=run.time_limit_s)
        context.close()  # not on an error: a barrier with a failed rank would never return
    model.load_state_dict(trainer.ema.shadow)
    model.eval()
    return {"steps": trainer.step, "wall_s": trainer.elapsed_s, "finished": trainer.finished, "config": asdict(config),
            "train_structures": len(train), "processes": trainer.context.world_size, "last_losses": logged,
            "device": str(trainer.device) + (" (bf16 autocast)" if trainer.autocast else "")}
