"""The benchmark datasets crystalgen knows about, with their canonical sources and checksums.

The canonical files are the CSVs of the CDVAE repository at a pinned commit. Each split records
the git blob id of that CSV (``git hash-object``), so a download is verified without trusting the
server. Derived files that are not in CDVAE (``mp_20/train_first1000``) and the re-assembled copies
kept in this workplace's shared data directory are pinned by the sha256 of their ``.csv.gz``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from crystalgen.errors import DatasetError

CDVAE_COMMIT = "f857f598d6f6cca5dc1ea0582d228f12dcc2c2ea"
CDVAE_RAW_URL = f"https://raw.githubusercontent.com/txie-93/cdvae/{CDVAE_COMMIT}/data/{{dataset}}/{{split}}.csv"


@dataclass(frozen=True)
class SplitSpec:
    """One CSV split of a dataset.

    Attributes:
        name: split name, also the file stem (``<data_dir>/<dataset>/<name>.csv[.gz]``).
        rows: number of structures in the canonical file.
        url: canonical public download, or ``None`` for a derived split that cannot be downloaded.
        git_blob_sha1: ``git hash-object`` of the uncompressed canonical CSV, if known.
        known_sha256: sha256 of accepted ``.csv.gz`` copies (for example the shared CI copies).
        note: anything a user should know about the split.
    """

    name: str
    rows: int | None
    url: str | None
    git_blob_sha1: str | None = None
    known_sha256: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class DatasetSpec:
    """A benchmark dataset: its splits, atom limit and regression targets."""

    name: str
    description: str
    max_atoms: int
    properties: tuple[str, ...]
    splits: dict[str, SplitSpec] = field(default_factory=dict)

    def split(self, name: str) -> SplitSpec:
        try:
            return self.splits[name]
        except KeyError:
            raise DatasetError(
                f"dataset {self.name!r} has no split {name!r}; splits: {', '.join(self.splits)}"
            ) from None


def _cdvae_split(dataset: str, split: str, rows: int | None, blob: str | None, *sha256: str, note: str = "") -> SplitSpec:
    return SplitSpec(split, rows, CDVAE_RAW_URL.format(dataset=dataset, split=split), blob, tuple(sha256), note)


DATASETS: dict[str, DatasetSpec] = {
    "perov_5": DatasetSpec(
        "perov_5",
        "18,928 cubic perovskites ABX3, 5 atoms per cell (Castelli et al.), CDVAE splits.",
        max_atoms=5,
        properties=("heat_ref", "heat_all", "dir_gap", "ind_gap"),
        splits={
            "train": _cdvae_split(
                "perov_5", "train", 11356, "0769074b5d51d293b765c4371b8f55c468c9c9f2",
                "9f7442f3f108e0bd11ec72ac914ad6b7368e4ba87e424b24c1709e5b1b0e0bd6",
                note="the shared copy is DiffCSP's re-save: heat_ref differs by <1e-15 in ~8% of rows",
            ),
            "val": _cdvae_split(
                "perov_5", "val", 3787, "4a2c8dde98347dd0e01fa83dcf3982c2abe98f9f",
                "784e89dc6b8879382b2b25cf3cc0c75a3c1160f8242b2090006931a24a0f5c45",
            ),
            "test": _cdvae_split(
                "perov_5", "test", 3785, "d3c5d5af4b27a2a139149f2bb73c8a3dba9d8ac1",
                "b635a7e4803ce8abc147da102a5ac5df1a2c9fc74fc4854afb7eac54c839420c",
            ),
        },
    ),
    "carbon_24": DatasetSpec(
        "carbon_24",
        "10,153 carbon allotropes from AIRSS, 6-24 atoms per cell, CDVAE splits.",
        max_atoms=24,
        properties=("energy_per_atom",),
        splits={
            "train": _cdvae_split("carbon_24", "train", 6091, "5e7ae970fbad8ddc46b6963e8cd6e425f11783a6"),
            "val": _cdvae_split(
                "carbon_24", "val", 2032, "b3e29b927883642426ca1d9632d00359b412742b",
                "bf1d3e91bbd70e0c84b3be67c19ddcc796331b797a08a9e275691a3b7a564dec",
            ),
            "test": _cdvae_split(
                "carbon_24", "test", 2030, "9beca843fde489de1fe288b32f9e3ff710d42803",
                "f51a69674f1d15fb06fa8be60f09abbda60283f77fd1a21d44d6ec2c9a039f65",
            ),
        },
    ),
    "mp_20": DatasetSpec(
        "mp_20",
        "45,231 Materials Project structures with at most 20 atoms per cell, CDVAE splits.",
        max_atoms=20,
        properties=("formation_energy_per_atom", "band_gap", "e_above_hull"),
        splits={
            "train": _cdvae_split("mp_20", "train", 27136, "b1c9d498565ac2fd8d075a51ff2ef5e51ba6c21f"),
            "train_first1000": SplitSpec(
                "train_first1000", 1000, None, None,
                ("01721bf29ac9a1965f85d76084aef1fd5fa8df9dfddef90146fef1e0422a2001",),
                note="first 1,000 rows of train; derived, not downloadable (use the full train split)",
            ),
            "val": _cdvae_split(
                "mp_20", "val", 9047, "7efe4d7ebeb4f460ceaad35e5326c42111d9c9a1",
                "948c6581ad37444d540bfd433eceeff9d2771c27f2996b993c5c2be087674fcc",
                note="the shared copy rebuilds 1,907 rows from MatterGen's arrays (e_above_hull empty there)",
            ),
            "test": _cdvae_split(
                "mp_20", "test", 9046, "5dc643041df53f5ce4970a79930ad262b4f07acd",
                "40e11328c171715e562ce9feb4363d5569300ebfd025edc5bc9c7edd533ff59d",
                note="the shared copy rebuilds 1,928 rows from MatterGen's arrays (e_above_hull empty there)",
            ),
        },
    ),
    "mpts_52": DatasetSpec(
        "mpts_52",
        "40,476 Materials Project structures with at most 52 atoms, split by time (CDVAE).",
        max_atoms=52,
        properties=("formation_energy_per_atom", "band_gap", "e_above_hull"),
        splits={
            split: _cdvae_split(
                "mpts_52", split, None, None,
                note="no checksum is pinned yet: verify reports the sha256 it saw (trust on first use)",
            )
            for split in ("train", "val", "test")
        },
    ),
}


def get_dataset(name: str) -> DatasetSpec:
    """Look up a dataset by name, raising a one-line :class:`DatasetError` if unknown."""
    try:
        return DATASETS[name]
    except KeyError:
        raise DatasetError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}") from None
