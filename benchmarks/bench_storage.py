"""Preprocessed storage on real 1 mm brains: bytes and random patch reads, per format (issue 15).

The brain: the MNI152 2009a T1 template at 1 mm in the nilearn wheel (brain-masked, so background is
0 as in skull-stripped scans). It is quantized to uint8, which makes its intensities compress better
than a scanner's, so it is measured twice: as shipped ("template"), and with a smooth multiplicative
bias field (x0.64-1.42) and Rician noise at SNR `--snr` in white matter added, then masked again
("noisy": the realistic one). Both go through the real preprocessing (case_reading + crop + z-score
of the foreground, plans of a 1 mm pretraining corpus), so the arrays are what `write_case` stores.

Per image and format it reports stored bytes / cropped float32 bytes, and the median time of
`--reads` random patch reads (96^3 and 128^3, the same random corners for every format, single
process, one decompression thread): the read training does per sample (open the case's array, then
`patches.crop_with_padding`, float32 out), from
- `npy`: `np.load(mmap_mode="r")` (the old format's reader);
- `blosc2`: fomo_nn.preprocessing.array_store.StoredArray (what `PreprocessedCase.data()` returns).
The formats take turns at every corner, so a shared machine's load falls on all alike and the bytes
come from memory, not from a CPU cache still holding one file (a 16 MB file read over and over stays
in a 32 MB L3 and makes its memory map look 3-4x faster; training reads another case every
sample). Warm: every file read whole first, so all its pages are in the page cache. Cold:
`posix_fadvise(POSIX_FADV_DONTNEED)` on the file before every read (drops this machine's page cache
for it, no root needed; `fincore` confirms 0 resident pages); the disk below may keep its own cache
(a VM's host), so cold means "not in this OS's page cache", not a spinning disk's seek.

Also: the float16 error on the normalized intensities (max abs; RMS relative to the foreground std,
which z-scoring makes 1), and the geometry array_store derives from each patch size.

    python benchmarks/bench_storage.py --reads 60 --output /tmp/storage.json
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from fomo_nn.plans.records import NetworkPlan, NormalizationPlan, Plans, StoragePlan  # noqa: E402
from fomo_nn.preprocessing.case_preprocessing import preprocess_loaded  # noqa: E402
from fomo_nn.preprocessing.case_reading import read_case_images  # noqa: E402
from fomo_nn.preprocessing.array_store import (StoredArray, default_storage, save_array_atomic,  # noqa: E402
                                               storage_geometry, stored_image)
from fomo_nn.training.data.patches import crop_with_padding  # noqa: E402

NILEARN_DATA = Path(nib.__file__).resolve().parents[1] / "nilearn" / "datasets" / "data"
TEMPLATE = "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz"
WHITE_MATTER = "mni_icbm152_wm_tal_nlin_sym_09a_converted.nii.gz"
PATCHES = (96, 128)
# (label, dtype, codec, clevel, filter); geometry None: derived from the patch (array_store.storage_geometry)
SIZE_FORMATS = [
    ("blosc2 float32 lz4hc 5 shuffle", "float32", "lz4hc", 5, "shuffle"),
    ("blosc2 float32 zstd 3 shuffle", "float32", "zstd", 3, "shuffle"),
    ("blosc2 float16 blosclz 5 shuffle", "float16", "blosclz", 5, "shuffle"),
    ("blosc2 float16 lz4 5 shuffle", "float16", "lz4", 5, "shuffle"),
    ("blosc2 float16 lz4hc 5 shuffle", "float16", "lz4hc", 5, "shuffle"),
    ("blosc2 float16 lz4hc 5 bitshuffle", "float16", "lz4hc", 5, "bitshuffle"),
    ("blosc2 float16 lz4hc 5 nofilter (chosen)", "float16", "lz4hc", 5, "nofilter"),
    ("blosc2 float16 lz4hc 9 nofilter", "float16", "lz4hc", 9, "nofilter"),
    ("blosc2 float16 lz4 5 nofilter", "float16", "lz4", 5, "nofilter"),
    ("blosc2 float16 zstd 1 shuffle", "float16", "zstd", 1, "shuffle"),
    ("blosc2 float16 zstd 3 shuffle", "float16", "zstd", 3, "shuffle"),
    ("blosc2 float16 zstd 8 shuffle (nnU-Net's codec)", "float16", "zstd", 8, "shuffle"),
]
NPY = "npy float32 (old format), memory-mapped"
CHOSEN = "blosc2 float16 lz4hc 5 nofilter (chosen)"
READ_FORMATS = ["blosc2 float32 lz4hc 5 shuffle", "blosc2 float16 lz4hc 5 shuffle", CHOSEN,
                "blosc2 float16 zstd 3 shuffle"]


def corpus_plans(patch: int) -> Plans:
    return Plans(dataset_name="StorageBench", task_type="pretraining", channel_names=["t1"],
                 target_spacing=[1.0, 1.0, 1.0], spacing_reason="bench", median_shape=[145, 181, 155],
                 patch_size=[patch] * 3, batch_size=2, normalization=[NormalizationPlan()], network=NetworkPlan())


def noisy_brain(template: nib.Nifti1Image, white_matter: np.ndarray, snr: float, seed: int = 0) -> nib.Nifti1Image:
    """The template with a smooth bias field and Rician noise (sigma = white-matter mean / snr), re-masked."""
    image = np.asarray(template.dataobj, dtype=np.float32)
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in image.shape], indexing="ij"))
    bias = np.exp(0.15 * grid[0] - 0.10 * grid[1] ** 2 + 0.12 * grid[2] + 0.08 * grid[0] * grid[1])
    sigma = float(image[white_matter].mean()) / snr
    real = image * bias + rng.normal(0.0, sigma, image.shape).astype(np.float32)
    noisy = np.sqrt(real ** 2 + rng.normal(0.0, sigma, image.shape).astype(np.float32) ** 2)
    noisy[image == 0] = 0.0  # skull-stripped: the background stays exactly 0
    return nib.Nifti1Image(noisy.astype(np.float32), template.affine)


def preprocessed(path: Path, plans: Plans) -> np.ndarray:
    return preprocess_loaded(read_case_images([str(path)], None, None), plans)[0]


def float16_error(data: np.ndarray) -> dict:
    foreground = data != 0
    error = data.astype(np.float16).astype(np.float32) - data
    return {"max_abs": float(np.abs(error).max()),
            "rms_over_std": float(np.sqrt((error[foreground] ** 2).mean()) / data[foreground].std()),
            "background_exact": bool(np.all(error[~foreground] == 0))}


def storage_of(dtype, codec, clevel, filter_, patch, channels=1) -> StoragePlan:
    chunks, blocks = storage_geometry([patch] * 3, channels, np.dtype(dtype).itemsize)
    return StoragePlan(format="blosc2", dtype=dtype, codec=codec, clevel=clevel, filter=filter_, chunks=chunks,
                       blocks=blocks)


def write_blosc2(path: Path, data: np.ndarray, storage: StoragePlan) -> None:
    save_array_atomic(path, stored_image(data, storage, path.stem), storage)
    _sync(path)


def write_npy(path: Path, data: np.ndarray) -> None:
    np.save(path, data)
    _sync(path)


def _sync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)  # clean pages: the cold reads can drop them
    finally:
        os.close(fd)


def drop_cache(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def resident_pages(path: Path) -> str:
    if not shutil.which("fincore"):
        return "fincore not installed"
    result = subprocess.run(["fincore", "--noheadings", "--output", "PAGES", str(path)], capture_output=True, text=True)
    return result.stdout.strip() or result.stderr.strip()


def read_npy(path: Path, key) -> np.ndarray:
    """The old reader's patch: a memory map, cropped by training's crop (patches.crop_with_padding)."""
    return _crop(np.load(path, mmap_mode="r"), key)


def read_blosc2(path: Path, key) -> np.ndarray:
    """What `PreprocessedCase.data()` gives training, cropped the same way."""
    return _crop(StoredArray(path), key)


def _crop(array, key) -> np.ndarray:
    if key is Ellipsis:  # the whole case (validation, probes)
        return np.array(array, dtype=np.float32, copy=True)
    lower, size = key
    return crop_with_padding(array, lower, size)


def corners(shape, size: int, count: int, seed: int) -> list[tuple]:
    rng = np.random.default_rng(seed)
    return [(np.array([rng.integers(0, s - size + 1) for s in shape[1:]]), (size,) * 3) for _ in range(count)]


def timed_reads(cells: dict, keys, cold: bool) -> dict[str, float]:
    """Median milliseconds of one read per key and cell, the cells taking turns at every key (so the load of
    a shared machine falls on all alike); cold: the file's cached pages dropped before each read."""
    times = {label: [] for label in cells}
    for _, path in cells.values():
        path.read_bytes()  # warm: every page of every file in the page cache
    for key in keys:
        for label, (reader, path) in cells.items():
            if cold:
                drop_cache(path)
            started = time.perf_counter()
            reader(path, key)
            times[label].append(time.perf_counter() - started)
    return {label: float(np.median(values) * 1e3) for label, values in times.items()}


def measure(name: str, data: np.ndarray, folder: Path, reads: int) -> dict:
    cropped = data.nbytes
    result = {"image": name, "shape": list(data.shape), "cropped_float32_mb": cropped / 1e6,
              "foreground_fraction": float((data != 0).mean()), "float16_error": float16_error(data),
              "sizes": {}, "reads": {}}
    npy = folder / f"{name}.npy"
    write_npy(npy, data)
    result["sizes"]["npy float32 (old format)"] = npy.stat().st_size / cropped
    write_npy(folder / f"{name}_16.npy", data.astype(np.float16))
    result["sizes"]["npy float16"] = (folder / f"{name}_16.npy").stat().st_size / cropped
    paths = {}
    for label, dtype, codec, clevel, filter_ in SIZE_FORMATS:
        for patch in PATCHES:
            path = folder / f"{name}_{len(paths)}.b2nd"
            write_blosc2(path, data, storage_of(dtype, codec, clevel, filter_, patch))
            paths[label, patch] = path
        result["sizes"][label] = paths[label, PATCHES[-1]].stat().st_size / cropped
    whole = folder / f"{name}_whole.b2nd"  # one chunk for the whole image, derived blocks: chunking's effect
    chosen = storage_of("float16", "lz4hc", 5, "nofilter", 128)
    write_blosc2(whole, data, StoragePlan(**{**chosen.__dict__, "chunks": list(data.shape)}))
    drop_cache(npy)
    result["resident_pages_after_drop"] = resident_pages(npy)  # what "cold" starts from
    for size in PATCHES:
        keys = corners(data.shape, size, reads, seed=size)
        cells = {NPY: (read_npy, npy)}
        cells.update({f"{label}, chunks/blocks for {size}^3": (read_blosc2, paths[label, size])
                      for label in READ_FORMATS})
        other = PATCHES[0] if size == PATCHES[-1] else PATCHES[-1]
        cells[f"{CHOSEN}, chunks/blocks for {other}^3 patches"] = (read_blosc2, paths[CHOSEN, other])
        cells[f"{CHOSEN}, one chunk per image"] = (read_blosc2, whole)
        warm, cold = timed_reads(cells, keys, cold=False), timed_reads(cells, keys, cold=True)
        for label in cells:
            result["reads"][f"{size} {label}"] = {"patch": size, "format": label, "warm_ms": warm[label],
                                                  "cold_ms": cold[label], "warm_vs_npy": warm[label] / warm[NPY],
                                                  "cold_vs_npy": cold[label] / cold[NPY]}
    result["full_read_warm_ms"] = timed_reads({"npy": (read_npy, npy),
                                               "blosc2 chosen": (read_blosc2, paths[CHOSEN, 128])},
                                              [Ellipsis] * 9, cold=False)
    return result


def markdown(results: list[dict], geometry: dict) -> str:
    lines = ["| format | " + " | ".join(r["image"] for r in results) + " |", "|---|" + "---:|" * len(results)]
    for label in results[0]["sizes"]:
        lines.append(f"| {label} | " + " | ".join(f"{r['sizes'][label]:.3f}" for r in results) + " |")
    lines += ["", "| patch | format | " + " | ".join(f"{r['image']}: warm ms (x npy) | cold ms (x npy)"
                                                  for r in results) + " |", "|---:|---|" + "---:|---:|" * len(results)]
    for key, cell in results[0]["reads"].items():
        cells = [r["reads"][key] for r in results]
        values = " | ".join(f"{c['warm_ms']:.2f} ({c['warm_vs_npy']:.2f}x) | {c['cold_ms']:.2f} "
                            f"({c['cold_vs_npy']:.2f}x)" for c in cells)
        lines.append(f"| {cell['patch']}^3 | {cell['format']} | {values} |")
    lines.append("")
    for r in results:
        e = r["float16_error"]
        lines.append(f"- {r['image']}: cropped {r['shape']} = {r['cropped_float32_mb']:.1f} MB float32, foreground "
                     f"{r['foreground_fraction']:.0%} of the crop box; float16 error max {e['max_abs']:.2e}, RMS "
                     f"{e['rms_over_std']:.2e} x the foreground std (background exact: {e['background_exact']}); "
                     f"whole-case read warm: npy {r['full_read_warm_ms']['npy']:.1f} ms, blosc2 chosen "
                     f"{r['full_read_warm_ms']['blosc2 chosen']:.1f} ms; pages resident after the drop: "
                     f"{r['resident_pages_after_drop']}")
    for patch, (chunks, blocks) in geometry.items():
        lines.append(f"- patch {patch}^3, float16, 1 channel: chunks {chunks}, blocks {blocks}")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reads", type=int, default=40, help="random patch reads per cell (median reported)")
    parser.add_argument("--snr", type=float, default=25.0, help="white-matter SNR of the noisy brain")
    parser.add_argument("--output", help="also write the results as JSON here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    started = time.perf_counter()
    template = nib.load(NILEARN_DATA / TEMPLATE)
    white_matter = np.asarray(nib.load(NILEARN_DATA / WHITE_MATTER).dataobj) > 0.9
    plans = corpus_plans(128)
    results = []
    with tempfile.TemporaryDirectory(prefix="fomo_nn_storage_", dir=os.environ.get("TMPDIR")) as temp:
        folder = Path(temp)
        noisy = folder / "noisy.nii.gz"
        nib.save(noisy_brain(template, white_matter, args.snr), str(noisy))
        for name, path in (("template", NILEARN_DATA / TEMPLATE), (f"noisy (SNR {args.snr:g})", noisy)):
            data = preprocessed(path, plans)
            results.append(measure(name.split(" ")[0], data, folder, args.reads))
            results[-1]["image"] = name
    geometry = {p: storage_geometry([p] * 3, 1, 2) for p in PATCHES}
    print(markdown(results, geometry))
    print(f"\n(default plans storage for a 128^3 patch: {default_storage([128] * 3, 1)}; "
          f"{time.perf_counter() - started:.0f} s)")
    if args.output:
        Path(args.output).write_text(json.dumps({"results": results, "geometry": geometry}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
