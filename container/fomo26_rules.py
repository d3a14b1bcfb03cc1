"""The FOMO26 validator's rules as pure functions: which arguments each task gets and what its output must be.

fomo26/container_templates container_validator @ d442af2: tasks.py (inputs, one-of groups, outputs),
preinference.py (every subject has its task's inputs), validate.py (_build_predict_args, the order of the
output checks), output_text.py, output_nifti.py, output_numpy.py. Re-implemented, not copied; what each
task takes and writes comes from fomo_nn.challenges' FOMO26 rows. check_fomo26.py runs them.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import nibabel as nib
import numpy as np

from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.challenges.registry import edition

EDITION = "fomo26"
ONE_OF_ORDER = ("t2s", "swi")  # tasks.py _T2S_OR_SWI: the first of these a subject has is passed
OUTPUT_FORMATS = {".txt": "txt", ".nii.gz": "nifti", ".npy": "numpy"}

# ------------------------------------------------------------------------------------ the tasks, from the rows
@dataclass(frozen=True)
class ValidatorTask:
    """One entry of the validator's TASKS, derived from fomo_nn.challenges' rows."""

    task_id: str  # "task1" ... "task5", "task6_and_7"
    numbers: tuple[int, ...]
    inputs: tuple[tuple[str, ...], ...]  # per argument: the manifest keys (= flags) that fill it, in preference
    output_ending: str
    value_range: tuple[float, float] | None
    labels: tuple[int, ...] | None  # a mask's allowed values (0 and the row's foreground labels)

    @property
    def output_format(self) -> str:
        return OUTPUT_FORMATS[self.output_ending]

    @property
    def max_label(self) -> int | None:
        return max(self.labels) if self.labels else None


def _options(rule: ChallengeTask, sequences) -> tuple[str, ...]:
    flags = tuple(rule.flag(s) for s in sequences)
    ordered = [f for f in ONE_OF_ORDER if f in flags]
    return tuple(ordered + [f for f in flags if f not in ordered])


def validator_task(rule: ChallengeTask, numbers: tuple[int, ...]) -> ValidatorTask:
    ending = rule.output_endings[0]
    mask = rule.finetuned and rule.label_kind == "mask"
    return ValidatorTask(
        task_id="task" + "_and_".join(map(str, numbers)), numbers=numbers,
        inputs=tuple(_options(rule, channel.sequences) for channel in rule.channels), output_ending=ending,
        value_range=(0.0, 1.0) if rule.finetuned and rule.label_kind == "class" else None,  # a probability
        labels=(0, *rule.foreground_labels) if mask else None)


def validator_tasks() -> dict[int, ValidatorTask]:
    """Task number -> its validator task; tasks writing embeddings from the same inputs share one (6 and 7)."""
    rules = edition(EDITION).tasks
    shared = tuple(n for n, r in rules.items() if not r.finetuned)
    tasks = {}
    for number, rule in rules.items():
        numbers = shared if number in shared else (number,)
        tasks[number] = validator_task(rule, numbers)
    return tasks


# ------------------------------------------------------------------------------------ results
@dataclass
class Check:
    name: str
    passed: bool
    message: str
    subject: str | None = None

    def line(self) -> str:
        subject = f" subject={self.subject!r}" if self.subject else ""
        return f"[{'PASS' if self.passed else 'FAIL'}] {self.name}{subject} — {self.message}"


# ------------------------------------------------------------------------------------ output checks
def text_checks(path: Path, sid: str, value_range) -> list[Check]:
    """output_text.py, in validate.py's order; stops at the first failure as the validator does."""
    checks = []
    try:
        path.read_bytes().decode("utf-8")
        checks.append(Check("output_is_plain_text", True, "Valid UTF-8", sid))
    except UnicodeDecodeError as error:
        return [Check("output_is_plain_text", False, f"Not valid UTF-8: {error}", sid)]
    content = path.read_text(encoding="utf-8").strip()
    tokens = content.split()
    if len(tokens) != 1:
        return checks + [Check("output_is_single_float", False,
                               f"Expected exactly 1 token, got {len(tokens)}: {content[:100]!r}", sid)]
    try:
        value = float(tokens[0])
    except ValueError:
        return checks + [Check("output_is_single_float", False, f"{tokens[0]!r} is not a valid float", sid)]
    checks.append(Check("output_is_single_float", True, f"Value: {tokens[0]}", sid))
    if not math.isfinite(value):
        return checks + [Check("output_text_is_finite", False, f"Value {value} is NaN or Inf", sid)]
    checks.append(Check("output_text_is_finite", True, f"Value {value} is finite", sid))
    if value_range is not None:
        low, high = value_range
        ok = low <= value <= high
        checks.append(Check("output_probability_in_range", ok, f"Value {value} in [{low}, {high}]" if ok else
                            f"Value {value} is outside the valid range [{low}, {high}]", sid))
    return checks


def nifti_checks(path: Path, sid: str, inputs: dict[str, Path], max_label: int | None) -> list[Check]:
    """output_nifti.py, in validate.py's order (load, 3-D, integer, finite, shape of any input, label range)."""
    try:
        image = nib.load(str(path))
    except Exception as error:
        return [Check("output_is_nifti", False, f"nibabel.load failed: {error}", sid)]
    if not isinstance(image, (nib.Nifti1Image, nib.Nifti2Image)):
        return [Check("output_is_nifti", False, f"Loaded object is {type(image).__name__}, not a NIfTI image", sid)]
    if np.all(image.affine == 0):
        return [Check("output_is_nifti", False, "NIfTI affine matrix is all zeros (degenerate geometry)", sid)]
    if not np.all(np.isfinite(image.affine)):
        return [Check("output_is_nifti", False, "NIfTI affine matrix contains NaN or Inf values", sid)]
    checks = [Check("output_is_nifti", True, f"Valid NIfTI, shape {image.shape}", sid)]
    shape = image.shape
    checks.append(Check("output_is_3d", len(shape) == 3, f"Shape {shape}" if len(shape) == 3 else
                        f"Expected 3D array, got shape {shape}", sid))
    if not checks[-1].passed:
        return checks
    data = np.asanyarray(image.dataobj)
    if np.issubdtype(data.dtype, np.integer):
        checks.append(Check("output_dtype_is_integer", True, f"Integer dtype: {data.dtype}", sid))
    elif np.issubdtype(data.dtype, np.floating):
        ok = bool(np.array_equal(data, np.round(data)))
        checks.append(Check("output_dtype_is_integer", ok, f"Float dtype {data.dtype} but integer-valued" if ok
                            else f"Float dtype {data.dtype} contains non-integer label values", sid))
    else:
        checks.append(Check("output_dtype_is_integer", False, f"Dtype {data.dtype} is neither integer nor float", sid))
    if not checks[-1].passed:
        return checks
    finite = not np.issubdtype(data.dtype, np.floating) or bool(np.all(np.isfinite(data)))
    checks.append(Check("output_nifti_is_finite", finite, "All values finite" if finite
                        else "NIfTI volume contains NaN or Inf values", sid))
    if not finite:
        return checks
    shapes = [tuple(nib.load(str(p)).shape[:3]) for p in inputs.values()]
    ok = tuple(shape[:3]) in shapes
    checks.append(Check("output_shape_matches_any_input", ok, f"Output shape {tuple(shape[:3])} matches an input "
                        f"shape" if ok else f"Output shape {tuple(shape[:3])} does not match any input shape {shapes}",
                        sid))
    if not ok or max_label is None:
        return checks
    if data.size == 0:
        return checks + [Check("output_labels_in_range", False, "Output volume is empty", sid)]
    low, high = int(np.min(data)), int(np.max(data))
    if low < 0:
        checks.append(Check("output_labels_in_range", False, f"Negative label {low} found; labels must be >= 0", sid))
    elif high > max_label:
        checks.append(Check("output_labels_in_range", False,
                            f"Max label {high} exceeds allowed max_label={max_label}", sid))
    else:
        checks.append(Check("output_labels_in_range", True, f"Labels in [0, {max_label}], observed [{low}, {high}]",
                            sid))
    return checks


def numpy_checks(path: Path, sid: str) -> tuple[list[Check], int | None]:
    """output_numpy.py, in validate.py's order; also the length for the cross-subject check."""
    try:
        array = np.load(str(path), allow_pickle=False)
    except Exception as error:
        return [Check("output_is_numpy_file", False, f"np.load failed: {error}", sid)], None
    checks = [Check("output_is_numpy_file", True, f"dtype={array.dtype}, shape={array.shape}", sid)]
    floating = np.issubdtype(array.dtype, np.floating)
    checks.append(Check("output_is_float_array", floating, f"dtype={array.dtype}" if floating else
                        f"Expected floating-point dtype, got {array.dtype}", sid))
    if not floating:
        return checks, None
    squeezed = np.squeeze(array)
    one_d = squeezed.ndim == 1
    checks.append(Check("output_is_1d_vector", one_d, f"1-D vector with {squeezed.shape[0]} elements" if one_d
                        else f"Expected 1-D array after squeezing, got shape {squeezed.shape}", sid))
    if not one_d:
        return checks, None
    finite = bool(np.all(np.isfinite(array)))
    checks.append(Check("output_numpy_is_finite", finite, "All values finite" if finite
                        else "Array contains NaN or Inf values", sid))
    return checks, int(squeezed.shape[0]) if finite else None


def length_consistency(lengths: dict[str, int]) -> Check:
    """output_numpy.py check_embedding_dim_consistency (run when more than one subject wrote an embedding)."""
    if len(set(lengths.values())) == 1:
        return Check("embedding_dim_consistency", True,
                     f"All {len(lengths)} embeddings have consistent dimension {next(iter(lengths.values()))}")
    detail = ", ".join(f"{s}={d}" for s, d in sorted(lengths.items()))
    return Check("embedding_dim_consistency", False, f"Inconsistent embedding dimensions across subjects: {detail}")


def output_checks(task: ValidatorTask, path: Path, sid: str, inputs: dict[str, Path]) -> tuple[list[Check], int | None]:
    if task.output_format == "txt":
        return text_checks(path, sid, task.value_range), None
    if task.output_format == "nifti":
        return nifti_checks(path, sid, inputs, task.max_label), None
    return numpy_checks(path, sid)


# ------------------------------------------------------------------------------------ inputs and the call
def inputs_mapped(task: ValidatorTask, subjects) -> Check:
    """preinference.py check_required_inputs_are_mapped."""
    if not subjects:
        return Check("required_inputs_are_mapped", False, "No subjects found in manifest")
    missing = []
    for sid, provided in subjects:
        for options in task.inputs:
            if len(options) == 1 and options[0] not in provided:
                missing.append(f"{sid}: required input {options[0]!r} is missing")
            elif len(options) > 1 and not any(k in provided for k in options):
                missing.append(f"{sid}: needs one of [{', '.join(repr(k) for k in options)}] but none provided")
    if missing:
        return Check("required_inputs_are_mapped", False, "; ".join(missing))
    return Check("required_inputs_are_mapped", True, f"All {len(subjects)} subject(s) have required inputs")


def predict_arguments(task: ValidatorTask, inputs: dict[str, Path], output_name: str, input_root: str,
                      output_root: str) -> list[str]:
    """validate.py _build_predict_args: one file per argument (t2s before swi), then --output."""
    arguments = []
    for options in task.inputs:
        key = next(k for k in options if k in inputs)
        arguments += [f"--{key}", f"{input_root}/{inputs[key].name}"]
    return arguments + ["--output", f"{output_root}/{output_name}"]
