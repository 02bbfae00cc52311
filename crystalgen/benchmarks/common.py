"""What the CSP and generation benchmarks share: model and protocol resolution, and the run
metadata every report ends with."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from crystalgen import __version__
from crystalgen.data import load_protocol
from crystalgen.data.protocols import DataProtocol
from crystalgen.errors import CrystalgenInputError
from crystalgen.generators import Generator, SampleOptions, load_model
from crystalgen.models.store import CARD_FILE, resolve_checkpoint, update_card_file
from crystalgen.reports.document import Preformatted, Section, Table, Text
from crystalgen.runs import RunDir, atomic_write_text, git_commit, machine_description


@dataclass
class BenchmarkModel:
    """A loaded model with the protocol it is evaluated under."""

    name: str
    model: Generator
    checkpoint: Path | None
    protocol: DataProtocol
    #: How the benchmark samples (e.g. other sampler steps than the checkpoint's).
    options: SampleOptions = SampleOptions()

    @property
    def card(self) -> str:
        if self.checkpoint is None or not (self.checkpoint / CARD_FILE).is_file():
            return ""
        return (self.checkpoint / CARD_FILE).read_text()

    @property
    def trained_on_protocol(self) -> bool:
        return self.model.protocol == self.protocol.name


def resolve_protocol(model: Generator, dataset: str, protocol: str | None) -> DataProtocol:
    """The named protocol; else the model's own if it is on this dataset; else the dataset's standard one."""
    if protocol is not None:
        spec = load_protocol(protocol)
        if spec.dataset != dataset:
            raise CrystalgenInputError(f"protocol {spec.name!r} is on dataset {spec.dataset!r}, not {dataset!r}")
        return spec
    if model.protocol:
        own = load_protocol(model.protocol)
        if own.dataset == dataset:
            return own
    return load_protocol(dataset)


def load_benchmark_model(name: str, dataset: str, protocol: str | None, task: str,
                         data_dir: str | os.PathLike | None) -> BenchmarkModel:
    """Load a fitted model that can do ``task`` ("csp" or "gen"), with its evaluation protocol."""
    model = load_model(name, data_dir)
    if not model.is_fitted:
        raise CrystalgenInputError(f"model {name!r} is an unfitted family; use a checkpoint (see `crystalgen models`)")
    if not model.capabilities.does(task):
        raise CrystalgenInputError(f"model {name!r} does {model.capabilities.task_label!r}, not {task!r}")
    return BenchmarkModel(model.name, model, resolve_checkpoint(name), resolve_protocol(model, dataset, protocol))


# ---------------------------------------------------------------------------------- metadata
def run_metadata(run: RunDir, bench: BenchmarkModel, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "crystalgen_version": __version__,
        "git_commit": git_commit(),
        "started_commit": run.started_commit,
        "model": bench.name,
        "family": bench.model.family,
        "checkpoint": str(bench.checkpoint) if bench.checkpoint else None,
        "model_protocol": bench.model.protocol,
        "protocol": bench.protocol.name,
        "protocol_description": bench.protocol.describe(),
        **(extra or {}),
        "wall_s": dict(run.wall_s),
        "machine": machine_description(),
    }


def metadata_section(meta: dict[str, Any], card: str) -> Section:
    machine = meta["machine"]
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    wall = ", ".join(f"{stage} {seconds:.1f} s" for stage, seconds in meta["wall_s"].items())
    rows = [
        ["crystalgen version", meta["crystalgen_version"]],
        ["git commit (report written / run started)", f"{meta['git_commit']} / {meta['started_commit']}"],
        ["model", f"{meta['model']} (family {meta['family']})"],
        ["checkpoint", meta["checkpoint"] or "none (unsaved model)"],
        ["model trained on", meta["model_protocol"] or "unknown"],
        ["evaluation protocol", f"{meta['protocol']}: {meta['protocol_description']}"],
        *[[key.replace("_", " "), str(value)] for key, value in meta.get("settings", {}).items()],
        ["wall time (summed over resumed sessions)", wall],
        ["machine", f"{machine['cpu']}, {machine['cores']} cores, {machine['os']}, Python {machine['python']}, "
                    f"torch {machine.get('torch')}{gpu}"],
    ]
    blocks: list = [Table(["field", "value"], rows)]
    if card.strip():
        blocks += [Text("The checkpoint's model card (`card.md`), verbatim:"), Preformatted(card.strip())]
    return Section("Run metadata", blocks)


# ---------------------------------------------------------------------------------- model cards
def card_path(bench: BenchmarkModel) -> Path:
    """The checkpoint's ``card.md``; a one-line error for a model without a checkpoint folder."""
    if bench.checkpoint is None:
        raise CrystalgenInputError(f"model {bench.name!r} has no checkpoint folder whose card could be updated")
    return bench.checkpoint / CARD_FILE


def update_card(bench: BenchmarkModel, section: str, values: dict[str, Any], body: str) -> None:
    """Merge ``values`` into the checkpoint card's front-matter metrics and (re)write its ``## section``."""
    update_card_file(card_path(bench), section, values, body)


def run_provenance(meta: dict[str, Any]) -> str:
    """"Wall time: ..., on <machine>." for a card, from a run's metadata."""
    machine = meta["machine"]
    wall = ", ".join(f"{stage} {seconds:.0f} s" for stage, seconds in meta["wall_s"].items())
    gpu = f", GPU {machine['gpu']}" if machine.get("gpu") else ", no GPU"
    return f"Wall time: {wall}, on {machine['cpu']} ({machine['cores']} cores{gpu})."
