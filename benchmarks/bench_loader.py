"""Pretraining batches per second per loader worker, from the preprocessed store, at 1 mm.

The data: the MNI152 2009a 1 mm T1 template of the nilearn wheel, skull-stripped with its own
grey/white-matter maps (a FOMO60K scan is skull-stripped), made into 3 subjects x 2 scans, each
with its own smooth bias field and Rician noise (SNR ~25 in white matter; the template alone is
noise-free and uint8-quantized, which would flatter a compressed store) and the second scan of each
subject with an inverted, T2-like contrast. They go through the real pipeline (fomo_nn_convert
fomo60k, fingerprint, plan at 1 mm, preprocess) into a temporary dataset, whatever the store's
format is at the time.

One process = one loader worker: the training source of the method's real trainer (mae: the
`pretraining_reconstruction` preset, i.i.d. scans; contrastive: the `pretraining_contrastive` preset,
subject pairs), artifacts on as the presets have them, called directly for consecutive steps exactly
as a DataLoader worker calls it (StepDataset), one torch / BLAS / blosc thread. Per configuration:
wall and CPU seconds per batch (medians over --batches after --warmup), batches/s per worker (from
the CPU time: what one dedicated core sustains, robust to other jobs on a shared machine) and the
workers one GPU needs at the assumed step time (see `assumed_step_seconds`). The arrays are
page-cached (6 scans); a cold network disk adds its read time.

    python benchmarks/bench_loader.py --profile                    # the full table (~2-5 min on 2 cores)
    python benchmarks/bench_loader.py --patches 96 --batch-sizes 4 --methods mae --profile
"""
from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "BLOSC_NTHREADS"):
    os.environ[_variable] = "1"  # one worker = one core, as in a DataLoader worker on a busy node

import argparse  # noqa: E402
import cProfile  # noqa: E402
import io  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import pstats  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import nibabel as nib  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from scipy import ndimage  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DATASET = "Dataset001_FOMO60K"
SUBJECTS = 3
METHODS = {"mae": "reconstruction", "contrastive": "contrastive"}
# FOMO25 baseline: MAE, U-Net B, patch 96^3, batch 2, bf16, 100 epochs of 60,529 scans in ~48 h on one
# H100 (../shared/reference/ANCHORS.md): 100 x 60,529 / 2 steps / 172,800 s = 17.5 steps/s.
BASELINE_STEP_S = 48 * 3600 / (100 * 60529 / 2)
MAX_WORKERS_PER_GPU = 12


def assumed_step_seconds(batch: int, patch: int, pairs: bool) -> float:
    """H100 step time assumed while unmeasured: the baseline's 0.057 s per MAE step at 96^3 batch 2,
    proportional to the voxels per step; a pair step feeds 2 x batch patches through the network."""
    return BASELINE_STEP_S * (batch / 2) * (patch / 96) ** 3 * (2 if pairs else 1)


# ------------------------------------------------------------------ data: real-brain-sized 1 mm scans

def _nilearn_data() -> Path:
    import nilearn

    return Path(nilearn.__file__).parent / "datasets" / "data"


def brain_scans(rng: np.random.Generator) -> tuple[nib.Nifti1Image, list[np.ndarray]]:
    """(template image, 2 x SUBJECTS skull-stripped float32 volumes with bias field and Rician noise)."""
    data = _nilearn_data()
    template = nib.load(data / "mni_icbm152_t1_tal_nlin_sym_09a_converted.nii.gz")
    t1 = np.asarray(template.dataobj, dtype=np.float32)
    gm, wm = (np.asarray(nib.load(data / f"mni_icbm152_{t}_tal_nlin_sym_09a_converted.nii.gz").dataobj, np.float32)
              for t in ("gm", "wm"))
    brain = ndimage.binary_fill_holes(ndimage.binary_closing(gm / gm.max() + wm / wm.max() > 0.2, iterations=3))
    white = float(np.median(t1[wm > 0.9 * wm.max()]))
    scans = []
    for _ in range(SUBJECTS):
        for inverted in (False, True):
            image = np.where(brain, white * 1.2 - t1, t1) if inverted else t1.copy()
            image = np.clip(image, 0, None) * _bias_field(t1.shape, rng)
            sigma = white / 25.0  # SNR 25 in white matter
            noisy = np.hypot(image + rng.normal(0, sigma, t1.shape), rng.normal(0, sigma, t1.shape))
            scans.append((noisy * brain).astype(np.float32))
    return template, scans


def _bias_field(shape, rng: np.random.Generator) -> np.ndarray:
    """A smooth multiplicative field within about +-20 %."""
    coarse = rng.normal(0, 0.1, (4, 4, 4))
    return np.exp(ndimage.zoom(coarse, [s / 4 for s in shape], order=3)).astype(np.float32)


def build_dataset(workdir: Path, workers: int) -> Path:
    """Raw FOMO60K-layout tree -> convert -> fingerprint -> plan -> preprocess; the preprocessed folder."""
    from dataset_conversion.fomo60k import convert_fomo60k
    from fomo_nn.planning.steps import fingerprint_step, plan_step
    from fomo_nn.preprocessing.runner import preprocess_dataset

    template, scans = brain_scans(np.random.default_rng(0))
    for index, scan in enumerate(scans):
        folder = workdir / "corpus" / f"sub_{index // 2 + 1}" / "ses_1"
        folder.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(scan, template.affine), folder / f"{'t2' if index % 2 else 't1'}.nii.gz")
    for root in ("raw", "preprocessed", "results"):
        os.environ[f"fomo_nn_{root}"] = str(workdir / root)
    convert_fomo60k(workdir / "corpus", dataset=1, progress=False)
    raw_dir, preprocessed_dir = workdir / "raw" / DATASET, workdir / "preprocessed" / DATASET
    fingerprint_step(raw_dir, preprocessed_dir, workers, progress=False)
    plan_step(raw_dir, preprocessed_dir)
    report = preprocess_dataset(raw_dir, preprocessed_dir, workers, progress=False)
    assert report.ok and len(report.processed) == len(scans), report.summary()
    return preprocessed_dir


def store_description(preprocessed_dir: Path) -> str:
    """What the arrays are stored as, read from the files the preprocessing wrote."""
    from fomo_nn.plans.records import load_plans

    plans = load_plans(preprocessed_dir)
    folder = preprocessed_dir / plans.configuration
    files = [p for p in folder.iterdir() if not p.name.startswith((".", "_")) and p.suffix != ".json"]
    suffixes = sorted({p.suffix for p in files})
    arrays = sum(p.stat().st_size for p in files)
    storage = getattr(plans, "storage", None)
    described = f"{', '.join(suffixes)} files"
    if storage is not None:
        described += f", {storage}"
    return f"{described}; {arrays / 1e6 / 6:.1f} MB per scan on disk"


# ------------------------------------------------------------------ one worker's batches

def make_source(preprocessed_dir: Path, method: str, patch: int, batch: int, out: Path):
    from fomo_nn.plans.records import load_plans
    from fomo_nn.preprocessing.case_store import list_cases
    from fomo_nn.training.base_trainer import TrainerOptions
    from fomo_nn.training.registry import get_trainer

    plans = load_plans(preprocessed_dir).replace(patch_size=[patch] * 3)
    trainer = get_trainer(method)(plans, preprocessed_dir, out / f"{method}_{patch}_{batch}", "all",
                                  TrainerOptions(device="cpu", batch_size=batch))
    train, _ = trainer.split_cases(list_cases(preprocessed_dir / plans.configuration, trainer.plans))
    return trainer.make_training_source(train), trainer


def time_batches(source, seed: int, warmup: int, batches: int) -> tuple[list[float], list[float]]:
    """(wall, CPU) seconds of each timed batch, steps in order as one worker reads them."""
    from fomo_nn.training.data.loader import StepDataset

    dataset = StepDataset(source, seed, 0, warmup + batches)
    walls, cpus = [], []
    for step in range(warmup + batches):
        wall, cpu = time.perf_counter(), time.process_time()
        batch = dataset[step]
        if step >= warmup:
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        if step == 0:
            assert torch.isfinite(batch["image"]).all(), "non-finite intensities in a batch"
    return walls, cpus


def bench_one(preprocessed_dir: Path, method: str, patch: int, batch: int, batches: int, warmup: int,
              out: Path) -> dict:
    source, trainer = make_source(preprocessed_dir, method, patch, batch, out)
    walls, cpus = time_batches(source, trainer.seed, warmup, batches)
    cpu = float(np.median(cpus))
    pairs = trainer.sampling == "subject_pairs"
    step = assumed_step_seconds(batch, patch, pairs)
    return {"method": method, "preset": trainer.augmentation_family, "sampling": trainer.sampling, "patch": patch,
            "batch": batch, "read_size": list(source.read_size), "batches": batches,
            "wall_s_per_batch": float(np.median(walls)), "cpu_s_per_batch": cpu, "batches_per_s_per_worker": 1 / cpu,
            "assumed_step_s": step, "workers_per_gpu": math.ceil(cpu / step)}


def profile(preprocessed_dir: Path, out: Path, batches: int, top: int) -> str:
    """cProfile of one worker: reconstruction preset, 96^3, batch 4."""
    source, trainer = make_source(preprocessed_dir, "mae", 96, 4, out)
    time_batches(source, trainer.seed, 1, 0)
    profiler = cProfile.Profile()
    profiler.enable()
    time_batches(source, trainer.seed + 1, 0, batches)
    profiler.disable()
    text = io.StringIO()
    pstats.Stats(profiler, stream=text).sort_stats("tottime").print_stats(top)
    return text.getvalue()


def markdown(results: list[dict]) -> str:
    lines = ["| preset (trainer, sampling) | patch | read | batch | wall s / batch | CPU s / batch | "
             "batches/s / worker | assumed H100 step s | workers / GPU |", "|---|" + "---:|" * 8]
    for r in results:
        flag = " **> 12**" if r["workers_per_gpu"] > MAX_WORKERS_PER_GPU else ""
        lines.append(f"| {r['preset']} ({r['method']}, {r['sampling']}) | {r['patch']}³ | {r['read_size'][0]}³ | "
                     f"{r['batch']} | {r['wall_s_per_batch']:.3f} | {r['cpu_s_per_batch']:.3f} | "
                     f"{r['batches_per_s_per_worker']:.2f} | {r['assumed_step_s']:.3f} | "
                     f"{r['workers_per_gpu']}{flag} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=list(METHODS))
    parser.add_argument("--patches", nargs="+", type=int, default=[96, 128])
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=[2, 4, 8])
    parser.add_argument("--batches", type=int, default=12, help="timed batches per configuration")
    parser.add_argument("--big-batches", type=int, default=5, help="timed batches at 128^3 batch 8")
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--profile", action="store_true", help="cProfile reconstruction 96^3 batch 4")
    parser.add_argument("--profile-batches", type=int, default=8)
    parser.add_argument("-np", "--num-workers", type=int, default=2, help="preprocessing workers")
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    workdir = Path(tempfile.mkdtemp(prefix="bench_loader_"))
    try:
        started = time.perf_counter()
        preprocessed_dir = build_dataset(workdir, args.num_workers)
        store = store_description(preprocessed_dir)
        print(f"dataset preprocessed in {time.perf_counter() - started:.0f} s; store: {store}", flush=True)
        results = []
        for method in args.methods:
            for patch in args.patches:
                for batch in args.batch_sizes:
                    count = args.big_batches if patch >= 128 and batch >= 8 else args.batches
                    result = bench_one(preprocessed_dir, method, patch, batch, count, args.warmup, workdir / "runs")
                    results.append(result)
                    print(json.dumps(result), flush=True)
        print(f"\nstore: {store}\n")
        print(markdown(results))
        if args.profile:
            print("\ncProfile, reconstruction preset, 96^3, batch 4 (one worker):")
            print(profile(preprocessed_dir, workdir / "runs", args.profile_batches, 25))
        if args.json:
            Path(args.json).write_text(json.dumps({"store": store, "results": results}, indent=1))
    finally:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
