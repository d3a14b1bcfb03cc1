#!/usr/bin/env python3
"""Check a FOMO25 submission container the way the challenge validator did.

For one task it runs `python /app/predict.py --<sequence> /input/ses_1/<file> ... --output /output/<sub>.<ext>`
with the subject folder bound read-only at /input and an empty writable /output, then checks:
exit status 0 within the time limit; /input unchanged; exactly the output file appears in /output (nothing else, no
temporary leftovers); task 1: a .txt with one float in [0, 1]; task 2: a NIfTI with the FLAIR's
shape and affine and values exactly {0, 1}; task 3: a .txt with one finite float (the age).
Tasks 1 and 2 are run once with --swi and once with --t2s (the validator passed whichever existed).

    python container/check_container.py --task 2 --image fomo_nn_task2.sif            # apptainer
    python container/check_container.py --task 2 --docker fomo_nn_task2               # docker
    python container/check_container.py --task 2 --direct --model MODEL_DIR           # no image: runs
                                                                                      # container/predict.py
Without --input a synthetic subject is written (oblique, LPS-stored, anisotropic int16 scans);
--input SUBJECT_DIR uses a real one (SUBJECT_DIR/ses_1/<sequence>.nii.gz).
Exit status 0 when every check passed.
"""
from __future__ import annotations

import argparse
import math
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

HERE = Path(__file__).resolve().parent
TASK_SEQUENCES = {1: ("flair", "adc", "dwi_b1000"), 2: ("flair", "dwi_b1000"), 3: ("t1", "t2")}
TASK_OUTPUT_ENDING = {1: ".txt", 2: ".nii.gz", 3: ".txt"}
SWI_OR_T2S = ("swi", "t2s")
SUBJECT = "sub_1"


@dataclass
class CheckResult:
    name: str
    passed: bool = True
    problems: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def fail(self, problem: str) -> None:
        self.passed = False
        self.problems.append(problem)


# ------------------------------------------------------------------------------------------------ input
def synthetic_affine(spacing=(1.0, 1.2, 3.0), degrees: float = 12.0) -> np.ndarray:
    """LPS-stored (x and y flipped), rotated about z and tilted about x, anisotropic: what hospitals send."""
    a, b = math.radians(degrees), math.radians(degrees / 2)
    rot_z = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    rot_x = np.array([[1, 0, 0], [0, math.cos(b), -math.sin(b)], [0, math.sin(b), math.cos(b)]])
    affine = np.eye(4)
    affine[:3, :3] = rot_z @ rot_x @ np.diag([-1.0, -1.0, 1.0]) @ np.diag(spacing)
    affine[:3, 3] = [60.0, 70.0, -30.0]
    return affine


def write_synthetic_subject(subject_dir: Path, sequences, shape=(56, 48, 20), seed: int = 0) -> dict[str, Path]:
    """A skull-stripped-looking head (ellipsoid with texture and a bright blob) per sequence, int16 NIfTI."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.85, 0.9, 0.8])[:, None, None, None]) ** 2).sum(0))
    blob = (((grid - np.array([0.3, -0.2, 0.1])[:, None, None, None]) ** 2).sum(0)) < 0.05
    affine = synthetic_affine()
    session = subject_dir / "ses_1"
    session.mkdir(parents=True, exist_ok=True)
    files = {}
    for index, sequence in enumerate(sequences):
        image = (radius < 1) * (400 + 80 * index + 60 * rng.standard_normal(shape) + 500 * blob)
        nifti = nib.Nifti1Image(np.clip(image, 0, None).astype(np.int16), affine)
        nifti.set_qform(affine, code=1)
        nifti.set_sform(affine, code=1)
        files[sequence] = session / f"{sequence}.nii.gz"
        nib.save(nifti, str(files[sequence]))
    return files


def make_read_only(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def make_writable(root: Path) -> None:
    for folder, _, names in os.walk(root):
        os.chmod(folder, stat.S_IRWXU)
        for name in names:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IWUSR)


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file: /input must be unchanged (root ignores the read-only bits in --direct)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def find_sequence(subject_dir: Path, sequence: str) -> Path | None:
    for folder in (subject_dir / "ses_1", subject_dir):
        for ending in (".nii.gz", ".nii"):
            candidate = folder / f"{sequence}{ending}"
            if candidate.is_file():
                return candidate
    return None


# ------------------------------------------------------------------------------------------------ runners
def predict_arguments(task: int, files: dict[str, Path], variant: str | None, input_root: str, subject_dir: Path,
                      output: str) -> list[str]:
    """`--flair /input/ses_1/flair.nii.gz ... --output /output/sub_1.txt` with paths as the container sees them."""
    arguments = []
    for sequence in TASK_SEQUENCES[task] + ((variant,) if variant else ()):
        relative = files[sequence].relative_to(subject_dir).as_posix()
        arguments += [f"--{sequence}", f"{input_root}/{relative}"]
    return arguments + ["--output", output]


def container_command(args, task_arguments: list[str], subject_dir: Path, output_dir: Path) -> tuple[list[str], dict]:
    env = dict(os.environ)
    if args.direct:
        env["FOMO_NN_MODEL"] = str(Path(args.model).resolve())
        return [sys.executable, str(HERE / "predict.py"), *task_arguments], env
    if args.docker:
        gpu = ["--gpus", "all"] if args.gpu else []
        return ["docker", "run", "--rm", "--network", "none", *gpu, "-v", f"{subject_dir}:/input:ro",
                "-v", f"{output_dir}:/output", args.docker, "python", "/app/predict.py", *task_arguments], env
    gpu = ["--nv"] if args.gpu else []
    return ["apptainer", "exec", *gpu, "--containall", "--bind", f"{subject_dir}:/input:ro",
            "--bind", f"{output_dir}:/output", args.image, "python", "/app/predict.py", *task_arguments], env


# ------------------------------------------------------------------------------------------------ checks
def read_single_float(path: Path, result: CheckResult) -> float | None:
    text = path.read_text()
    tokens = text.split()
    if len(tokens) != 1:
        result.fail(f"{path.name} must hold exactly one number, holds {text[:60]!r}")
        return None
    try:
        value = float(tokens[0])
    except ValueError:
        result.fail(f"{path.name} holds {tokens[0]!r}, not a number")
        return None
    if not math.isfinite(value):
        result.fail(f"{path.name} holds {value}, not a finite number")
        return None
    return value


def check_output(task: int, output: Path, flair: Path | None, result: CheckResult) -> None:
    if task in (1, 3):
        value = read_single_float(output, result)
        if value is None:
            return
        if task == 1 and not 0.0 <= value <= 1.0:
            result.fail(f"task 1 output {value} is not a probability in [0, 1]")
        if task == 3 and not 0.0 <= value <= 130.0:
            result.problems.append(f"note: predicted age {value} is outside 0-130 years")
        return
    mask = nib.load(str(output))
    reference = nib.load(str(flair))
    data = np.asanyarray(mask.dataobj)
    if data.shape != reference.shape:
        result.fail(f"mask shape {data.shape} differs from the FLAIR's {reference.shape}")
    if not np.allclose(mask.affine, reference.affine, atol=1e-4):
        result.fail(f"mask affine differs from the FLAIR's:\n{mask.affine}\nvs\n{reference.affine}")
    values = set(np.unique(data).tolist())
    if not values <= {0, 1}:
        result.fail(f"mask values {sorted(values)[:10]} are not exactly 0/1")


def run_check(args, task: int, variant: str | None, subject_dir: Path, files: dict[str, Path]) -> CheckResult:
    name = f"task {task}" + (f" (--{variant})" if variant else "")
    result = CheckResult(name)
    output_dir = Path(tempfile.mkdtemp(prefix=f"fomo_check_task{task}_"))
    output_name = f"{SUBJECT}{TASK_OUTPUT_ENDING[task]}"
    if args.direct:
        task_arguments = predict_arguments(task, files, variant, str(subject_dir), subject_dir,
                                           str(output_dir / output_name))
    else:
        task_arguments = predict_arguments(task, files, variant, "/input", subject_dir, f"/output/{output_name}")
    command, env = container_command(args, task_arguments, subject_dir, output_dir)
    before = tree_snapshot(subject_dir)
    start = time.perf_counter()
    try:
        completed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=args.time_limit * 3)
    except subprocess.TimeoutExpired:
        result.fail(f"did not finish within {args.time_limit * 3:.0f} s")
        return result
    result.seconds = time.perf_counter() - start
    if completed.returncode != 0:
        result.fail(f"exit status {completed.returncode}; stderr tail:\n{completed.stderr[-2000:]}")
    if result.seconds > args.time_limit:
        result.fail(f"took {result.seconds:.1f} s, over the {args.time_limit:.0f} s limit")
    if tree_snapshot(subject_dir) != before:
        result.fail("the input folder was modified (it is mounted read-only in the challenge)")
    produced = sorted(p.name for p in output_dir.iterdir())
    if produced != [output_name]:
        result.fail(f"/output holds {produced}, expected exactly [{output_name!r}]")
    output = output_dir / output_name
    if output.is_file():
        try:
            check_output(task, output, files.get("flair"), result)
        except Exception as error:
            result.fail(f"output unreadable: {type(error).__name__}: {error}")
    if args.keep:
        result.problems.append(f"note: outputs kept in {output_dir}")
    else:
        shutil.rmtree(output_dir, ignore_errors=True)
    return result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--task", type=int, choices=(1, 2, 3), required=True)
    runner = parser.add_mutually_exclusive_group(required=True)
    runner.add_argument("--image", help="Apptainer image (.sif) to check")
    runner.add_argument("--docker", help="Docker image name to check")
    runner.add_argument("--direct", action="store_true", help="run container/predict.py with this python (no image)")
    parser.add_argument("--model", help="model folder for --direct (what the image holds at /app/model)")
    parser.add_argument("--input", help="subject folder (SUBJECT/ses_1/<sequence>.nii.gz); default: synthetic")
    parser.add_argument("--variant", choices=("swi", "t2s", "both"), default="both",
                        help="tasks 1-2: pass --swi, --t2s or run both (default both)")
    parser.add_argument("--time-limit", type=float, default=120.0, help="seconds per case (FOMO25: 120 on one H100)")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false", help="do not expose GPUs (--nv / --gpus all)")
    parser.add_argument("--keep", action="store_true", help="keep the output folders")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.direct and not args.model:
        parser.error("--direct needs --model MODEL_DIR")
    variants = [None] if args.task == 3 else (list(SWI_OR_T2S) if args.variant == "both" else [args.variant])
    workspace = Path(tempfile.mkdtemp(prefix="fomo_check_input_"))
    try:
        if args.input:
            subject_dir = Path(args.input).resolve()
            files = {}
            for sequence in TASK_SEQUENCES[args.task] + tuple(v for v in variants if v):
                found = find_sequence(subject_dir, sequence)
                if found is None:
                    parser.error(f"{subject_dir} has no ses_1/{sequence}.nii.gz needed for task {args.task}")
                files[sequence] = found
        else:
            subject_dir = workspace / SUBJECT
            files = write_synthetic_subject(subject_dir, TASK_SEQUENCES[args.task] + tuple(v for v in variants if v))
            make_read_only(subject_dir)  # what /input:ro does to the container
        results = [run_check(args, args.task, variant, subject_dir, files) for variant in variants]
    finally:
        make_writable(workspace)
        shutil.rmtree(workspace, ignore_errors=True)
    for result in results:
        status = "PASS" if result.passed else "FAIL"
        print(f"{status}  {result.name}  {result.seconds:.1f} s")
        for problem in result.problems:
            print(f"      {problem}")
    return 0 if all(r.passed for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
