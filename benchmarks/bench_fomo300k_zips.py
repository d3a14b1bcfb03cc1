"""Zipped FOMO300K sessions: read each scan inside its zip, or extract the session once and read files?

Builds `--sessions` zipped sessions of `--scans` brain-like int16 volumes each (`--shape`, smooth
content plus noise so gzip ratios resemble real scans), stored in the zip as `.nii.gz` members
(ZIP_STORED, and with --deflated ZIP_DEFLATED on top, as a plain `zip -r` would make them), then times:

  in place   every member inflated from the zip and parsed by nibabel (header only, and full voxels)
  extract    fomo300k_zips.extract_session on every session (what `fomo_nn_convert fomo300k` does)
  files      the extracted files read by nibabel (header only, and full voxels)

and the disk each costs. Fingerprinting and preprocessing read every scan (the fingerprint a header
and a sample, preprocessing all voxels, a rerun again), so reading in place pays the inflation each
pass while extraction pays one copy. The page cache is warm (files just written).

    python benchmarks/bench_fomo300k_zips.py --sessions 12 --scans 3 --shape 160 192 160
"""
from __future__ import annotations

import argparse
import gzip
import shutil
import sys
import tempfile
import time
import zipfile
from pathlib import Path

import nibabel as nib
import numpy as np
from scipy import ndimage

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from dataset_conversion.fomo300k_zips import ZipJob, extract_session  # noqa: E402


def brain_like(shape, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    grid = np.indices(shape, dtype=np.float32)
    centre = (np.asarray(shape, dtype=np.float32) - 1) / 2
    radius = np.sqrt(sum(((g - c) / (0.42 * n)) ** 2 for g, c, n in zip(grid, centre, shape)))
    smooth = ndimage.gaussian_filter(rng.normal(0, 1, shape).astype(np.float32), 3)
    image = (600 + 2500 * smooth) * (radius < 1) + rng.normal(0, 30, shape) * (radius < 1)
    return np.clip(image, 0, 32767).astype(np.int16)


def build(root: Path, sessions: int, scans: int, shape, compression: int) -> list[Path]:
    archives = []
    payloads = [gzip.compress(nib.Nifti1Image(brain_like(shape, k), np.eye(4)).to_bytes(), compresslevel=6)
                for k in range(scans)]
    for s in range(sessions):
        path = root / f"PT001_Bench/sub-{s:03d}/ses-01.zip"
        path.parent.mkdir(parents=True, exist_ok=True)
        with zipfile.ZipFile(path, "w", compression) as archive:
            for k, payload in enumerate(payloads):
                archive.writestr(f"ses-01/anat/sub-{s:03d}_ses-01_run-{k + 1}_T1w.nii.gz", payload)
        archives.append(path)
    return archives


def read_in_place(archives, full: bool) -> float:
    start = time.perf_counter()
    for path in archives:
        with zipfile.ZipFile(path) as archive:
            for info in archive.infolist():
                with archive.open(info) as member:
                    if full:
                        image = nib.Nifti1Image.from_bytes(gzip.decompress(member.read()))
                        np.asanyarray(image.dataobj)
                    else:
                        with gzip.GzipFile(fileobj=member) as stream:
                            nib.Nifti1Header.from_fileobj(stream)
    return time.perf_counter() - start


def read_files(files, full: bool) -> float:
    start = time.perf_counter()
    for path in files:
        image = nib.load(str(path))
        if full:
            np.asanyarray(image.dataobj)
    return time.perf_counter() - start


def run(args, compression: int, label: str) -> dict:
    root = Path(tempfile.mkdtemp(prefix="bench_zips_", dir=args.tmp))
    try:
        archives = build(root, args.sessions, args.scans, tuple(args.shape), compression)
        zip_bytes = sum(p.stat().st_size for p in archives)
        result = {"label": label, "scans": args.sessions * args.scans, "zip_mb": zip_bytes / 1e6,
                  "in_place_header_s": read_in_place(archives, False), "in_place_full_s": read_in_place(archives, True)}
        start = time.perf_counter()
        for path in archives:
            outcome = extract_session(ZipJob(str(path), str(path.with_suffix("")), path.parent.name, "ses-01"))
            assert outcome.problem is None
        result["extract_s"] = time.perf_counter() - start
        files = sorted(root.rglob("*.nii.gz"))
        result["extracted_mb"] = sum(p.stat().st_size for p in files) / 1e6
        result["files_header_s"] = read_files(files, False)
        result["files_full_s"] = read_files(files, True)
        return result
    finally:
        shutil.rmtree(root, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=12)
    parser.add_argument("--scans", type=int, default=3)
    parser.add_argument("--shape", type=int, nargs=3, default=[160, 192, 160])
    parser.add_argument("--tmp", default=None, help="where the trees are built (default: the system temp folder)")
    args = parser.parse_args()
    rows = [run(args, zipfile.ZIP_STORED, "stored"), run(args, zipfile.ZIP_DEFLATED, "deflated")]
    print(f"{args.sessions} sessions x {args.scans} scans of {tuple(args.shape)} int16, nii.gz members")
    print("| zip members | zip MB | extracted MB | in place: headers / full read (s) | extract once (s) | "
          "files: headers / full read (s) | per scan: in place full / extract + full (ms) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        n = r["scans"]
        print(f"| {r['label']} | {r['zip_mb']:.1f} | {r['extracted_mb']:.1f} | {r['in_place_header_s']:.2f} / "
              f"{r['in_place_full_s']:.2f} | {r['extract_s']:.2f} | {r['files_header_s']:.3f} / {r['files_full_s']:.2f} "
              f"| {1000 * r['in_place_full_s'] / n:.0f} / {1000 * (r['extract_s'] + r['files_full_s']) / n:.0f} |")


if __name__ == "__main__":
    main()
