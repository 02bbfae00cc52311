"""Generators behind one interface (:class:`Generator`), addressed by family or checkpoint name.

Where to add a generator: a module in this folder with a :class:`Generator` subclass, and one
line in :data:`crystalgen.generators.registry.FAMILIES`.
"""

from crystalgen.generators.base import Generator, GeneratorInfo, Target
from crystalgen.generators.registry import FAMILIES, list_models, load_model, save_model
from crystalgen.generators.template import TemplateGenerator

__all__ = ["FAMILIES", "Generator", "GeneratorInfo", "Target", "TemplateGenerator", "list_models", "load_model", "save_model"]
