"""The preprocessed case format, written and read here only: file names, storage, the finished-case rule,
the signature and the case index.

Per case, in the configuration folder (e.g. `3d_fullres/`):
- `CASE.b2nd`: the image, a blosc2 NDArray (C, X, Y, Z) in C order, stored as plans `storage` says
  (default float16, LZ4HC level 5, no shuffle; measured in benchmarks/bench_storage.py, table in
  benchmarks/RESULTS.md "Issue 15: preprocessed storage") and read back as float32;
- `CASE_seg.b2nd`: int8 (1, X, Y, Z), the voxel labels of the case (the segmentation target, or the
  auxiliary mask of a classification/regression dataset with plans `auxiliary_labels`, such as task 1's
  infarcts); absent otherwise;
- `CASE.json`: properties, with the preprocessing signature.
Chunks and blocks follow the patch size (`storage_geometry`), so a random patch read decompresses only
the blocks it touches. Arrays go to hidden temporary names first and are renamed into place; CASE.json is
written last, so its presence, with the arrays beside it and the current signature inside it, means the
case is complete. A rewrite first removes CASE.json (and, without a mask, an older CASE_seg.b2nd), so no
stale mask is ever read as this case's.

The old format (before the compressed store): CASE.npy float32 and CASE_seg.npy. Its signature (no
`storage`) differs from every current one, so `list_cases` refuses such a folder with one message naming
the format and the command that rewrites it; a rewrite removes the case's .npy files.

Case index: `_cases.index` (JSON; a name starting with '_' is never a case id, and not ending in .json
leaves `*.json` one file per case) caches every CASE.json for start-up: signature, shape, subject,
session, target, sequence, foreground location count, and the (inode, size, mtime) of the CASE.json
it was read from. Rule: an entry is used while its CASE.json still has that stamp (one os.scandir and
one stat per CASE.json, no open); a CASE.json without a matching entry is read (only those) and the
index saved again, with a note; entries whose CASE.json is gone are dropped. So the index may be
missing, stale or deleted at any time: it is rebuilt, never trusted over the files. Writers: every
case written returns its `CaseEntry`; the preprocessing runner collects them in an `IndexWriter`
(saved every INDEX_FLUSH_SECONDS and on exit): a whole run writes `_cases.index` (and removes shard
parts), shard I of N its own `_cases.shard_I_of_N.index` (shards never share a file), and the first
reader merges the parts into `_cases.index`.

API: `write_case` (-> CaseEntry), `survey(folder, plans, case_ids)` (one look at a folder: state and
entry of every written case), `case_index(folder)` ({case_id: CaseEntry}), `IndexWriter(folder, shard)`,
and `list_cases(folder, plans)`, through which training reads: it refuses a folder holding cases of
other plans (a changed spacing, normalization or storage dtype) or of the old format, since the model
would record plans that prediction then preprocesses differently from what it was trained on.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from functools import cached_property
from pathlib import Path

import numpy as np
from tqdm import tqdm

from fomo_nn.io.errors import BadInputError
from fomo_nn.plans.records import PLANS_FILE, StoragePlan, load_plans
from fomo_nn.utils.files import write_bytes_atomic, write_json_atomic

SIGNATURE_VERSION = 2  # 2: the storage format and dtype enter the signature (compressed store)
SIGNATURE_KEY = "preprocessing_signature"
# where one case stands against the plans it is read or written for
FINISHED, UNFINISHED, STALE, MISSING_SEG, OLD_FORMAT = "finished", "unfinished", "stale", "missing_seg", "old_format"

DATA_SUFFIX, SEG_SUFFIX, PROPERTIES_SUFFIX = ".b2nd", "_seg.b2nd", ".json"
OLD_DATA_SUFFIX, OLD_SEG_SUFFIX = ".npy", "_seg.npy"
CASE_SUFFIXES = (DATA_SUFFIX, SEG_SUFFIX, PROPERTIES_SUFFIX, OLD_DATA_SUFFIX, OLD_SEG_SUFFIX)

# ------------------------------------------------------------------------------------------------ storage
FORMATS, DTYPES = ("blosc2",), ("float16", "float32")
CODECS = ("blosclz", "lz4", "lz4hc", "zlib", "zstd")
FILTERS = ("nofilter", "shuffle", "bitshuffle")
# measured on real 1 mm brains (benchmarks/bench_storage.py, benchmarks/RESULTS.md): float16 adds < 1e-3
# to z-scored intensities (far below scanner noise, 8x finer than the bf16 rounding CUDA autocast gives the
# network input) and halves the bytes; LZ4HC decodes 2-3x faster than ZSTD for ~20 % more bytes, and on
# float16 byte shuffle gains ~5 % of bytes for ~40 % slower decoding: 0.16-0.24x the float32 bytes
DEFAULT_DTYPE, DEFAULT_CODEC, DEFAULT_CLEVEL, DEFAULT_FILTER = "float16", "lz4hc", 5, "nofilter"
BLOCK_BYTES = 32 * 1024  # a decompressed block stays in one core's L1/L2 cache
CHUNK_BYTES = 1024 * 1024  # a decompressed chunk stays in one core's share of L3
FLOAT16_MAX = float(np.finfo(np.float16).max)


def storage_geometry(patch_size, channels: int, itemsize: int) -> tuple[list[int], list[int]]:
    """(chunks, blocks), each (C, X, Y, Z), for reading patches of `patch_size`.

    Blocks (the unit blosc2 decompresses): power-of-two edges of about a quarter of the patch edge, so a
    patch at any position decompresses at most ~1.25x its voxels per axis; halved along the edge longest
    relative to the patch until a block holds BLOCK_BYTES or less. Chunks (the unit of the file's index):
    blocks doubled along the edge shortest relative to the patch while a chunk holds CHUNK_BYTES or less
    and no edge outgrows the patch.
    """
    patch = [max(1, int(p)) for p in patch_size]
    if len(patch) != 3:
        raise ValueError(f"storage geometry needs a 3D patch size, got {list(patch_size)}")
    block = [2 ** int(math.floor(math.log2(max(1, p // 4)))) for p in patch]
    while channels * math.prod(block) * itemsize > BLOCK_BYTES and max(block) > 1:
        axis = max(range(3), key=lambda a: (block[a] / patch[a], block[a]))
        block[axis] //= 2
    chunk = list(block)
    while True:
        growable = [a for a in range(3) if chunk[a] * 2 <= patch[a]]
        if not growable or channels * math.prod(chunk) * 2 * itemsize > CHUNK_BYTES:
            break
        axis = min(growable, key=lambda a: chunk[a] / patch[a])
        chunk[axis] *= 2
    return [int(channels), *chunk], [int(channels), *block]


def default_storage(patch_size, channels: int, like: StoragePlan | None = None) -> StoragePlan:
    """The measured default storage for these patches (or `like`'s format, dtype and codec, with chunks
    and blocks for this patch size)."""
    dtype = like.dtype if like else DEFAULT_DTYPE
    chunks, blocks = storage_geometry(patch_size, channels, np.dtype(dtype).itemsize)
    if like is not None:
        return StoragePlan(format=like.format, dtype=like.dtype, codec=like.codec, clevel=like.clevel,
                           filter=like.filter, chunks=chunks, blocks=blocks)
    return StoragePlan(format=FORMATS[0], dtype=DEFAULT_DTYPE, codec=DEFAULT_CODEC, clevel=DEFAULT_CLEVEL,
                       filter=DEFAULT_FILTER, chunks=chunks, blocks=blocks)


def check_storage(storage: StoragePlan) -> None:
    """ValueError naming the first field of plans `storage` that this reader and writer cannot use."""
    choices = {"format": FORMATS, "dtype": DTYPES, "codec": CODECS, "filter": FILTERS}
    for name, valid in choices.items():
        if getattr(storage, name) not in valid:
            raise ValueError(f"plans storage {name} {getattr(storage, name)!r} is not one of {', '.join(valid)}")
    if not isinstance(storage.clevel, int) or not 0 <= storage.clevel <= 9:
        raise ValueError(f"plans storage clevel {storage.clevel!r} must be an integer 0-9")
    for name in ("chunks", "blocks"):
        value = getattr(storage, name)
        if not (isinstance(value, list) and len(value) == 4 and all(isinstance(v, int) and v >= 1 for v in value)):
            raise ValueError(f"plans storage {name} {value!r} must be 4 positive integers (C, X, Y, Z)")
    if any(b > c for b, c in zip(storage.blocks, storage.chunks)):
        raise ValueError(f"plans storage blocks {storage.blocks} must not exceed chunks {storage.chunks}")


def case_geometry(shape, storage: StoragePlan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The plans' chunks and blocks clipped to one array of `shape` (all its channels in every chunk)."""
    chunks = (int(shape[0]), *[min(int(c), int(s)) for c, s in zip(storage.chunks[1:], shape[1:])])
    blocks = (int(shape[0]), *[min(int(b), c) for b, c in zip(storage.blocks[1:], chunks[1:])])
    return chunks, blocks


def save_array_atomic(path: Path, array: np.ndarray, storage: StoragePlan) -> None:
    """Compress in memory, then one atomic file write (a full disk raises NoSpaceLeftError naming `path`)."""
    import blosc2

    chunks, blocks = case_geometry(array.shape, storage)
    cparams = {"codec": blosc2.Codec[storage.codec.upper()], "clevel": storage.clevel,
               "filters": [blosc2.Filter[storage.filter.upper()]], "nthreads": 1}
    compressed = blosc2.asarray(np.ascontiguousarray(array), chunks=chunks, blocks=blocks, cparams=cparams)
    write_bytes_atomic(path, compressed.to_cframe())


def stored_image(data: np.ndarray, storage: StoragePlan, case_id: str) -> np.ndarray:
    """The image as stored; float16 refuses intensities beyond its range instead of writing infinities."""
    if storage.dtype == "float16":
        peak = float(np.max(np.abs(data))) if data.size else 0.0
        if not peak <= FLOAT16_MAX:
            raise ValueError(f"case {case_id}: preprocessed intensities reach {peak:.6g}, beyond float16's "
                             f"{FLOAT16_MAX:g}; set plans.json storage dtype to float32 and preprocess again")
    return np.ascontiguousarray(data, dtype=np.dtype(storage.dtype))


class StoredArray:
    """One stored array, sliced like the old memory map: `a[..., x0:x1, y0:y1, z0:z1]` decompresses only the
    blocks the slice touches, `np.asarray(a)` the whole array; float16 comes back as float32. Open one per
    use (cheap: the file is memory-mapped, only its header read), never pickle one."""

    def __init__(self, path: str | Path):
        import blosc2

        self.path = Path(path)
        self._array = blosc2.open(str(self.path), mode="r", mmap_mode="r", dparams={"nthreads": 1})
        stored = np.dtype(self._array.dtype)
        self.dtype = np.dtype(np.float32) if stored == np.float16 else stored
        self.shape = tuple(int(s) for s in self._array.shape)
        self.ndim = len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        return _widened(np.asarray(self._array[key]))

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        array = self[...]
        return array if dtype is None else array.astype(dtype, copy=False)

    def __reduce__(self):
        raise TypeError(f"a StoredArray ({self.path}) is not pickled: send the PreprocessedCase and open it there")


def _widened(array: np.ndarray) -> np.ndarray:
    """float16 -> float32 through torch (vectorised; numpy's conversion is ~20x slower)."""
    if array.dtype != np.float16:
        return array
    import torch

    return torch.from_numpy(np.ascontiguousarray(array)).float().numpy()


# ------------------------------------------------------------------------------------------------ writing
def case_paths(folder: str | Path, case_id: str) -> dict[str, Path]:
    folder = Path(folder)
    return {key: folder / f"{case_id}{suffix}"
            for key, suffix in zip(("data", "seg", "properties", "old_data", "old_seg"), CASE_SUFFIXES)}


def preprocessing_signature(plans) -> str:
    """A short hash of every plans field that changes the preprocessed arrays' values."""
    relevant = {"version": SIGNATURE_VERSION, "task_type": plans.task_type, "channels": list(plans.channel_names),
                "target_spacing": [round(float(s), 6) for s in plans.target_spacing],
                "normalization": [asdict(n) for n in plans.normalization], "labels": plans.labels,
                "configuration": plans.configuration,
                "storage": {"format": plans.storage.format, "dtype": plans.storage.dtype}}
    if plans.auxiliary_labels:  # only when set, so datasets without masks keep their signatures
        relevant["auxiliary_labels"] = plans.auxiliary_labels
    return hashlib.sha1(json.dumps(relevant, sort_keys=True).encode()).hexdigest()[:16]


def write_case(folder: str | Path, case_id: str, data: np.ndarray, seg: np.ndarray | None, properties: dict,
               plans) -> "CaseEntry":
    """Write one case for `plans` (its storage and signature); returns the case's index entry."""
    paths = case_paths(folder, case_id)
    paths["properties"].unlink(missing_ok=True)  # a rewrite is unfinished until the new CASE.json lands
    for old in (paths["old_data"], paths["old_seg"]):
        old.unlink(missing_ok=True)
    image = stored_image(data, plans.storage, case_id)
    save_array_atomic(paths["data"], image, plans.storage)
    if seg is not None:
        save_array_atomic(paths["seg"], np.ascontiguousarray(seg, dtype=np.int8), plans.storage)
    else:
        paths["seg"].unlink(missing_ok=True)
    record = {**properties, "shape": [int(s) for s in image.shape], SIGNATURE_KEY: preprocessing_signature(plans)}
    write_json_atomic(paths["properties"], record, indent=None)
    return CaseEntry.of(case_id, record, _stamp(os.stat(paths["properties"])))


def expects_seg(plans) -> bool:
    """Whether every finished case of these plans has a CASE_seg.b2nd."""
    return plans.voxel_labels is not None


def remove_stale_temporaries(folder: str | Path, case_ids, listing: "FolderListing | None" = None) -> None:
    """Temporary files killed writers left for these cases (never other cases'), from one listing."""
    listing = listing or FolderListing.scan(folder)
    if not listing.hidden:
        return
    owners = {f"{case_id}{suffix}" for case_id in case_ids for suffix in CASE_SUFFIXES}
    for name in listing.hidden:
        rest = name[1:]
        if any(rest[:cut] in owners for cut in range(len(rest)) if rest[cut] == "."):
            (Path(folder) / name).unlink(missing_ok=True)


# ------------------------------------------------------------------------------------------------ reading
@dataclass(frozen=True)
class PreprocessedCase:
    """One finished case: arrays opened per use (patch reads decompress only what they touch), properties
    read once, on first use; subject, session and target come from the index entry when there is one."""

    folder: str
    case_id: str
    entry: CaseEntry | None = field(default=None, compare=False, repr=False)

    @property
    def data_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["data"]

    @property
    def seg_path(self) -> Path:
        return case_paths(self.folder, self.case_id)["seg"]

    @cached_property
    def properties(self) -> dict:
        return json.loads(case_paths(self.folder, self.case_id)["properties"].read_text())

    def __getstate__(self) -> dict:  # workers get the case, not the properties one process read
        return {k: v for k, v in self.__dict__.items() if k != "properties"}

    def data(self) -> StoredArray:
        """(C, X, Y, Z) float32, read lazily: slicing decompresses only the patch's blocks."""
        return StoredArray(self.data_path)

    def seg(self) -> StoredArray | None:
        return StoredArray(self.seg_path) if self.seg_path.is_file() else None

    @property
    def target(self) -> float | None:
        return self.entry.target if self.entry else self.properties.get("target")

    @property
    def subject(self) -> str:
        return (self.entry.subject if self.entry else self.properties.get("subject")) or self.case_id

    @property
    def session(self) -> str | None:
        return self.entry.session if self.entry else self.properties.get("session")

    def foreground_locations(self) -> np.ndarray:
        """All sampled foreground voxels (any label > 0) as an (N, 3) int array (CASE.json is not read when
        the index says there are none)."""
        if self.entry is not None and self.entry.foreground == 0:
            return np.zeros((0, 3), dtype=np.int64)
        locations = self.properties.get("foreground_locations") or {}
        arrays = [np.asarray(v, dtype=np.int64).reshape(-1, 3) for v in locations.values() if len(v)]
        return np.concatenate(arrays) if arrays else np.zeros((0, 3), dtype=np.int64)


# -------------------------------------------------------------------------------------------------- index
INDEX_NAME, INDEX_PREFIX, INDEX_SUFFIX = "_cases.index", "_cases.", ".index"
INDEX_VERSION = 1
INDEX_FLUSH_SECONDS = 30.0  # a killed writer loses at most this much of its index (rebuilt from CASE.json)


def index_part_name(shard) -> str:
    """The index file one writer owns: the whole index for a whole run, a part for shard I of N."""
    return INDEX_NAME if shard is None else f"{INDEX_PREFIX}shard_{shard.index}_of_{shard.count}{INDEX_SUFFIX}"


def _stamp(stat: os.stat_result) -> tuple[int, int, int]:
    return int(stat.st_ino), int(stat.st_size), int(stat.st_mtime_ns)


@dataclass(frozen=True)
class CaseEntry:
    """What start-up needs of one case, read from its CASE.json, whose (inode, size, mtime_ns) is `stamp`."""

    case_id: str
    signature: str | None
    shape: tuple[int, ...] | None  # (C, X, Y, Z) as stored; None for the old format
    subject: str | None
    session: str | None
    sequence: str | None
    target: float | None
    foreground: int  # sampled foreground locations (segmentation oversampling)
    stamp: tuple[int, int, int]

    @classmethod
    def of(cls, case_id: str, properties: dict, stamp) -> "CaseEntry":
        locations = properties.get("foreground_locations") or {}
        shape = properties.get("shape")
        return cls(case_id=case_id, signature=properties.get(SIGNATURE_KEY),
                   shape=tuple(int(s) for s in shape) if shape else None, subject=properties.get("subject"),
                   session=properties.get("session"), sequence=properties.get("sequence"),
                   target=properties.get("target"),
                   foreground=int(sum(len(v) for v in locations.values())) if isinstance(locations, dict) else 0,
                   stamp=tuple(int(s) for s in stamp))

    @classmethod
    def unreadable(cls, case_id: str, stamp) -> "CaseEntry":
        """A CASE.json that cannot be read: no signature, so it reads as stale (written for no plans)."""
        return cls(case_id, None, None, None, None, None, None, 0, tuple(stamp))

    def to_json(self) -> dict:
        record = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "case_id"}
        return {key: list(value) if isinstance(value, tuple) else value for key, value in record.items()}

    @classmethod
    def from_json(cls, case_id: str, data: dict) -> "CaseEntry":
        return cls(case_id=case_id, **{**data, "shape": tuple(data["shape"]) if data.get("shape") else None,
                                       "stamp": tuple(data["stamp"])})


@dataclass
class FolderListing:
    """One os.scandir of a configuration folder: file names, hidden temporaries, CASE.json stamps."""

    names: set[str] = field(default_factory=set)
    hidden: list[str] = field(default_factory=list)
    properties: dict[str, tuple[int, int, int]] = field(default_factory=dict)  # case id -> CASE.json stamp
    index_files: dict[str, tuple[int, int, int]] = field(default_factory=dict)

    @classmethod
    def scan(cls, folder: str | Path) -> "FolderListing":
        listing = cls()
        if not Path(folder).is_dir():
            return listing
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    listing.hidden.append(name)
                    continue
                listing.names.add(name)
                if name.startswith(INDEX_PREFIX) and name.endswith(INDEX_SUFFIX):
                    listing.index_files[name] = _stamp(entry.stat())
                elif name.endswith(PROPERTIES_SUFFIX) and not name.startswith("_"):
                    listing.properties[name[:-len(PROPERTIES_SUFFIX)]] = _stamp(entry.stat())
        return listing

    def written_case_ids(self) -> list[str]:
        """Every case with a CASE.json or an image array (finished or not)."""
        arrays = set()
        for suffix in (DATA_SUFFIX, OLD_DATA_SUFFIX):
            stems = {n[:-len(suffix)] for n in self.names if n.endswith(suffix) and not n.startswith("_")}
            # CASE_seg.b2nd ends in .b2nd too: it names a case of its own only without a CASE.b2nd beside it
            arrays |= {s for s in stems if not (s.endswith("_seg") and s[:-len("_seg")] in stems)}
        return sorted(set(self.properties) | arrays)

    def has(self, case_id: str, suffix: str) -> bool:
        return f"{case_id}{suffix}" in self.names


def _read_index_file(path: Path) -> dict | None:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) and data.get("version") == INDEX_VERSION else None


def _entries_of(data: dict | None) -> dict[str, CaseEntry]:
    entries = {}
    for case_id, record in ((data or {}).get("cases") or {}).items():
        try:
            entries[case_id] = CaseEntry.from_json(case_id, record)
        except (TypeError, KeyError, ValueError):
            continue  # a damaged entry: rebuilt from its CASE.json
    return entries


def _entry_from_file(folder: Path, case_id: str, listed_stamp) -> CaseEntry | None:
    """The entry of a CASE.json read now (stamped from the open file); None when it vanished."""
    path = case_paths(folder, case_id)["properties"]
    try:
        with open(path, "rb") as handle:
            stamp = _stamp(os.fstat(handle.fileno()))
            payload = handle.read()
    except FileNotFoundError:
        return None
    except OSError:
        return CaseEntry.unreadable(case_id, listed_stamp)
    try:
        properties = json.loads(payload)
        return CaseEntry.of(case_id, properties, stamp) if isinstance(properties, dict) \
            else CaseEntry.unreadable(case_id, stamp)
    except (ValueError, TypeError, AttributeError):
        return CaseEntry.unreadable(case_id, stamp)


def _indexed(folder: Path, listing: FolderListing, case_ids=None, progress: bool = True,
             save: bool = True) -> dict[str, CaseEntry]:
    """The index entries of the folder's CASE.json files (of `case_ids` only, when given), each matching
    its file: from the index files where their stamps agree, read from the CASE.json otherwise."""
    wanted = listing.properties if case_ids is None else \
        {c: listing.properties[c] for c in case_ids if c in listing.properties}
    merged = _read_index_file(folder / INDEX_NAME) if INDEX_NAME in listing.index_files else None
    merged_parts = {name: tuple(stamp) for name, stamp in ((merged or {}).get("parts") or {}).items()}
    sources = [_entries_of(merged)]
    new_parts = {}
    for name, stamp in sorted(listing.index_files.items()):
        if name != INDEX_NAME and merged_parts.get(name) != stamp:
            sources.append(_entries_of(_read_index_file(folder / name)))
            new_parts[name] = stamp
    entries = {}
    for source in sources:
        for case_id, entry in source.items():
            if case_id in wanted and entry.stamp == wanted[case_id]:
                entries[case_id] = entry
    missing = [c for c in wanted if c not in entries]
    if missing:
        _note(f"case index of {folder}: {len(missing)} of {len(wanted)} case(s) read from their CASE.json "
              "(index missing or older than them)")
        for case_id in tqdm(missing, desc="case index", unit="case", disable=not progress or len(missing) < 500,
                            leave=False):
            entry = _entry_from_file(folder, case_id, wanted[case_id])
            if entry is not None:
                entries[case_id] = entry
    outdated = any(entries.get(case_id) != entry for case_id, entry in sources[0].items())
    if save and case_ids is None and (missing or new_parts or outdated):
        parts = {**merged_parts, **new_parts}
        _save_index(folder / INDEX_NAME, entries, {n: s for n, s in parts.items() if n in listing.index_files})
    return entries


def _save_index(path: Path, entries: dict[str, CaseEntry], parts: dict | None = None) -> bool:
    """Best effort (a read-only dataset just rebuilds next time): whether the index was saved."""
    payload = {"version": INDEX_VERSION, "parts": {n: list(s) for n, s in (parts or {}).items()},
               "cases": {c: entries[c].to_json() for c in sorted(entries)}}
    try:
        write_json_atomic(path, payload, indent=None)
    except OSError:
        return False
    return True


def _note(text: str) -> None:
    print(f"[fomo_nn] {text}", file=sys.stderr)


def case_index(folder: str | Path, case_ids=None, progress: bool = True) -> dict[str, CaseEntry]:
    """{case_id: CaseEntry} for every case with a CASE.json (of `case_ids` only, when given), finished or
    not and for any plans: one directory listing, one stat per CASE.json, and a read of only the CASE.json
    files the index does not describe (the whole index is then saved again)."""
    folder = Path(folder)
    return _indexed(folder, FolderListing.scan(folder), case_ids, progress)


class IndexWriter:
    """The index file of one writer (`index_part_name(shard)`), saved at most every INDEX_FLUSH_SECONDS and
    on exit; starts from the entries of the cases it keeps (finished by earlier runs)."""

    def __init__(self, folder: str | Path, shard=None, entries: dict[str, CaseEntry] | None = None):
        self.folder, self.shard = Path(folder), shard
        self.path = self.folder / index_part_name(shard)
        self.entries = dict(entries or {})
        self._saved_at = 0.0

    def __enter__(self) -> "IndexWriter":
        for name in FolderListing.scan(self.folder).hidden:  # what a killed run of this writer left
            if name.startswith(f".{self.path.name}."):
                (self.folder / name).unlink(missing_ok=True)
        self.flush()
        return self

    def __exit__(self, *exc_info) -> None:
        self.flush()
        if self.shard is None and exc_info[0] is None:  # a whole run holds the dataset alone: parts are merged
            for name in FolderListing.scan(self.folder).index_files:
                if name != INDEX_NAME:
                    (self.folder / name).unlink(missing_ok=True)

    def add(self, entry: CaseEntry) -> None:
        self.entries[entry.case_id] = entry
        if time.monotonic() - self._saved_at >= INDEX_FLUSH_SECONDS:
            self.flush()

    def flush(self) -> None:
        _save_index(self.path, self.entries)
        self._saved_at = time.monotonic()


@dataclass
class FolderSurvey:
    """One look at a configuration folder for some plans: the state and index entry of every written case."""

    folder: Path
    listing: FolderListing
    states: dict[str, str]
    entries: dict[str, CaseEntry]

    def ids(self, state: str) -> list[str]:
        return [case_id for case_id, s in self.states.items() if s == state]


def survey(folder: str | Path, plans, case_ids=None, progress: bool = True) -> FolderSurvey:
    """Where every written case of `folder` (of `case_ids`, when given) stands against `plans`, from one
    listing and the index (see the module docstring)."""
    folder = Path(folder)
    listing = FolderListing.scan(folder)
    entries = _indexed(folder, listing, case_ids, progress)
    signature, needs_seg = preprocessing_signature(plans), expects_seg(plans)
    written = listing.written_case_ids() if case_ids is None else \
        sorted(set(case_ids) & set(listing.written_case_ids()))
    states = {c: _state(listing, entries.get(c), c, signature, needs_seg) for c in written}
    return FolderSurvey(folder, listing, states, entries)


def _state(listing: FolderListing, entry: CaseEntry | None, case_id: str, signature: str, needs_seg: bool) -> str:
    """FINISHED, UNFINISHED (CASE.json or CASE.b2nd absent: its writer never got to the end), OLD_FORMAT
    (CASE.json beside a CASE.npy), STALE (CASE.json without this signature: other plans, or unreadable) or
    MISSING_SEG."""
    if entry is None:
        return UNFINISHED
    if not listing.has(case_id, DATA_SUFFIX):
        return OLD_FORMAT if listing.has(case_id, OLD_DATA_SUFFIX) else UNFINISHED
    if entry.signature != signature:
        return STALE
    if needs_seg and not listing.has(case_id, SEG_SUFFIX):
        return MISSING_SEG
    return FINISHED


def preprocess_command(folder: str | Path, plans) -> str:
    """What rewrites `folder`'s cases for `plans`: fomo_nn_preprocess follows the dataset's own plans.json,
    so plans from elsewhere (fomo_nn_train -p) must be saved there first."""
    dataset_dir = Path(folder).parent
    command = f"fomo_nn_preprocess -d {dataset_dir.name}"
    try:
        same = preprocessing_signature(load_plans(dataset_dir / PLANS_FILE)) == preprocessing_signature(plans)
    except BadInputError:
        same = False
    return command if same else f"save these plans as {dataset_dir / PLANS_FILE}, then run {command}"


def list_cases(folder: str | Path, plans, progress: bool = True) -> list[PreprocessedCase]:
    """The finished cases of `folder` for `plans`; cases without CASE.json (a writer still at work or
    killed) are left out, but one case of other plans or of the old format, or without the mask the plans
    expect, refuses the whole folder, naming the command that preprocesses it again."""
    found = survey(folder, plans, progress=progress)
    _refuse_unusable(found.folder, plans, {state: found.ids(state)
                                           for state in (FINISHED, UNFINISHED, STALE, MISSING_SEG, OLD_FORMAT)})
    folder_name = str(found.folder)
    return [PreprocessedCase(folder_name, case_id, found.entries[case_id]) for case_id in found.ids(FINISHED)]


def _refuse_unusable(folder: Path, plans, by_state: dict[str, list[str]]) -> None:
    """One BadInputError for the first problem: old format, stale cases, missing masks, or no finished case."""
    stale, no_seg, unfinished, old = by_state[STALE], by_state[MISSING_SEG], by_state[UNFINISHED], by_state[OLD_FORMAT]
    if by_state[FINISHED] and not stale and not no_seg and not old:
        return
    written = sum(len(by_state[state]) for state in (FINISHED, STALE, MISSING_SEG, OLD_FORMAT))
    command = preprocess_command(folder, plans)
    if old:
        raise BadInputError(folder, f"{len(old)} of {written} preprocessed case(s) are in the old .npy format "
                                    f"(float32 CASE.npy, from before the compressed store; e.g. "
                                    f"{', '.join(old[:3])}): preprocess again, which writes CASE.b2nd "
                                    f"(about a quarter of the bytes) and removes the .npy files: {command}")
    if stale:
        raise BadInputError(folder, f"{len(stale)} of {written} preprocessed case(s) were written for other plans "
                                    f"than these ({SIGNATURE_KEY} other than {preprocessing_signature(plans)} or "
                                    f"none; e.g. {', '.join(stale[:3])}): training on them would record plans that "
                                    f"prediction preprocesses differently; preprocess again: {command}")
    if no_seg:
        raise BadInputError(case_paths(folder, no_seg[0])["seg"],
                            f"{len(no_seg)} of {written} preprocessed case(s) lack the CASE{SEG_SUFFIX} the plans "
                            f"expect (voxel labels {plans.voxel_labels}; e.g. {', '.join(no_seg[:3])}): preprocess "
                            f"again: {command}")
    count = f" ({len(unfinished)} unfinished)" if unfinished else ""
    raise BadInputError(folder, f"no finished preprocessed case{count}: preprocess: {command}")
