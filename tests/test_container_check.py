"""container/check_container.py reproduces the FOMO25 validator's rules (fomo25/container-validator main.py)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "container"))
import check_container as checker  # noqa: E402

from test_challenge import run_checker, write_background_model  # noqa: E402


def touch_session(subject_dir: Path, names) -> Path:
    session = subject_dir / "ses_1"
    session.mkdir(parents=True)
    for name in names:
        (session / name).write_bytes(b"")
    return session


def test_sequences_are_matched_by_substring_every_match_passed(tmp_path):
    """Task 2 passes --swi and --t2s together; the file name is lower-cased; .nii and other names are left out."""
    session = touch_session(tmp_path / "sub_1", ["FLAIR.nii.gz", "dwi_b1000.nii.gz", "swi.nii.gz", "t2s.nii.gz",
                                                 "adc.nii.gz", "extra.nii"])
    matched = checker.find_sequences(tmp_path / "sub_1", checker.TASKS[2])
    assert {name: path.name for name, path in matched.items()} == {
        "flair": "FLAIR.nii.gz", "dwi_b1000": "dwi_b1000.nii.gz", "swi": "swi.nii.gz", "t2s": "t2s.nii.gz"}
    notes = checker.matching_notes(session, checker.TASKS[2].sequences, matched)
    assert "adc.nii.gz matches none of dwi_b1000, flair, t2s, swi: not passed" in notes
    assert "extra.nii is never passed (the validator globs *.nii.gz only)" in notes


def test_substring_matching_takes_look_alike_files(tmp_path):
    """Task 3: t2 takes t2_flair, t1 takes t1 or t1ce (the last globbed wins); task 1: list order decides."""
    session = touch_session(tmp_path / "sub_1", ["t1.nii.gz", "t1ce.nii.gz", "t2_flair.nii.gz"])
    matched = checker.find_sequences(tmp_path / "sub_1", checker.TASKS[3])
    assert matched["t2"].name == "t2_flair.nii.gz"
    assert matched["t1"].name == [p.name for p in session.glob("*.nii.gz") if "t1" in p.name][-1]
    notes = checker.matching_notes(session, checker.TASKS[3].sequences, matched)
    assert "t2_flair.nii.gz is passed as --t2 (substring match)" in notes
    assert any("all match 't1': only" in note for note in notes)

    touch_session(tmp_path / "sub_2", ["dwi_b1000_adc.nii.gz", "flair.nii.gz", "swi.nii.gz"])
    with pytest.raises(checker.ValidatorError, match=r"Found 3 sequences .*, need 4 minimum"):
        checker.find_sequences(tmp_path / "sub_2", checker.TASKS[1])  # adc comes first in the list
    assert "adc" in checker.match_sequences(tmp_path / "sub_2" / "ses_1", checker.TASKS[1].sequences)


def test_text_outputs_parse_as_float_of_the_stripped_text(tmp_path):
    assert checker.validate_text_outputs(tmp_path) == ["No output text files found"]
    (tmp_path / "sub_1.txt").write_text("  0.25\n")
    (tmp_path / "sub_2.txt").write_text("nan")
    (tmp_path / "other.txt").write_text("not checked: not sub_*")
    assert checker.validate_text_outputs(tmp_path) == []  # the validator accepts nan ...
    value, problem = checker.single_number(tmp_path / "sub_2.txt")  # ... fomo_nn's check does not
    assert value is None and "the validator's float() accepts it" in problem
    (tmp_path / "sub_3.txt").write_text("0.1 0.2")
    assert checker.validate_text_outputs(tmp_path) == ["Invalid float in sub_3.txt"]


def write_image(path: Path, data, affine=np.eye(4)) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(np.asarray(data), affine), str(path))
    return path


@pytest.mark.parametrize("mask, expected", [
    ("blob", None),
    ("empty", "Non-binary mask for 1: the mask is empty (all 0)"),
    ("full", "Non-binary mask for 1: values [1.0]"),
    ("two", "Non-binary mask for 1: values [0.0, 2.0]"),
    ("shape", "Shape mismatch for 1"),
])
def test_mask_checks_flag_an_empty_mask(tmp_path, mask, expected):
    data_dir = tmp_path / "data"
    for sequence in ("dwi_b1000", "flair", "swi"):
        write_image(data_dir / "preprocessed" / "sub_1" / "ses_1" / f"{sequence}.nii.gz", np.zeros((8, 9, 10)))
    blob = np.zeros((8, 9, 10), np.uint8)
    blob[2:4, 3:5, 4:6] = 1
    values = {"blob": blob, "empty": np.zeros_like(blob), "full": np.ones_like(blob), "two": blob * 2,
              "shape": np.ones((8, 9, 11), np.uint8)}[mask]
    output = tmp_path / "output"
    write_image(output / "sub_1.nii.gz", values)
    problems = checker.validate_segmentation_outputs(output, data_dir, checker.TASKS[2])
    if expected is None:
        assert problems == []
        return
    assert len(problems) == 1 and problems[0].startswith(expected)
    if mask == "empty":  # says what the organisers' own template does there, and fomo_nn's option
        assert "task2_segmentation/predict.py) writes np.zeros" in problems[0]
        assert "--empty-mask=top-voxel" in problems[0]


def test_a_mask_without_its_subject_fails_as_in_the_validator(tmp_path):
    (tmp_path / "data" / "preprocessed").mkdir(parents=True)
    write_image(tmp_path / "output" / "sub_9.nii.gz", np.ones((2, 2, 2), np.uint8))
    problems = checker.validate_segmentation_outputs(tmp_path / "output", tmp_path / "data", checker.TASKS[2])
    assert problems == [f"Error validating 9: Expected ses_1 directory not found in "
                        f"{tmp_path / 'data' / 'preprocessed' / 'sub_9'}"]


def test_image_definitions_create_the_validators_paths_and_pin_python(tmp_path):
    results = checker.static_environment_checks()
    assert all(ok for ok, _ in results), results
    environment = checker.definition_environment()
    assert environment["PYTHONNOUSERSITE"] == "1" and environment["PYTHONPATH"] == ""
    # the check is not vacuous: a definition without /input and /output, or without PYTHONNOUSERSITE, fails
    definition = tmp_path / "fomo_nn.def"
    definition.write_text(checker.DEFINITION.read_text().replace("mkdir -p /app /input /output", "mkdir -p /app")
                          .replace("export PYTHONNOUSERSITE=1", ""))
    failed = [message for ok, message in checker.static_environment_checks(definition) if not ok]
    assert any("does NOT create /input, /output" in m for m in failed)
    assert any("PYTHONNOUSERSITE" in m for m in failed)


def test_hostile_environment_breaks_an_entry_point_that_trusts_the_host(tmp_path):
    """Without the image's %environment a leaked PYTHONPATH shadows fomo_nn; with it, predict.py starts."""
    environment = {**os.environ, **checker.hostile_environment(tmp_path, direct=True)}
    environment.pop("PYTHONNOUSERSITE", None)
    command = [sys.executable, str(REPO / "container" / "predict.py"), "--task", "2", "--help"]
    leaked_path = {**environment}
    leaked_path.pop("PYTHONHOME")  # alone, a bogus PYTHONHOME stops python before PYTHONPATH matters
    trusting = subprocess.run(command, env=leaked_path, capture_output=True, text=True, timeout=120)
    assert trusting.returncode != 0
    assert "fomo_nn was imported from the host PYTHONPATH" in trusting.stderr
    trusting = subprocess.run(command, env=environment, capture_output=True, text=True, timeout=120)
    assert trusting.returncode != 0
    pinned = subprocess.run(command, env={**environment, **checker.definition_environment()},
                            capture_output=True, text=True, timeout=120)
    assert pinned.returncode == 0, pinned.stderr
    assert "--empty-mask" in pinned.stdout


def test_the_checker_flags_an_empty_mask_and_top_voxel_passes(tmp_path):
    """End to end: a model that finds nothing passes fomo_nn's checks but fails the validator's; the
    documented option makes the same image pass."""
    model = write_background_model(tmp_path / "results")
    empty = run_checker("--task", 2, "--direct", "--model", model, "--no-gpu", "--sessions", "swi")
    assert empty.returncode == 1
    assert "Non-binary mask for 1: the mask is empty (all 0)" in empty.stdout
    assert "RESULT  validator: FAIL (Non-binary mask for 1" in empty.stdout
    assert "fomo_nn checks: PASS" in empty.stdout
    assert "log: [fomo_nn] warning: case sub_1: the predicted mask is empty" in empty.stdout

    filled = run_checker("--task", 2, "--direct", "--model", model, "--no-gpu", "--sessions", "swi",
                         "--predict-args=--empty-mask=top-voxel")
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert "RESULT  validator: PASS; fomo_nn checks: PASS" in filled.stdout
    assert "--empty-mask top-voxel: labelled voxel" in filled.stdout


def test_the_validator_layout_is_read_as_the_validator_does(tmp_path):
    """--data-dir: every folder of DATA/preprocessed is a subject; one with too few sequences fails alone."""
    model = write_model_for_task3(tmp_path)
    data_dir = tmp_path / "fomo-task3-val"
    checker.write_synthetic_subject(data_dir / "preprocessed" / "sub_2", ("t1", "t2"))
    checker.write_synthetic_subject(data_dir / "preprocessed" / "sub_5", ("t1",))
    completed = run_checker("--task", 3, "--direct", "--model", model, "--no-gpu", "--data-dir", data_dir,
                            "--time-limit", 300)
    assert completed.returncode == 1
    assert "validator: Exception for sub_5: Found 1 sequences ['t1'], need 2 minimum" in completed.stdout
    assert "RESULT  validator: FAIL (Failed subjects: sub_5)" in completed.stdout
    assert "=== seconds per case: min" in completed.stdout  # sub_2 ran and was timed


def write_model_for_task3(tmp_path: Path) -> Path:
    from test_inference import write_model

    return write_model(tmp_path / "results", "regression", folds=(0,))


FAKE_APPTAINER = '''#!{python}
"""Records its arguments; answers --version, exec ... test/nvidia-smi, and writes the prediction."""
import json, os, pathlib, sys
arguments = sys.argv[1:]
with open(os.environ["FAKE_APPTAINER_LOG"], "a") as log:
    log.write(json.dumps(arguments) + "\\n")
if arguments == ["--version"]:
    print("apptainer version 0.0 (fake)")
elif "test" in arguments and arguments[-1] == os.environ.get("FAKE_MISSING"):
    sys.exit(1)
elif "python" in arguments:
    output_dir = next(a for a in arguments if a.endswith(":/output")).rsplit(":", 1)[0]
    name = pathlib.Path(arguments[arguments.index("--output") + 1]).name
    pathlib.Path(output_dir, name).write_text("42.5\\n")
'''


def test_apptainer_commands_are_the_validators(tmp_path):
    """With --image the checker runs exactly the validator's commands: environment checks without binds,
    predictions with --nv and the two binds, never --containall or --cleanenv."""
    fake = tmp_path / "apptainer"
    fake.write_text(FAKE_APPTAINER.format(python=sys.executable))
    fake.chmod(0o755)
    image = tmp_path / "task3.sif"
    image.write_bytes(b"")
    log = tmp_path / "log.jsonl"
    completed = subprocess.run(
        [sys.executable, str(REPO / "container" / "check_container.py"), "--task", "3", "--image", str(image),
         "--apptainer-cmd", str(fake), "--keep"],
        capture_output=True, text=True, timeout=120, env={**os.environ, "FAKE_APPTAINER_LOG": str(log)})
    assert completed.returncode == 0, completed.stdout + completed.stderr
    calls = [__import__("json").loads(line) for line in log.read_text().splitlines()]
    workspace = Path(completed.stdout.split("work folder kept: ")[1].split()[0])
    subject = workspace / "data" / "preprocessed" / "sub_1"
    assert calls[:6] == [["--version"], ["exec", "--nv", str(image), "nvidia-smi"],
                         ["exec", str(image), "test", "-d", "/app"], ["exec", str(image), "test", "-d", "/input"],
                         ["exec", str(image), "test", "-d", "/output"],
                         ["exec", str(image), "test", "-f", "/app/predict.py"]]
    predict = calls[6]
    assert predict[:7] == ["exec", "--nv", "--bind", f"{subject}:/input:ro", "--bind",
                           f"{workspace / 'output'}:/output", str(image)]
    assert predict[7:9] == ["python", "/app/predict.py"]
    pairs = dict(zip(predict[9::2], predict[10::2]))
    assert pairs == {"--t1": "/input/ses_1/t1.nii.gz", "--t2": "/input/ses_1/t2.nii.gz",
                     "--output": "/output/sub_1.txt"}
    assert not any(flag in call for call in calls for flag in ("--containall", "--cleanenv", "-e"))
    make_writable_and_remove(workspace)

    # an image without /input fails the environment check, as in the validator
    missing = subprocess.run(
        [sys.executable, str(REPO / "container" / "check_container.py"), "--task", "3", "--image", str(image),
         "--apptainer-cmd", str(fake), "--no-gpu"], capture_output=True, text=True, timeout=120,
        env={**os.environ, "FAKE_APPTAINER_LOG": str(log), "FAKE_MISSING": "/input"})
    assert missing.returncode == 1
    assert "FAIL  test -d /input: Missing required path: /input" in missing.stdout
    assert "RESULT  validator: FAIL (test -d /input: Missing required path: /input)" in missing.stdout


def make_writable_and_remove(workspace: Path) -> None:
    import shutil

    checker.make_writable(workspace)
    shutil.rmtree(workspace)
