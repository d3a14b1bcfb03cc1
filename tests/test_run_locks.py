"""One writer per folder: a second run is refused naming the first, a killed holder's lock is recovered,
the shards of one array job still write side by side; and preprocessing workers die with their parent."""
from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from builders import make_segmentation_dataset, simple_plans

import fomo_nn.inference.model_folder as model_folder
from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
from fomo_nn.cli.plan_and_preprocess import main_preprocess
from fomo_nn.cli.predict import main as predict_main
from fomo_nn.plans.records import load_plans, save_plans
from fomo_nn.preprocessing import runner
from fomo_nn.preprocessing.case_store import preprocessing_signature
from fomo_nn.preprocessing.sharding import Shard
from fomo_nn.utils import run_lock
from fomo_nn.utils.run_lock import RunLock, RunLockedError

TESTS = Path(__file__).parent
HOLD = """
import sys
sys.path.insert(0, {tests!r})
{setup}
with {lock}:
    print("held", flush=True)
    sys.stdin.read()  # until the test closes stdin (a clean exit) or kills us
"""


@contextmanager
def holder(lock: str, setup: str = "from fomo_nn.utils.run_lock import RunLock"):
    """Another process holding `lock` (a Python expression) until the block ends."""
    process = subprocess.Popen([sys.executable, "-c", HOLD.format(tests=str(TESTS), setup=setup, lock=lock)],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline().strip() == "held", "the holder process did not take the lock"
        yield process
    finally:
        if process.poll() is None:
            process.stdin.close()
            process.wait(timeout=30)


def _refusal(call) -> str:
    with pytest.raises(RunLockedError) as error:
        call()
    return str(error.value)


# ------------------------------------------------------------------------------------------------- the lock
def test_a_second_writer_is_refused_naming_the_holder(tmp_path):
    with holder(f"RunLock({str(tmp_path)!r}, 'work', 'test')") as process:
        assert [p.name for p in tmp_path.iterdir()] == [".fomo_nn_work.lock"]
        message = _refusal(lambda: RunLock(tmp_path, "work", "test", advice="or use another folder").__enter__())
        assert str(tmp_path) in message and "another test run" in message
        assert f"host {socket.gethostname()}, pid {process.pid}, since " in message and "command `" in message
        assert message.rstrip().endswith("or use another folder.")
        with RunLock(tmp_path, "other", "test"):  # another kind of lock in the same folder is independent
            pass
    assert list(tmp_path.iterdir()) == []  # a clean exit leaves no marker
    with RunLock(tmp_path, "work", "test"):
        with RunLock(tmp_path, "work", "test"):  # this process's own nested step
            pass
        assert (tmp_path / ".fomo_nn_work.lock").is_file()
    assert list(tmp_path.iterdir()) == []
    with RunLock(tmp_path / "new" / "fold_0", "work", "test"):  # folders it had to make ...
        assert (tmp_path / "new" / "fold_0").is_dir()
    assert list(tmp_path.iterdir()) == []  # ... go again when the run left them empty


def test_the_lock_of_a_killed_holder_is_recovered(tmp_path):
    with holder(f"RunLock({str(tmp_path)!r}, 'work', 'test')") as process:
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    marker = tmp_path / ".fomo_nn_work.lock"
    assert json.loads(marker.read_text())["pid"] == process.pid  # the kill left its marker behind
    with RunLock(tmp_path, "work", "test"):
        assert json.loads(marker.read_text())["pid"] == os.getpid()
    assert not marker.exists()


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


def test_without_flock_the_record_decides_and_another_host_is_named(tmp_path, monkeypatch):
    """Lustre without flock, NFS without a lock daemon: a dead or reused pid on this host is stale; a holder
    on another host cannot be checked, so the message says which file to delete."""
    def no_flock(fd, operation):
        raise OSError(38, "Function not implemented")

    monkeypatch.setattr(run_lock.fcntl, "flock", no_flock)
    marker = tmp_path / ".fomo_nn_work.lock"
    here = socket.gethostname()
    with subprocess.Popen(["sleep", "30"]) as alive:
        try:
            records = [({"host": here, "pid": _dead_pid()}, True),
                       ({"host": here, "pid": alive.pid, "pid_start": "1"}, True),  # pid reused since
                       ({"host": here, "pid": alive.pid, "pid_start": run_lock._process_start(alive.pid)}, False),
                       ({"host": "node-17", "pid": alive.pid, "command": "fomo_nn_train 1 all"}, False)]
            for record, recovered in records:
                marker.write_text(json.dumps(record))
                if recovered:
                    with RunLock(tmp_path, "work", "test"):
                        assert json.loads(marker.read_text())["pid"] == os.getpid()
                    assert not marker.exists()
                else:
                    message = _refusal(lambda: RunLock(tmp_path, "work", "test").__enter__())
                    assert f"pid {alive.pid}" in message and marker.exists()
                    assert (f"delete {marker}" in message) == (record["host"] != here)
        finally:
            alive.kill()


# ------------------------------------------------------------------------------------------- preprocessing
def _planned(tmp_path, monkeypatch, num_cases=5):
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=num_cases, shapes=((24, 26, 20),))
    preprocessed = tmp_path / "pre" / raw.name
    save_plans(simple_plans(channels=("t1", "flair")), preprocessed / "plans.json")
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    return raw, preprocessed, preprocessing_signature(load_plans(preprocessed))


SHARD_SETUP = "from fomo_nn.preprocessing.runner import dataset_lock\nfrom fomo_nn.preprocessing.sharding import Shard"


def test_shards_of_one_array_job_write_side_by_side_and_refuse_anything_else(tmp_path, monkeypatch):
    raw, preprocessed, signature = _planned(tmp_path, monkeypatch)
    with holder(f"dataset_lock({str(preprocessed)!r}, Shard(0, 2), {signature!r})", SHARD_SETUP) as process:
        report = runner.preprocess_dataset(raw, preprocessed, shard=Shard(1, 2), progress=False)
        assert report.ok and report.processed == ["case_001", "case_003"]  # beside a running shard
        for other in (None, Shard(0, 2), Shard(1, 3)):  # a whole run, the same shard again, another N
            message = _refusal(lambda: runner.preprocess_dataset(raw, preprocessed, shard=other, progress=False))
            assert f"shard 0/2: host {socket.gethostname()}, pid {process.pid}" in message
        assert "[settings: 2 shards" in message and "this run: 3 shards" in message
        save_plans(simple_plans(channels=("t1", "flair"), target_spacing=(1.5, 1.5, 1.5)), preprocessed / "plans.json")
        message = _refusal(lambda: runner.preprocess_dataset(raw, preprocessed, shard=Shard(1, 2), progress=False))
        assert f"preprocessing signature {signature}" in message  # the other shard runs the old plans
        assert plan_and_preprocess_main(["-d", "1", "-np", "1", "--no-progress"]) == 1  # nor plan over it
    assert not (preprocessed / "dataset_fingerprint.json").exists()


def test_a_second_whole_preprocessing_run_is_refused_before_it_writes(tmp_path, monkeypatch, capsys):
    raw, preprocessed, _ = _planned(tmp_path, monkeypatch)
    with holder(f"dataset_lock({str(preprocessed)!r})", SHARD_SETUP) as process:
        assert main_preprocess(["-d", "1", "-np", "1", "--no-progress"]) == 1
        error = capsys.readouterr().err
        assert error.count("is being written by another fomo_nn preprocessing run") == 1
        assert f"pid {process.pid}" in error and "Traceback" not in error
        assert plan_and_preprocess_main(["-d", "1", "-np", "1", "--no-progress"]) == 1
        assert main_preprocess(["-d", "1", "-np", "1", "--no-progress", "--shard", "0/2"]) == 1
        assert not (preprocessed / "3d_fullres").exists() and not (preprocessed / "dataset_fingerprint.json").exists()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    assert main_preprocess(["-d", "1", "-np", "1", "--no-progress"]) == 0  # the killed run's lock is stale
    assert len(list((preprocessed / "3d_fullres").glob("*.json"))) == 5
    assert not list(preprocessed.glob(".fomo_nn_*"))


# ------------------------------------------------------------------------------------------------ training
TRAINING = """
import sys, time
sys.path.insert(0, {tests!r})
from toy_trainer import ToyRegressionTrainer
from fomo_nn.plans import load_plans
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.training.progress_log import ProgressLog

ProgressLog.plot = lambda self: None
class Stalled(ToyRegressionTrainer):
    def on_train_start(self):  # set up, log started, about to step: then it stays there until killed
        print("training", flush=True)
        time.sleep(600)
data = {data!r}
Stalled(load_plans(data), data, {out!r}, "0", TrainerOptions(epochs=2, num_workers=0)).run()
"""


def test_two_trainings_into_one_fold_folder_the_second_is_refused(tmp_path, monkeypatch):
    from preprocessed_builders import build_preprocessed
    from test_training_runs import log_epochs, toy

    from fomo_nn.training.progress_log import ProgressLog

    monkeypatch.setattr(ProgressLog, "plot", lambda self: None)

    data, out = build_preprocessed(tmp_path / "pre", "regression", shape=(24, 24, 24)), tmp_path / "fold_0"
    first = subprocess.Popen([sys.executable, "-c", TRAINING.format(tests=str(TESTS), data=str(data), out=str(out))],
                             stdout=subprocess.PIPE, text=True)
    try:
        assert first.stdout.readline().strip() == "training"
        for options in ({}, {"overwrite": True}, {"continue_training": True}):
            message = _refusal(lambda: toy(data, out, **options).run())
            assert f"{out} is being written by another fomo_nn training run" in message
            assert f"pid {first.pid}" in message and "another fold folder" in message
        assert (out / "training_log.jsonl").is_file()  # the running training's files were not touched
    finally:
        first.kill()
        first.wait(timeout=10)
    toy(data, out, overwrite=True).run()  # the killed run's lock is recovered
    assert log_epochs(out) == [0] and not list(out.glob(".fomo_nn_*"))


# ---------------------------------------------------------------------------------------------- prediction
def test_two_predictions_into_one_output_folder_the_second_is_refused(tmp_path, monkeypatch, capsys):
    from test_inference import write_raw_case

    write_raw_case(tmp_path / "in", "case_1", 2, (24, 26, 22), np.diag([1.5, 1.5, 1.5, 1.0]))
    out = tmp_path / "out"

    def refuse(*_, **__):
        raise AssertionError("a model was loaded although the output folder is busy")

    monkeypatch.setattr(model_folder, "load_ensemble", refuse)
    with holder(f"output_folder_lock({str(out)!r})", "from fomo_nn.inference.predictor import output_folder_lock") \
            as process:
        assert predict_main(["-i", str(tmp_path / "in"), "-o", str(out), "-m", str(tmp_path / "model"),
                             "--device", "cpu", "--no-progress"]) == 2
        error = capsys.readouterr().err
        assert f"{out} is being written by another fomo_nn prediction run" in error
        assert f"pid {process.pid}" in error and "another output folder" in error and "Traceback" not in error
        assert [p.name for p in out.iterdir()] == [".fomo_nn_predict.lock"]  # the refused run wrote nothing


# ------------------------------------------------------------------------------- workers die with the parent
ORPHANING = """
import sys, threading, time
from fomo_nn.preprocessing.parallel import run_parallel

def work():
    list(run_parallel(time.sleep, [60] * 4, ["a", "b", "c", "d"], 2, progress=False))

if sys.argv[1] == "thread":  # a pool made off the main thread relies on the watchdog alone
    worker = threading.Thread(target=work)
    worker.start()
    worker.join()
else:
    work()
"""


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _status(int(entry.name)) is not None:
            if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def _status(pid: int) -> str | None:
    """The process's state letter, None when it is gone (a zombie waiting to be reaped is gone too)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return None
    return None if state in "ZX" else state


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.parametrize("where", ["main", "thread"])
def test_workers_exit_when_the_parent_is_killed(where):
    parent = subprocess.Popen([sys.executable, "-c", ORPHANING, where], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while len(_children(parent.pid)) < 2 and time.monotonic() < deadline:  # both workers started
            time.sleep(0.1)
        time.sleep(0.5)  # the workers are inside their 60 s calls
        children = _children(parent.pid)
        assert len(children) >= 2
    finally:
        parent.kill()
        parent.wait(timeout=10)
    deadline = time.monotonic() + 10
    while any(_status(pid) for pid in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [pid for pid in children if _status(pid)]
    for pid in left:
        os.kill(pid, signal.SIGKILL)
    assert not left, f"children {left} outlived their killed parent"
