"""Issue 24, "nothing silent": each numbered probe ends in one message naming the file and the problem and a
non-zero exit, or (1-4) in a refusal before any training step.

1 a partial dataset (killed preprocessing, deleted CASE.json) is refused unless --allow-incomplete-dataset;
2 training and preprocessing of one dataset exclude each other (trainings share); 3 an array swapped
between cases is refused; 4 an edited index is not trusted over CASE.json; 5 evaluate refuses when no
prediction matches a reference id; 6 a truncated, emptied or altered array is named with the command that
rewrites it, and `fomo_nn_preprocess --verify` rewrites it; 7 plans values of the wrong type or range are
refused naming the field; 8 an output that is a file, read-only, or too long a name is one message;
9 dataset.json labels with two names for one value fail `validate`; 10 two runs starting together name the
real holder.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import shutil
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
from builders import make_segmentation_dataset, simple_plans
from preprocessed_builders import build_preprocessed, tiny_plans
from toy_trainer import ToyRegressionTrainer

from fomo_nn.utils.errors import BadInputError
from fomo_nn.plans.records import load_plans, save_plans
from fomo_nn.preprocessing import runner
from fomo_nn.preprocessing.case_files import case_paths
from fomo_nn.preprocessing.case_store import PreprocessedCase, list_cases
from fomo_nn.training.base_trainer import TrainerOptions
from fomo_nn.utils.run_lock import RunLock, RunLockedError

TESTS = Path(__file__).parent
NO_PLOT = "from fomo_nn.training.progress_log import ProgressLog\nProgressLog.plot = lambda self: None\n"


def _seg_dataset(tmp_path, monkeypatch, num_cases=4):
    """A raw segmentation dataset, its plans saved where preprocessing reads them, and the env pointing there."""
    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=num_cases, shapes=((24, 26, 20),))
    preprocessed = tmp_path / "pre" / raw.name
    plans = simple_plans(channels=("t1", "flair"))
    save_plans(plans, preprocessed / "plans.json")
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    return raw, preprocessed, plans, preprocessed / plans.configuration


def _quiet_options(**values) -> TrainerOptions:
    return TrainerOptions(**{"epochs": 1, "num_workers": 0, "progress_bar": False, **values})


# --------------------------------------------------------------------------------- 1: complete datasets only
def test_1_a_killed_preprocessing_leaves_a_dataset_training_refuses_until_it_is_finished(tmp_path, monkeypatch):
    raw, preprocessed, plans, folder = _seg_dataset(tmp_path, monkeypatch)
    done = []
    real = runner.preprocess_one

    def killed_after_two(job):
        if len(done) == 2:
            raise KeyboardInterrupt("kill -9 after 2 of 4 cases")
        done.append(job.case.case_id)
        return real(job)

    monkeypatch.setattr(runner, "preprocess_one", killed_after_two)
    with pytest.raises(KeyboardInterrupt):
        runner.preprocess_dataset(raw, preprocessed, progress=False)
    assert len(list(folder.glob("case_*.json"))) == 2  # two finished cases: a dataset that used to train
    with pytest.raises(BadInputError) as error:
        list_cases(folder, plans)  # what training reads first, before any step
    assert error.value.path == str(folder)
    assert "2 of 4 planned case(s) have no finished preprocessed case" in error.value.problem
    assert "fomo_nn_preprocess -d Dataset001_Seg" in error.value.problem
    assert "--allow-incomplete-dataset" in error.value.problem

    monkeypatch.setattr(runner, "preprocess_one", real)
    assert runner.preprocess_dataset(raw, preprocessed, progress=False).processed == ["case_002", "case_003"]
    assert [c.case_id for c in list_cases(folder, plans)] == ["case_000", "case_001", "case_002", "case_003"]


def test_1_a_deleted_case_json_refuses_training_and_the_override_is_logged(tmp_path, caplog):
    folder = build_preprocessed(tmp_path, "regression", num_cases=10, shape=(32, 32, 32))
    case_paths(folder / "3d_fullres", "case_004")["properties"].unlink()  # its arrays stay: begun, not finished
    (folder / "splits_final.json").unlink(missing_ok=True)
    out = tmp_path / "out" / "fold_0"
    with pytest.raises(BadInputError, match=r"1 of 10 planned case\(s\) have no finished preprocessed case \(e\.g\. "
                                            r"case_004"):
        ToyRegressionTrainer(load_plans(folder), folder, out, "0", _quiet_options()).run()
    assert not (out / "checkpoint_final.pth").exists() and not (out / "progress.json").exists()

    options = _quiet_options(allow_incomplete_dataset=True, iterations_per_epoch=1, validation_iterations=1)
    with caplog.at_level(logging.WARNING, logger="fomo_nn"):
        trainer = ToyRegressionTrainer(load_plans(folder), folder, out, "0", options)
        assert trainer.run() == out / "checkpoint_final.pth"
    assert len(trainer.train_cases) + len(trainer.val_cases) == 9
    assert "training on the 9 finished case(s) anyway (--allow-incomplete-dataset)" in caplog.text


# --------------------------------------------------------------- 2: training and preprocessing exclude each other
STALLED_TRAINING = """
import sys, time
sys.path.insert(0, {tests!r})
{no_plot}
from toy_trainer import ToyRegressionTrainer
from fomo_nn.plans import load_plans
from fomo_nn.training.base_trainer import TrainerOptions

class Stalled(ToyRegressionTrainer):
    def on_train_start(self):  # set up and reading the dataset: stays here until killed
        print("training", flush=True)
        time.sleep(600)
data = {data!r}
Stalled(load_plans(data), data, {out!r}, "0", TrainerOptions(epochs=2, num_workers=0)).run()
"""


@contextmanager
def _process(code: str, ready: str):
    process = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line == ready, f"the other process did not get ready: {line!r} {process.stderr.read()[-2000:]}"
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(timeout=30)


def test_2_preprocessing_is_refused_while_trainings_read_the_dataset_and_training_while_it_writes(tmp_path,
                                                                                                monkeypatch, capsys):
    from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
    from fomo_nn.cli.plan_and_preprocess import main_preprocess

    raw, preprocessed, plans, folder = _seg_dataset(tmp_path, monkeypatch)
    assert runner.preprocess_dataset(raw, preprocessed, progress=False).ok
    stamps = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}
    training = STALLED_TRAINING.format(tests=str(TESTS), no_plot=NO_PLOT, data=str(preprocessed),
                                       out=str(tmp_path / "a" / "fold_0"))
    second = training.replace(str(tmp_path / "a" / "fold_0"), str(tmp_path / "b" / "fold_0"))
    with _process(training, "training") as first, _process(second, "training") as other:  # trainings share
        with pytest.raises(RunLockedError) as error:
            runner.preprocess_dataset(raw, preprocessed, progress=False)
        message = str(error.value)
        assert f"pid {first.pid}" in message and f"pid {other.pid}" in message and "fomo_nn training" in message
        assert main_preprocess(["-d", "1", "-np", "1", "--no-progress"]) == 1
        assert plan_and_preprocess_main(["-d", "1", "-np", "1", "--no-progress", "--target-spacing", "2", "2", "2"]) == 1
        err = capsys.readouterr().err
        assert err.count(f"pid {first.pid},") == 2 and "Traceback" not in err
        assert load_plans(preprocessed).target_spacing == [1.0, 1.0, 1.0]  # the re-plan did not happen
        assert {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == stamps  # nothing rewritten

    writer = (f"import sys\nsys.path.insert(0, {str(TESTS)!r})\nfrom fomo_nn.preprocessing.runner import dataset_lock\n"
              f"with dataset_lock({str(preprocessed)!r}):\n    print('held', flush=True)\n    sys.stdin.read()\n")
    with _process(writer, "held") as holder:
        out = tmp_path / "c" / "fold_0"
        with pytest.raises(RunLockedError, match=f"pid {holder.pid}"):
            ToyRegressionTrainer(load_plans(preprocessed), preprocessed, out, "0", _quiet_options()).run()
        assert not out.exists()


# ------------------------------------------------------------------------ 3 and 6: a store that proves itself
def test_3_an_array_swapped_between_cases_is_refused_at_start_up_and_at_every_read(tmp_path):
    folder = build_preprocessed(tmp_path, "regression", num_cases=4, shape=(32, 32, 32))
    cases_dir, plans = folder / "3d_fullres", load_plans(folder)
    assert len(list_cases(cases_dir, plans)) == 4
    other = np.random.default_rng(1).normal(size=(1, 36, 32, 28)).astype(np.float32)
    from fomo_nn.preprocessing.case_store import write_case

    write_case(cases_dir, "case_003", other, None, {"target": 50.0}, plans)  # another shape, another size
    shutil.copy(case_paths(cases_dir, "case_003")["data"], case_paths(cases_dir, "case_001")["data"])
    with pytest.raises(BadInputError) as error:
        list_cases(cases_dir, plans)
    assert error.value.path == str(case_paths(cases_dir, "case_001")["data"])
    assert "case_001" in error.value.problem and "fomo_nn_preprocess -d Dataset900_Tiny" in error.value.problem

    with pytest.raises(BadInputError) as error:  # read directly (no index): the shape is checked at the open
        PreprocessedCase(str(cases_dir), "case_001").data()
    assert error.value.path == str(case_paths(cases_dir, "case_001")["data"])
    assert "shape [1, 36, 32, 28]" in error.value.problem and "[1, 32, 32, 32]" in error.value.problem
    assert "fomo_nn_preprocess -d Dataset900_Tiny --verify" in error.value.problem


def _damage(path: Path, how: str) -> None:
    data = bytearray(path.read_bytes())
    if how == "truncated":
        data = data[:len(data) // 2]
    elif how == "emptied":
        data = bytearray()
    else:  # bit flips through the compressed blocks: the size stays
        for position in range(2000, len(data) - 64, 997):
            data[position] ^= 0xFF
    path.write_bytes(bytes(data))


def test_6_a_damaged_array_is_named_with_the_command_and_verify_rewrites_it(tmp_path, monkeypatch, caplog):
    from fomo_nn.cli.plan_and_preprocess import main_preprocess

    raw, preprocessed, plans, folder = _seg_dataset(tmp_path, monkeypatch)
    assert runner.preprocess_dataset(raw, preprocessed, progress=False).ok
    originals = {c.case_id: np.asarray(c.data()) for c in list_cases(folder, plans)}

    flipped = case_paths(folder, "case_002")["data"]
    _damage(flipped, "flipped")  # same size: start-up cannot see it, the read names it
    case = {c.case_id: c for c in list_cases(folder, plans)}["case_002"]
    with pytest.raises(BadInputError) as error:
        case.data()[:, 0:16, 0:16, 0:16]
    assert error.value.path == str(flipped) and "cannot be decoded" in error.value.problem
    assert "fomo_nn_preprocess -d Dataset001_Seg --verify" in error.value.problem

    _damage(case_paths(folder, "case_001")["data"], "truncated")
    _damage(case_paths(folder, "case_003")["seg"], "emptied")
    with pytest.raises(BadInputError) as error:
        list_cases(folder, plans)
    assert "2 of 4 preprocessed case(s) have array files of another size" in error.value.problem
    assert "case_001" in error.value.problem and "case_003" in error.value.problem

    with caplog.at_level(logging.WARNING, logger="fomo_nn"):
        assert main_preprocess(["-d", "1", "-np", "1", "--no-progress", "--verify"]) == 0
    assert f"damaged: {flipped}" in caplog.text and "rewriting 3 case(s)" in caplog.text
    for case in list_cases(folder, plans):
        assert np.array_equal(np.asarray(case.data()), originals[case.case_id])
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="fomo_nn"):
        assert main_preprocess(["-d", "1", "-np", "1", "--no-progress", "--verify"]) == 0
    assert "rewriting" not in caplog.text and "damaged" not in caplog.text  # a sound store: nothing to rewrite


def test_6_a_damaged_array_read_in_a_loader_worker_is_still_one_message_naming_it(tmp_path):
    from fomo_nn.training.data.batch_sources import PatchSource
    from fomo_nn.training.data.loader import make_loader

    folder = build_preprocessed(tmp_path, "regression", num_cases=2, shape=(32, 32, 32))
    cases = list_cases(folder / "3d_fullres", load_plans(folder))
    for case in cases:
        _damage(case.data_path, "flipped")  # same size: found when a worker reads it
    source = PatchSource(cases, (16, 16, 16), 2)
    with pytest.raises(BadInputError) as error:
        list(make_loader(source, seed=0, rank=0, first_step=0, last_step=2, num_workers=1))
    assert error.value.path in {str(case.data_path) for case in cases}
    assert error.value.problem.startswith("the stored array cannot be decoded")
    assert error.value.problem.endswith("fomo_nn_preprocess -d Dataset900_Tiny --verify")


# ------------------------------------------------------------------------------ 4: the index is only a cache
def test_4_targets_edited_in_the_index_are_not_used(tmp_path):
    folder = build_preprocessed(tmp_path, "regression", num_cases=4, shape=(32, 32, 32))
    cases_dir, plans = folder / "3d_fullres", load_plans(folder)
    truth = {c.case_id: json.loads(case_paths(cases_dir, c.case_id)["properties"].read_text())["target"]
             for c in list_cases(cases_dir, plans)}
    index = cases_dir / "_cases.index"
    data = json.loads(index.read_text())
    for record in data["cases"].values():
        record["target"] = -1000.0  # the CASE.json stamps are untouched
    index.write_text(json.dumps(data))
    assert {c.case_id: c.target for c in list_cases(cases_dir, plans)} == truth


# ------------------------------------------------------------------------- 5: evaluate with no matching id
def test_5_evaluate_refuses_when_no_prediction_matches_a_reference_id(tmp_path, capsys):
    from fomo_nn.cli.evaluate import main as evaluate_main

    reference, prediction = tmp_path / "reference.csv", tmp_path / "predictions.csv"
    reference.write_text("case_id,value\n" + "".join(f"sub_{i},{i % 2}\n" for i in range(8)))
    prediction.write_text("case_id,value\n" + "".join(f"case_{i:03d},{0.1 + 0.1 * i:.1f}\n" for i in range(8)))
    assert evaluate_main(["--task-type", "classification", "-r", str(reference), "-p", str(prediction),
                          "--quiet"]) == 1
    err = capsys.readouterr().err
    assert "no prediction matches a reference case id" in err and str(prediction) in err
    assert "8 case(s) (sub_0, sub_1, sub_2, sub_3, sub_4, ...)" in err
    assert "8 case(s) (case_000, case_001, case_002, case_003, case_004, ...)" in err
    assert not (tmp_path / "predictions_summary.json").exists()


# -------------------------------------------------------------------------------- 7: plans checked on read
@pytest.mark.parametrize("where, value, field", [
    (("batch_size",), "2", "plans.batch_size"), (("batch_size",), 0, "plans.batch_size"),
    (("batch_size",), -2, "plans.batch_size"), (("patch_size",), [33, 31, 29], "plans.patch_size"),
    (("patch_size",), [32, 32], "plans.patch_size"), (("training", "learning_rate"), "1e-3", "training.learning_rate"),
    (("training", "epochs"), 0, "training.epochs"), (("network", "strides"), [[1, 1, 1], [2, 2]], "network.strides")])
def test_7_plans_values_of_the_wrong_type_or_range_are_refused_naming_the_field(tmp_path, where, value, field):
    path = save_plans(tiny_plans("regression", ["t1"]), tmp_path / "plans.json")
    data = json.loads(path.read_text())
    target = data
    for key in where[:-1]:
        target = target[key]
    target[where[-1]] = value
    path.write_text(json.dumps(data))
    with pytest.raises(BadInputError) as error:
        load_plans(path)
    assert error.value.path == str(path) and field in error.value.problem


# ---------------------------------------------------------------------------- 8: paths checked before locks
def test_8_unusable_outputs_are_one_message_naming_the_path(tmp_path, monkeypatch, capsys):
    from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
    from fomo_nn.cli.train import main as train_main

    build_preprocessed(tmp_path / "pre", "regression", num_cases=4, shape=(32, 32, 32))
    monkeypatch.setenv("fomo_nn_preprocessed", str(tmp_path / "pre"))
    monkeypatch.setenv("fomo_nn_results", str(tmp_path / "results"))
    a_file = tmp_path / "a_file"
    a_file.write_text("not a folder")
    base = ["900", "0", "-tr", "regression", "--epochs", "1", "--device", "cpu"]
    assert train_main(base + ["--output", str(a_file)]) == 2
    err = capsys.readouterr().err
    assert f"{a_file}: is a file" in err and "Traceback" not in err
    assert train_main(base + ["--output", str(a_file / "fold_0")]) == 2
    assert f"{a_file}: is a file" in capsys.readouterr().err
    assert train_main(base + ["--tag", "t" * 300]) == 2
    err = capsys.readouterr().err
    assert "is 3" in err and "longer than the" in err and "shorten --tag" in err
    assert not (tmp_path / "results").exists()

    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):
        if str(path).startswith(str(tmp_path / "ro")):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    assert train_main(base + ["--output", str(tmp_path / "ro" / "fold_0")]) == 2
    err = capsys.readouterr().err
    assert "read-only" in err and str(tmp_path / "ro") in err and "Traceback" not in err
    monkeypatch.setattr(os, "mkdir", real_mkdir)

    make_segmentation_dataset(tmp_path / "raw", num_cases=2, shapes=((24, 26, 20),))
    monkeypatch.setenv("fomo_nn_raw", str(tmp_path / "raw"))
    monkeypatch.setenv("fomo_nn_preprocessed", str(a_file))  # a preprocessed root that is a file
    assert plan_and_preprocess_main(["-d", "1", "-np", "1", "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert f"{a_file}: is a file" in err and "Traceback" not in err


# ------------------------------------------------------------------------ 9: two names for one label value
def test_9_validate_refuses_labels_with_two_names_for_one_value(tmp_path, capsys):
    from fomo_nn.cli.convert import main as convert_main

    raw = make_segmentation_dataset(tmp_path / "raw", num_cases=2, shapes=((24, 26, 20),))
    spec = json.loads((raw / "dataset.json").read_text())
    spec["labels"] = {"background": 0, "lesion": 1, "edema": 2, "oedema": 2}  # every mask value declared
    (raw / "dataset.json").write_text(json.dumps(spec))
    assert convert_main(["validate", str(raw), "-np", "1"]) != 0
    out = capsys.readouterr()
    text = out.out + out.err
    assert str(raw / "dataset.json") in text and "one value two names (2: edema, oedema)" in text


# ------------------------------------------------------------------ 10: two runs that start at the same instant
SLOW_START = """
import sys, time
from fomo_nn.utils.run_lock import RunLock, RunLockedError
record = RunLock._record
def slow_record(self):  # the moment between a marker's creation and its record, made long
    time.sleep(1.5)
    return record(self)
RunLock._record = slow_record
print("starting", flush=True)
try:
    with RunLock({folder!r}, "work", "test"):
        print("held", flush=True)
        sys.stdin.read()
except RunLockedError as error:
    print("refused " + str(error).replace("\\n", " "), flush=True)
"""


def test_10_two_runs_starting_together_name_the_real_holder(tmp_path):
    with _process(SLOW_START.format(folder=str(tmp_path)), "starting") as other:
        time.sleep(0.6)  # the other run is taking the lock now
        try:
            with RunLock(tmp_path, "work", "test"):
                answer = other.stdout.readline().strip()
                assert answer.startswith("refused"), answer  # it started with us and lost: it names us
                assert f"pid {os.getpid()}," in answer and "pid 0" not in answer and "host ?" not in answer
        except RunLockedError as error:  # we lost: we name it
            assert f"pid {other.pid}," in str(error) and "pid 0," not in str(error) and "host ?" not in str(error)
