"""The optional CHGNet stage: relax survivors, re-check them, and estimate E_hull from CHGNet.

CHGNet's energies are not formation energies, and the training split has few elemental phases, so
the reference is built like this: every training structure of the protocol is evaluated once with
CHGNet (cached on disk, with what it cost); per-element chemical potentials mu are fitted by least
squares so that ``E_CHGNet - x . mu`` matches the DFT formation energies; then candidates and
references are compared as formation energies on one hull (elements at 0).

CHGNet ships its weights inside the package; they are read with ``torch.load(weights_only=True)``
(CHGNet's own loader unpickles), so nothing is downloaded and no code is executed.
"""

from __future__ import annotations

import contextlib
import functools
import csv
import io
import json
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from crystalgen.crystal import Crystal
from crystalgen.errors import CrystalgenInputError
from crystalgen.filters.hull import ReferenceHull
from crystalgen.filters.stages import Stage, StageResult
from crystalgen.metrics.validity import ValidityConfig, structural_validity
from crystalgen.runs import atomic_write_text

if TYPE_CHECKING:
    from chgnet.model import CHGNet

CHGNET_VERSION = "0.3.0"
#: Structures per CHGNet call while building the reference.
REFERENCE_BATCH = 64
#: Candidates per pipeline chunk while relaxing (a few seconds each), so progress is saved often.
RELAX_CHUNK_ROWS = 8


def load_chgnet() -> "CHGNet":
    """CHGNet's pretrained model, its weights read without unpickling."""
    try:
        import chgnet
        import torch
        from chgnet.model import CHGNet
    except ImportError:
        raise CrystalgenInputError("the relax stage needs CHGNet: pip install 'crystalgen[relax]'") from None
    weights = sorted((Path(chgnet.__file__).parent / "pretrained" / CHGNET_VERSION).glob("*.pth.tar"))
    if not weights:
        raise CrystalgenInputError(f"CHGNet {CHGNET_VERSION} weights not found in the installed chgnet package")
    state = torch.load(weights[0], map_location="cpu", weights_only=True)
    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its parameter count
        return CHGNet.from_dict(state["model"])


@functools.lru_cache(maxsize=1)
def worker_chgnet() -> "CHGNet":
    """CHGNet, loaded once per process (the client's, or a worker's): the stage and the tasks sent
    to workers carry no model, which is cheaper than pickling it with every task."""
    return load_chgnet()


def chgnet_relax(model: "CHGNet", crystal: Crystal, steps: int, fmax: float) -> tuple[Crystal, float] | None:
    """CHGNet relaxation of one crystal (cell and positions): the relaxed crystal and its energy per
    atom, or None when CHGNet cannot handle it."""
    from chgnet.model import StructOptimizer

    with contextlib.redirect_stdout(io.StringIO()):  # CHGNet prints its device choice
        optimizer = StructOptimizer(model=model, use_device="cpu")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            result = optimizer.relax(crystal.to_structure(), fmax=fmax, steps=steps, verbose=False)
            per_atom = float(model.predict_structure(result["final_structure"], task="e")["e"])
    except Exception:  # noqa: BLE001  one structure CHGNet cannot handle must not stop a batch
        return None
    return Crystal.from_structure(result["final_structure"], id=crystal.id), per_atom


class ChgnetReference:
    """CHGNet energies per atom of reference structures, cached in a CSV that grows as it is built."""

    def __init__(self, model, cache: Path):
        self.model, self.cache = model, cache
        self.cost_file = cache.with_suffix(".cost.json")

    def energies(self, crystals: Sequence[Crystal]) -> np.ndarray:
        known: dict[str, float] = {}
        if self.cache.is_file():
            with open(self.cache, newline="") as handle:
                for row in csv.DictReader(handle):
                    try:  # a row cut short by an interrupted run is skipped, and recomputed
                        known[row["material_id"]] = float(row["energy_per_atom"])
                    except (TypeError, ValueError):
                        continue
        missing = [c for c in crystals if c.id not in known]
        if missing:
            self._compute(missing, known)
        return np.array([known[c.id] for c in crystals])

    def _compute(self, crystals: Sequence[Crystal], known: dict[str, float]) -> None:
        from crystalgen.progress import progress_bar

        self.cache.parent.mkdir(parents=True, exist_ok=True)
        new_file = not self.cache.is_file()
        if not new_file and not self.cache.read_bytes().endswith(b"\n"):
            with open(self.cache, "a") as handle:  # end a row an interrupted run left half-written
                handle.write("\n")
        cost = json.loads(self.cost_file.read_text()) if self.cost_file.is_file() else {"structures": 0, "seconds": 0.0}
        with open(self.cache, "a", newline="") as handle, progress_bar() as progress:
            writer = csv.writer(handle)
            if new_file:
                writer.writerow(["material_id", "energy_per_atom"])
            task = progress.add_task("CHGNet reference energies", total=len(crystals))
            for start in range(0, len(crystals), REFERENCE_BATCH):
                chunk = crystals[start:start + REFERENCE_BATCH]
                began = time.perf_counter()
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore")
                    predictions = self.model.predict_structure([c.to_structure() for c in chunk], task="e",
                                                               batch_size=REFERENCE_BATCH)
                predictions = predictions if isinstance(predictions, list) else [predictions]
                for crystal, prediction in zip(chunk, predictions):
                    known[crystal.id] = float(prediction["e"])
                    writer.writerow([crystal.id, known[crystal.id]])
                handle.flush()
                cost["structures"] += len(chunk)
                cost["seconds"] += time.perf_counter() - began
                atomic_write_text(self.cost_file, json.dumps(cost, indent=2))
                progress.advance(task, len(chunk))


def fit_chemical_potentials(crystals: Sequence[Crystal], chgnet_energy: np.ndarray, formation_energy: np.ndarray
                            ) -> dict[int, float]:
    """Per-element mu minimising sum (E_CHGNet - x . mu - E_f)^2 over the reference structures."""
    elements = sorted({int(z) for c in crystals for z in c.atomic_numbers})
    column = {z: j for j, z in enumerate(elements)}
    fractions = np.zeros((len(crystals), len(elements)))
    for i, crystal in enumerate(crystals):
        z, counts = np.unique(crystal.atomic_numbers, return_counts=True)
        fractions[i, [column[int(k)] for k in z]] = counts / counts.sum()
    mu, *_ = np.linalg.lstsq(fractions, chgnet_energy - formation_energy, rcond=None)
    return dict(zip(elements, mu.tolist()))


def chgnet_formation_energy(crystal: Crystal, energy_per_atom: float, mu: dict[int, float]) -> float:
    z, counts = np.unique(crystal.atomic_numbers, return_counts=True)
    if any(int(k) not in mu for k in z):
        return float("nan")  # an element with no reference structure
    return energy_per_atom - float(sum(mu[int(k)] * n for k, n in zip(z, counts)) / counts.sum())


class Relaxation(Stage):
    """CHGNet relaxation of the candidates that survived every earlier stage, then a re-check."""

    name = "relax"
    columns = ("relaxed_valid_struct", "chgnet_energy_per_atom", "e_above_hull_chgnet", "relax_s", "relaxed_cif")
    only_survivors = True
    chunk_rows = RELAX_CHUNK_ROWS
    distributable = True

    def __init__(self, reference: Sequence[Crystal], protocol: str, energy_property: str, steps: int, fmax: float,
                 max_e_above_hull: float, cache_dir: Path, validity: ValidityConfig = ValidityConfig()):
        self.steps, self.fmax, self.max_e_above_hull, self.validity = steps, fmax, max_e_above_hull, validity
        reference = [c for c in reference if energy_property in c.properties]
        cache = ChgnetReference(worker_chgnet(), cache_dir / f"chgnet-{CHGNET_VERSION}-{protocol}.csv")
        energies = cache.energies(reference)
        formation = np.array([c.properties[energy_property] for c in reference])
        self.mu = fit_chemical_potentials(reference, energies, formation)
        self.reference_cost = json.loads(cache.cost_file.read_text()) if cache.cost_file.is_file() else {}
        chgnet_formation = [chgnet_formation_energy(c, e, self.mu) for c, e in zip(reference, energies)]
        self.hull = ReferenceHull(reference, chgnet_formation, "formation")
        #: per reference structure that has ``energy_property`` (in input order): kept so that a report
        #: can say how the reference structures themselves sit on this hull
        self.reference_formation = np.array(chgnet_formation, dtype=np.float64)

    def evaluate(self, crystals, row_ids):
        valid, energy, above, cifs, seconds = [], [], [], [], []
        model = worker_chgnet()
        for crystal in crystals:  # a relaxation is an ASE loop per structure; nothing to vectorise across them
            started = time.perf_counter()
            relaxation = chgnet_relax(model, crystal, self.steps, self.fmax)
            if relaxation is None:
                valid.append(False)
                energy.append(float("nan"))
                above.append(float("nan"))
                cifs.append("")
                seconds.append(time.perf_counter() - started)
                continue
            relaxed, per_atom = relaxation
            formation = chgnet_formation_energy(relaxed, per_atom, self.mu)
            valid.append(structural_validity(relaxed, self.validity))
            energy.append(per_atom)
            above.append(formation - self.hull.hull_energy_per_atom(relaxed))
            cifs.append(relaxed.to_cif())
            seconds.append(time.perf_counter() - started)
        valid_array, above_array = np.array(valid, dtype=bool), np.array(above, dtype=np.float64)
        passed = valid_array & (np.nan_to_num(above_array, nan=np.inf) <= self.max_e_above_hull)
        return StageResult({"relaxed_valid_struct": valid_array, "chgnet_energy_per_atom": np.array(energy),
                            "e_above_hull_chgnet": above_array, "relax_s": np.array(seconds),
                            "relaxed_cif": np.array(cifs, dtype=object)}, passed)
