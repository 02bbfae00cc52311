"""Turning a :class:`FilterConfig` into ready stages: loading the surrogate, the protocol's
training structures (for novelty) and the reference hull (from their energies)."""

from __future__ import annotations

import os
from typing import Any

from crystalgen.errors import CrystalgenInputError
from crystalgen.filters.hull import ReferenceHull
from crystalgen.filters.pipeline import FilterConfig
from crystalgen.filters.stages import (
    CompositionValidity,
    Novelty,
    Stability,
    Stage,
    StructuralValidity,
    Uniqueness,
)
from crystalgen.metrics.validity import ValidityConfig

#: Energy properties a hull can be built from, and how their zero is defined (see ``filters.hull``).
HULL_ENERGIES = {"formation_energy_per_atom": "formation", "heat_ref": "formation", "energy_per_atom": "total"}
#: The surrogate used when neither the config nor the caller names one.
DEFAULT_SURROGATE = "surrogate-mp_20"


def hull_energy_property(surrogate: Any) -> str:
    """The surrogate's property the stability stage ranks by."""
    for name in surrogate.properties:
        if name in HULL_ENERGIES:
            return name
    raise CrystalgenInputError(f"surrogate {surrogate.name!r} predicts {', '.join(surrogate.properties)}; the "
                               f"stability stage needs one of {', '.join(HULL_ENERGIES)}")


def surrogate_name(config: FilterConfig, preferred: str | None = None) -> str:
    """The config's surrogate; else ``preferred`` (e.g. the generator's dataset's) if shipped; else the default."""
    from crystalgen.models.store import resolve_checkpoint

    if config.surrogate:
        return config.surrogate
    if preferred and resolve_checkpoint(preferred) is not None:
        return preferred
    return DEFAULT_SURROGATE


def _surrogate_protocol(name: str) -> str | None:
    """The training protocol recorded in a surrogate checkpoint's config (without loading its weights)."""
    from crystalgen.models.store import read_checkpoint
    from crystalgen.models.store import resolve_checkpoint

    folder = resolve_checkpoint(name)
    if folder is None:
        raise CrystalgenInputError(f"unknown surrogate {name!r}: not a checkpoint folder or shipped name")
    return read_checkpoint(folder, weights=False).config.get("protocol")


def build_stages(config: FilterConfig, protocol: str | None, data_dir: str | os.PathLike | None,
                 preferred_surrogate: str | None = None) -> tuple[list[Stage], dict[str, Any]]:
    """The enabled stages in pipeline order, and a description of what they were built from.

    ``protocol``: whose training split novelty is measured against (default: the surrogate's).
    """
    from crystalgen.data.protocols import load_training_split

    loaded: dict[str, Any] = {}

    def training_split(name: str):
        if name not in loaded:  # several stages may need the same split; load it once
            loaded[name] = load_training_split(name, data_dir)
        return loaded[name]

    validity = ValidityConfig(config.min_distance, config.min_volume)
    stages: list[Stage] = []
    provenance: dict[str, Any] = {"stages": config.enabled()}
    if config.structural:
        stages.append(StructuralValidity(validity))
    if config.composition:
        stages.append(CompositionValidity())
    if config.uniqueness:
        stages.append(Uniqueness())
    name = surrogate_name(config, preferred_surrogate)
    if config.novelty:
        protocol = protocol or _surrogate_protocol(name)
        if protocol is None:
            raise CrystalgenInputError("the novelty stage needs --protocol (whose training set to compare with)")
        spec, train = training_split(protocol)
        stages.append(Novelty(train))
        provenance["novelty_reference"] = f"{spec.name} training split ({len(train):,} structures)"
    if not (config.stability or config.relax):
        return stages, provenance
    from crystalgen.surrogate.predictor import load_surrogate

    surrogate = load_surrogate(name)
    if surrogate.protocol is None:
        raise CrystalgenInputError(f"surrogate {surrogate.name!r} records no training protocol, so the reference "
                                   "hull of its training energies cannot be built; train it with `crystalgen train`")
    energy = hull_energy_property(surrogate)
    hull_spec, reference = training_split(surrogate.protocol)
    if config.stability:
        hull = ReferenceHull.from_crystals(reference, energy, HULL_ENERGIES[energy])
        stages.append(Stability(surrogate, hull, energy, config.max_e_above_hull))
        provenance["surrogate"] = surrogate.name
        provenance["hull_reference"] = (f"{hull.size:,} {hull_spec.name} training structures' {energy} "
                                        f"({HULL_ENERGIES[energy]} energies)")
    if config.relax:
        from crystalgen.data.files import user_cache_dir
        from crystalgen.filters.relax import Relaxation

        if HULL_ENERGIES[energy] != "formation":
            raise CrystalgenInputError(f"the relax stage needs a formation-energy surrogate, {surrogate.name!r} predicts {energy}")
        stage = Relaxation(reference, hull_spec.name, energy, config.relax_steps, config.relax_fmax,
                           config.max_e_above_hull, user_cache_dir() / "chgnet", validity)
        stages.append(stage)
        provenance["chgnet_reference"] = (f"{hull_spec.name} training structures evaluated with CHGNet once, cached: "
                                          f"{stage.reference_cost}")
    return stages, provenance
