"""fomo_nn_plan_and_preprocess vs nnUNetv2_plan_and_preprocess, and corpus throughput.

1. Segmentation: one generated dataset (default 20 cases, 2 channels, 96-128 voxels a side, mixed
   spacings and orientations, int16 .nii.gz), the same worker count for both tools; fingerprint +
   plan + preprocess (3d_fullres only for nnU-Net) wall time and peak memory, each run on a fresh
   output folder, alternating tools, `--repeats` times.
2. Pretraining corpus: >= 500 small generated scans listed by a manifest; scans/s and peak memory
   with 1 and 2 workers.

Memory is sampled every 0.1 s from /proc for the whole process tree: peak of the largest single
process (per-worker memory) and peak of the tree's sum.

    python benchmarks/bench_preprocessing.py --workers 2 --repeats 2
    (nnU-Net lives in its own venv: python3 -m venv /tmp/nnunet_venv; /tmp/nnunet_venv/bin/pip install
     torch==2.13.0; /tmp/nnunet_venv/bin/pip install -c constraints-cpu.txt nnunetv2)
"""
from __future__ import annotations

import argparse
import json
import os
import re
import resource
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import nibabel as nib
import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from fomo_nn.datasets.dataset_json import DatasetSpec, save_dataset_json  # noqa: E402
from fomo_nn.datasets.manifest import Manifest, ManifestImage, save_manifest  # noqa: E402

SEG_ID, CORPUS_ID = 500, 501
SPACINGS = [(1.0, 1.0, 1.0), (0.9, 0.9, 1.2), (1.2, 1.2, 1.2), (1.0, 1.0, 1.5), (1.0, 1.0, 1.0)]
ORIENTATIONS = [(1, 1, 1), (-1, -1, 1)]


# ---------------------------------------------------------------- data generation
def synthetic_brain(shape, rng) -> tuple[np.ndarray, np.ndarray]:
    """(int16 image with 0 background, uint8 lesion mask) on a grid of `shape`."""
    grids = np.meshgrid(*[np.linspace(-1, 1, s, dtype=np.float32) for s in shape], indexing="ij")
    radii = rng.uniform(0.75, 0.9, size=3)
    inside = sum((g / r) ** 2 for g, r in zip(grids, radii)) <= 1
    phase = rng.uniform(0, 6, size=3)
    texture = (1.0 + 0.25 * np.sin(3 * grids[0] + phase[0]) * np.cos(2 * grids[1] + phase[1])
               + 0.15 * np.sin(4 * grids[2] + phase[2]))
    image = np.where(inside, 600 * texture + rng.normal(0, 20, size=shape), 0)
    centre = rng.uniform(-0.3, 0.3, size=3)
    lesion = sum(((g - c) / 0.18) ** 2 for g, c in zip(grids, centre)) <= 1
    return np.clip(image, 0, 32000).astype(np.int16), (lesion & inside).astype(np.uint8)


def save(path: Path, array, spacing, signs) -> None:
    affine = np.diag([*(np.asarray(signs) * np.asarray(spacing)), 1.0])
    affine[:3, 3] = [-s * n / 2 * sign for s, n, sign in zip(spacing, array.shape, signs)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(array, affine), str(path))


def make_segmentation_dataset(raw_root: Path, num_cases: int, seed: int = 0) -> Path:
    folder = raw_root / f"Dataset{SEG_ID}_Bench"
    if (folder / "dataset.json").is_file():
        return folder
    rng = np.random.default_rng(seed)
    for index in range(num_cases):
        shape = tuple(int(v) for v in rng.integers(96, 129, size=3))
        spacing, signs = SPACINGS[index % len(SPACINGS)], ORIENTATIONS[index % len(ORIENTATIONS)]
        flair_rng = np.random.default_rng(seed + 1000 + index)
        t1, lesion = synthetic_brain(shape, rng)
        flair, _ = synthetic_brain(shape, flair_rng)
        flair[t1 == 0] = 0
        case = f"bench_{index:03d}"
        save(folder / "imagesTr" / f"{case}_0000.nii.gz", t1, spacing, signs)
        save(folder / "imagesTr" / f"{case}_0001.nii.gz", flair, spacing, signs)
        save(folder / "labelsTr" / f"{case}.nii.gz", lesion, spacing, signs)
    # one dataset.json that both tools read (nnU-Net ignores task_type)
    save_dataset_json(DatasetSpec(name="Bench", task_type="segmentation", channel_names={"0": "T1", "1": "FLAIR"},
                                  labels={"background": 0, "lesion": 1}, num_training=num_cases), folder)
    return folder


def make_corpus(raw_root: Path, num_scans: int, seed: int = 1) -> Path:
    folder = raw_root / f"Dataset{CORPUS_ID}_Corpus"
    if (folder / "manifest.json").is_file():
        return folder
    rng = np.random.default_rng(seed)
    source = folder / "source"
    images = []
    sequences = ("t1", "t2", "flair")
    index = 0
    subject = 0
    while index < num_scans:
        for session in range(1, int(rng.integers(1, 3)) + 1):
            for sequence in sequences[: int(rng.integers(2, 4))]:
                if index >= num_scans:
                    break
                shape = tuple(int(v) for v in rng.integers(48, 65, size=3))
                image, _ = synthetic_brain(shape, rng)
                relative = f"sub_{subject}/ses_{session}/{sequence}.nii.gz"
                save(source / relative, image, SPACINGS[index % len(SPACINGS)], ORIENTATIONS[index % 2])
                images.append(ManifestImage(f"sub_{subject}_ses_{session}_{sequence}", f"sub_{subject}",
                                            f"ses_{session}", sequence, relative))
                index += 1
        subject += 1
    save_manifest(Manifest(source_root=str(source), images=images, sources=["synthetic"]), folder)
    save_dataset_json(DatasetSpec(name="Corpus", task_type="pretraining", channel_names={"0": "mri"},
                                  num_training=len(images)), folder)
    return folder


# ---------------------------------------------------------------- measuring
def _rss_kb(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return 0


def _children(pid: int) -> list[int]:
    found = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{task}/children") as handle:
                found += [int(p) for p in handle.read().split()]
    except OSError:
        pass
    return found


def _tree(pid: int) -> list[int]:
    pids, frontier = [pid], [pid]
    while frontier:
        kids = [c for p in frontier for c in _children(p)]
        pids += kids
        frontier = kids
    return pids


def run_measured(command: list[str], env: dict) -> dict:
    """Wall time, peak single-process RSS and peak tree RSS (MB) of a command; raises on failure."""
    peak = {"process": 0, "tree": 0}
    load_before = os.getloadavg()[0]
    usage_before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    done = threading.Event()

    def sample():
        while not done.is_set():
            sizes = [_rss_kb(p) for p in _tree(process.pid)]
            if sizes:
                peak["process"] = max(peak["process"], max(sizes))
                peak["tree"] = max(peak["tree"], sum(sizes))
            time.sleep(0.1)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    output, _ = process.communicate()
    done.set()
    sampler.join()
    seconds = time.perf_counter() - started
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (usage.ru_utime - usage_before.ru_utime) + (usage.ru_stime - usage_before.ru_stime)
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{output[-3000:]}")
    return {"seconds": seconds, "cpu_seconds": cpu, "load_before": load_before,
            "peak_process_mb": peak["process"] / 1024, "peak_tree_mb": peak["tree"] / 1024, "output": output}


def fomo_env(root: Path) -> dict:
    return {**os.environ, "fomo_nn_raw": str(root / "raw"), "fomo_nn_preprocessed": str(root / "fomo_pre"),
            "fomo_nn_results": str(root / "fomo_results"), "PYTHONPATH": str(REPO)}


def nnunet_env(root: Path) -> dict:
    return {**os.environ, "nnUNet_raw": str(root / "raw"), "nnUNet_preprocessed": str(root / "nnunet_pre"),
            "nnUNet_results": str(root / "nnunet_results")}


def run_fomo(root: Path, dataset_id: int, workers: int) -> dict:
    shutil.rmtree(root / "fomo_pre", ignore_errors=True)
    command = [sys.executable, "-m", "fomo_nn.cli.plan_and_preprocess", "-d", str(dataset_id), "-np", str(workers),
               "--no-progress"]
    result = run_measured(command, fomo_env(root))
    match = re.search(r"preprocessed (\d+) case\(s\).* in ([\d.]+) s", result["output"])
    result["preprocess_seconds"] = float(match.group(2)) if match else None
    result["command"] = " ".join(command[1:])
    return result


def run_nnunet(root: Path, dataset_id: int, workers: int, venv: Path) -> dict:
    shutil.rmtree(root / "nnunet_pre", ignore_errors=True)
    command = [str(venv / "bin" / "nnUNetv2_plan_and_preprocess"), "-d", str(dataset_id), "-c", "3d_fullres",
               "-npfp", str(workers), "-np", str(workers), "--no_pbar"]
    result = run_measured(command, nnunet_env(root))
    result["command"] = " ".join(command[0:1][0].split("/")[-1:] + command[1:])
    return result


def summarize(runs: list[dict]) -> dict:
    return {"best_seconds": min(r["seconds"] for r in runs), "all_seconds": [round(r["seconds"], 1) for r in runs],
            "cpu_seconds": [round(r["cpu_seconds"], 1) for r in runs],
            "load_before": [round(r["load_before"], 1) for r in runs],
            "peak_process_mb": max(r["peak_process_mb"] for r in runs),
            "peak_tree_mb": max(r["peak_tree_mb"] for r in runs), "command": runs[0]["command"]}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workdir", type=Path, default=Path("/tmp/fomo_nn_bench_preprocessing"))
    parser.add_argument("--cases", type=int, default=20)
    parser.add_argument("--corpus", type=int, default=500)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--nnunet-venv", type=Path, default=Path("/tmp/nnunet_venv"))
    parser.add_argument("--skip-nnunet", action="store_true")
    parser.add_argument("--skip-corpus", action="store_true")
    args = parser.parse_args(argv)
    root = args.workdir
    results = {"cpu_count": os.cpu_count(), "workers": args.workers}

    started = time.perf_counter()
    make_segmentation_dataset(root / "raw", args.cases)
    if not args.skip_corpus:
        make_corpus(root / "raw", args.corpus)
    print(f"data ready in {time.perf_counter() - started:.0f} s under {root / 'raw'}", flush=True)

    have_nnunet = (args.nnunet_venv / "bin" / "nnUNetv2_plan_and_preprocess").is_file() and not args.skip_nnunet
    fomo_runs, nnunet_runs = [], []
    for repeat in range(args.repeats):
        if have_nnunet:
            nnunet_runs.append(run_nnunet(root, SEG_ID, args.workers, args.nnunet_venv))
            print(f"nnU-Net run {repeat}: {nnunet_runs[-1]['seconds']:.1f} s", flush=True)
        fomo_runs.append(run_fomo(root, SEG_ID, args.workers))
        print(f"fomo_nn run {repeat}: {fomo_runs[-1]['seconds']:.1f} s", flush=True)
    results["segmentation"] = {"cases": args.cases, "fomo_nn": summarize(fomo_runs)}
    if have_nnunet:
        results["segmentation"]["nnunet"] = summarize(nnunet_runs)
        results["segmentation"]["speedup"] = (results["segmentation"]["nnunet"]["best_seconds"]
                                              / results["segmentation"]["fomo_nn"]["best_seconds"])
        plans = json.loads((root / "nnunet_pre" / f"Dataset{SEG_ID}_Bench" / "nnUNetPlans.json").read_text())
        fullres = plans["configurations"]["3d_fullres"]
        results["segmentation"]["nnunet_plan"] = {"spacing": fullres["spacing"], "patch": fullres["patch_size"],
                                                  "batch": fullres["batch_size"]}
    ours = json.loads((root / "fomo_pre" / f"Dataset{SEG_ID}_Bench" / "plans.json").read_text())
    results["segmentation"]["fomo_nn_plan"] = {"spacing": ours["target_spacing"], "patch": ours["patch_size"],
                                               "batch": ours["batch_size"]}

    if not args.skip_corpus:
        corpus = {}
        for workers in (1, 2):
            runs = [run_fomo(root, CORPUS_ID, workers) for _ in range(args.repeats)]
            run = min(runs, key=lambda r: r["seconds"])
            corpus[f"{workers}_workers"] = {
                "seconds": run["seconds"], "all_seconds": [round(r["seconds"], 1) for r in runs],
                "cpu_seconds": run["cpu_seconds"], "load_before": [round(r["load_before"], 1) for r in runs],
                "scans_per_s_total": args.corpus / run["seconds"], "preprocess_seconds": run["preprocess_seconds"],
                "scans_per_s_preprocess": args.corpus / run["preprocess_seconds"] if run["preprocess_seconds"] else None,
                "peak_process_mb": max(r["peak_process_mb"] for r in runs),
                "peak_tree_mb": max(r["peak_tree_mb"] for r in runs), "command": run["command"]}
            print(f"corpus, {workers} worker(s): {[round(r['seconds'], 1) for r in runs]} s", flush=True)
        results["corpus"] = {"scans": args.corpus, **corpus}

    print(json.dumps(results, indent=2))
    (root / "results.json").write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
