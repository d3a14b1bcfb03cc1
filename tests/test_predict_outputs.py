"""fomo_nn_predict's output folder: checked before any work, never inside the input, a full disk stops the run."""
from __future__ import annotations

import csv
import errno
import os
import tempfile

import numpy as np
import pytest
import torch

import fomo_nn.inference.model_folder as model_folder
from fomo_nn.cli.predict import main as predict_main
from fomo_nn.inference import export
from fomo_nn.utils import files
from fomo_nn.utils.files import write_atomically, write_text_atomic
from test_inference import GRIDS, write_model, write_raw_case

SHAPE, AFFINE = (24, 26, 22), np.diag([1.5, 1.5, 1.5, 1.0])


def arguments(input_dir, output_dir, model):
    return ["-i", str(input_dir), "-o", str(output_dir), "-m", str(model), "--device", "cpu", "--no-progress",
            "--threads", "1"]


@pytest.fixture
def no_model_loading(monkeypatch):
    """The output checks must come first: loading a model (or reading a case) before them is a failure."""
    def refuse(*_, **__):
        raise AssertionError("a model was loaded before the output folder was checked")
    monkeypatch.setattr(model_folder, "load_ensemble", refuse)


@pytest.fixture
def raw_input(tmp_path):
    write_raw_case(tmp_path / "in", "case_1", 2, SHAPE, AFFINE)
    return tmp_path / "in"


# --------------------------------------------------------------------------------------- output folder checks
def test_output_that_is_a_file_is_refused_before_any_work(tmp_path, raw_input, no_model_loading, capsys):
    output = tmp_path / "out.txt"
    output.write_text("keep me\n")
    assert predict_main(arguments(raw_input, output, tmp_path / "model")) == 2
    error = capsys.readouterr().err
    assert str(output) in error and "existing file" in error and "Traceback" not in error
    assert output.read_text() == "keep me\n"


def test_output_below_a_file_is_refused(tmp_path, raw_input, no_model_loading, capsys):
    (tmp_path / "plain").write_text("x")
    output = tmp_path / "plain" / "out"
    assert predict_main(arguments(raw_input, output, tmp_path / "model")) == 2
    error = capsys.readouterr().err
    assert str(output) in error and "a part of the path is a file" in error


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_output_folder_is_refused(tmp_path, raw_input, no_model_loading, capsys):
    output = tmp_path / "locked"
    output.mkdir()
    output.chmod(0o555)
    try:
        assert predict_main(arguments(raw_input, output, tmp_path / "model")) == 2
    finally:
        output.chmod(0o755)
    error = capsys.readouterr().err
    assert str(output) in error and "not writable" in error


def test_unwritable_output_folder_is_refused(tmp_path, raw_input, no_model_loading, monkeypatch, capsys):
    """The same refusal where the probe write fails (as root, chmod cannot make a folder read-only)."""
    output = tmp_path / "locked"
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.realpath(dir) == os.path.realpath(output):
            raise PermissionError(errno.EACCES, "Permission denied", str(output))
        return real_mkstemp(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
    assert predict_main(arguments(raw_input, output, tmp_path / "model")) == 2
    error = capsys.readouterr().err
    assert str(output) in error and "not writable (Permission denied)" in error


def test_probe_file_is_removed(tmp_path):
    folder = files.ensure_writable_folder(tmp_path / "a" / "b")
    assert folder.is_dir() and list(folder.iterdir()) == []


@pytest.mark.parametrize("where", ["same", "inside", "via_symlink"])
def test_output_inside_the_input_tree_is_refused(tmp_path, raw_input, no_model_loading, capsys, where):
    link = tmp_path / "link_to_in"
    link.symlink_to(raw_input, target_is_directory=True)
    output = {"same": raw_input, "inside": raw_input / "predictions", "via_symlink": link / "predictions"}[where]
    before = sorted(p.name for p in raw_input.iterdir())
    assert predict_main(arguments(raw_input, output, tmp_path / "model")) == 2
    error = capsys.readouterr().err
    assert "inside the input folder" in error and str(output) in error
    assert sorted(p.name for p in raw_input.iterdir()) == before  # nothing created in the input


def test_output_beside_the_input_is_accepted(tmp_path, raw_input):
    """A sibling whose name starts like the input's (in -> in_preds) is not inside it."""
    model = write_model(tmp_path / "results", "segmentation", ["flair", "t1"], folds=(0,), patch=(16, 16, 16))
    assert predict_main(arguments(raw_input, tmp_path / "in_preds", model) + ["--no-tta"]) == 0
    assert (tmp_path / "in_preds" / "case_1.nii.gz").is_file()


# ------------------------------------------------------------------------------------------------ disk full
def test_write_atomically_names_the_full_disk_and_leaves_nothing(tmp_path):
    def full(temp):
        temp.write_bytes(b"half")
        raise OSError(errno.ENOSPC, "No space left on device")

    target = tmp_path / "case.txt"
    with pytest.raises(OSError) as caught:
        write_atomically(target, full)
    assert str(caught.value) == f"no space left on {target}" and caught.value.errno == errno.ENOSPC
    assert list(tmp_path.iterdir()) == []


def test_full_disk_stops_the_run_with_one_message_and_a_rerun_resumes(tmp_path, monkeypatch, capsys):
    model = write_model(tmp_path / "results", "classification", ["flair", "t1"], folds=(0,), patch=(16, 16, 16))
    shape, affine = GRIDS["anisotropic"][0], GRIDS["anisotropic"][1]
    cases = [f"case_{i}" for i in range(1, 7)]
    for seed, case in enumerate(cases):
        write_raw_case(tmp_path / "in", case, 2, shape, affine, seed=seed)
    output = tmp_path / "out"
    failed_writes = []
    allowed = 2  # case_1.txt and predictions.csv fit; then the disk is full

    def writer(path, text):
        nonlocal allowed
        if allowed == 0:
            failed_writes.append(path.name)
            raise OSError(errno.ENOSPC, "No space left on device")
        allowed -= 1
        return write_text_atomic(path, text)

    monkeypatch.setattr(export, "write_text_atomic", writer)
    assert predict_main(arguments(tmp_path / "in", output, model)) == 1
    error = capsys.readouterr().err
    assert error.count("no space left on") == 1 and f"no space left on {output}" in error
    assert "Traceback" not in error
    assert len(failed_writes) <= 2  # the case that hit it and at most one in flight, not every case after
    assert sorted(p.name for p in output.iterdir()) == ["case_1.txt", "predictions.csv"]
    with open(output / "predictions.csv") as handle:
        assert [row["case_id"] for row in csv.DictReader(handle)] == ["case_1"]

    monkeypatch.setattr(export, "write_text_atomic", write_text_atomic)  # space freed
    stamp = (output / "case_1.txt").stat().st_mtime_ns
    assert predict_main(arguments(tmp_path / "in", output, model)) == 0
    error = capsys.readouterr().err
    assert "5 predicted, 1 skipped" in error
    assert (output / "case_1.txt").stat().st_mtime_ns == stamp
    with open(output / "predictions.csv") as handle:
        assert sorted(row["case_id"] for row in csv.DictReader(handle)) == cases


def test_full_disk_while_writing_a_mask_is_one_message(tmp_path, monkeypatch, capsys):
    """Through the real atomic writer: the message names the file, the folder holds no partial file."""
    model = write_model(tmp_path / "results", "segmentation", ["flair", "t1"], folds=(0,), patch=(16, 16, 16))
    for seed, case in enumerate(("case_1", "case_2", "case_3")):
        write_raw_case(tmp_path / "in", case, 2, SHAPE, AFFINE, seed=seed)
    import nibabel as nib

    def full(image, filename):
        with open(filename, "wb") as handle:
            handle.write(b"partial")
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(nib, "save", full)
    output = tmp_path / "out"
    assert predict_main(arguments(tmp_path / "in", output, model) + ["--no-tta"]) == 1
    error = capsys.readouterr().err
    assert error.count("no space left on") == 1 and f"no space left on {output / 'case_1.nii.gz'}" in error
    assert "Traceback" not in error and list(output.iterdir()) == []


# ------------------------------------------------------------------------------------------------ devices
def test_choose_device_is_one_function_for_training_and_inference():
    from fomo_nn.training import base_trainer
    from fomo_nn.utils.device import choose_device

    assert base_trainer.choose_device is choose_device
    assert not hasattr(model_folder, "choose_device")
    assert choose_device("cpu") == torch.device("cpu")
    with pytest.raises(RuntimeError, match="'gpu' is not a device"):
        choose_device("gpu")
    if not torch.cuda.is_available():
        with pytest.raises(RuntimeError, match="no CUDA device"):
            choose_device("cuda:0")
