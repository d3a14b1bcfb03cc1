#!/usr/bin/env python3
"""Check a FOMO25 submission the way the organisers' validator does, and say which rule a failure breaks.

`--edition fomo26` checks a FOMO26 submission against the FOMO26 validator instead: check_fomo26.py
(fomo26/container_templates container_validator @ d442af2; its own options, --help there). Below: FOMO25.

The validator is fomo25/container-validator, main.py (line numbers below: its commit f64712b). This
script re-implements its checks (it does not import or copy it):
 1. environment (main.py 139-166): `apptainer --version`; `apptainer exec --nv IMAGE nvidia-smi` unless
    --skip-gpu-check (here --no-gpu); `apptainer exec IMAGE test -d /app`, `-d /input`, `-d /output`,
    `-f /app/predict.py`, without binds (119-137);
 2. subjects: every folder in DATA/preprocessed (301-315); the `*.nii.gz` of its `ses_1` are matched to the
    task's names by substring of the lower-cased file name, the first name in list order taking the file,
    a later file replacing an earlier one of the same name (181-194); task 1 adc, dwi_b1000, flair, t2s, swi
    (at least 4), task 2 dwi_b1000, flair, t2s, swi (at least 3), task 3 t1, t2 (both) (44-58, 214-218);
 3. one call per subject, every matched file passed (222-254), no timeout, host environment passed in:
    `apptainer exec --nv --bind SUBJECT:/input:ro --bind OUT:/output IMAGE python /app/predict.py
    --<name> /input/ses_1/<file> ... --output /output/<subject>.txt|.nii.gz`; a non-zero exit fails the
    subject and the validation (84-101, 284-294, 342-344);
 4. outputs, only when every subject succeeded (638-648): tasks 1, 3: every OUT/sub_*.txt must parse as
    float(text.strip()) (351-368); task 2: every OUT/sub_*.nii.gz must have the shape of its subject's first
    matched sequence and np.unique(mask.get_fdata()) exactly [0, 1] (370-404), so an all-zero mask fails.
fomo_nn's own checks on top: /input unchanged, OUT holding exactly the subjects' outputs (a leftover
sub_*.nii.gz would be checked as a mask too), a finite number (task 1 in [0, 1]), the mask on the FLAIR's
grid (shape and affine). Each case is timed; no limit is asserted unless --time-limit is given (we found
no published source for a per-case limit).

    python container/check_container.py --task 2 --image fomo_nn_task2.sif            # what the validator runs
    python container/check_container.py --task 2 --direct --model container/model     # no Apptainer
    python container/check_container.py --task 2 --docker fomo_nn_task2               # docker (not the validator)

Without --data-dir a synthetic data folder is written (for tasks 1-2 one session with SWI, one with T2*,
one with both; oblique, LPS-stored, anisotropic int16 scans). --data-dir takes the validator's layout
(DATA/preprocessed/sub_X/ses_1/*.nii.gz, e.g. its fake_data/fomo25/fomo-task2-val). --direct runs
container/predict.py from a folder laid out as /app (predict.py, model -> --model, predict.args) with this
Python, the host environment overlaid by fomo_nn.def's %environment, as the image would see it.
--hostile-env adds host settings that break a container that trusts them (PYTHONPATH and a user site
holding a fake fomo_nn, a bogus PYTHONHOME, FOMO_NN_* variables, and with --direct an empty read-only HOME).
Exit status 0 when the validator's checks and fomo_nn's checks all pass.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import shlex
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

from fomo_nn.challenges.registry import DEFAULT_EDITION, EDITIONS, challenge_task

import check_fomo26  # container/, beside this script

HERE = Path(__file__).resolve().parent
DEFINITION = HERE / "fomo_nn.def"
DOCKERFILE = HERE / "Dockerfile"


@dataclass(frozen=True)
class ValidatorTask:
    """One task of the validator's TASK_CONFIGS (main.py 44-58)."""

    name: str
    sequences: tuple[str, ...]  # in the validator's order: it decides which name a file matches first
    min_sequences: int
    output_ending: str


TASKS = {
    1: ValidatorTask("task1", ("adc", "dwi_b1000", "flair", "t2s", "swi"), 4, ".txt"),
    2: ValidatorTask("task2", ("dwi_b1000", "flair", "t2s", "swi"), 3, ".nii.gz"),
    3: ValidatorTask("task3", ("t1", "t2"), 2, ".txt"),
}
VALIDATED = {("fomo25", number) for number in TASKS}  # the (edition, task) pairs whose validator this reproduces
REQUIRED_PATHS = ("/app", "/input", "/output", "/app/predict.py")  # main.py 39
SESSION = "ses_1"
SUBJECT_PREFIX = "sub_"
SYNTHETIC_BASE = {1: ("adc", "dwi_b1000", "flair"), 2: ("dwi_b1000", "flair"), 3: ("t1", "t2")}
SYNTHETIC_SESSIONS = {"swi": ("swi",), "t2s": ("t2s",), "swi+t2s": ("swi", "t2s")}
EMPTY_MASK_EXPLANATION = (
    "the mask is empty (all 0): the validator wants np.unique == [0, 1] exactly (main.py 396-399), so this "
    "fails the whole validation. The organisers' own task-2 template (container-validator "
    "task2_segmentation/predict.py) writes np.zeros and fails this check the same way; the baseline "
    "(baseline-codebase src/inference/predict_task2.py) writes its argmax as it is, which can be empty too. "
    "fomo_nn keeps an honest empty prediction by default; an image built with "
    "--build-arg PREDICT_ARGS=--empty-mask=top-voxel (here: --predict-args=--empty-mask=top-voxel) labels "
    "the most probable voxel instead (container/README.md)")


class ValidatorError(Exception):
    """A failure the validator reports as a ValidationError."""


# ------------------------------------------------------------------------------------ validator's rules
def session_dir(subject_dir: Path) -> Path:
    """SUBJECT/ses_1, which must exist and hold something (main.py 168-179)."""
    scan_dir = subject_dir / SESSION
    if not scan_dir.exists():
        raise ValidatorError(f"Expected {SESSION} directory not found in {subject_dir}")
    if not any(scan_dir.iterdir()):
        raise ValidatorError(f"No scan data found in {scan_dir}")
    return scan_dir


def match_sequences(scan_dir: Path, names: tuple[str, ...]) -> dict[str, Path]:
    """The validator's matching (main.py 181-194): for each *.nii.gz in glob order, the first name that is
    a substring of the lower-cased file name takes it; a later file replaces an earlier one of that name."""
    matched: dict[str, Path] = {}
    for nii_file in scan_dir.glob("*.nii.gz"):
        for name in names:
            if name in nii_file.name.lower():
                matched[name] = nii_file
                break
    return matched


def matching_notes(scan_dir: Path, names: tuple[str, ...], matched: dict[str, Path]) -> list[str]:
    """What the substring matching does that a reader would not expect, file by file."""
    notes, taken = [], {}
    for nii_file in scan_dir.glob("*.nii.gz"):
        name = next((n for n in names if n in nii_file.name.lower()), None)
        if name is None:
            notes.append(f"{nii_file.name} matches none of {', '.join(names)}: not passed")
            continue
        taken.setdefault(name, []).append(nii_file.name)
        if nii_file.name.lower() != f"{name}.nii.gz":
            notes.append(f"{nii_file.name} is passed as --{name} (substring match)")
    for name, files in taken.items():
        if len(files) > 1:
            notes.append(f"{', '.join(files)} all match {name!r}: only {matched[name].name} (last in glob order, "
                         f"which depends on the file system) is passed as --{name}")
    for other in sorted(scan_dir.glob("*.nii")):
        notes.append(f"{other.name} is never passed (the validator globs *.nii.gz only)")
    return notes


def find_sequences(subject_dir: Path, task: ValidatorTask) -> dict[str, Path]:
    """The matched files of one subject, or the validator's error (main.py 196-220)."""
    sequences = match_sequences(session_dir(subject_dir), task.sequences)
    if len(sequences) < task.min_sequences:
        raise ValidatorError(f"Found {len(sequences)} sequences {list(sequences)}, need {task.min_sequences} minimum")
    return sequences


def subject_dirs(data_dir: Path) -> list[Path]:
    """Every folder in DATA/preprocessed, in directory order (main.py 301-315)."""
    preprocessed = data_dir / "preprocessed"
    if not preprocessed.exists():
        raise ValidatorError(f"Preprocessed directory not found: {preprocessed}")
    found = [d for d in preprocessed.iterdir() if d.is_dir()]
    if not found:
        raise ValidatorError(f"No subject directories found in {preprocessed}")
    return found


def validate_text_outputs(output_dir: Path) -> list[str]:
    """The validator's check of tasks 1 and 3 (main.py 351-368): every sub_*.txt parses as float(strip())."""
    files = list(output_dir.glob(f"{SUBJECT_PREFIX}*.txt"))
    if not files:
        return ["No output text files found"]
    problems = []
    for txt_file in files:
        try:
            float(txt_file.read_text().strip())
        except ValueError:
            problems.append(f"Invalid float in {txt_file.name}")
        except Exception as error:  # the validator does not catch these: its run ends with "Unexpected error"
            problems.append(f"Unexpected error: {error} ({txt_file.name})")
    return problems


def validate_segmentation_outputs(output_dir: Path, data_dir: Path, task: ValidatorTask) -> list[str]:
    """The validator's check of task 2 (main.py 370-404): the shape of the subject's first matched sequence
    and np.unique(get_fdata()) exactly [0, 1]."""
    files = list(output_dir.glob(f"{SUBJECT_PREFIX}*.nii.gz"))
    if not files:
        return ["No segmentation masks found"]
    problems = []
    for mask_file in files:
        subject_id = mask_file.name.replace(SUBJECT_PREFIX, "").replace(".nii.gz", "")
        subject_dir = data_dir / "preprocessed" / f"{SUBJECT_PREFIX}{subject_id}"
        try:
            sequences = find_sequences(subject_dir, task)
            reference = nib.load(str(list(sequences.values())[0]))
            mask = nib.load(str(mask_file))
            if reference.shape != mask.shape:
                problems.append(f"Shape mismatch for {subject_id}: mask {mask.shape}, "
                                f"{list(sequences.values())[0].name} {reference.shape}")
                continue
            values = np.unique(mask.get_fdata())
            if not np.array_equal(values, [0.0, 1.0]):
                why = EMPTY_MASK_EXPLANATION if values.tolist() == [0.0] else \
                    f"values {values.tolist()[:10]}, the validator wants exactly [0, 1] (main.py 396-399)"
                problems.append(f"Non-binary mask for {subject_id}: {why}")
        except Exception as error:
            problems.append(f"Error validating {subject_id}: {error}")
    return problems


# ------------------------------------------------------------------------------------ image definition
def definition_sections(text: str) -> dict[str, list[str]]:
    """%section -> its lines, of an Apptainer definition file."""
    sections, current = {}, None
    for line in text.splitlines():
        match = re.match(r"^%(\w+)", line)
        if match:
            current = match.group(1)
            sections[current] = []
        elif current is not None:
            sections[current].append(line.strip())
    return sections


def definition_environment(path: Path = DEFINITION) -> dict[str, str]:
    """The variables fomo_nn.def's %environment exports (they win over the host's inside the image)."""
    environment = {}
    for line in definition_sections(path.read_text()).get("environment", []):
        match = re.match(r"^export\s+([A-Za-z_][A-Za-z0-9_]*)=(.*)$", line)
        if match:
            value = match.group(2).split(" #")[0].strip()
            environment[match.group(1)] = shlex.split(value)[0] if value else ""
    return environment


def static_environment_checks(definition: Path = DEFINITION, dockerfile: Path = DOCKERFILE) -> list[tuple[bool, str]]:
    """Without an image: do the definitions create what the validator tests with `test -d/-f` (no binds)?"""
    results = []
    sections = definition_sections(definition.read_text())
    made = {token for line in sections.get("post", []) if line.startswith("mkdir")
            for token in line.split()[1:]}
    copied = {line.split()[-1] for line in sections.get("files", []) if line and not line.startswith("#")}
    docker_text = dockerfile.read_text()
    docker_made = {token for match in re.finditer(r"mkdir\s+(-p\s+)?([^&\n]+)", docker_text)
                   for token in match.group(2).split()}
    docker_copied = {m.group(1) for m in re.finditer(r"^COPY\s+\S+\s+(\S+)", docker_text, re.MULTILINE)}
    for label, created, files in (("fomo_nn.def", made, copied), ("Dockerfile", docker_made, docker_copied)):
        missing = [path for path in REQUIRED_PATHS
                   if not (path in files if path.endswith(".py")
                           else path in created or any(f.startswith(path + "/") for f in files))]
        results.append((not missing, f"{label} creates {', '.join(REQUIRED_PATHS)} (static check)" if not missing
                        else f"{label} does NOT create {', '.join(missing)}: Missing required path (static check)"))
    environment = definition_environment(definition)
    for name, wanted in (("PYTHONNOUSERSITE", "1"), ("PYTHONPATH", ""), ("PYTHONHOME", "")):
        ok = environment.get(name) == wanted
        results.append((ok, f"fomo_nn.def %environment sets {name}={wanted!r}" if ok else
                        f"fomo_nn.def %environment does not set {name}={wanted!r}: the host's value leaks in"))
    return results


# ------------------------------------------------------------------------------------ environments
def hostile_environment(root: Path, direct: bool) -> dict[str, str]:
    """Host settings that break a container that trusts the host environment (each fails loudly if used)."""
    def shadow(folder: Path, where: str) -> None:
        package = folder / "fomo_nn"
        package.mkdir(parents=True, exist_ok=True)
        (package / "__init__.py").write_text(
            f"raise ImportError('fomo_nn was imported from the host {where} ({package}): the container depends "
            f"on the host environment')\n")

    shadow(root / "pythonpath", "PYTHONPATH")
    for version in {f"{sys.version_info.major}.{sys.version_info.minor}", "3.11"}:
        shadow(root / "userbase" / "lib" / f"python{version}" / "site-packages", "user site (PYTHONUSERBASE)")
    environment = {"PYTHONPATH": str(root / "pythonpath"), "PYTHONUSERBASE": str(root / "userbase"),
                   "PYTHONHOME": str(root / "no-such-python-home"), "FOMO_NN_MODEL": str(root / "no-such-model"),
                   "FOMO_NN_TASK": "9", "FOMO_NN_HOME": str(root / "no-such-home"),
                   "fomo_nn_results": str(root / "no-such-results")}
    if direct:
        home = root / "home"
        home.mkdir(exist_ok=True)
        home.chmod(stat.S_IRUSR | stat.S_IXUSR)
        environment["HOME"] = str(home)
    return environment


# ------------------------------------------------------------------------------------ runners
class Runner:
    """How a command reaches the image: apptainer (the validator), docker, or --direct (no image)."""

    def __init__(self, args, workspace: Path):
        self.args = args
        self.env = dict(os.environ)
        if args.hostile_env:
            self.env.pop("PYTHONNOUSERSITE", None)
            self.env.update(hostile_environment(workspace / "hostile", direct=args.direct))
        self.app_dir = None
        if args.direct:
            self.app_dir = workspace / "app"
            self.app_dir.mkdir()
            shutil.copyfile(HERE / "predict.py", self.app_dir / "predict.py")
            (self.app_dir / "model").symlink_to(Path(args.model).resolve(), target_is_directory=True)
            if args.predict_args is not None:
                (self.app_dir / "predict.args").write_text(args.predict_args + "\n")
            self.env.update(definition_environment())  # what the image's %environment does to the host's

    def run(self, command: list[str], timeout: float | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(command, env=self.env, capture_output=True, text=True, timeout=timeout)

    def environment_checks(self) -> list[tuple[bool, str]]:
        """The validator's environment validation (main.py 139-166); static checks with --direct."""
        if self.args.direct:
            return [(True, f"--direct: no image; entry point {self.app_dir}/predict.py, model -> "
                           f"{Path(self.args.model).resolve()}")] + static_environment_checks()
        image = self.args.image or self.args.docker
        if self.args.docker:
            tool, gpu = ["docker", "run", "--rm"], ["--gpus", "all"]
            version = ["docker", "--version"]
        else:
            tool, gpu = [self.args.apptainer_cmd, "exec"], ["--nv"]
            version = [self.args.apptainer_cmd, "--version"]
        results = []
        ok, text = self._try(version)
        results.append((ok, f"{' '.join(version)}: {text}"))
        if not ok:
            return results
        if self.args.gpu:
            ok, text = self._try([*tool, *gpu, image, "nvidia-smi"])
            results.append((ok, "GPU support available" if ok else f"GPU not available: {text} (--no-gpu skips "
                                                                    f"this, as the validator's --skip-gpu-check)"))
        else:
            results.append((True, "GPU check skipped (--no-gpu = the validator's --skip-gpu-check)"))
        for path in REQUIRED_PATHS:
            flag = "-f" if path.endswith(".py") else "-d"
            ok, _ = self._try([*tool, image, "test", flag, path])
            results.append((ok, f"test {flag} {path}" + ("" if ok else f": Missing required path: {path}")))
        return results

    def _try(self, command: list[str]) -> tuple[bool, str]:
        try:
            completed = self.run(command)
        except FileNotFoundError as error:
            return False, str(error)
        text = (completed.stdout if completed.returncode == 0 else completed.stderr or completed.stdout).strip()
        return completed.returncode == 0, text.splitlines()[0] if text else ""

    def predict_command(self, subject_dir: Path, sequences: dict[str, Path], output_dir: Path,
                        output_name: str) -> list[str]:
        """The validator's command (main.py 230-252), every matched sequence passed."""
        if self.args.direct:
            arguments = [a for name, path in sequences.items() for a in (f"--{name}", str(path))]
            return [sys.executable, str(self.app_dir / "predict.py"), *arguments,
                    "--output", str(output_dir / output_name)]
        arguments = [a for name, path in sequences.items()
                     for a in (f"--{name}", f"/input/{path.relative_to(subject_dir).as_posix()}")]
        if self.args.docker:
            gpu = ["--gpus", "all"] if self.args.gpu else []
            prefix = ["docker", "run", "--rm", "--network", "none", *gpu, "-v", f"{subject_dir}:/input:ro",
                      "-v", f"{output_dir}:/output", self.args.docker]
        else:  # exactly the validator: --nv always, no --containall / --cleanenv
            prefix = [self.args.apptainer_cmd, "exec", "--nv", "--bind", f"{subject_dir}:/input:ro",
                      "--bind", f"{output_dir}:/output", self.args.image]
        return [*prefix, "python", "/app/predict.py", *arguments, "--output", f"/output/{output_name}"]


# ------------------------------------------------------------------------------------ synthetic data
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
    session = subject_dir / SESSION
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


def write_synthetic_data(data_dir: Path, task: int, sessions) -> Path:
    """DATA/preprocessed/sub_N/ses_1/<sequence>.nii.gz, the validator's layout; one subject per session kind."""
    kinds = [None] if task == 3 else list(sessions)
    for number, kind in enumerate(kinds, start=1):
        extra = SYNTHETIC_SESSIONS[kind] if kind else ()
        write_synthetic_subject(data_dir / "preprocessed" / f"{SUBJECT_PREFIX}{number}",
                                SYNTHETIC_BASE[task] + extra, seed=number)
    return data_dir


def make_read_only(root: Path) -> None:
    for folder, _, names in os.walk(root):
        for name in names:
            os.chmod(os.path.join(folder, name), stat.S_IRUSR | stat.S_IRGRP | stat.S_IROTH)
        os.chmod(folder, stat.S_IRUSR | stat.S_IXUSR | stat.S_IRGRP | stat.S_IXGRP | stat.S_IROTH | stat.S_IXOTH)


def make_writable(root: Path) -> None:
    for folder, _, names in os.walk(root):
        os.chmod(folder, stat.S_IRWXU)
        for name in names:
            path = os.path.join(folder, name)
            if not os.path.islink(path):
                os.chmod(path, stat.S_IRUSR | stat.S_IWUSR)


def tree_snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """(size, mtime) of every file: /input must be unchanged (root ignores the read-only bits in --direct)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*")}


# ------------------------------------------------------------------------------------ fomo_nn's checks
def single_number(path: Path) -> tuple[float | None, str | None]:
    text = path.read_text()
    tokens = text.split()
    if len(tokens) != 1:
        return None, f"{path.name} must hold exactly one number, holds {text[:60]!r}"
    try:
        value = float(tokens[0])
    except ValueError:
        return None, f"{path.name} holds {tokens[0]!r}, not a number"
    if not math.isfinite(value):
        return None, f"{path.name} holds {value}: the validator's float() accepts it, but it is no prediction"
    return value, None


def fomo_nn_output_problems(task: int, output: Path, sequences: dict[str, Path]) -> tuple[list[str], list[str]]:
    """(problems, notes) of one case's output by fomo_nn's standards, stricter than the validator's."""
    problems, notes = [], []
    if task in (1, 3):
        value, problem = single_number(output)
        if problem:
            problems.append(problem)
        elif task == 1 and not 0.0 <= value <= 1.0:
            problems.append(f"task 1 output {value} is not a probability in [0, 1]")
        elif task == 3 and not 0.0 <= value <= 130.0:
            notes.append(f"predicted age {value} is outside 0-130 years")
        return problems, notes
    mask = nib.load(str(output))
    reference_file = sequences.get("flair") or list(sequences.values())[0]
    reference = nib.load(str(reference_file))
    if mask.shape != reference.shape:
        problems.append(f"mask shape {mask.shape} differs from {reference_file.name}'s {reference.shape}")
    elif not np.allclose(mask.affine, reference.affine, atol=1e-4):
        problems.append(f"mask affine differs from {reference_file.name}'s:\n{mask.affine}\nvs\n{reference.affine}")
    values = np.unique(mask.get_fdata())
    if not set(values.tolist()) <= {0.0, 1.0}:
        problems.append(f"mask values {values.tolist()[:10]} are not 0/1")
    elif values.tolist() == [0.0]:
        notes.append("empty mask (see the validator's verdict below)")
    return problems, notes


# ------------------------------------------------------------------------------------ one run
@dataclass
class CaseRun:
    subject: str
    sequences: dict[str, Path] = field(default_factory=dict)
    validator_error: str | None = None  # what the validator reports for this subject's prediction
    problems: list[str] = field(default_factory=list)  # fomo_nn's checks
    notes: list[str] = field(default_factory=list)
    seconds: float | None = None


def run_subject(runner: Runner, args, task: int, subject_dir: Path, output_dir: Path,
                expected_outputs: set[str]) -> CaseRun:
    case = CaseRun(subject_dir.name)
    try:
        case.sequences = find_sequences(subject_dir, TASKS[task])
        case.notes += matching_notes(subject_dir / SESSION, TASKS[task].sequences, case.sequences)
    except ValidatorError as error:
        case.validator_error = f"Exception for {subject_dir.name}: {error}"
        return case
    output_name = f"{subject_dir.name}{TASKS[task].output_ending}"
    expected_outputs.add(output_name)
    command = runner.predict_command(subject_dir, case.sequences, output_dir, output_name)
    case.notes.append("command: " + " ".join(shlex.quote(c) for c in command))
    before = tree_snapshot(subject_dir)
    timeout = args.time_limit * 3 if args.time_limit else None
    start = time.perf_counter()
    try:
        completed = runner.run(command, timeout=timeout)
    except subprocess.TimeoutExpired:
        case.problems.append(f"stopped after {timeout:.0f} s (3x --time-limit)")
        case.validator_error = f"{subject_dir.name} failed: no answer within {timeout:.0f} s"
        return case
    case.seconds = time.perf_counter() - start
    log = [line for line in completed.stderr.splitlines() if "[fomo_nn]" in line]
    case.notes += [f"log: {line.strip()}" for line in log]
    if completed.returncode != 0:
        case.validator_error = (f"{subject_dir.name} failed (exit status {completed.returncode}): "
                                f"{completed.stderr.strip()[-2000:]}")
    if args.time_limit and case.seconds > args.time_limit:
        case.problems.append(f"took {case.seconds:.1f} s, over --time-limit {args.time_limit:.0f} s")
    if tree_snapshot(subject_dir) != before:
        case.problems.append("the input folder was modified (the validator mounts it read-only)")
    produced = sorted(p.name for p in output_dir.iterdir())
    if produced != sorted(expected_outputs):
        case.problems.append(f"the output folder holds {produced}, expected exactly {sorted(expected_outputs)}")
    output = output_dir / output_name
    if output.is_file():
        try:
            problems, notes = fomo_nn_output_problems(task, output, case.sequences)
            case.problems += problems
            case.notes += notes
        except Exception as error:
            case.problems.append(f"output unreadable: {type(error).__name__}: {error}")
    elif completed.returncode == 0:
        case.problems.append(f"exit status 0 but no {output_name}")
    return case


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--edition", choices=tuple(EDITIONS), default=DEFAULT_EDITION,
                        help=f"challenge edition (default {DEFAULT_EDITION}); fomo26: the FOMO26 validator (check_fomo26.py)")
    parser.add_argument("--task", type=int, required=True, help="task number in the edition (FOMO25: 1, 2, 3)")
    runner = parser.add_mutually_exclusive_group(required=True)
    runner.add_argument("--image", help="Apptainer image (.sif): checked as the validator does")
    runner.add_argument("--docker", help="Docker image name (docker run; not what the validator runs)")
    runner.add_argument("--direct", action="store_true", help="no image: run container/predict.py with this python")
    parser.add_argument("--apptainer-cmd", default="apptainer", help="as the validator's --apptainer-cmd")
    parser.add_argument("--model", help="--direct: the model folder (what the image holds at /app/model)")
    parser.add_argument("--predict-args", default=None,
                        help="--direct: options for /app/predict.args (what --build-arg PREDICT_ARGS bakes in)")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--data-dir", help="the validator's --data-dir (DATA/preprocessed/sub_X/ses_1/*.nii.gz)")
    source.add_argument("--input", help="one subject folder (SUBJECT/ses_1/*.nii.gz)")
    parser.add_argument("--sessions", nargs="+", choices=sorted(SYNTHETIC_SESSIONS), default=list(SYNTHETIC_SESSIONS),
                        help="synthetic data, tasks 1-2: one subject per kind of session (default: all three)")
    parser.add_argument("--no-gpu", dest="gpu", action="store_false",
                        help="skip the nvidia-smi check (the validator's --skip-gpu-check; predictions keep --nv as "
                             "the validator does); docker: no --gpus all")
    parser.add_argument("--hostile-env", action="store_true",
                        help="run with host settings that break a container that trusts the host environment")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="fail a case slower than this many seconds (default: none; cases are timed)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder (data, outputs)")
    return parser


def report(environment, cases: list[CaseRun], output_problems: list[str], task: int) -> tuple[bool, bool]:
    """Print what happened; (validator passes, fomo_nn's checks pass)."""
    print("=== environment (validator main.py 139-166)")
    for ok, message in environment:
        print(f"  {'OK  ' if ok else 'FAIL'}  {message}")
    environment_ok = all(ok for ok, _ in environment)
    print("=== predictions (validator main.py 256-349), one call per subject")
    for case in cases:
        status = "FAIL" if case.validator_error or case.problems else "ok  "
        seconds = f"{case.seconds:.1f} s" if case.seconds is not None else "-"
        passed = " ".join(f"--{name} {path.name}" for name, path in case.sequences.items())
        print(f"  {status}  {case.subject}  {seconds}  {passed}")
        for note in case.notes:
            print(f"        {note}")
        if case.validator_error:
            print(f"        validator: {case.validator_error}")
        for problem in case.problems:
            print(f"        fomo_nn: {problem}")
    failed = [c.subject for c in cases if c.validator_error]
    print(f"=== outputs (validator main.py {'351-368' if task != 2 else '370-404'})"
          + (" (the validator stops before this step: a prediction failed)" if failed else ""))
    for problem in output_problems:
        print(f"  FAIL  {problem}")
    if not output_problems:
        print("  OK    every output passes the validator's check")
    timed = [c.seconds for c in cases if c.seconds is not None]
    if timed:
        print(f"=== seconds per case: min {min(timed):.1f}, median {float(np.median(timed)):.1f}, "
              f"max {max(timed):.1f} (no per-case limit is published; --time-limit to assert one)")
    validator_ok = environment_ok and not failed and not output_problems
    fomo_nn_ok = not any(c.problems for c in cases)
    reason = (next(m for ok, m in environment if not ok) if not environment_ok
              else f"Failed subjects: {', '.join(failed)}" if failed
              else output_problems[0] if output_problems else "")
    print(f"RESULT  validator: {'PASS' if validator_ok else 'FAIL (' + reason.splitlines()[0][:200] + ')'}; "
          f"fomo_nn checks: {'PASS' if fomo_nn_ok else 'FAIL'}")
    return validator_ok, fomo_nn_ok


def edition_of(argv: list[str]) -> str | None:
    """The --edition of the command line, before the edition's own parser reads it."""
    for i, a in enumerate(argv):
        if a == "--edition" and i + 1 < len(argv):
            return argv[i + 1].lower()
        if a.startswith("--edition="):
            return a.split("=", 1)[1].lower()
    return None


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if edition_of(argv) == check_fomo26.EDITION:  # FOMO26's validator: check_fomo26.py
        return check_fomo26.main(argv, image_environment=definition_environment(),
                                 hostile_environment=hostile_environment)
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        rule = challenge_task(args.edition, args.task)
    except ValueError as error:
        parser.error(str(error))
    if (rule.edition, rule.number) not in VALIDATED:
        parser.error(f"{rule.name} ({rule.title}): no validator of its edition is reproduced")
    if args.direct and not args.model:
        parser.error("--direct needs --model MODEL_DIR")
    if args.predict_args is not None and not args.direct:
        parser.error("--predict-args is for --direct; an image has its options baked in (--build-arg PREDICT_ARGS)")
    if args.image:  # the validator resolves the path and refuses a missing image (main.py 73-75)
        args.image = str(Path(args.image).resolve())
        if not Path(args.image).exists():
            parser.error(f"Container {args.image} does not exist")
    if args.direct and not (Path(args.model) / "plans.json").is_file():
        parser.error(f"--model {args.model}: no plans.json there (a packed or trained model folder is needed)")
    task = args.task
    workspace = Path(tempfile.mkdtemp(prefix=f"fomo_check_task{task}_"))
    try:
        runner = Runner(args, workspace)
        if args.data_dir:
            data_dir = Path(args.data_dir).resolve()
            subjects = subject_dirs(data_dir)
        elif args.input:
            subject = Path(args.input).resolve()
            if not subject.is_dir():
                parser.error(f"--input {subject} is not a folder")
            data_dir, subjects = subject.parent.parent, [subject]
            if subject.parent.name != "preprocessed":
                print(f"note: {subject} is not in a DATA/preprocessed folder; masks are checked against it anyway")
                data_dir = workspace / "data"
                (data_dir / "preprocessed").mkdir(parents=True)
                (data_dir / "preprocessed" / subject.name).symlink_to(subject, target_is_directory=True)
        else:
            data_dir = write_synthetic_data(workspace / "data", task, args.sessions)
            make_read_only(data_dir)  # what /input:ro does to the container
            subjects = subject_dirs(data_dir)
        environment = runner.environment_checks()
        if not environment[0][0]:  # no apptainer / docker at all: nothing can run
            report(environment, [], [], task)
            return 1
        output_dir = workspace / "output"
        output_dir.mkdir()
        expected: set[str] = set()
        cases = [run_subject(runner, args, task, subject, output_dir, expected) for subject in subjects]
        output_problems = (validate_segmentation_outputs(output_dir, data_dir, TASKS[task]) if task == 2
                           else validate_text_outputs(output_dir))
        validator_ok, fomo_nn_ok = report(environment, cases, output_problems, task)
    except ValidatorError as error:
        print(f"[ERROR] Validation Error: {error}")
        return 1
    finally:
        if args.keep:
            print(f"note: work folder kept: {workspace}")
        else:
            make_writable(workspace)
            shutil.rmtree(workspace, ignore_errors=True)
    return 0 if validator_ok and fomo_nn_ok else 1


if __name__ == "__main__":
    sys.exit(main())
