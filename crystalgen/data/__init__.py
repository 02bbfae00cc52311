"""Datasets: registry, files and checksums, loading with a binary cache, and protocols.

Typical use::

    from crystalgen.data import load_protocol, load_split
    test = load_split("mp_20", "test")                      # list[Crystal]
    data = load_protocol("mp_20_reduced_train").load()      # .train / .select / .test
"""

from crystalgen.data.files import DATA_DIR_ENV, fetch_split, resolve_data_dir, split_file, verify_split
from crystalgen.data.loading import load_split, load_structures, read_structure_csv
from crystalgen.data.protocols import DataProtocol, ProtocolData, list_protocols, load_protocol
from crystalgen.data.registry import DATASETS, DatasetSpec, SplitSpec, get_dataset

__all__ = [
    "DATASETS",
    "DATA_DIR_ENV",
    "DataProtocol",
    "DatasetSpec",
    "ProtocolData",
    "SplitSpec",
    "fetch_split",
    "get_dataset",
    "list_protocols",
    "load_protocol",
    "load_split",
    "load_structures",
    "read_structure_csv",
    "resolve_data_dir",
    "split_file",
    "verify_split",
]
