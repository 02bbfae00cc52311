"""Where the shipped folders (``configs/``, ``checkpoints/``) are, installed or not.

In the repository they sit at the top level, for people reading it; a wheel installs them as the
package-data folders ``crystalgen/configs`` and ``crystalgen/checkpoints`` (see ``setup.py``). Both
layouts resolve here, so nothing else in crystalgen knows which one it runs from.
"""

from __future__ import annotations

from pathlib import Path

_PACKAGE = Path(__file__).resolve().parent


def shipped_dir(name: str) -> Path:
    """The shipped folder ``name`` (``"configs"`` or ``"checkpoints"``); may not exist in a bare install."""
    installed = _PACKAGE / name
    if installed.is_dir():
        return installed
    return _PACKAGE.parent / name  # a source checkout, editable install or not


def configs_dir() -> Path:
    return shipped_dir("configs")


def checkpoints_dir() -> Path:
    return shipped_dir("checkpoints")
