"""Where dataset files live, how they are verified, and how they are downloaded.

Data directory resolution, first match wins:

1. an explicit ``data_dir`` argument (the CLI's ``--data-dir``);
2. the environment variable ``CRYSTALGEN_DATA_DIR``;
3. a per-user cache, ``$XDG_CACHE_HOME/crystalgen/data`` (``~/.cache/crystalgen/data``).

Inside it, a split is ``<dataset>/<split>.csv.gz`` or ``<dataset>/<split>.csv``.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import shutil
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from crystalgen.data.registry import CDVAE_COMMIT, SplitSpec, get_dataset
from crystalgen.errors import CrystalgenInputError, DatasetError
from crystalgen.io import gunzip, read_file_bytes

DATA_DIR_ENV = "CRYSTALGEN_DATA_DIR"
SPLIT_SUFFIXES = (".csv.gz", ".csv")
DOWNLOAD_CHUNK_BYTES = 1 << 16
DOWNLOAD_TIMEOUT_S = 60


def user_cache_dir() -> Path:
    """crystalgen's per-user cache folder (datasets, parsed-structure caches, fingerprints)."""
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "crystalgen"


def resolve_data_dir(data_dir: str | os.PathLike | None = None) -> Path:
    """The data directory to use (see the module docstring for the order)."""
    if data_dir is not None:
        return Path(data_dir).expanduser()
    if os.environ.get(DATA_DIR_ENV):
        return Path(os.environ[DATA_DIR_ENV]).expanduser()
    return user_cache_dir() / "data"


def find_split_file(dataset: str, split: str, data_dir: str | os.PathLike | None = None) -> Path | None:
    """The path of a split's file if it exists, else ``None``."""
    get_dataset(dataset).split(split)
    root = resolve_data_dir(data_dir)
    for suffix in SPLIT_SUFFIXES:
        candidate = root / dataset / f"{split}{suffix}"
        if candidate.is_file():
            return candidate
    return None


def split_file(dataset: str, split: str, data_dir: str | os.PathLike | None = None) -> Path:
    """The path of a split's file; a clear :class:`DatasetError` says how to get it if missing."""
    spec = get_dataset(dataset).split(split)
    path = find_split_file(dataset, split, data_dir)
    if path is not None:
        return path
    for suffix in SPLIT_SUFFIXES:
        odd = resolve_data_dir(data_dir) / dataset / f"{split}{suffix}"
        if odd.exists():  # there, but a folder or a device: "missing" would send the user looking elsewhere
            kind = "is a directory" if odd.is_dir() else "not a regular file"
            raise DatasetError(f"{odd}: {kind}, expected the {dataset}/{split} split file")
    expected = resolve_data_dir(data_dir) / dataset / f"{split}.csv.gz"
    if spec.url:
        how = f"run `crystalgen data fetch {dataset} --split {split}` or point --data-dir/{DATA_DIR_ENV} at a copy"
    else:
        how = f"this derived split cannot be downloaded; point --data-dir/{DATA_DIR_ENV} at a folder that has it"
    raise DatasetError(f"missing {dataset}/{split}: expected {expected} (or .csv); {how}")


# ---------------------------------------------------------------------------------- checksums


def git_blob_sha1(content: bytes) -> str:
    """The id git gives a file with this content (``git hash-object``)."""
    return hashlib.sha1(b"blob %d\0" % len(content) + content).hexdigest()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(DOWNLOAD_CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


@dataclass
class VerifyResult:
    """Outcome of checking one split file against the registry."""

    dataset: str
    split: str
    path: Path | None
    status: str  # "canonical", "known-copy", "unpinned", "MISMATCH", "corrupt" (unreadable), "missing"
    detail: str

    @property
    def ok(self) -> bool:
        return self.status in ("canonical", "known-copy", "unpinned")


def verify_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None) -> VerifyResult:
    """Check a split file: the canonical git blob id, or a known sha256 of a ``.csv.gz`` copy."""
    spec = get_dataset(dataset).split(split)
    path = find_split_file(dataset, split, data_dir)
    if path is None:
        return VerifyResult(dataset, split, None, "missing", "file not found")
    try:
        raw = read_file_bytes(path, f"the {dataset}/{split} split file")
        sha256 = hashlib.sha256(raw).hexdigest()
        if sha256 in spec.known_sha256:
            return VerifyResult(dataset, split, path, "known-copy", f"sha256 {sha256[:12]}… matches a pinned copy")
        blob = git_blob_sha1(gunzip(raw, path) if path.name.endswith(".gz") else raw)
    except CrystalgenInputError as exc:  # a verdict on this split, not an error that stops the others
        return VerifyResult(dataset, split, path, "corrupt", str(exc))
    if spec.git_blob_sha1 and blob == spec.git_blob_sha1:
        return VerifyResult(dataset, split, path, "canonical", f"git blob {blob[:12]}… matches CDVAE@{CDVAE_COMMIT[:8]}")
    if not spec.git_blob_sha1 and not spec.known_sha256:
        return VerifyResult(dataset, split, path, "unpinned", f"no checksum pinned; saw sha256 {sha256}")
    return VerifyResult(dataset, split, path, "MISMATCH", f"sha256 {sha256[:12]}…, git blob {blob[:12]}… match no pinned checksum")


# ---------------------------------------------------------------------------------- download
def fetch_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None, force: bool = False) -> Path:
    """Download a split from its canonical source, verify it, and store it gzipped.

    The file is written to a temporary name and moved into place only after its checksum
    matches, so an interrupted or corrupted download never leaves a file that looks valid.
    """
    spec: SplitSpec = get_dataset(dataset).split(split)
    existing = find_split_file(dataset, split, data_dir)
    if existing is not None and not force:
        return existing
    if spec.url is None:
        raise DatasetError(f"{dataset}/{split} has no public download: {spec.note}")
    target = resolve_data_dir(data_dir) / dataset / f"{split}.csv.gz"
    target.parent.mkdir(parents=True, exist_ok=True)
    content = _download(spec.url, f"{dataset}/{split}")
    blob = git_blob_sha1(content)
    if spec.git_blob_sha1 and blob != spec.git_blob_sha1:
        raise DatasetError(
            f"download of {dataset}/{split} from {spec.url} failed verification "
            f"(git blob {blob}, expected {spec.git_blob_sha1})"
        )
    with tempfile.NamedTemporaryFile(dir=target.parent, suffix=".part", delete=False) as tmp:
        with gzip.GzipFile(fileobj=tmp, mode="wb", mtime=0) as gz:
            gz.write(content)
    shutil.move(tmp.name, target)
    return target


def _download(url: str, label: str) -> bytes:
    from rich.progress import BarColumn, DownloadColumn, TextColumn, TransferSpeedColumn

    from crystalgen.progress import progress_bar

    try:
        response = urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S)
    except Exception as exc:
        raise DatasetError(f"could not download {label} from {url}: {exc}") from None
    total = int(response.headers.get("Content-Length") or 0) or None
    chunks = []
    columns = (TextColumn(label), BarColumn(), DownloadColumn(), TransferSpeedColumn())
    with response, progress_bar(*columns) as progress:
        task = progress.add_task(label, total=total)
        for chunk in iter(lambda: response.read(DOWNLOAD_CHUNK_BYTES), b""):
            chunks.append(chunk)
            progress.advance(task, len(chunk))
    return b"".join(chunks)
