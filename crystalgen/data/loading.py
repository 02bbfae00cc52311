"""Reading structures from dataset CSVs, custom CSVs and folders of CIF files.

Parsing CIFs with pymatgen costs a few milliseconds per structure, so CSVs are parsed once, in a
process pool, and stored in a binary cache (safetensors arrays plus JSON metadata; no pickle).
The cache is keyed by the sha256 of the source file, so an edited file is re-parsed.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
import warnings
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np

from crystalgen.crystal import Crystal, atomic_numbers_of, crystals_from_arrays, crystals_to_arrays
from crystalgen.data.files import DATA_DIR_ENV, fetch_split, find_split_file, split_file, user_cache_dir
from crystalgen.data.registry import get_dataset
from crystalgen.errors import CrystalgenInputError, DatasetError, StructureParseError, first_line
from crystalgen.io import decode_text, parse_crystal, read_file_bytes, read_text_file
from crystalgen.progress import progress_bar

#: Bump when the cached layout or the parsing changes, so stale caches are ignored.
CACHE_FORMAT_VERSION = 1
#: CIFs handed to a worker at a time; large enough to amortise inter-process overhead.
PARSE_CHUNK_SIZE = 256
#: Below this many CIFs a process pool costs more than it saves.
MIN_ROWS_FOR_POOL = 512
ID_COLUMN, CIF_COLUMN = "material_id", "cif"
STRUCTURE_CSV = f"a structure CSV (with '{ID_COLUMN}' and '{CIF_COLUMN}' columns)"


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 8))


# ---------------------------------------------------------------------------------- parsing
def _parse_cif_rows(cifs: list[str]) -> list[tuple[np.ndarray, np.ndarray, np.ndarray] | str]:
    """Worker: parse CIF strings into arrays, or an error message per failed row."""
    from pymatgen.core import Structure

    out: list = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for text in cifs:
            try:
                s = Structure.from_str(text, fmt="cif")
                if not s.is_ordered:
                    raise ValueError("disordered structure")
                out.append((s.lattice.matrix, s.frac_coords, atomic_numbers_of(s)))
            except Exception as exc:  # one bad row must not stop the batch
                out.append(f"{type(exc).__name__}: {first_line(exc)}")
    return out


def parse_cifs(cifs: list[str], workers: int | None = None, label: str = "parsing CIFs") -> list:
    """Parse many CIF strings, in parallel when it pays off, with a progress bar."""
    workers = workers or default_workers()
    chunks = [cifs[i : i + PARSE_CHUNK_SIZE] for i in range(0, len(cifs), PARSE_CHUNK_SIZE)]
    results: list = []
    with progress_bar() as progress:
        task = progress.add_task(label, total=len(cifs))
        if workers == 1 or len(cifs) < MIN_ROWS_FOR_POOL:
            mapped = map(_parse_cif_rows, chunks)
            for chunk_result in mapped:
                results.extend(chunk_result)
                progress.advance(task, len(chunk_result))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                for chunk_result in pool.map(_parse_cif_rows, chunks):
                    results.extend(chunk_result)
                    progress.advance(task, len(chunk_result))
    return results


# ---------------------------------------------------------------------------------- CSV
def read_structure_csv(
    path: str | os.PathLike,
    on_error: str = "raise",
    workers: int | None = None,
) -> list[Crystal]:
    """Read a CSV with ``material_id`` and ``cif`` columns; other numeric columns become properties.

    Args:
        on_error: ``"raise"`` stops at the first unparsable CIF; ``"skip"`` drops such rows and warns.
    """
    return _crystals_from_csv_text(read_text_file(path, STRUCTURE_CSV), Path(path), on_error, workers)


def _crystals_from_csv_text(text: str, path: Path, on_error: str, workers: int | None) -> list[Crystal]:
    import pandas as pd

    try:
        frame = pd.read_csv(io.StringIO(text))
    except Exception as exc:  # pandas raises ParserError, EmptyDataError, ValueError, ...
        hint = "; is the file truncated?" if "EOF inside string" in str(exc) else ""
        raise CrystalgenInputError(f"{path}: not a readable CSV ({first_line(exc)}){hint}") from None
    frame = frame.drop(columns=[c for c in frame.columns if str(c).startswith("Unnamed:")])
    missing = [c for c in (ID_COLUMN, CIF_COLUMN) if c not in frame.columns]
    if missing:
        raise CrystalgenInputError(f"{path} lacks column(s) {', '.join(missing)}; need '{ID_COLUMN}' and '{CIF_COLUMN}'")
    ids = frame[ID_COLUMN].astype(str).tolist()
    numeric = [
        c for c in frame.columns if c not in (ID_COLUMN, CIF_COLUMN) and pd.api.types.is_numeric_dtype(frame[c])
    ]
    properties = {c: frame[c].to_numpy(dtype=np.float64) for c in numeric}
    parsed = parse_cifs(frame[CIF_COLUMN].astype(str).tolist(), workers, label=f"parsing {path.name}")
    failures = [(ids[i], r) for i, r in enumerate(parsed) if isinstance(r, str)]
    if failures and on_error == "raise":
        row_id, message = failures[0]
        raise StructureParseError(f"{path}: could not parse the CIF of {row_id} ({message}); {len(failures)} rows fail")
    if failures:
        warnings.warn(f"{path}: skipped {len(failures)} unparsable rows, first {failures[0][0]}: {failures[0][1]}")
    keep = [i for i, r in enumerate(parsed) if not isinstance(r, str)]
    if not keep:
        raise StructureParseError(f"{path}: no row has a parsable CIF")
    return [
        Crystal(*parsed[i], id=ids[i], properties={k: float(v[i]) for k, v in properties.items() if not np.isnan(v[i])})
        for i in keep
    ]


def read_cif_folder(folder: str | os.PathLike) -> list[Crystal]:
    """Every ``*.cif`` in a folder (sorted by name); the file stem becomes the id."""
    folder = Path(folder)
    if not folder.is_dir():
        raise CrystalgenInputError(f"folder not found: {folder}")
    files = sorted(folder.glob("*.cif"))
    if not files:
        raise CrystalgenInputError(f"no .cif files in {folder}")
    crystals = []
    for file in files:
        text = read_text_file(file, "a CIF")
        try:
            crystals.append(parse_crystal(text, "cif", id=file.stem))
        except StructureParseError as exc:
            raise StructureParseError(f"{file}: {exc}") from None
    return crystals


def load_structures(source: str | os.PathLike, on_error: str = "raise") -> list[Crystal]:
    """Custom data: a folder of CIFs or a CSV with ``material_id`` and ``cif`` columns (cached)."""
    source = Path(source)
    if source.is_dir():
        return read_cif_folder(source)
    return load_csv_cached(source, on_error=on_error)


# ---------------------------------------------------------------------------------- cache
def _cache_path(source: Path, digest: str, on_error: str) -> Path:
    # A cache built while skipping bad rows must not answer a strict load, hence on_error in the key.
    stem = source.name.split(".")[0]
    return user_cache_dir() / "structures" / f"{stem}-{digest[:16]}-{on_error}-v{CACHE_FORMAT_VERSION}.safetensors"


def save_cache(crystals: list[Crystal], path: Path, source: str = "") -> None:
    """Write crystals as flat safetensors arrays; written to a temp file then renamed (atomic)."""
    from safetensors.numpy import save_file

    arrays = crystals_to_arrays(crystals)
    names = sorted({k for c in crystals for k in c.properties})
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items()}
    for name in names:
        tensors[f"property/{name}"] = np.array([c.properties.get(name, np.nan) for c in crystals], dtype=np.float64)
    metadata = {"ids": json.dumps([c.id for c in crystals]), "source": source, "version": str(CACHE_FORMAT_VERSION)}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(f".tmp{os.getpid()}")
    save_file(tensors, str(tmp), metadata=metadata)
    os.replace(tmp, path)


def load_cache(path: Path) -> list[Crystal]:
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as handle:
        metadata = handle.metadata()
        tensors = {k: handle.get_tensor(k) for k in handle.keys()}
    properties = {k.split("/", 1)[1]: v for k, v in tensors.items() if k.startswith("property/")}
    return crystals_from_arrays(
        tensors["lattices"], tensors["frac_coords"], tensors["atomic_numbers"], tensors["num_atoms"],
        ids=json.loads(metadata["ids"]), properties=properties,
    )


def load_csv_cached(path: str | os.PathLike, on_error: str = "raise", use_cache: bool = True) -> list[Crystal]:
    """:func:`read_structure_csv` with the binary cache in front of it."""
    path = Path(path)
    raw = read_file_bytes(path, STRUCTURE_CSV)  # read once: hashed for the cache key, parsed on a miss
    cache = _cache_path(path, hashlib.sha256(raw).hexdigest(), on_error)
    if use_cache and cache.is_file():
        try:
            return load_cache(cache)
        except Exception:
            cache.unlink(missing_ok=True)  # a truncated or stale cache is rebuilt, never trusted
    crystals = _crystals_from_csv_text(decode_text(raw, path, STRUCTURE_CSV), path, on_error, None)
    if use_cache:
        save_cache(crystals, cache, source=str(path))
    return crystals


def load_split(dataset: str, split: str, data_dir: str | os.PathLike | None = None, use_cache: bool = True) -> list[Crystal]:
    """All structures of one split of a registered dataset.

    When no data directory was chosen (no argument, no ``CRYSTALGEN_DATA_DIR``) and the split is
    missing from the per-user cache, it is downloaded from its canonical source and verified.
    A data directory the user chose is never written to implicitly.
    """
    if data_dir is None and not os.environ.get(DATA_DIR_ENV) and find_split_file(dataset, split) is None:
        spec = get_dataset(dataset).split(split)
        if spec.url:
            print(f"crystalgen: {dataset}/{split} not found locally; downloading from {spec.url}", file=sys.stderr)
            fetch_split(dataset, split)
    path = split_file(dataset, split, data_dir)
    try:
        return load_csv_cached(path, use_cache=use_cache)
    except StructureParseError as exc:
        raise DatasetError(f"{dataset}/{split} is corrupt: {exc}") from None
    except CrystalgenInputError as exc:  # the file itself: unreadable, binary, a truncated gzip, not a CSV, ...
        raise DatasetError(f"{dataset}/{split}: {exc}") from None
