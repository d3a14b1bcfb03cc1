"""How fast does `fomo_nn_convert fomo60k` list a FOMO60K-sized tree?

Builds a FOMO60K-layout tree of tiny but valid `.nii.gz` files (8x8x8 int16 volumes; their bytes are
written directly, so building is quick), shaped like the real corpus (about 4.4 scans per session and
1.2 sessions per subject), then times the conversion with each check depth. The page cache is warm
(the tree was just written): a cold network disk lists slower.

    python benchmarks/bench_fomo60k_convert.py --files 20000 -np 2
"""
from __future__ import annotations

import argparse
import gzip
import io
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

import nibabel as nib
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_conversion.fomo60k import convert_fomo60k  # noqa: E402

SEQUENCES = ["t1", "flair", "t2", "dwi_b1000", "adc", "swi", "t1_2", "scan_1"]


def tiny_nifti_bytes(seed: int) -> bytes:
    data = np.random.default_rng(seed).integers(0, 500, size=(8, 8, 8)).astype(np.int16)
    image = nib.Nifti1Image(data, np.diag([1.0, 1.0, 1.2, 1.0]))
    holder = io.BytesIO()
    file_map = nib.Nifti1Image.make_file_map({"image": holder})
    image.to_file_map(file_map)

    return gzip.compress(holder.getvalue(), compresslevel=1)


def build_tree(root: Path, n_files: int) -> tuple[int, int, int]:
    payloads = [tiny_nifti_bytes(seed) for seed in range(16)]
    written, subject, sessions = 0, 0, 0
    while written < n_files:
        subject += 1
        for session in range(1, 2 + (subject % 5 == 0)):  # every 5th subject has a second session
            folder = root / f"sub_{subject}" / f"ses_{session}"
            folder.mkdir(parents=True)
            sessions += 1
            for k in range(min(3 + (subject + session) % 4, n_files - written)):  # 3..6 scans per session
                (folder / f"{SEQUENCES[k]}.nii.gz").write_bytes(payloads[written % len(payloads)])
                written += 1
            if written >= n_files:
                break
    return written, subject, sessions


def timed(label: str, n_files: int, **kwargs) -> float:
    start = time.perf_counter()
    report = convert_fomo60k(progress=False, **kwargs)
    seconds = time.perf_counter() - start
    assert report.converted == n_files and not report.bad, report.summary()
    print(f"{label:<28} {seconds:8.2f} s  {n_files / seconds:10,.0f} files/s")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20000)
    parser.add_argument("-np", "--num-processes", type=int, default=2)
    parser.add_argument("--skip-full", action="store_true", help="do not time --check-images")
    args = parser.parse_args()

    workdir = Path(tempfile.mkdtemp(prefix="bench_fomo60k_"))
    os.environ["fomo_nn_raw"] = str(workdir / "raw")
    try:
        start = time.perf_counter()
        n, subjects, sessions = build_tree(workdir / "corpus", args.files)
        print(f"built {n} files ({subjects} subjects, {sessions} sessions) in {time.perf_counter() - start:.1f} s")
        common = dict(src=workdir / "corpus", dataset=1)
        timed("default (listing only)", n, **common)
        timed("rerun (idempotent)", n, **common)
        timed(f"--check-headers -np {args.num_processes}", n, check="header", num_processes=args.num_processes,
              **common)
        if not args.skip_full:
            timed(f"--check-images -np {args.num_processes}", n, check="full", num_processes=args.num_processes,
                  **common)
        size = (workdir / "raw" / "Dataset001_FOMO60K" / "manifest.json").stat().st_size
        print(f"manifest.json: {size / 1e6:.1f} MB")
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
