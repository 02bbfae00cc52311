"""The one model store, for generators and property models alike.

* :mod:`~crystalgen.models.store`: checkpoint folders (read, write, resolve names, cards);
* :mod:`~crystalgen.models.registry`: family name -> class, imported lazily; :func:`load_model`;
* :mod:`~crystalgen.models.capabilities`: what a family can condition on and which options it takes;
* :mod:`~crystalgen.models.base`: the :class:`Model` base class and :class:`TrainingRun`.

Importing this package does not import torch.
"""

from crystalgen.models.base import GENERATOR, PROPERTY, Model, TrainingRun
from crystalgen.models.capabilities import CSP, GEN, Capabilities
from crystalgen.models.registry import FAMILIES, ModelInfo, build_model, list_models, load_model, save_model
from crystalgen.models.store import Checkpoint, read_checkpoint, resolve_checkpoint, write_checkpoint

__all__ = [
    "CSP", "FAMILIES", "GEN", "GENERATOR", "PROPERTY", "Capabilities", "Checkpoint", "Model", "ModelInfo",
    "TrainingRun", "build_model", "list_models", "load_model", "read_checkpoint", "resolve_checkpoint",
    "save_model", "write_checkpoint",
]
