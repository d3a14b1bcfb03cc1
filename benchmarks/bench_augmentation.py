"""Augmentation throughput (patches/s): fomo_nn presets vs nnU-Net v2's default training transforms.

Each measurement: N patches, each = random crop of the read size (initial patch size) from one
memory-mapped preprocessed volume, zero padded like a loader does, then the training pipeline down
to the final patch. Worker processes (fork, one torch thread each) take patches one at a time like
DataLoader workers; one warm-up patch per worker is not timed. Handing the result back to the main
process is excluded (it costs the same for both frameworks). Reported: wall-clock patches/s (best of
--repeats runs) and CPU seconds per patch (what one dedicated core sustains; robust to other jobs on
a shared machine, from which a worker count for a given GPU step time follows).

    python benchmarks/bench_augmentation.py                       # fomo_nn presets
    /tmp/nnunet_venv/bin/python benchmarks/bench_augmentation.py --peer nnunet   # nnU-Net v2, own venv

The peer mode imports nothing from fomo_nn (it runs in a separate environment with nnunetv2).
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import sys
import time
from pathlib import Path

import numpy as np

VOLUME_SHAPE = (160, 192, 160)  # a skull-stripped 1 mm brain after crop-to-nonzero, with margin
_WORKER = {}


# ----------------------------------------------------------------- shared: data and timing

def make_volume(folder: Path) -> tuple[Path, Path]:
    """A brain-like z-scored image (zero outside an ellipsoidal head) and a binary mask (two lesions), as .npy.

    Binary like the FOMO25 Task 2 (meningioma) masks; the label count sets how many resamplings the
    segmentation needs in both frameworks.
    """
    image_path, seg_path = folder / "image.npy", folder / "seg.npy"
    if image_path.exists() and seg_path.exists():
        return image_path, seg_path
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    g = np.stack(np.meshgrid(*[np.linspace(-1, 1, n, dtype=np.float32) for n in VOLUME_SHAPE], indexing="ij"))
    head = ((g[0] / 0.85) ** 2 + (g[1] / 0.9) ** 2 + (g[2] / 0.8) ** 2) < 1
    texture = np.sin(9 * g[0]) * np.cos(7 * g[1]) + 0.5 * np.cos(11 * g[2]) + 0.3 * rng.standard_normal(g[0].shape)
    image = np.where(head, texture, 0).astype(np.float32)
    image[head] = (image[head] - image[head].mean()) / image[head].std()
    seg = np.zeros(VOLUME_SHAPE, np.int16)
    seg[((g[0] - 0.3) ** 2 + (g[1] + 0.2) ** 2 + g[2] ** 2) < 0.04] = 1
    seg[((g[0] + 0.3) ** 2 + (g[1] - 0.3) ** 2 + (g[2] - 0.2) ** 2) < 0.01] = 1
    np.save(image_path, image[None])
    np.save(seg_path, seg[None])
    return image_path, seg_path


def crop_with_padding(array: np.ndarray, lower: np.ndarray, size) -> np.ndarray:
    out = np.zeros(array.shape[:1] + tuple(size), dtype=array.dtype)
    shape = np.asarray(array.shape[1:])
    lo, hi = np.maximum(lower, 0), np.minimum(lower + np.asarray(size), shape)
    dst = lo - lower
    out[(slice(None), *[slice(a, a + b - c) for a, b, c in zip(dst, hi, lo)])] = \
        array[(slice(None), *[slice(a, b) for a, b in zip(lo, hi)])]
    return out


def _init_worker(framework: str, config: dict, image_path: str, seg_path: str) -> None:
    import torch
    torch.set_num_threads(1)
    build = {"fomo_nn": _build_fomo_nn, "nnunet": _build_nnunet}[framework]
    pipeline, read_size = build(config)
    _WORKER.update(pipeline=pipeline, read_size=read_size, with_seg=config["with_seg"],
                   image=np.load(image_path, mmap_mode="r"), seg=np.load(seg_path, mmap_mode="r"))


def _one_patch(seed: int) -> float:
    """CPU seconds this worker spent on one patch (waiting for a busy core does not count)."""
    import torch
    cpu_start = time.process_time()
    np.random.seed(seed)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    image, read_size = _WORKER["image"], _WORKER["read_size"]
    shape, size = np.asarray(image.shape[1:]), np.asarray(read_size)
    lower = np.array([rng.integers(min(0, s - r), max(0, s - r) + 1) for s, r in zip(shape, size)])
    sample = {"image": torch.from_numpy(crop_with_padding(image, lower, read_size))}
    if _WORKER["with_seg"]:
        sample["segmentation"] = torch.from_numpy(crop_with_padding(_WORKER["seg"], lower, read_size))
    out = _WORKER["pipeline"](**sample)
    float(out["image"].float().mean())
    return time.process_time() - cpu_start


def measure(framework: str, config: dict, workers: int, patches: int, paths, repeats: int) -> dict:
    """Wall clock: best of `repeats` runs of the same seeds (on a shared machine the best run is the least
    disturbed). CPU: mean CPU seconds per patch over all runs, i.e. what one dedicated core sustains."""
    context = multiprocessing.get_context("fork")
    times, cpu = [], []
    with context.Pool(workers, initializer=_init_worker,
                      initargs=(framework, config, str(paths[0]), str(paths[1]))) as pool:
        pool.map(_one_patch, range(10_000, 10_000 + workers), chunksize=1)  # warm-up, one per worker
        for _ in range(repeats):
            start = time.perf_counter()
            cpu += pool.map(_one_patch, range(patches), chunksize=1)
            times.append(time.perf_counter() - start)
    return {"framework": framework, **{k: v for k, v in config.items() if k != "with_seg"},
            "segmentation": config["with_seg"], "workers": workers, "patches": patches,
            "seconds": [round(t, 2) for t in times], "patches_per_s": round(patches / min(times), 2),
            "cpu_s_per_patch": round(float(np.mean(cpu)), 4), "load": round(os.getloadavg()[0], 1)}


# ----------------------------------------------------------------- fomo_nn

# nnUNetTrainer.get_training_transforms' settings written as a fomo_nn plan: the same work for both engines
NNUNET_EQUIVALENT_PLAN = {
    "spatial": {"rotation": {"p": 0.2, "max_degrees": 30}, "scaling": {"p": 0.2, "range": [0.7, 1.4]},
                "mirror": {"p": 0.5, "axes": [0, 1, 2]}},
    "intensity": {"gaussian_noise": {"p": 0.1}, "gaussian_blur": {"p": 0.2, "p_per_channel": 0.5},
                  "brightness": {"p": 0.15}, "contrast": {"p": 0.15},
                  "low_resolution": {"p": 0.25, "p_per_channel": 0.5},
                  "gamma": {"p": 0.3, "range": [0.7, 1.5], "p_invert": 0.25}},
}


def _build_fomo_nn(config: dict):
    from fomo_nn.augmentation import (build_augmentation_pipeline, default_augmentation_plan, initial_patch_size,
                                      merge_augmentation_plans, resolve_augmentation_plan)
    if config["preset"] == "nnunet_equivalent":
        plan = resolve_augmentation_plan(NNUNET_EQUIVALENT_PLAN)
    else:
        plan = default_augmentation_plan(config["preset"])
    if not config["artifacts"]:
        plan = merge_augmentation_plans(plan, {"artifacts": {name: {"p": 0.0} for name in plan["artifacts"]}})
    patch = (config["patch"],) * 3
    return build_augmentation_pipeline(plan, patch, is_segmentation=config["with_seg"]), \
        initial_patch_size(patch, plan)


def fomo_nn_configs(sizes):
    for size in sizes:
        for preset, with_seg in (("segmentation", True), ("pretraining_reconstruction", False)):
            for artifacts in (True, False):
                yield {"preset": preset, "artifacts": artifacts, "patch": size, "with_seg": with_seg}
        yield {"preset": "nnunet_equivalent", "artifacts": False, "patch": size, "with_seg": True}


# ----------------------------------------------------------------- nnU-Net v2 (separate venv)

def _build_nnunet(config: dict):
    from nnunetv2.training.data_augmentation.compute_initial_patch_size import get_patch_size
    from nnunetv2.training.nnUNetTrainer.nnUNetTrainer import nnUNetTrainer
    patch = (config["patch"],) * 3
    rotation = (-30.0 / 360 * 2 * math.pi, 30.0 / 360 * 2 * math.pi)  # its 3D default
    # deep-supervision targets of the default 6-stage 3d_fullres network (strides 1, 2, 2, 2, 2, 2)
    ds_scales = [[1.0 / 2 ** k] * 3 for k in range(5)] if config["deep_supervision"] else None
    pipeline = nnUNetTrainer.get_training_transforms(patch, rotation, ds_scales, (0, 1, 2), False)
    return pipeline, tuple(int(s) for s in get_patch_size(patch, rotation, rotation, rotation, (0.85, 1.25)))


def nnunet_configs(sizes):
    for size in sizes:
        for deep_supervision in (True, False):
            yield {"preset": "nnUNetTrainer default", "deep_supervision": deep_supervision, "patch": size,
                   "with_seg": True}


# ----------------------------------------------------------------- main

def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--peer", choices=["nnunet"], help="measure the peer's pipeline instead of ours")
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 128])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--patches", type=int, default=24, help="timed patches per measurement")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per row; the best is reported")
    parser.add_argument("--data", type=Path, default=Path("/tmp/fomo_nn_bench_augmentation"))
    parser.add_argument("--json", type=Path, help="append results as JSON lines here")
    args = parser.parse_args(argv)
    if args.peer is None:
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    paths = make_volume(args.data)
    framework = args.peer or "fomo_nn"
    configs = list(nnunet_configs(args.sizes) if args.peer else fomo_nn_configs(args.sizes))
    print(f"# {framework}: volume {VOLUME_SHAPE}, {args.patches} patches per row, load {os.getloadavg()[0]:.1f}",
          flush=True)
    for config in configs:
        for workers in args.workers:
            result = measure(framework, config, workers, args.patches, paths, args.repeats)
            print(json.dumps(result), flush=True)
            if args.json:
                with args.json.open("a") as handle:
                    handle.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
