"""crystalgen: generative crystal design with shared representations and honest benchmarks."""

from importlib.metadata import PackageNotFoundError, version

from crystalgen.batch import CrystalBatch, collate
from crystalgen.crystal import Crystal

try:
    __version__ = version("crystalgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["Crystal", "CrystalBatch", "collate", "__version__"]
