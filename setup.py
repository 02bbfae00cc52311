"""Packaging glue that pyproject.toml cannot express: the top-level ``configs/`` and ``checkpoints/``
folders are installed inside the package, as ``crystalgen/configs`` and ``crystalgen/checkpoints``,
so that protocols and shipped checkpoints resolve after a non-editable install
(``crystalgen.resources`` finds either layout)."""

from setuptools import find_packages, setup

SHIPPED = {"crystalgen.configs": "configs", "crystalgen.checkpoints": "checkpoints"}

setup(
    packages=find_packages(include=["crystalgen", "crystalgen.*"]) + list(SHIPPED),
    package_dir={"crystalgen": "crystalgen", **SHIPPED},
    package_data={"crystalgen.configs": ["**/*.yaml"],
                  "crystalgen.checkpoints": ["*/model.safetensors", "*/config.yaml", "*/card.md"]},
)
