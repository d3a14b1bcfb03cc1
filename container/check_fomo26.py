#!/usr/bin/env python3
"""Check a FOMO26 submission the way the organisers' validator does, and say which rule a failure breaks.

The validator is fomo26/container_templates, container_validator/ @ d442af2 (validate.py, tasks.py,
preflight.py, preinference.py, runner.py, container_tests.py, output_text.py, output_nifti.py,
output_numpy.py). Its checks are re-implemented (not imported or copied): the rules, pure functions, in
fomo26_rules.py (what each task takes and writes read from fomo_nn.challenges' FOMO26 rows: flags,
output ending, probability or not, largest label); this module runs them as the validator does.
 0. preflight: the host is Linux; `apptainer --version`; unless --no-gpu `nvidia-smi` and `nvidia-smi -L`
    listing a GPU (preflight.py);
 1. the image: it exists, is a readable regular file (an uploaded project folder is not), ends in `.sif`;
    every subject has every input its task needs, one of `t2s`/`swi` where the task takes either
    (preinference.py);
 2. `apptainer instance start [--nvccli] --bind IN:/input:ro --bind OUT:/output:rw --bind TMP:/tmp:rw
    IMAGE NAME` (120 s); `apptainer exec instance://NAME python --version`; unless --no-gpu
    `nvidia-smi -L` inside, listing a GPU (runner.py, container_tests.py);
 3. per subject: IN and OUT emptied, the subject's files copied into IN under their own names, then
    `apptainer exec instance://NAME python /app/predict.py --<key> /input/<file> ... --output
    /output/<subject><ending>` (timeout --timeout, 900 s as the validator's default); where a task takes
    t2s or swi the first of the two the subject has is passed (t2s before swi), never both
    (validate.py _build_predict_args); a non-zero exit or a timeout fails the subject;
 4. its output exists and is not empty, then: `.txt` valid UTF-8, exactly one token, a float, finite, in
    [0, 1] for a probability; NIfTI: loads as NIfTI-1/2 with a finite, non-zero affine, is 3-D, integer
    (or integer-valued float) data, finite, the shape of one of the subject's inputs, labels in
    [0, largest label]; `.npy`: loads without pickle, floating, 1-D after squeezing, finite, and every
    subject's embedding of one length (output_*.py, validate.py _validate_output_format).
fomo_nn's checks on top: the image is built for amd64, the evaluation machines' architecture (the SIF
header's arch field, sylabs/sif pkg/sif/sif.go @ 9f7fef4; corrupted_test_builds task2_v3 is an arm64
build the validator does not see); IN unchanged; OUT holding only the output; a mask's affine equal to
the input of its shape and its values among the task's labels; an embedding exactly 1-D float32; each
case within the 120 s limit (fomo26.github.io; CPU seconds here are an upper bound for the H100); and a
failed prediction's likely cause named (a missing module, a CUDA call without a GPU, flags the script
does not take, an assert).
"""
from __future__ import annotations

import argparse
import math
import os
import platform
import re
import shutil
import stat
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo26_rules import (EDITION, Check, ValidatorTask, inputs_mapped, length_consistency, output_checks,
                          predict_arguments, validator_tasks)

HERE = Path(__file__).resolve().parent
VALIDATOR = "fomo26/container_templates container_validator @ d442af2"
TIME_LIMIT_S = 120.0  # per case, on one 80 GB H100 with 32 CPUs (fomo26.github.io)
VALIDATOR_TIMEOUT_S = 900  # validate.py --timeout default
INSTANCE_START_TIMEOUT_S = 120  # runner.py start_instance
PROBE_TIMEOUT_S = 60  # container_tests.py: python --version, nvidia-smi -L
SIF_MAGIC = b"SIF_MAGIC\x00"  # sylabs/sif sif.go: launch script (32 bytes), magic (10), version (3), arch (3)
SIF_ARCHES = {b"01": "386", b"02": "amd64", b"03": "arm", b"04": "arm64", b"05": "ppc64", b"06": "ppc64le",
              b"07": "mips", b"08": "mipsle", b"09": "mips64", b"10": "mips64le", b"11": "s390x"}
EVALUATION_ARCH = "amd64"


@dataclass
class Outcome:
    checks: list[Check] = field(default_factory=list)  # the validator's, in its order
    problems: list[str] = field(default_factory=list)  # fomo_nn's
    notes: list[str] = field(default_factory=list)
    seconds: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None  # the phase the validator stopped in

    @property
    def validator_ok(self) -> bool:
        return self.stopped is None and all(c.passed for c in self.checks)

    @property
    def fomo_nn_ok(self) -> bool:
        return not self.problems

    def first_failure(self) -> Check | None:
        return next((c for c in self.checks if not c.passed), None)


def fomo_nn_output_problems(task: ValidatorTask, path: Path, inputs: dict[str, Path]) -> list[str]:
    """Stricter than the validator: a mask on its input's grid with the task's labels; a 1-D float32 vector."""
    problems = []
    if task.output_format == "nifti":
        mask = nib.load(str(path))
        same_shape = [(key, nib.load(str(p))) for key, p in inputs.items() if nib.load(str(p)).shape[:3] == mask.shape]
        if same_shape and not any(np.allclose(mask.affine, ref.affine, atol=1e-4) for _, ref in same_shape):
            problems.append(f"the mask's affine differs from that of --{same_shape[0][0]}, the input of its shape")
        values = set(np.unique(np.asanyarray(mask.dataobj)).tolist())
        if not values <= set(task.labels):
            problems.append(f"mask values {sorted(values)[:10]} are not among the task's labels {list(task.labels)}")
    elif task.output_format == "numpy":
        array = np.load(str(path), allow_pickle=False)
        if array.ndim != 1 or array.dtype != np.float32:
            problems.append(f"the embedding is {array.dtype} of shape {array.shape}; fomo_nn writes 1-D float32 "
                            "(the validator squeezes and takes any float)")
    return problems


# ------------------------------------------------------------------------------------ why a prediction failed
CAUSES = (
    (re.compile(r"ModuleNotFoundError: No module named '([^']+)'"),
     "missing dependency: the image does not install {0!r} (corrupted_test_builds task6_v2)"),
    (re.compile(r"unrecognized arguments: (.+)|the following arguments are required: (.+)"),
     "predict.py does not take the validator's arguments ({0}); it must accept exactly the task's flags "
     "(corrupted_test_builds task4_v1)"),
    (re.compile(r"AttributeError: 'Namespace' object has no attribute '([^']+)'"),
     "predict.py reads the argument {0!r}, which its parser does not define: it must read the flags the "
     "validator passes (corrupted_test_builds task4_v1)"),
    (re.compile(r"(Torch not compiled with CUDA enabled|No CUDA GPUs are available|Found no NVIDIA driver|"
                r"CUDA driver initialization failed|no CUDA-capable device)"),
     "predict.py uses CUDA but the container has none ({0}): the image needs a CUDA build of torch and the "
     "instance a GPU (--nvccli); fall back to the CPU when none is visible (corrupted_test_builds task2_v1)"),
    (re.compile(r"AssertionError(.*)"), "an assert failed in predict.py{0} (corrupted_test_builds task7_v1)"),
)


def failure_cause(stderr: str) -> str | None:
    for pattern, text in CAUSES:
        match = pattern.search(stderr)
        if match:
            found = next((g for g in match.groups() if g), "")
            return text.format(found.strip()[:200])
    return None


def sif_architecture(path: Path) -> tuple[str | None, str | None]:
    """(architecture, problem) from a SIF file's global header."""
    with open(path, "rb") as handle:
        header = handle.read(48)
    if header[32:42] != SIF_MAGIC:
        return None, f"{path.name} is not a SIF image (no SIF_MAGIC in its header)"
    return SIF_ARCHES.get(header[45:47], f"unknown ({header[45:48]!r})"), None


# ------------------------------------------------------------------------------------ subjects
def load_manifest(path: Path, task: ValidatorTask) -> list[tuple[str, dict[str, Path]]]:
    """The validator's data/manifest.yaml: task id -> subject -> inputs: key -> path relative to the manifest."""
    import yaml

    raw = yaml.safe_load(path.read_text()) or {}
    if task.task_id not in raw:
        raise SystemExit(f"[FAIL] Task {task.task_id!r} not in manifest {path}. Available: {list(raw) or '(none)'}")
    return [(str(sid), {key: (path.parent / rel).resolve() for key, rel in (spec or {}).get("inputs", {}).items()})
            for sid, spec in raw[task.task_id].items()]


def synthetic_affine(spacing, degrees: float, flips=(-1.0, -1.0, 1.0)) -> np.ndarray:
    """Oblique, anisotropic, stored with flipped axes: what hospital scans look like."""
    a = math.radians(degrees)
    rotation = np.array([[math.cos(a), -math.sin(a), 0], [math.sin(a), math.cos(a), 0], [0, 0, 1]])
    affine = np.eye(4)
    affine[:3, :3] = rotation @ np.diag(flips) @ np.diag(spacing)
    affine[:3, 3] = [50.0, 60.0, -20.0]
    return affine


def write_scan(path: Path, shape, affine, seed: int) -> Path:
    """A skull-stripped-looking head with texture and a bright blob, int16."""
    rng = np.random.default_rng(seed)
    grid = np.stack(np.meshgrid(*[np.linspace(-1, 1, s) for s in shape], indexing="ij"))
    radius = np.sqrt(((grid / np.array([0.85, 0.9, 0.8])[:, None, None, None]) ** 2).sum(0))
    blob = (((grid - np.array([0.3, -0.2, 0.1])[:, None, None, None]) ** 2).sum(0)) < 0.05
    image = (radius < 1) * (400 + 60 * rng.standard_normal(shape) + 500 * blob)
    nifti = nib.Nifti1Image(np.clip(image, 0, None).astype(np.int16), affine)
    nifti.set_qform(affine, code=1)
    nifti.set_sform(affine, code=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nifti, str(path))
    return path


GEOMETRIES = (((48, 40, 18), (1.0, 1.2, 3.0), 12.0), ((40, 44, 20), (1.1, 1.0, 2.5), -8.0))
SESSION_KINDS = {"swi": ("swi",), "t2s": ("t2s",), "swi+t2s": ("swi", "t2s")}


def synthetic_subjects(root: Path, task: ValidatorTask, sessions) -> list[tuple[str, dict[str, Path]]]:
    """As the validator's manifest: for a task taking t2s or swi one subject per kind of session (`sessions`),
    for embeddings two subjects of different shape and geometry, else one subject."""
    groups = [options for options in task.inputs if len(options) > 1]
    fixed = [options[0] for options in task.inputs if len(options) == 1]
    if groups:
        plans = [(f"sub_{kind.replace('+', '_')}", fixed + list(SESSION_KINDS[kind])) for kind in sessions]
    elif task.output_format == "numpy":
        plans = [(f"case_{i:03d}", fixed) for i in (1, 2)]
    else:
        plans = [("case_001", fixed)]
    subjects = []
    for index, (sid, keys) in enumerate(plans):
        shape, spacing, degrees = GEOMETRIES[index % len(GEOMETRIES)]
        affine = synthetic_affine(spacing, degrees)
        files = {key: write_scan(root / sid / f"{key}.nii.gz", shape, affine, seed=10 * index + k)
                 for k, key in enumerate(keys)}
        subjects.append((sid, files))
    return subjects


# ------------------------------------------------------------------------------------ runners
@dataclass
class Completed:
    returncode: int
    stdout: str
    stderr: str
    timed_out: bool = False


def run_command(command: list[str], timeout: float, env: dict | None = None) -> Completed:
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout, env=env)
        return Completed(done.returncode, done.stdout, done.stderr)
    except subprocess.TimeoutExpired:
        return Completed(-1, "", f"timed out after {timeout}s", timed_out=True)
    except FileNotFoundError as error:
        return Completed(127, "", str(error))


def gpu_list_check(name: str, completed: Completed, where: str) -> Check:
    if not completed.returncode == 0:
        return Check(name, False,
                     f"nvidia-smi -L failed{where} (rc={completed.returncode}): {completed.stderr.strip()}")
    gpus = [line for line in completed.stdout.splitlines() if line.strip().startswith("GPU")]
    return Check(name, bool(gpus), f"{len(gpus)} GPU(s) found{where}" if gpus
                 else f"nvidia-smi -L listed no GPUs{where}")


class ApptainerRunner:
    """The validator's own commands (runner.py)."""

    def __init__(self, image: Path, executable: str, gpu: bool, env: dict):
        self.image, self.executable, self.gpu, self.env = image, executable, gpu, env
        self.instance = f"fomo_val_{uuid.uuid4().hex[:8]}"

    def preflight_tool(self) -> Check:
        done = run_command([self.executable, "--version"], 15, self.env)
        if done.returncode == 127:
            return Check("apptainer_is_installed", False,
                         f"{self.executable!r} not found on PATH — install Apptainer")
        ok = done.returncode == 0
        return Check("apptainer_is_installed", ok, (done.stdout.strip() or "version OK") if ok else
                     f"failed: {done.stderr.strip()}")

    def image_checks(self) -> list[Check]:
        path = self.image
        checks = [Check("container_file_exists", path.exists(),
                        str(path) if path.exists() else f"No file found at {path}")]
        if not path.exists():
            return checks
        if not path.is_file():
            return checks + [Check("container_file_is_readable", False, f"{path} is not a regular file")]
        if not os.access(path, os.R_OK):
            return checks + [Check("container_file_is_readable", False, f"{path} is not readable")]
        checks.append(Check("container_file_is_readable", True, "Readable regular file"))
        ok = path.suffix.lower() == ".sif"
        checks.append(Check("container_has_valid_extension", ok, ".sif extension OK" if ok else
                            f"Expected .sif extension, got {path.suffix!r}"))
        return checks

    def fomo_nn_image_problems(self) -> list[str]:
        if not self.image.is_file():
            return []
        arch, problem = sif_architecture(self.image)
        if problem:
            return [problem]
        if arch != EVALUATION_ARCH:
            return [f"the image is built for {arch}; the organisers run it on {EVALUATION_ARCH} (x86_64): build with "
                    f"`apptainer build --arch amd64` (corrupted_test_builds task2_v3; the validator does not see this)"]
        return []

    def start(self, input_dir: Path, output_dir: Path, tmp_dir: Path) -> Completed:
        command = [self.executable, "instance", "start", *(["--nvccli"] if self.gpu else []),
                   "--bind", f"{input_dir}:/input:ro", "--bind", f"{output_dir}:/output:rw",
                   "--bind", f"{tmp_dir}:/tmp:rw", str(self.image), self.instance]
        return run_command(command, INSTANCE_START_TIMEOUT_S, self.env)

    def execute(self, command: list[str], timeout: float) -> Completed:
        return run_command([self.executable, "exec", f"instance://{self.instance}", *command], timeout, self.env)

    def stop(self) -> None:
        run_command([self.executable, "instance", "stop", self.instance], 60, self.env)

    def predict_command(self, arguments_for) -> list[str]:
        return ["python", "/app/predict.py", *arguments_for("/input", "/output")]


class DirectRunner:
    """No image: the /app folder's predict.py with this Python; IN/OUT/TMP are real folders, the GPU hidden
    unless the instance would get one (--nvccli)."""

    def __init__(self, app_dir: Path, gpu: bool, env: dict):
        self.app_dir, self.gpu, self.env = app_dir, gpu, dict(env)
        self.input_dir = self.output_dir = None

    def preflight_tool(self) -> Check:
        return Check("apptainer_is_installed", True, "--direct: no Apptainer used")

    def image_checks(self) -> list[Check]:
        ok = (self.app_dir / "predict.py").is_file()
        return [Check("container_file_exists", ok, f"--direct: {self.app_dir}/predict.py" if ok else
                      f"No file found at {self.app_dir / 'predict.py'}")]

    def fomo_nn_image_problems(self) -> list[str]:
        return []

    def start(self, input_dir: Path, output_dir: Path, tmp_dir: Path) -> Completed:
        self.input_dir, self.output_dir = input_dir, output_dir
        self.env["TMPDIR"] = str(tmp_dir)  # the /tmp bind
        if not self.gpu:  # without --nvccli the container sees no GPU
            self.env["CUDA_VISIBLE_DEVICES"] = ""
        return Completed(0, "", "")

    def execute(self, command: list[str], timeout: float) -> Completed:
        if command[:1] == ["python"]:
            command = [sys.executable, *command[1:]]
        return run_command(command, timeout, self.env)

    def stop(self) -> None:
        pass

    def predict_command(self, arguments_for) -> list[str]:
        return ["python", str(self.app_dir / "predict.py"), *arguments_for(str(self.input_dir), str(self.output_dir))]


# ------------------------------------------------------------------------------------ the run
def preflight(runner, gpu: bool) -> list[Check]:
    """preflight.py: Linux, the tool, and (unless --no-gpu) the host's driver and GPUs."""
    system = platform.system()
    checks = [Check("host_is_linux", system == "Linux", "Linux OK" if system == "Linux" else
                    f"Host OS is {system!r} — Apptainer requires Linux"), runner.preflight_tool()]
    if gpu:
        driver = run_command(["nvidia-smi"], 20)
        checks.append(Check("nvidia_driver_available", driver.returncode == 0, "NVIDIA driver OK"
                            if driver.returncode == 0 else f"nvidia-smi failed: {driver.stderr.strip()[:200]}"))
        if driver.returncode == 0:
            checks.append(gpu_list_check("nvidia_gpu_available", run_command(["nvidia-smi", "-L"], 20), ""))
    return checks


def clear(folder: Path) -> None:
    os.chmod(folder, stat.S_IRWXU)
    for item in folder.iterdir():
        if item.is_dir() and not item.is_symlink():
            shutil.rmtree(item)
        else:
            item.unlink()


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


def run_subject(runner, task: ValidatorTask, sid: str, files: dict[str, Path], folders, timeout: float,
                time_limit: float, outcome: Outcome, lengths: dict[str, int]) -> None:
    input_dir, output_dir, _ = folders
    clear(input_dir)
    clear(output_dir)
    for source in files.values():
        if not source.is_file():
            outcome.checks.append(Check("prediction_runs_successfully", False, f"Input file not found: {source}", sid))
            return
        shutil.copy2(source, input_dir / source.name)
    os.chmod(input_dir, stat.S_IRUSR | stat.S_IXUSR)  # what :ro does to the container
    output_name = f"{sid}{task.output_ending}"
    command = runner.predict_command(lambda i, o: predict_arguments(task, files, output_name, i, o))
    outcome.notes.append(f"{sid}: {' '.join(command)}")
    before = tree_snapshot(input_dir)
    start = time.perf_counter()
    done = runner.execute(command, timeout)
    seconds = time.perf_counter() - start
    outcome.seconds[sid] = seconds
    if done.timed_out:
        outcome.checks.append(Check("prediction_runs_successfully", False,
                                    f"predict.py timed out after {timeout}s", sid))
        return
    if done.returncode != 0:
        outcome.checks.append(Check("prediction_runs_successfully", False, f"predict.py exited with "
                                    f"rc={done.returncode}\n      stderr: {done.stderr.strip()[:500]}", sid))
        cause = failure_cause(done.stderr)
        outcome.problems.append(f"{sid}: " + (cause or f"predict.py failed: {done.stderr.strip()[-300:]}"))
        return
    outcome.checks.append(Check("prediction_runs_successfully", True, "rc=0" + (
        f" — stdout: {done.stdout.strip()[:200]}" if done.stdout.strip() else ""), sid))
    if seconds > time_limit:
        outcome.problems.append(f"{sid}: took {seconds:.1f} s, over the {time_limit:.0f} s per-case limit "
                                "(fomo26.github.io; seconds on a CPU are an upper bound for the H100)")
    if tree_snapshot(input_dir) != before:
        outcome.problems.append(f"{sid}: the input folder was modified (the validator binds it read-only)")
    output = output_dir / output_name
    produced = sorted(p.name for p in output_dir.iterdir())
    if produced != [output_name] and output.exists():
        outcome.problems.append(f"{sid}: the output folder holds {produced}, expected only {output_name}")
    exists = output.is_file()
    outcome.checks.append(Check("output_file_exists", exists, str(output) if exists else
                                f"predict.py produced no output at {output}", sid))
    if not exists:
        if produced:
            outcome.problems.append(f"{sid}: predict.py wrote {produced} instead of {output_name}")
        return
    size = output.stat().st_size
    outcome.checks.append(Check("output_file_is_not_empty", size > 0, f"{size} bytes" if size else
                                "Output file is empty", sid))
    if not size:
        return
    checks, length = output_checks(task, output, sid, {key: input_dir / p.name for key, p in files.items()})
    outcome.checks += checks
    if all(c.passed for c in checks):
        outcome.problems += [f"{sid}: {p}" for p in fomo_nn_output_problems(
            task, output, {key: input_dir / p.name for key, p in files.items()})]
        if length is not None:
            lengths[sid] = length


def validate(runner, task: ValidatorTask, subjects, gpu: bool, timeout: float, time_limit: float,
             workspace: Path) -> Outcome:
    outcome = Outcome()
    outcome.checks += preflight(runner, gpu)
    if not all(c.passed for c in outcome.checks):
        outcome.stopped = "PREFLIGHT FAILED"
        return outcome
    phase1 = runner.image_checks()
    outcome.problems += runner.fomo_nn_image_problems()
    phase1.append(inputs_mapped(task, subjects))
    for check in phase1:
        outcome.checks.append(check)
        if not check.passed:
            outcome.stopped = "PHASE 1 FAILED"
            return outcome
    folders = tuple(workspace / name for name in ("input", "output", "tmp"))
    for folder in folders:
        folder.mkdir(parents=True, exist_ok=True)
    started = runner.start(*folders)
    if started.returncode != 0 or started.timed_out:
        outcome.checks.append(Check("container_instance_start", False, started.stderr.strip() or
                                    f"rc={started.returncode}"))
        outcome.stopped = "INSTANCE START FAILED"
        return outcome
    try:
        version = runner.execute(["python", "--version"], PROBE_TIMEOUT_S)
        ok = version.returncode == 0
        outcome.checks.append(Check("container_can_be_executed", ok, (version.stdout.strip() or version.stderr.strip())
                                    if ok else f"python --version failed (rc={version.returncode}): "
                                               f"{version.stderr.strip()}"))
        if gpu and ok:
            outcome.checks.append(gpu_list_check("container_can_access_gpu",
                                                 runner.execute(["nvidia-smi", "-L"], PROBE_TIMEOUT_S),
                                                 " inside container"))
        if not all(c.passed for c in outcome.checks):
            outcome.stopped = "PHASE 2 FAILED"
            return outcome
        lengths: dict[str, int] = {}
        for sid, files in subjects:
            run_subject(runner, task, sid, files, folders, timeout, time_limit, outcome, lengths)
        if task.output_format == "numpy" and len(lengths) > 1:
            outcome.checks.append(length_consistency(lengths))
    finally:
        runner.stop()
        os.chmod(folders[0], stat.S_IRWXU)
    return outcome


def report(outcome: Outcome, task: ValidatorTask, time_limit: float) -> None:
    print(f"=== FOMO26 validator ({VALIDATOR}), {task.task_id} (FOMO26 task {' and '.join(map(str, task.numbers))})")
    for check in outcome.checks:
        print(f"  {check.line()}")
    if outcome.stopped:
        print(f"  [FAIL] {outcome.stopped} — stopping (as the validator does)")
    for note in outcome.notes:
        print(f"  command {note}")
    for problem in outcome.problems:
        print(f"  fomo_nn: {problem}")
    if outcome.seconds:
        values = list(outcome.seconds.values())
        print(f"=== seconds per case: min {min(values):.1f}, max {max(values):.1f} against the {time_limit:.0f} s "
              f"limit (" + ", ".join(f"{s} {v:.1f}" for s, v in outcome.seconds.items()) + ")")
    failed = outcome.first_failure()
    reason = outcome.stopped if failed is None and outcome.stopped else (
        f"{failed.name}{' ' + failed.subject if failed and failed.subject else ''}: {failed.message.splitlines()[0]}"
        if failed else "")
    print(f"RESULT  validator: {'PASS' if outcome.validator_ok else 'FAIL (' + reason[:300] + ')'}; "
          f"fomo_nn checks: {'PASS' if outcome.fomo_nn_ok else 'FAIL'}")


def fomo_nn_app(app: Path, model: Path, predict_args: str | None = None) -> Path:
    """An /app folder as fomo_nn.def lays it out: predict.py, model/ (the packed folder), predict.args
    (default `--edition fomo26`, what the FOMO26 build bakes in)."""
    app.mkdir(parents=True)
    shutil.copyfile(HERE / "predict.py", app / "predict.py")
    (app / "model").symlink_to(model.resolve(), target_is_directory=True)
    (app / "predict.args").write_text((predict_args if predict_args is not None else f"--edition {EDITION}") + "\n")
    return app


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="check_container.py --edition fomo26", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edition", choices=(EDITION,), default=EDITION)
    parser.add_argument("--task", type=int, required=True, choices=sorted(validator_tasks()),
                        help="FOMO26 task (6 and 7 are one check: the validator's task6_and_7)")
    runner = parser.add_mutually_exclusive_group(required=True)
    runner.add_argument("--image", help="Apptainer image (.sif): the validator's own commands")
    runner.add_argument("--direct", action="store_true", help="no image: run an /app folder's predict.py here")
    parser.add_argument("--apptainer-cmd", default="apptainer", help="as the validator's --apptainer")
    parser.add_argument("--model", help="--direct: fomo_nn's image, this packed model folder at /app/model "
                                        "(container/predict.py as /app/predict.py)")
    parser.add_argument("--app", help="--direct: any /app folder (its predict.py is run as it is)")
    parser.add_argument("--predict-args", default=None,
                        help="--direct --model: /app/predict.args (what --build-arg PREDICT_ARGS bakes in; "
                             "default '--edition fomo26')")
    parser.add_argument("--manifest", help="the validator's data/manifest.yaml (default: synthetic subjects)")
    parser.add_argument("--sessions", nargs="+", choices=sorted(SESSION_KINDS), default=["swi", "t2s"],
                        help="synthetic data, tasks 1-2: one subject per kind of session (default: swi, t2s)")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false",
                        help="the validator's --no-gpu: no nvidia-smi checks, no --nvccli (the container sees no GPU)")
    parser.add_argument("--timeout", type=float, default=VALIDATOR_TIMEOUT_S,
                        help=f"seconds before a prediction is killed (the validator's --timeout, "
                             f"{VALIDATOR_TIMEOUT_S})")
    parser.add_argument("--time-limit", type=float, default=TIME_LIMIT_S,
                        help=f"per-case limit fomo_nn's check holds cases to (default {TIME_LIMIT_S:.0f} s, "
                             "the rules')")
    parser.add_argument("--hostile-env", action="store_true",
                        help="run with host settings that break a container that trusts the host environment")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    return parser


def main(argv=None, image_environment: dict | None = None, hostile_environment=None) -> int:
    """`image_environment`: fomo_nn.def's %environment (applied to --direct --model, as the image would);
    `hostile_environment(root, direct)`: the host settings --hostile-env adds."""
    parser = build_parser()
    args = parser.parse_args(argv)
    task = validator_tasks()[args.task]
    if args.direct and bool(args.model) == bool(args.app):
        parser.error("--direct needs --model MODEL_DIR (fomo_nn's image) or --app APP_DIR (any /app folder)")
    if not args.direct and (args.model or args.app or args.predict_args is not None):
        parser.error("--model, --app and --predict-args are for --direct; an image holds its own")
    if args.predict_args is not None and not args.model:
        parser.error("--predict-args is for --direct --model")
    workspace = Path(tempfile.mkdtemp(prefix=f"fomo26_check_{task.task_id}_"))
    outcome = Outcome(stopped="not run")
    try:
        env = dict(os.environ)
        if args.hostile_env and hostile_environment is not None:
            env.pop("PYTHONNOUSERSITE", None)
            env.update(hostile_environment(workspace / "hostile", args.direct))
        if args.direct:
            if args.model:
                app = fomo_nn_app(workspace / "app", Path(args.model), args.predict_args)
                env.update(image_environment or {})
            else:
                app = Path(args.app).resolve()
            runner = DirectRunner(app, args.gpu, env)
        else:
            runner = ApptainerRunner(Path(args.image).resolve(), args.apptainer_cmd, args.gpu, env)
        subjects = (load_manifest(Path(args.manifest).resolve(), task) if args.manifest
                    else synthetic_subjects(workspace / "data", task, args.sessions))
        outcome = validate(runner, task, subjects, args.gpu, args.timeout, args.time_limit, workspace / "run")
        report(outcome, task, args.time_limit)
    finally:
        if args.keep:
            print(f"note: work folder kept: {workspace}")
        else:
            for folder, _, _ in os.walk(workspace):
                os.chmod(folder, stat.S_IRWXU)
            shutil.rmtree(workspace, ignore_errors=True)
    return 0 if outcome.validator_ok and outcome.fomo_nn_ok else 1


if __name__ == "__main__":
    sys.exit(main())
