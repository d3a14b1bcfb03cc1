"""How one preprocessed array is stored: blosc2 NDArrays with the plans' `storage` (a StoragePlan), written
and read here only.

Images are stored as plans `storage` says (default float16, LZ4HC level 5, no shuffle; measured in
benchmarks/bench_storage.py, table in benchmarks/RESULTS.md "Issue 15: preprocessed storage") and read
back as float32; masks are int8. Chunks and blocks follow the patch size (`storage_geometry`), so a random
patch read decompresses only the blocks it touches. An array is compressed in memory and written to a
hidden temporary name, then renamed into place (`save_array_atomic`). Which arrays make a case, and when
a case is finished, is the case format's business (case_store).

A stored array proves itself: `save_array_atomic` returns its record (shape, dtype, bytes and the CRC-32
of the file's bytes), which the case format keeps in CASE.json. Reading checks the shape against the
record at every open (`StoredArray(path, expected_shape)`: an array of another case is refused), and a
codec error (truncated, emptied or bit-flipped file) becomes one DamagedStoreError naming the file and the
command that rewrites it; `check_array_file` compares the whole file with its record (CRC-32 of every byte:
what `fomo_nn_preprocess --verify` runs). blosc2 keeps no checksum of its own, so a flipped bit may also
decode silently: only the CRC finds those.

API: `default_storage` and `check_storage` (the plans record's default and rules, read by
fomo_nn.plans.records), `storage_geometry`, `case_geometry`, `stored_image`, `save_array_atomic`,
`check_array_file`, `DamagedStoreError`, and `StoredArray`, through which every stored array is read.
"""
from __future__ import annotations

import math
import zlib
from pathlib import Path

import numpy as np

from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans.records import StoragePlan
from fomo_nn.utils.files import write_bytes_atomic

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


def save_array_atomic(path: Path, array: np.ndarray, storage: StoragePlan) -> dict:
    """Compress in memory, then one atomic file write (a full disk raises NoSpaceLeftError naming `path`);
    returns the array's record (`array_record`), kept in CASE.json."""
    import blosc2

    chunks, blocks = case_geometry(array.shape, storage)
    cparams = {"codec": blosc2.Codec[storage.codec.upper()], "clevel": storage.clevel,
               "filters": [blosc2.Filter[storage.filter.upper()]], "nthreads": 1}
    compressed = blosc2.asarray(np.ascontiguousarray(array), chunks=chunks, blocks=blocks, cparams=cparams)
    frame = compressed.to_cframe()
    write_bytes_atomic(path, frame)
    return array_record(array.shape, array.dtype, frame)


def array_record(shape, dtype, frame: bytes) -> dict:
    """What a stored array must be: its shape and dtype as stored, the file's size and the CRC-32 of its bytes."""
    return {"shape": [int(s) for s in shape], "dtype": np.dtype(dtype).name, "bytes": len(frame),
            "crc32": zlib.crc32(frame)}


class DamagedStoreError(BadInputError):
    """A stored array that cannot be used as its record says; names the file and the command that rewrites it.

    Also built from the one formatted message a DataLoader worker's exception is re-raised with."""

    def __init__(self, path, problem: str | None = None):
        if problem is None:
            lines = [line for line in str(path).strip().splitlines() if line.strip()]
            last = lines[-1] if lines else str(path)
            prefix = f"{type(self).__name__}: "
            text = last.split(prefix, 1)[1] if prefix in last else last
            path, _, problem = text.partition(": ")
        super().__init__(path, problem)


def rewrite_command(path: str | Path) -> str:
    """The command that finds and rewrites damaged cases of the dataset a stored array belongs to
    (DATASET/CONFIGURATION/CASE.b2nd)."""
    return f"fomo_nn_preprocess -d {Path(path).parent.parent.name} --verify"


def check_array_file(path: str | Path, record: dict | None) -> str | None:
    """The problem of one stored array file against its record (None: as recorded). Reads every byte (CRC-32);
    an array without a record (written before records) is decompressed whole instead."""
    path = Path(path)
    try:
        frame = path.read_bytes()
    except OSError as error:
        return f"cannot be read ({error.strerror or error})"
    if record is None:
        try:
            np.asarray(StoredArray(path))
        except DamagedStoreError as error:
            return error.problem
        return None
    if len(frame) != record.get("bytes"):
        return f"is {len(frame)} bytes, CASE.json records {record.get('bytes')} (truncated or replaced)"
    if zlib.crc32(frame) != record.get("crc32"):
        return "its bytes differ from the CRC-32 CASE.json records (damaged on disk or replaced)"
    try:
        array = StoredArray(path, record.get("shape"))
    except DamagedStoreError as error:
        return error.problem
    if np.dtype(array.stored_dtype).name != record.get("dtype"):
        return f"holds {np.dtype(array.stored_dtype).name}, CASE.json records {record.get('dtype')}"
    return None


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

    def __init__(self, path: str | Path, expected_shape=None):
        import blosc2

        self.path = Path(path)
        try:
            self._array = blosc2.open(str(self.path), mode="r", mmap_mode="r", dparams={"nthreads": 1})
            self.stored_dtype = np.dtype(self._array.dtype)
            self.shape = tuple(int(s) for s in self._array.shape)
        except (RuntimeError, ValueError, OSError, TypeError, KeyError) as error:
            raise self._damaged(error) from None
        self.dtype = np.dtype(np.float32) if self.stored_dtype == np.float16 else self.stored_dtype
        self.ndim = len(self.shape)
        if expected_shape is not None and self.shape != tuple(int(s) for s in expected_shape):
            raise DamagedStoreError(self.path, f"holds an array of shape {list(self.shape)}, but its CASE.json "
                                               f"records {[int(s) for s in expected_shape]} (another case's array, "
                                               f"or written for other plans): rewrite it: {rewrite_command(self.path)}")

    def _damaged(self, error: Exception) -> DamagedStoreError:
        detail = str(error).splitlines()[0][:160] if str(error) else type(error).__name__
        return DamagedStoreError(self.path, f"the stored array cannot be decoded ({detail}): the file is damaged "
                                            f"(truncated, emptied or altered); rewrite it: {rewrite_command(self.path)}")

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key) -> np.ndarray:
        try:
            return _widened(np.asarray(self._array[key]))
        except (RuntimeError, ValueError) as error:
            raise self._damaged(error) from None

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
