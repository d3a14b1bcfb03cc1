"""What the store's self-checks cost (issue 24), on the noisy 1 mm brain of bench_storage.py.

Per random patch read (96^3 and 128^3, the same corners for both, warm page cache, one thread, the two
readers taking turns at every corner, which goes first alternating; CPU time of the reading thread
(`time.thread_time`, since on a shared machine wall time mostly measures the neighbours), median and
minimum of `--reads`):
- `unchecked`: blosc2.open + slice + float16->float32, as StoredArray read before issue 24 (a copy of it);
- `checked`: `StoredArray(path, expected_shape)` as `PreprocessedCase.data()` opens it now (the shape
  compared with CASE.json's, codec errors caught and named), then the same slice.
Per case, at start-up and resume: the extra `stat` of each array file the folder listing now makes
(median over `--stats` files of a folder holding them). Per case, `fomo_nn_preprocess --verify`:
reading the whole file and its CRC-32 (`array_store.check_array_file`), against decompressing it whole.

    python benchmarks/bench_store_check.py --reads 120
"""
from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from bench_storage import NILEARN_DATA, TEMPLATE, WHITE_MATTER, corners, corpus_plans, noisy_brain, preprocessed  # noqa: E402

from fomo_nn.preprocessing.array_store import (StoredArray, _widened, check_array_file, default_storage,  # noqa: E402
                                               save_array_atomic, stored_image)
from fomo_nn.training.data.patches import crop_with_padding  # noqa: E402


class UncheckedArray:
    """StoredArray as it was before issue 24 (fc31020): open, slice, widen; nothing compared, nothing caught."""

    def __init__(self, path):
        import blosc2

        self._array = blosc2.open(str(path), mode="r", mmap_mode="r", dparams={"nthreads": 1})
        stored = np.dtype(self._array.dtype)
        self.dtype = np.dtype(np.float32) if stored == np.float16 else stored
        self.shape = tuple(int(s) for s in self._array.shape)
        self.ndim = len(self.shape)

    def __getitem__(self, key):
        return _widened(np.asarray(self._array[key]))


def unchecked(path: Path, key) -> np.ndarray:
    lower, size = key
    return crop_with_padding(UncheckedArray(path), lower, size)


def checked(path: Path, key, shape) -> np.ndarray:
    """As `PreprocessedCase.data()` reads now: the shape compared with CASE.json's, codec errors named."""
    lower, size = key
    return crop_with_padding(StoredArray(path, shape), lower, size)


def timed(function) -> float:
    """CPU seconds of this thread: on a shared machine, wall time mostly measures the neighbours."""
    started = time.thread_time()
    function()
    return time.thread_time() - started


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=40)
    parser.add_argument("--stats", type=int, default=2000)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    template = nib.load(NILEARN_DATA / TEMPLATE)
    white_matter = np.asarray(nib.load(NILEARN_DATA / WHITE_MATTER).dataobj) > 0.9
    with tempfile.TemporaryDirectory(prefix="fomo_nn_check_") as temp:
        folder = Path(temp)
        noisy = folder / "noisy.nii.gz"
        nib.save(noisy_brain(template, white_matter, 25.0), str(noisy))
        plans = corpus_plans(128)
        data = preprocessed(noisy, plans)
        path = folder / "case.b2nd"
        record = save_array_atomic(path, stored_image(data, plans.storage, "case"), plans.storage)
        path.read_bytes()  # warm
        shape = tuple(record["shape"])
        print(f"case {list(shape)}, {record['bytes'] / 1e6:.1f} MB stored ({plans.storage.codec}, {plans.storage.dtype})")
        print("| patch | unchecked read, median / min (ms) | checked read, median / min (ms) | difference of medians "
              "| difference of minima |")
        print("|---|---|---|---|---|")
        for size in (96, 128):
            keys = corners(shape, size, args.reads, seed=size)
            plain, guarded = [], []
            for index, key in enumerate(keys):  # take turns, and which goes first alternates
                assert np.array_equal(unchecked(path, key), checked(path, key, shape))
                if index % 2:
                    guarded.append(timed(lambda: checked(path, key, shape)))
                plain.append(timed(lambda: unchecked(path, key)))
                if not index % 2:
                    guarded.append(timed(lambda: checked(path, key, shape)))
            a, b = statistics.median(plain) * 1e3, statistics.median(guarded) * 1e3
            low_a, low_b = min(plain) * 1e3, min(guarded) * 1e3
            print(f"| {size}^3 | {a:.2f} / {low_a:.2f} | {b:.2f} / {low_b:.2f} | {b - a:+.2f} ms ({100 * (b - a) / a:+.1f} %) "
                  f"| {low_b - low_a:+.2f} ms ({100 * (low_b - low_a) / low_a:+.1f} %) |")
        plain_opens, opens = [], []
        for index in range(200):
            if index % 2:
                opens.append(timed(lambda: StoredArray(path, shape)))
            plain_opens.append(timed(lambda: UncheckedArray(path)))
            if not index % 2:
                opens.append(timed(lambda: StoredArray(path, shape)))
        print(f"\nopen: unchecked {statistics.median(plain_opens) * 1e6:.0f} us (min {min(plain_opens) * 1e6:.0f}), with "
              f"the shape check {statistics.median(opens) * 1e6:.0f} us (min {min(opens) * 1e6:.0f}); medians of 200")

        many = folder / "many"
        many.mkdir()
        for index in range(args.stats):
            (many / f"c{index:05d}.b2nd").write_bytes(b"x" * 64)
        with os.scandir(many) as entries:
            listed = list(entries)
        started = time.perf_counter()
        sizes = [entry.stat().st_size for entry in listed]
        per_stat = (time.perf_counter() - started) / len(sizes)
        print(f"start-up/resume size check: {per_stat * 1e6:.1f} us per array file (stat of {len(sizes)} files in "
              f"one folder, warm), i.e. {per_stat * 60000 * 2:.2f} s for 60K cases with a mask each")

        crc = statistics.median(timed(lambda: check_array_file(path, record)) for _ in range(5))
        whole = statistics.median(timed(lambda: np.asarray(StoredArray(path))) for _ in range(5))
        print(f"--verify per case: read + CRC-32 {crc * 1e3:.1f} ms ({record['bytes'] / crc / 1e6:.0f} MB/s), "
              f"whole decompression {whole * 1e3:.1f} ms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
