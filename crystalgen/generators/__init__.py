"""Generators behind one interface (:class:`Generator`), addressed by family or checkpoint name.

Where to add a generator: a module in this folder with a :class:`Generator` subclass, and one
line in :data:`crystalgen.models.registry.FAMILIES`. Importing this package does not import torch.
"""

from crystalgen.generators.base import Generator
from crystalgen.generators.options import SampleOptions
from crystalgen.generators.target import PropertyTarget, Target
from crystalgen.generators.template import TemplateGenerator
from crystalgen.models.registry import list_models, load_model, save_model

__all__ = ["Generator", "PropertyTarget", "SampleOptions", "Target", "TemplateGenerator", "list_models", "load_model",
           "save_model"]
