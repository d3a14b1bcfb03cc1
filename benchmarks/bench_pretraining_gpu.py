"""Pretraining throughput on a GPU: iterations/s, peak GPU memory and data-loader stall per method.

A device script: it writes a synthetic 1 mm pretraining corpus (subjects x 2 sessions x 2 sequences,
blosc2 CASE.b2nd like the real preprocessed layout), then for every method and batch size runs
the method's real trainer (`setup()` + `train_step()`: bf16 autocast on CUDA, AdamW, grad clipping,
EMA teacher for dino) on the planned patch with the default U-Net B-like encoder (plain_conv,
features 32-64-128-256-320) and the method's augmentation preset, fed by `--workers` background
loader processes.

Per (method, batch size), after `--warmup` steps:
- it/s and samples/s of the whole loop (waiting for data included);
- stall: share of the loop spent waiting for the next batch (0 = the loader is never the bottleneck);
- loader-only it/s: the same loader drained without training (what the pipeline could deliver);
- peak GPU memory (torch.cuda.max_memory_allocated) during the timed steps.

GPU (the numbers for benchmarks/RESULTS.md):

    python benchmarks/bench_pretraining_gpu.py --out $OUT/pretraining_gpu.json

CPU smoke run of the same code path (tiny net, small patch, a few steps), and the data pipeline
alone at the planned patch (any machine; scale by workers to judge the GPU machine's 16):

    python benchmarks/bench_pretraining_gpu.py --device cpu --quick
    python benchmarks/bench_pretraining_gpu.py --loader-only --workers 2 --batch-sizes 4 --steps 12
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from fomo_nn.augmentation import default_augmentation_plan  # noqa: E402
from fomo_nn.plans import NetworkPlan, NormalizationPlan, Plans, TrainingPlan, save_plans  # noqa: E402
from fomo_nn.preprocessing.case_store import list_cases, write_case  # noqa: E402
from fomo_nn.training.base_trainer import TrainerOptions  # noqa: E402
from fomo_nn.training.data.loader import make_loader  # noqa: E402
from fomo_nn.training.registry import get_trainer  # noqa: E402

METHODS = ("mae", "contrastive", "hybrid", "vae", "dino")
TINY_NETWORK = dict(features_per_stage=[8, 16, 32], kernel_sizes=[[3, 3, 3]] * 3,
                    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2]], n_conv_per_stage=[1, 1, 1],
                    n_conv_per_stage_decoder=[1, 1])
TINY_HEADS = {"contrastive": {"projection_hidden": 32, "projection_dim": 16},
              "hybrid": {"projection_hidden": 32, "projection_dim": 16}, "vae": {"subject_channels": 8},
              "dino": {"projection_hidden": 32, "projection_dim": 16, "prototypes": 64}}


def synthetic_head(shape, rng: np.random.Generator) -> np.ndarray:
    """A z-scored 'brain': ellipsoid mask x coarse random structure + fine noise (float32)."""
    grid = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij", sparse=True)
    inside = (grid[0] / 0.85) ** 2 + (grid[1] / 0.9) ** 2 + (grid[2] / 0.8) ** 2 < 1
    coarse = rng.normal(size=[-(-s // 8) for s in shape]).astype(np.float32)
    structure = np.kron(coarse, np.ones((8, 8, 8), np.float32))[:shape[0], :shape[1], :shape[2]]
    image = structure + 0.3 * rng.normal(size=shape).astype(np.float32)
    return (image * inside)[None]


def write_corpus(root: Path, subjects: int, shape) -> Path:
    folder = root / "Dataset950_PretrainBench"
    cases = folder / "3d_fullres"
    cases.mkdir(parents=True)
    rng = np.random.default_rng(0)
    plans = bench_plans(32, True, {})  # patch, network and augmentation do not enter the signature
    for subject in range(subjects):
        for session in (1, 2):
            for sequence in ("t1", "t2"):
                case_id = f"sub_{subject}_ses_{session}_{sequence}"
                props = {"case_id": case_id, "subject": f"sub_{subject}", "session": f"ses_{session}",
                         "sequence": sequence, "image_properties": {"ras_affine": np.eye(4).tolist()},
                         "crop_bbox": [[0, s] for s in shape], "shape_after_crop": list(shape),
                         "shape_after_resampling": list(shape), "spacing_target": [1.0, 1.0, 1.0]}
                write_case(cases, case_id, synthetic_head(shape, rng), None, props, plans)
    (folder / "dataset.json").write_text(json.dumps({"name": "PretrainBench", "task_type": "pretraining",
                                                     "channel_names": {"0": "mri"}, "file_ending": ".nii.gz"}))
    return folder


def bench_plans(patch: int, quick: bool, augmentation: dict) -> Plans:
    network = NetworkPlan(**TINY_NETWORK) if quick else NetworkPlan()
    return Plans(dataset_name="Dataset950_PretrainBench", task_type="pretraining", channel_names=["mri"],
                 target_spacing=[1.0, 1.0, 1.0], spacing_reason="benchmark", median_shape=[patch] * 3,
                 patch_size=[patch] * 3, batch_size=2, normalization=[NormalizationPlan()], network=network,
                 training=TrainingPlan(warmup_epochs=0), augmentation=augmentation)


def drain(loader, count: int) -> float:
    """Loader-only batches per second over `count` batches (after the workers are up)."""
    batches = iter(loader)
    next(batches)
    started = time.perf_counter()
    for _ in range(count):
        next(batches)
    return count / (time.perf_counter() - started)


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bench_one(method: str, batch_size: int, corpus: Path, out: Path, args) -> dict:
    cls = get_trainer(method)
    augmentation = {} if args.no_augmentation else default_augmentation_plan(cls.augmentation_family)
    plans = bench_plans(args.patch, args.quick, augmentation)
    save_plans(plans, corpus / "plans.json")
    options = TrainerOptions(device=args.device, batch_size=batch_size, epochs=1, num_workers=args.workers,
                             iterations_per_epoch=args.warmup + args.steps, progress_bar=False,
                             method=TINY_HEADS.get(method, {}) if args.quick else {})
    trainer = cls(plans, corpus, out / f"{method}_b{batch_size}", "all", options)
    trainer.setup()
    device = trainer.device
    source = trainer.make_training_source(trainer.train_cases)
    total = args.warmup + args.steps
    loader = make_loader(source, trainer.seed, 0, 0, total, args.workers, pin_memory=device.type == "cuda")
    batches = iter(loader)
    stall = compute = 0.0
    started = None
    for step in range(total):
        if step == args.warmup:
            synchronize(device)
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            stall = compute = 0.0
            started = time.perf_counter()
        waited = time.perf_counter()
        batch = next(batches)
        fetched = time.perf_counter()
        trainer.train_step(batch, step)
        synchronize(device)
        stall += fetched - waited
        compute += time.perf_counter() - fetched
    elapsed = time.perf_counter() - started
    del batches, loader
    loader_only = drain(make_loader(source, trainer.seed, 0, 0, args.steps + 1, args.workers), args.steps)
    peak = torch.cuda.max_memory_allocated(device) / 2 ** 30 if device.type == "cuda" else float("nan")
    result = {"method": method, "batch_size": batch_size, "patch": args.patch, "steps": args.steps,
              "it_per_s": args.steps / elapsed, "samples_per_s": args.steps * batch_size / elapsed,
              "stall_fraction": stall / elapsed, "compute_s_per_step": compute / args.steps,
              "loader_only_it_per_s": loader_only, "peak_gpu_gib": peak, "workers": args.workers,
              "augmentation": cls.augmentation_family if augmentation else "none", "device": str(device),
              "gpu": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"}
    del trainer
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return result


def bench_loader_only(method: str, batch_size: int, corpus: Path, out: Path, args) -> dict:
    """The data pipeline alone (no network): what `--workers` processes deliver at the planned patch."""
    cls = get_trainer(method)
    augmentation = {} if args.no_augmentation else default_augmentation_plan(cls.augmentation_family)
    plans = bench_plans(args.patch, args.quick, augmentation)
    trainer = cls(plans, corpus, out / f"{method}_b{batch_size}_loader", "all",
                  TrainerOptions(device="cpu", batch_size=batch_size, num_workers=args.workers))
    cases = trainer.split_cases(list_cases(corpus / plans.configuration, plans))[0]
    source = trainer.make_training_source(cases)
    rate = drain(make_loader(source, trainer.seed, 0, 0, args.steps + 1, args.workers), args.steps)
    return {"method": method, "batch_size": batch_size, "patch": args.patch, "steps": args.steps,
            "loader_only_it_per_s": rate, "loader_only_samples_per_s": rate * batch_size, "workers": args.workers,
            "sampling": trainer.sampling, "augmentation": cls.augmentation_family if augmentation else "none"}


def markdown(results: list[dict]) -> str:
    if "it_per_s" not in results[0]:
        lines = ["| method | sampling | batch | workers | loader it/s | samples/s |", "|---|---|---:|---:|---:|---:|"]
        lines += [f"| {r['method']} | {r['sampling']} | {r['batch_size']} | {r['workers']} | "
                  f"{r['loader_only_it_per_s']:.2f} | {r['loader_only_samples_per_s']:.1f} |" for r in results]
        return "\n".join(lines)
    lines = ["| method | batch | it/s | samples/s | stall | loader-only it/s | peak GPU GiB |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for r in results:
        lines.append(f"| {r['method']} | {r['batch_size']} | {r['it_per_s']:.2f} | {r['samples_per_s']:.1f} | "
                     f"{100 * r['stall_fraction']:.0f} % | {r['loader_only_it_per_s']:.1f} | {r['peak_gpu_gib']:.1f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 4])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--steps", type=int, default=20, help="timed steps per configuration")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--workers", type=int, default=16, help="background loader processes")
    parser.add_argument("--subjects", type=int, default=8, help="synthetic subjects (x 2 sessions x 2 sequences)")
    parser.add_argument("--shape", nargs=3, type=int, default=[144, 176, 144], help="synthetic head size (voxels)")
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--no-augmentation", action="store_true", help="plain crops instead of the method's preset")
    parser.add_argument("--quick", action="store_true", help="tiny net, patch 32, 3 steps: a CPU smoke run")
    parser.add_argument("--loader-only", action="store_true",
                        help="measure only the data pipeline (no network, runs anywhere)")
    parser.add_argument("--out", help="write the results as JSON here")
    args = parser.parse_args(argv)
    if args.quick:
        args.patch, args.steps, args.warmup, args.workers = 32, 3, 1, min(args.workers, 2)
        args.shape, args.subjects, args.batch_sizes = [48, 48, 48], 3, [2]
    results = []
    with tempfile.TemporaryDirectory() as scratch:
        corpus = write_corpus(Path(scratch), args.subjects, tuple(args.shape))
        for method in args.methods:
            for batch_size in args.batch_sizes:
                bench = bench_loader_only if args.loader_only else bench_one
                result = bench(method, batch_size, corpus, Path(scratch) / "runs", args)
                results.append(result)
                print(json.dumps(result), flush=True)
    print(markdown(results))
    if args.out:
        Path(args.out).parent.mkdir(parents=True, exist_ok=True)
        Path(args.out).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
