"""FOMO25 challenge mode and the container entry point: exactly the validator's arguments and outputs."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fomo_nn.cli.predict import main as predict_main
from fomo_nn.checkpoints.training_state import load_checkpoint, save_checkpoint
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


def write_background_model(root: Path) -> Path:
    """A segmentation model that predicts background everywhere: its masks are empty, deterministically."""
    model = write_model(root, "segmentation", folds=(0,), patch=(64, 64, 64))
    checkpoint = model / "fold_0" / "checkpoint_final.pth"
    state = load_checkpoint(checkpoint)
    for name, tensor in state["network"].items():
        if "seg_layers" in name:
            tensor.zero_()
            if name.endswith("bias"):
                tensor[0], tensor[1] = 5.0, -5.0
    save_checkpoint(state, checkpoint)
    return model


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


@pytest.mark.parametrize("channels, used, unused", [
    (["dwi_b1000", "flair", "adc", "swi_or_t2s"], "swi", "t2s"),  # merged channel: swi, as in conversion
    (["dwi_b1000", "flair", "adc", "t2s"], "t2s", "swi"),  # trained on T2*: T2* is read
])
def test_a_session_with_both_swi_and_t2s_is_predicted(tmp_path, capsys, channels, used, unused):
    """The validator passes --swi and --t2s when a session has both; the unused one is never read."""
    model = write_model(tmp_path / "results", "classification", channel_names=channels, folds=(0,))
    files = write_session(tmp_path / "input", ("flair", "adc", "dwi_b1000", used))
    files[unused] = tmp_path / "input" / "ses_1" / f"{unused}.nii.gz"
    files[unused].write_bytes(b"not a NIfTI: reading it would fail the case")
    output = tmp_path / "output" / "sub_1.txt"
    assert predict_main(challenge_arguments(1, model, files, output)) == 0
    err = capsys.readouterr().err
    assert "case sub_1: both --swi and --t2s given" in err
    assert f"--{used} for model channel '{channels[-1]}'" in err
    assert f"--{unused} not used" in err
    assert 0.0 <= float(output.read_text()) <= 1.0


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink", "hardlink"])
def test_output_over_an_input_is_refused_before_any_work(tmp_path, capsys, spelling):
    files = write_session(tmp_path / "input", TASK_FILES[2])
    flair = files["flair"]
    original = flair.read_bytes()
    output = {"same": flair, "dotdot": flair.parent / ".." / "ses_1" / flair.name,
              "symlink": tmp_path / "link.nii.gz", "hardlink": tmp_path / "hard.nii.gz"}[spelling]
    if spelling == "symlink":
        output.symlink_to(flair)
    elif spelling == "hardlink":
        output.hardlink_to(flair)
    # the model folder does not exist: a refusal after loading would complain about it instead
    with pytest.raises(SystemExit) as exit_info:
        predict_main(challenge_arguments(2, tmp_path / "no_model", files, output))
    assert exit_info.value.code == 2
    assert f"is the --flair input {flair}" in capsys.readouterr().err
    assert flair.read_bytes() == original


def test_a_missing_input_file_is_named_before_the_model_loads(tmp_path, capsys):
    files = write_session(tmp_path / "input", TASK_FILES[3])
    files["t2"] = tmp_path / "input" / "ses_1" / "T2.nii.gz"
    with pytest.raises(SystemExit) as exit_info:
        predict_main(challenge_arguments(3, tmp_path / "no_model", files, tmp_path / "sub_1.txt"))
    assert exit_info.value.code == 2
    assert f"no such file: --t2 {files['t2']}" in capsys.readouterr().err
    assert not (tmp_path / "sub_1.txt").exists()


def test_an_empty_mask_is_kept_and_warned_or_given_its_top_voxel(tmp_path, capsys):
    """Default: the honest empty mask plus a warning that the validator rejects it; --empty-mask top-voxel:
    exactly one voxel labelled, which passes the validator's np.unique == [0, 1]."""
    model = write_background_model(tmp_path / "results")
    files = write_session(tmp_path / "input", TASK_FILES[2])
    output = tmp_path / "output" / "sub_1.nii.gz"
    assert predict_main(challenge_arguments(2, model, files, output)) == 0
    err = capsys.readouterr().err
    assert "case sub_1: the predicted mask is empty" in err and "np.unique(mask) is exactly [0, 1]" in err
    assert not np.asanyarray(nib.load(str(output)).dataobj).any()
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]

    assert predict_main(challenge_arguments(2, model, files, output) + ["--empty-mask", "top-voxel"]) == 0
    assert "--empty-mask top-voxel: labelled voxel" in capsys.readouterr().err
    mask = nib.load(str(output))
    flair = nib.load(str(files["flair"]))
    assert mask.shape == flair.shape
    np.testing.assert_allclose(mask.affine, flair.affine, atol=1e-6)
    assert np.unique(mask.get_fdata()).tolist() == [0.0, 1.0]
    assert int(np.asanyarray(mask.dataobj).sum()) == 1
    assert sorted(p.name for p in output.parent.iterdir()) == [output.name]  # no probabilities left behind


def test_empty_mask_option_is_for_task_2_only(tmp_path, capsys):
    files = write_session(tmp_path / "input", TASK_FILES[3])
    with pytest.raises(SystemExit):
        predict_main(challenge_arguments(3, tmp_path / "model", files, tmp_path / "age.txt")
                     + ["--empty-mask", "top-voxel"])
    assert "--empty-mask applies to task 2" in capsys.readouterr().err


def run_checker(*arguments, timeout=600) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "container" / "check_container.py"), *map(str, arguments)],
                          capture_output=True, text=True, timeout=timeout)


@pytest.mark.parametrize("task, sessions", [(2, ["swi+t2s"]), (3, [])])
def test_container_entry_point_passes_the_validator_checks(tmp_path, task, sessions):
    """container/predict.py (= /app/predict.py) run as the validator runs it, under a hostile host environment."""
    model = write_model(tmp_path / "results", TASK_MODELS[task], folds=(0,), patch=(64, 64, 64))
    completed = run_checker("--task", task, "--direct", "--model", model, "--no-gpu", "--hostile-env",
                            *(["--sessions", *sessions] if sessions else []))
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert "RESULT  validator: PASS; fomo_nn checks: PASS" in completed.stdout
    cases = [line for line in completed.stdout.splitlines() if line.startswith("  ok    sub_")]
    assert len(cases) == 1
    if task == 2:
        assert "--swi swi.nii.gz" in cases[0] and "--t2s t2s.nii.gz" in cases[0]  # both passed, as the validator does


def test_container_checker_catches_a_wrong_output(tmp_path):
    """The checker must fail a container whose model answers another task than the arguments it gets."""
    model = write_model(tmp_path / "results", "regression", folds=(0,))
    completed = run_checker("--task", 1, "--direct", "--model", model, "--no-gpu", "--sessions", "swi")
    assert completed.returncode == 1
    assert "  FAIL  sub_1" in completed.stdout
    assert "RESULT  validator: FAIL (Failed subjects: sub_1)" in completed.stdout
    assert "answers FOMO25 task 3 (regression), which does not take" in completed.stdout
