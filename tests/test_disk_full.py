"""A full disk stops preprocessing and training with one message naming the path, keeps every finished
file whole (nothing half-written under a final name), and a rerun after freeing space resumes."""
from __future__ import annotations

import errno
import json
import pickle
from pathlib import Path

import matplotlib.figure
import numpy as np
import pytest
import torch
from builders import make_segmentation_dataset, simple_plans

from fomo_nn.cli.plan_and_preprocess import main_preprocess
from fomo_nn.cli.train import main as train_main
from fomo_nn.plans.records import save_plans
from fomo_nn.preprocessing import runner
from fomo_nn.training import progress_log
from fomo_nn.checkpoints.training_state import load_checkpoint, save_checkpoint
from fomo_nn.training.progress_log import ProgressLog
from fomo_nn.utils.files import NoSpaceLeftError

# what torch 2.x's C++ writer raises when the disk fills under torch.save (seen writing to /dev/full)
TORCH_FULL_DISK = "[enforce fail at inline_container.cc:672] . unexpected pos 704 vs 598"
REAL_SAVE = torch.save
# what np.save raises when a real disk fills mid-array (seen on a 600 KB tmpfs): an OSError without errno
NUMPY_SHORT_WRITE = "59334 requested and 3040 written"


def _enospc():
    return OSError(errno.ENOSPC, "No space left on device")


# ------------------------------------------------------------------------------------------- preprocessing
@pytest.mark.parametrize("short_write", [False, True], ids=["enospc", "numpy_short_write"])
def test_a_full_disk_stops_preprocessing_and_a_rerun_resumes(tmp_path, monkeypatch, capsys, short_write):
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=4, shapes=((24, 26, 20),))
    preprocessed = tmp_path / "pre" / raw.name
    save_plans(simple_plans(channels=("t1", "flair")), preprocessed / "plans.json")
    folder = preprocessed / "3d_fullres"
    real_write, saves = Path.write_bytes, []

    def filling_write(path, payload):  # case arrays reach the disk through array_store's one atomic write
        if ".b2nd." not in path.name:  # small files (CASE.json, dataset.json, the case index) still fit
            return real_write(path, payload)
        saves.append(1)
        if len(saves) > 2:  # the first case's image and mask fit, then the disk is full
            real_write(path, b"partial")
            raise OSError(NUMPY_SHORT_WRITE) if short_write else _enospc()
        return real_write(path, payload)

    monkeypatch.setattr(Path, "write_bytes", filling_write)
    with pytest.raises(NoSpaceLeftError) as error:
        runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert str(error.value) == f"no space left on {folder / 'case_001.b2nd'}"
    assert len(saves) == 3  # stopped at the case it hit: not every later case failing the same way
    assert sorted(p.name for p in folder.iterdir()) == ["_cases.index", "_planned.plan", "case_000.b2nd",
                                                        "case_000.json", "case_000_seg.b2nd"]

    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    assert main_preprocess(["-d", "1", "-np", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert err.count("no space left on") == 1 and f"no space left on {folder / 'case_001.b2nd'}" in err
    assert "free space and rerun" in err and "bad" not in err and "Traceback" not in err

    monkeypatch.setattr(Path, "write_bytes", real_write)  # space freed
    report = runner.preprocess_dataset(raw, preprocessed, num_workers=1, progress=False)
    assert report.ok and report.skipped == ["case_000"] and len(report.processed) == 3


def test_the_no_space_error_survives_the_trip_from_a_worker_process():
    """Workers hand their exceptions back pickled; OSError's own pickling would rebuild this one with the wrong
    arguments and the pool would report a dead worker instead of the full disk."""
    copy = pickle.loads(pickle.dumps(NoSpaceLeftError("/data/pre/case_7.npy")))
    assert isinstance(copy, NoSpaceLeftError) and str(copy) == "no space left on /data/pre/case_7.npy"
    assert copy.errno == errno.ENOSPC


# ------------------------------------------------------------------------------------------------ training
@pytest.mark.parametrize("failure", [RuntimeError(TORCH_FULL_DISK), _enospc()], ids=["inline_container", "oserror"])
def test_a_checkpoint_save_on_a_full_disk_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    path = tmp_path / "checkpoint_latest.pth"
    save_checkpoint({"epoch": 1}, path)

    def full(state, file):
        with open(file, "wb") as handle:
            handle.write(b"PK partial zip")
        raise failure

    monkeypatch.setattr(torch, "save", full)
    with pytest.raises(NoSpaceLeftError) as error:
        save_checkpoint({"epoch": 2}, path)
    assert str(error.value) == f"no space left on {path}"
    assert load_checkpoint(path) == {"epoch": 1} and [p.name for p in tmp_path.iterdir()] == [path.name]


def test_another_torch_error_is_not_called_a_full_disk(tmp_path, monkeypatch):
    def broken(state, file):
        raise RuntimeError("Can't pickle local object")

    monkeypatch.setattr(torch, "save", broken)
    with pytest.raises(RuntimeError, match="pickle"):
        save_checkpoint({"epoch": 2}, tmp_path / "checkpoint_latest.pth")
    assert list(tmp_path.iterdir()) == []


def _fail_second_latest_save(monkeypatch):
    latest_saves = []

    def save(state, file):
        if str(file).rsplit("/", 1)[-1].startswith(".checkpoint_latest.pth."):
            latest_saves.append(state["epoch"])
            if len(latest_saves) == 2:
                raise RuntimeError(TORCH_FULL_DISK)
        REAL_SAVE(state, file)

    monkeypatch.setattr(torch, "save", save)


def test_training_on_a_full_disk_stops_keeping_the_last_checkpoint_and_resumes(tmp_path, monkeypatch):
    from preprocessed_builders import build_preprocessed
    from test_training_runs import log_epochs, toy

    monkeypatch.setattr(ProgressLog, "plot", lambda self: None)
    data, out = build_preprocessed(tmp_path / "pre", "regression", shape=(24, 24, 24)), tmp_path / "fold_0"
    _fail_second_latest_save(monkeypatch)
    with pytest.raises(NoSpaceLeftError) as error:
        toy(data, out, epochs=3).run()
    assert str(error.value) == f"no space left on {out / 'checkpoint_latest.pth'}"
    assert load_checkpoint(out / "checkpoint_latest.pth")["epoch"] == 1
    assert not list(out.glob(".*"))  # no partial save, no lock left behind

    monkeypatch.setattr(torch, "save", REAL_SAVE)  # space freed
    toy(data, out, epochs=3, continue_training=True).run()
    assert load_checkpoint(out / "checkpoint_final.pth")["epoch"] == 3 and log_epochs(out) == [0, 1, 2]


def test_the_training_command_says_no_space_once(tmp_path, monkeypatch, capsys):
    from preprocessed_builders import build_preprocessed
    from test_training_runs import CLI_FAST

    build_preprocessed(tmp_path / "pre", "regression", shape=(24, 24, 24), num_cases=10)
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setattr(ProgressLog, "plot", lambda self: None)
    _fail_second_latest_save(monkeypatch)
    out = tmp_path / "fold_0"
    assert train_main(["900", "0", "--output", str(out), *CLI_FAST, "--epochs", "2"]) != 0
    err = capsys.readouterr().err
    assert err.count("no space left on") == 1 and f"no space left on {out / 'checkpoint_latest.pth'}" in err
    assert "--continue" in err and "Traceback" not in err


def test_log_writes_on_a_full_disk_name_the_file_and_keep_the_old_log(tmp_path, monkeypatch):
    log = ProgressLog(tmp_path)
    log.append({"epoch": 0, "train_loss": 1.0, "lr": 0.1, "epoch_time": 1.0})
    before = log.path.read_text()

    class FullFile:
        def __init__(self, *args, **kwargs):
            pass

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def write(self, text):
            raise _enospc()

    monkeypatch.setattr(progress_log, "open", FullFile, raising=False)
    with pytest.raises(NoSpaceLeftError, match=f"no space left on {log.path}"):
        log.append({"epoch": 1, "train_loss": 0.5, "lr": 0.1, "epoch_time": 1.0})

    def full_figure(self, file, **kwargs):
        Path(file).write_bytes(b"\x89PNG partial")
        raise _enospc()

    monkeypatch.setattr(matplotlib.figure.Figure, "savefig", full_figure)
    with pytest.raises(NoSpaceLeftError, match=f"no space left on {log.plot_path}"):
        log.plot()

    def truncating(self, data, *args, **kwargs):  # what a full disk does to a file rewritten in place
        with open(self, "wb") as handle:
            handle.write(data[:3].encode() if isinstance(data, str) else data[:3])
        raise _enospc()

    monkeypatch.setattr(Path, "write_text", truncating)
    monkeypatch.setattr(Path, "write_bytes", truncating)
    with pytest.raises(NoSpaceLeftError, match=f"no space left on {log.path}"):
        ProgressLog(tmp_path, resume_epoch=1)  # a resumed run rewrites the log it keeps
    assert log.path.read_text() == before and json.loads(before)["epoch"] == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["training_log.jsonl"]  # no half-written file
