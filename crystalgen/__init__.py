"""crystalgen: generative crystal design with shared representations and honest benchmarks.

``Crystal``, ``CrystalBatch`` and ``collate`` are imported on first use, so that ``import
crystalgen`` (and the CLI's start-up) does not pay for torch.
"""

from importlib.metadata import PackageNotFoundError, version
from typing import Any

try:
    __version__ = version("crystalgen")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

_LAZY = {"Crystal": "crystalgen.crystal", "CrystalBatch": "crystalgen.batch", "collate": "crystalgen.batch"}

__all__ = ["Crystal", "CrystalBatch", "collate", "__version__"]


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'crystalgen' has no attribute {name!r}")
