"""FOMO25 challenge mode and the container entry point: exactly the validator's arguments and outputs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fomo_nn.cli.predict import main as predict_main
from test_inference import GRIDS, head_and_blob, make_affine, write_model, write_nifti

REPO = Path(__file__).resolve().parents[1]
TASK_MODELS = {1: "classification", 2: "segmentation", 3: "regression"}
TASK_FILES = {1: ("flair", "adc", "dwi_b1000", "swi"), 2: ("flair", "dwi_b1000", "t2s"), 3: ("t1", "t2")}


def write_session(folder: Path, sequences, flair_affine=None) -> dict[str, Path]:
    """One subject's ses_1; the FLAIR may sit on its own (oblique) grid, as in hospital data."""
    image, _ = head_and_blob(GRIDS["lps"][0])
    files = {}
    for sequence in sequences:
        affine = flair_affine if (sequence == "flair" and flair_affine is not None) else GRIDS["lps"][1]
        data = head_and_blob((36, 40, 32))[0] if (sequence == "flair" and flair_affine is not None) else image
        files[sequence] = write_nifti(folder / "ses_1" / f"{sequence}.nii.gz", data, affine)
    return files


def challenge_arguments(task: int, model: Path, files: dict[str, Path], output: Path) -> list[str]:
    arguments = ["--task", str(task), "-m", str(model), "--device", "cpu"]
    for sequence, path in files.items():
        arguments += [f"--{sequence}", str(path)]
    return arguments + ["--output", str(output)]


@pytest.mark.parametrize("task", [1, 2, 3])
def test_challenge_mode_writes_what_fomo25_expects(tmp_path, task):
    model = write_model(tmp_path / "results", TASK_MODELS[task], folds=(0, 1) if task != 2 else (0,))
    flair_affine = make_affine((1.1, 1.0, 1.2), flips=(-1, -1, 1), degrees_z=15.0, origin=(38.0, -18.0, 12.0)) if task == 2 else None
    files = write_session(tmp_path / "input", TASK_FILES[task], flair_affine)
    output = tmp_path / "output" / ("sub_1.nii.gz" if task == 2 else "sub_1.txt")
    output.parent.mkdir()
    assert predict_main(challenge_arguments(task, model, files, output)) == 0
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]
    if task == 2:
        flair = nib.load(str(files["flair"]))
        mask = nib.load(str(output))
        assert mask.shape == flair.shape != nib.load(str(files["dwi_b1000"])).shape  # the FLAIR's grid
        np.testing.assert_allclose(mask.affine, flair.affine, atol=1e-6)
        assert set(np.unique(np.asanyarray(mask.dataobj)).tolist()) <= {0, 1}
        return
    tokens = output.read_text().split()
    assert len(tokens) == 1
    value = float(tokens[0])
    if task == 1:
        assert 0.0 <= value <= 1.0
    else:
        assert value != int(value)  # an age with its decimals (the baseline truncated it)


@pytest.mark.parametrize("task, drop, add, message", [
    (1, "adc", None, "task 1 requires --adc"),
    (1, "swi", None, "task 1 requires --swi or --t2s"),
    (1, None, "t2s", "takes one of --swi, --t2s, not both"),
    (2, None, "t1", "task 2 does not take --t1"),
    (3, "t2", None, "task 3 requires --t2"),
])
def test_wrong_arguments_are_argparse_errors(tmp_path, capsys, task, drop, add, message):
    files = {s: tmp_path / f"{s}.nii.gz" for s in TASK_FILES[task] if s != drop}
    if add:
        files[add] = tmp_path / f"{add}.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        predict_main(challenge_arguments(task, tmp_path / "model", files, tmp_path / "out.txt"))
    assert exit_info.value.code == 2
    assert message in capsys.readouterr().err


def test_wrong_output_ending_and_wrong_model_are_refused(tmp_path, capsys):
    files = write_session(tmp_path / "input", TASK_FILES[3])
    with pytest.raises(SystemExit):
        predict_main(challenge_arguments(3, tmp_path / "model", files, tmp_path / "age.nii.gz"))
    assert "task 3 writes a .txt" in capsys.readouterr().err
    segmentation_model = write_model(tmp_path / "results", "segmentation", folds=(0,))
    assert predict_main(challenge_arguments(3, segmentation_model, files, tmp_path / "age.txt")) == 1
    assert "task 3 needs a regression model" in capsys.readouterr().err
    assert not (tmp_path / "age.txt").exists()


@pytest.mark.parametrize("task, variant", [(2, "swi"), (3, "both")])
def test_container_entry_point_passes_the_validator_checks(tmp_path, task, variant):
    """container/predict.py (= /app/predict.py) run as the validator ran it, checked by check_container.py."""
    model = write_model(tmp_path / "results", TASK_MODELS[task], folds=(0,), patch=(64, 64, 64))
    completed = subprocess.run([sys.executable, str(REPO / "container" / "check_container.py"), "--task", str(task),
                                "--direct", "--model", str(model), "--no-gpu", "--variant", variant],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    passed = [line for line in completed.stdout.splitlines() if line.startswith("PASS")]
    assert len(passed) == 1


def test_container_checker_catches_a_wrong_output(tmp_path):
    """The checker must fail a container whose model answers another task than the arguments it gets."""
    model = write_model(tmp_path / "results", "regression", folds=(0,))
    completed = subprocess.run([sys.executable, str(REPO / "container" / "check_container.py"), "--task", "1",
                                "--direct", "--model", str(model), "--no-gpu", "--variant", "swi"],
                               capture_output=True, text=True, timeout=300)
    assert completed.returncode == 1
    assert "FAIL  task 1 (--swi)" in completed.stdout
