"""container/check_fomo26.py (`check_container.py --edition fomo26`) reproduces the FOMO26 validator
(fomo26/container_templates container_validator @ d442af2), rejects every corrupted_test_builds/ case for
the reason its corruptions.txt gives, and passes fomo_nn's own FOMO26 predict.py on tasks 1-5 and 6/7."""
from __future__ import annotations

import contextlib
import importlib.util
import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "container"))
import check_fomo26 as checker  # noqa: E402
import fomo26_rules as rules  # noqa: E402

from builders import simple_plans  # noqa: E402
from fomo26_corrupted_builds import BUILDS, GPU_ONLY  # noqa: E402
from fomo_nn.probing.encoders import random_encoder  # noqa: E402
from test_embed import TINY  # noqa: E402
from test_fomo26_challenge import write_task4_model  # noqa: E402
from test_inference import write_model  # noqa: E402

TASKS = rules.validator_tasks()

# the tiny encoders' stages have 4 + 8 + 12 channels; fomo_nn_embed pools every stage's average and maximum
EMBEDDING_LENGTH = 2 * (4 + 8 + 12)


def flags_of(task: int) -> tuple[str, ...]:
    return tuple(f"--{key}" for options in TASKS[task].inputs for key in options)


def test_the_validators_tasks_are_read_from_the_fomo26_rows():
    """tasks.py @ d442af2: flags, the t2s-or-swi group, output formats, probability range, largest label."""
    assert TASKS[1].task_id == "task1" and set(TASKS[1].inputs) == {("dwi",), ("flair",), ("adc",), ("t2s", "swi")}
    assert set(TASKS[2].inputs) == {("dwi",), ("flair",), ("t2s", "swi")} and TASKS[2].max_label == 1
    assert TASKS[3].inputs == (("t1",),) and TASKS[3].value_range is None and TASKS[3].output_format == "txt"
    assert TASKS[4].inputs == (("t2",),) and TASKS[4].max_label == 2 and TASKS[4].output_ending == ".nii.gz"
    assert TASKS[5].inputs == (("t1",),) and TASKS[5].value_range == (0.0, 1.0)
    assert TASKS[1].value_range == (0.0, 1.0)
    assert TASKS[6] == TASKS[7] and TASKS[6].task_id == "task6_and_7" and TASKS[6].inputs == (("input",),)
    assert TASKS[6].output_format == "numpy"


def test_one_of_t2s_and_swi_is_passed_t2s_first(tmp_path):
    files = {key: tmp_path / f"{key}.nii.gz" for key in ("flair", "dwi", "adc", "swi", "t2s")}
    arguments = rules.predict_arguments(TASKS[1], files, "sub_1.txt", "/input", "/output")
    pairs = dict(zip(arguments[::2], arguments[1::2]))
    assert pairs == {"--dwi": "/input/dwi.nii.gz", "--flair": "/input/flair.nii.gz", "--adc": "/input/adc.nii.gz",
                     "--t2s": "/input/t2s.nii.gz", "--output": "/output/sub_1.txt"}
    del files["t2s"]
    assert "--swi" in rules.predict_arguments(TASKS[1], files, "x.txt", "/input", "/output")
    del files["swi"]
    mapped = rules.inputs_mapped(TASKS[1], [("sub_1", files)])
    assert not mapped.passed and mapped.message == "sub_1: needs one of ['t2s', 'swi'] but none provided"


def test_output_checks_follow_the_validator_and_fomo_nn_is_stricter(tmp_path):
    row = np.ones((1, 16))
    np.save(tmp_path / "row.npy", row)
    checks, length = rules.numpy_checks(tmp_path / "row.npy", "a")
    assert all(c.passed for c in checks) and length == 16  # squeezed, float64: the validator takes it
    assert "1-D float32" in checker.fomo_nn_output_problems(TASKS[6], tmp_path / "row.npy", {})[0]
    assert not rules.length_consistency({"a": 16, "b": 12}).passed
    assert rules.length_consistency({"a": 16, "b": 16}).passed
    np.save(tmp_path / "ints.npy", np.arange(4))
    assert rules.numpy_checks(tmp_path / "ints.npy", "a")[0][-1].message == "Expected floating-point dtype, got int64"

    reference = tmp_path / "t2.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((6, 5, 4), np.int16), np.diag([1.0, 1.0, 2.0, 1.0])), str(reference))
    for name, data, affine, failing in [
        ("soft", np.full((6, 5, 4), 0.5, np.float32), np.eye(4), "output_dtype_is_integer"),
        ("4d", np.zeros((6, 5, 4, 2), np.uint8), np.eye(4), "output_is_3d"),
        ("negative", np.full((6, 5, 4), -1, np.int16), np.eye(4), "output_labels_in_range"),
    ]:
        nib.save(nib.Nifti1Image(data, affine), str(tmp_path / f"{name}.nii.gz"))
        checks = rules.nifti_checks(tmp_path / f"{name}.nii.gz", "a", {"t2": reference}, 2)
        assert [c.name for c in checks if not c.passed] == [failing], (name, checks)
    good = np.zeros((6, 5, 4), np.uint8)
    good[1, 1, 1] = 2
    nib.save(nib.Nifti1Image(good, np.eye(4)), str(tmp_path / "moved.nii.gz"))
    assert all(c.passed for c in rules.nifti_checks(tmp_path / "moved.nii.gz", "a", {"t2": reference}, 2))
    problems = checker.fomo_nn_output_problems(TASKS[4], tmp_path / "moved.nii.gz", {"t2": reference})
    assert problems == ["the mask's affine differs from that of --t2, the input of its shape"]


def run_check(*arguments, capsys) -> tuple[int, str]:
    code = checker.main([*map(str, arguments)])
    return code, capsys.readouterr().out


@pytest.mark.parametrize("build", [*BUILDS, GPU_ONLY], ids=lambda b: b.name)
def test_every_corrupted_build_is_rejected_for_its_stated_reason(tmp_path, capsys, build):
    """Each fixture fails the validator check its corruptions.txt line names (the 'SHOULD WORK' ones pass);
    a failed prediction's cause is named by fomo_nn's check."""
    if build.name == "task2_v4" and torch.cuda.is_available():
        pytest.skip("task2_v4 works where the container sees a GPU; this checks it fails without one")
    app = build.write(tmp_path, flags_of(build.task))
    code, out = run_check("--task", build.task, "--direct", "--app", app, "--no-gpu", capsys=capsys)
    result = out.splitlines()[-1]
    if build.failing_check is None:
        assert code == 0 and result == "RESULT  validator: PASS; fomo_nn checks: PASS", out
        return
    assert code == 1
    assert result.startswith(f"RESULT  validator: FAIL ({build.failing_check} "), out
    failed = [line for line in out.splitlines() if line.strip().startswith(f"[FAIL] {build.failing_check} ")]
    assert failed and build.message in failed[0], out
    if build.cause:
        first = "sub_swi" if build.task in (1, 2) else "case_001"
        explained = [line for line in out.splitlines() if line.startswith(f"  fomo_nn: {first}: ")]
        assert explained and build.cause in explained[0], out
        assert result.endswith("fomo_nn checks: FAIL")


FAKE_APPTAINER = '''#!{python}
"""Records its arguments; starts/stops instances (binds kept in a state file), answers python --version
and nvidia-smi -L, and writes the prediction of /app/predict.py (task 3: an age) into the /output bind."""
import json, os, pathlib, sys
arguments = sys.argv[1:]
state = pathlib.Path(os.environ["FAKE_APPTAINER_STATE"])
with open(state / "calls.jsonl", "a") as log:
    log.write(json.dumps(arguments) + "\\n")
if arguments == ["--version"]:
    print("apptainer version 1.3.0 (fake)")
elif arguments[:2] == ["instance", "start"]:
    binds = dict(reversed(a.split(":")[:2]) for a in arguments if a.count(":") == 2)
    (state / (arguments[-1] + ".json")).write_text(json.dumps(binds))
elif arguments[0] == "exec":
    binds = json.loads((state / (arguments[1].split("://")[1] + ".json")).read_text())
    command = arguments[2:]
    if command == ["python", "--version"]:
        print("Python 3.11.9")
    elif command == ["nvidia-smi", "-L"]:
        print("GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-fake)")
    elif command[:2] == ["python", "/app/predict.py"]:
        output = command[command.index("--output") + 1]
        pathlib.Path(binds["/output"], pathlib.Path(output).name).write_text("42.5\\n")
'''

FAKE_NVIDIA_SMI = '#!/bin/sh\n[ "$1" = "-L" ] && echo "GPU 0: NVIDIA H100 80GB HBM3 (UUID: GPU-fake)"\nexit 0\n'


def write_sif(path: Path, arch: bytes) -> Path:
    """A SIF global header (sylabs/sif pkg/sif/sif.go @ 9f7fef4): launch script, magic, version, arch."""
    launch = b"#!/usr/bin/env run-singularity\n".ljust(32, b"\0")
    path.write_bytes(launch + checker.SIF_MAGIC + b"01\0" + arch + b"\0" + bytes(200))
    return path


@pytest.fixture
def fake_tools(tmp_path, monkeypatch):
    bin_dir, state = tmp_path / "bin", tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    (bin_dir / "apptainer").write_text(FAKE_APPTAINER.format(python=sys.executable))
    (bin_dir / "nvidia-smi").write_text(FAKE_NVIDIA_SMI)
    for tool in bin_dir.iterdir():
        tool.chmod(0o755)
    monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_APPTAINER_STATE", str(state))
    return state


def test_image_mode_runs_the_validators_apptainer_commands(tmp_path, capsys, fake_tools):
    image = write_sif(tmp_path / "fomo_nn.sif", b"02")
    code, out = run_check("--task", 3, "--image", image, capsys=capsys)
    assert code == 0 and out.splitlines()[-1] == "RESULT  validator: PASS; fomo_nn checks: PASS", out
    calls = [json.loads(line) for line in (fake_tools / "calls.jsonl").read_text().splitlines()]
    assert calls[0] == ["--version"]
    start = calls[1]
    name = start[-1]
    assert start[:3] == ["instance", "start", "--nvccli"] and start[-2] == str(image) and name.startswith("fomo_val_")
    binds = [start[i + 1] for i, a in enumerate(start) if a == "--bind"]
    assert [b.split(":", 1)[1] for b in binds] == ["/input:ro", "/output:rw", "/tmp:rw"]
    assert calls[2] == ["exec", f"instance://{name}", "python", "--version"]
    assert calls[3] == ["exec", f"instance://{name}", "nvidia-smi", "-L"]
    assert calls[4] == ["exec", f"instance://{name}", "python", "/app/predict.py", "--t1", "/input/t1.nii.gz",
                        "--output", "/output/case_001.txt"]
    assert calls[5] == ["instance", "stop", name]
    assert "[PASS] container_can_access_gpu — 1 GPU(s) found inside container" in out

    # --no-gpu: no --nvccli, no nvidia-smi anywhere (the validator's --no-gpu)
    (fake_tools / "calls.jsonl").unlink()
    assert run_check("--task", 3, "--image", image, "--no-gpu", capsys=capsys)[0] == 0
    calls = [json.loads(line) for line in (fake_tools / "calls.jsonl").read_text().splitlines()]
    assert "--nvccli" not in calls[1] and not any("nvidia-smi" in c for c in calls)


def test_an_arm64_build_and_an_uploaded_folder_are_refused(tmp_path, capsys, fake_tools):
    """corrupted_test_builds task2_v3 (built without --arch amd64: the validator does not see it) and
    'upload project instead of file'."""
    code, out = run_check("--task", 3, "--image", write_sif(tmp_path / "mac.sif", b"04"), "--no-gpu", capsys=capsys)
    assert code == 1
    assert "fomo_nn: the image is built for arm64; the organisers run it on amd64" in out
    assert out.splitlines()[-1] == "RESULT  validator: PASS; fomo_nn checks: FAIL"

    (fake_tools / "calls.jsonl").unlink()
    project = tmp_path / "project.sif"
    project.mkdir()
    (project / "predict.py").write_text("")
    code, out = run_check("--task", 3, "--image", project, "--no-gpu", capsys=capsys)
    assert code == 1
    assert f"[FAIL] container_file_is_readable — {project} is not a regular file" in out
    assert "PHASE 1 FAILED" in out and (fake_tools / "calls.jsonl").read_text() == '["--version"]\n'
    code, out = run_check("--task", 3, "--image", write_sif(tmp_path / "image.img", b"02"), "--no-gpu", capsys=capsys)
    assert "[FAIL] container_has_valid_extension — Expected .sif extension, got '.img'" in out


# ------------------------------------------------------------------------------------ fomo_nn's image
@pytest.fixture(scope="module")
def packed_models(tmp_path_factory):
    """One tiny model per FOMO26 finetuning task (one 64^3 tile per case) and an encoder for tasks 6/7."""
    root = tmp_path_factory.mktemp("fomo26_models")
    models = {
        1: write_model(root / "1", "classification", channel_names=["dwi_b1000", "flair", "adc", "swi_or_t2s"],
                       folds=(0,), patch=(64, 64, 64)),
        2: write_model(root / "2", "segmentation", channel_names=["dwi_b1000", "flair", "swi_or_t2s"], folds=(0,),
                       patch=(64, 64, 64)),
        3: write_model(root / "3", "regression", channel_names=["t1"], folds=(0,), patch=(64, 64, 64)),
        4: write_task4_model(root / "4", winning_label=2),
        5: write_model(root / "5", "classification", channel_names=["t1"], folds=(0,), patch=(64, 64, 64)),
    }
    plans = simple_plans(task_type="pretraining", labels=None)
    plans.network, plans.patch_size = TINY, [32, 32, 32]
    encoder = random_encoder(plans, 0).encoder
    folder = root / "6" / "model" / "encoder"
    folder.mkdir(parents=True)
    torch.save({"format": "fomo_nn_encoder", "encoder": {f"encoder.{k}": v for k, v in encoder.state_dict().items()},
                "plans": plans.to_json()}, folder / "encoder.pt")
    models[6] = models[7] = root / "6" / "model"
    return models


class InProcessRunner(checker.DirectRunner):
    """--direct, but /app/predict.py's main() is called in this process (torch is imported once)."""

    def execute(self, command, timeout):
        if command[:2] != ["python", str(self.app_dir / "predict.py")]:
            return super().execute(command, timeout)
        spec = importlib.util.spec_from_file_location("app_predict", self.app_dir / "predict.py")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        out, err = io.StringIO(), io.StringIO()
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
            try:
                code = module.main(command[2:])
            except SystemExit as exit_:
                code = exit_.code
        return checker.Completed(int(code or 0), out.getvalue(), err.getvalue())


@pytest.mark.parametrize("task", [1, 2, 3, 4, 5, 6])
def test_fomo_nn_predict_passes_the_fomo26_validator(tmp_path, packed_models, task):
    """container/predict.py at /app with a packed model (tasks 1-5) or encoder (6/7) and `--edition fomo26`
    baked in: every validator check and fomo_nn's pass, on oblique anisotropic scans."""
    app = checker.fomo_nn_app(tmp_path / "app", packed_models[task])
    sessions = ["swi", "swi+t2s"] if task in (1, 2) else []
    subjects = checker.synthetic_subjects(tmp_path / "data", TASKS[task], sessions)
    outcome = checker.validate(InProcessRunner(app, False, dict(os.environ)), TASKS[task], subjects, gpu=False,
                               timeout=600, time_limit=checker.TIME_LIMIT_S, workspace=tmp_path / "run")
    assert outcome.validator_ok and outcome.fomo_nn_ok, (outcome.checks, outcome.problems)
    names = [c.name for c in outcome.checks]
    assert names.count("prediction_runs_successfully") == len(subjects)
    expected = {"txt": "output_text_is_finite", "nifti": "output_labels_in_range", "numpy": "output_numpy_is_finite"}
    assert names.count(expected[TASKS[task].output_format]) == len(subjects)
    if task == 6:
        assert outcome.checks[-1].name == "embedding_dim_consistency" and outcome.checks[-1].passed
        assert f"dimension {EMBEDDING_LENGTH}" in outcome.checks[-1].message
    if task == 4:  # the vessel label of a model favouring it reaches the mask
        assert "observed [0, 2]" in next(c.message for c in outcome.checks if c.name == "output_labels_in_range")


def test_fomo_nn_image_end_to_end_under_a_hostile_host(tmp_path, packed_models):
    """The whole command as documented (subprocess, --hostile-env, the image's %environment): task 3."""
    completed = subprocess.run(
        [sys.executable, str(REPO / "container" / "check_container.py"), "--edition", "fomo26", "--task", "3",
         "--direct", "--model", str(packed_models[3]), "--no-gpu", "--hostile-env"],
        capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stdout + completed.stderr
    assert completed.stdout.splitlines()[-1] == "RESULT  validator: PASS; fomo_nn checks: PASS"
    assert "=== seconds per case: min" in completed.stdout and "against the 120 s limit" in completed.stdout


def test_the_embedding_entry_point_refuses_what_it_cannot_answer(tmp_path, packed_models, capsys):
    spec = importlib.util.spec_from_file_location("app_predict", REPO / "container" / "predict.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    scan = checker.write_scan(tmp_path / "t1w.nii.gz", (30, 30, 20), np.eye(4), seed=1)
    assert entry.embed(["--input", str(scan), "--output", str(tmp_path / "e.txt")], packed_models[6] / "encoder") == 2
    assert "tasks 6 and 7 write a .npy embedding" in capsys.readouterr().err
    empty = tmp_path / "encoder"
    empty.mkdir()
    assert entry.embed(["--input", str(scan), "--output", str(tmp_path / "e.npy")], empty) == 1
    assert "must hold exactly one encoder checkpoint" in capsys.readouterr().err
    shutil.copy(packed_models[6] / "encoder" / "encoder.pt", empty / "encoder.pt")
    assert entry.embed(["--input", str(scan), "--output", str(tmp_path / "e.npy"), "--device", "cpu"], empty) == 0
    vector = np.load(tmp_path / "e.npy")
    assert vector.shape == (EMBEDDING_LENGTH,) and vector.dtype == np.float32 and np.isfinite(vector).all()
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix in (".npy", ".json")) == ["e.npy"]  # no recipe


def test_pack_model_packs_a_model_and_its_encoder_and_the_image_describes_them(tmp_path, packed_models, capsys):
    """pack_model.py MODEL --encoder CKPT: the folder predict.py's --describe (the image build's check) loads."""
    spec = importlib.util.spec_from_file_location("pack_model", REPO / "container" / "pack_model.py")
    packer = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(packer)
    packed = tmp_path / "model"
    assert packer.main([str(packed_models[4]), "--encoder", str(packed_models[6] / "encoder" / "encoder.pt"),
                        "-o", str(packed)]) == 0
    assert f"embeddings of length {EMBEDDING_LENGTH}" in capsys.readouterr().out
    assert sorted(p.relative_to(packed).as_posix() for p in packed.rglob("*") if p.is_file()) == [
        "encoder/encoder.pt", "fold_0/checkpoint_final.pth", "plans.json"]
    app = checker.fomo_nn_app(tmp_path / "app", packed)
    spec = importlib.util.spec_from_file_location("app_predict", app / "predict.py")
    entry = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(entry)
    assert entry.main(["--describe"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "FOMO26 task 4 (trigeminal neuralgia): --t2", f"FOMO26 tasks 6 and 7 (embeddings of length {EMBEDDING_LENGTH}): --input"]
    (app / "predict.args").write_text("--empty-mask=keep\n")  # a FOMO25 build: no FOMO25 task takes this model
    assert entry.main(["--describe"]) == 1
    assert ("cannot answer FOMO25 task 2 (meningioma): no argument of the task serves its channel(s) ['t2']"
            in capsys.readouterr().err)
    with pytest.raises(SystemExit):
        packer.main(["-o", str(tmp_path / "nothing")])
    assert "give a model folder (or --task-model N MODEL_DIR ...), --encoder, or both" in capsys.readouterr().err


ORGANISERS_VALIDATOR = os.environ.get("FOMO26_CONTAINER_VALIDATOR")  # a checkout's container_validator/ folder


@pytest.mark.skipif(not ORGANISERS_VALIDATOR,
                    reason="set FOMO26_CONTAINER_VALIDATOR to fomo26/container_templates' container_validator/ "
                           "(@ d442af2) to run the organisers' validator")
@pytest.mark.parametrize("build", [*BUILDS, GPU_ONLY], ids=lambda b: b.name)
def test_the_organisers_validator_gives_the_same_verdict_and_messages(tmp_path, capsys, build):
    """Their validate.py (through tests/apptainer_emulator.py) and check_fomo26 --direct on the same manifest:
    the same verdict and the same failing checks with the same messages."""
    import re

    import yaml

    app = build.write(tmp_path / "apps", flags_of(build.task))
    task = TASKS[build.task]
    subjects = checker.synthetic_subjects(tmp_path / "data", task, ["swi", "t2s", "swi+t2s"])
    manifest = tmp_path / "data" / "manifest.yaml"
    manifest.write_text(yaml.safe_dump({task.task_id: {sid: {"inputs": {k: str(p.relative_to(tmp_path / "data"))
                                                                        for k, p in files.items()}}
                                                       for sid, files in subjects}}))
    image = tmp_path / "image.sif"
    image.write_bytes(b"")
    emulator = tmp_path / "apptainer"
    emulator.write_text(f"#!/bin/sh\nexec {sys.executable} {REPO / 'tests' / 'apptainer_emulator.py'} \"$@\"\n")
    emulator.chmod(0o755)
    theirs = subprocess.run(
        [sys.executable, "validate.py", "--task", task.task_id, "--sif", str(image), "--no-gpu", "--apptainer",
         str(emulator), "--manifest", str(manifest)], cwd=ORGANISERS_VALIDATOR, capture_output=True, text=True,
        timeout=600, env={**os.environ, "EMULATED_APP": str(app), "EMULATED_APPTAINER_STATE": str(tmp_path / "st")})
    their_failures = [line.strip() for line in re.sub(r"\x1b\[[0-9;]*m", "", theirs.stdout).splitlines()
                      if line.strip().startswith("[FAIL]")]
    code, out = run_check("--task", build.task, "--direct", "--app", app, "--no-gpu", "--manifest", manifest,
                          capsys=capsys)
    our_failures = [line.strip() for line in out.splitlines() if line.strip().startswith("[FAIL]")]
    assert (theirs.returncode == 0) == ("RESULT  validator: PASS" in out)
    assert their_failures == our_failures, (theirs.stdout, out)


def load_module(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_one_image_serves_several_tasks_told_apart_by_the_call(tmp_path, packed_models, capsys):
    """pack_model.py --task-model 1 .. 2 .. 4 .. --encoder: one /app answers tasks 1, 2, 4 and 6/7, each passing
    the validator; tasks 3 and 5 (the same call) are refused as one image."""
    packer = load_module("pack_model", REPO / "container" / "pack_model.py")
    packed = tmp_path / "model"
    assert packer.main(["--task-model", "1", str(packed_models[1]), "--task-model", "2", str(packed_models[2]),
                        "--task-model", "4", str(packed_models[4]),
                        "--encoder", str(packed_models[6] / "encoder" / "encoder.pt"), "-o", str(packed)]) == 0
    app = checker.fomo_nn_app(tmp_path / "app", packed)
    entry = load_module("app_predict", app / "predict.py")
    capsys.readouterr()
    assert entry.main(["--describe"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        "FOMO26 task 1 (infarct): --dwi --flair --adc --swi --t2s",
        "FOMO26 task 2 (meningioma): --dwi --flair --swi --t2s",
        "FOMO26 task 4 (trigeminal neuralgia): --t2", f"FOMO26 tasks 6 and 7 (embeddings of length {EMBEDDING_LENGTH}): --input"]
    for task in (1, 2, 4, 6):
        subjects = checker.synthetic_subjects(tmp_path / f"data{task}", TASKS[task], ["t2s"])
        outcome = checker.validate(InProcessRunner(app, False, dict(os.environ)), TASKS[task], subjects, gpu=False,
                                   timeout=600, time_limit=checker.TIME_LIMIT_S, workspace=tmp_path / f"run{task}")
        assert outcome.validator_ok and outcome.fomo_nn_ok, (task, outcome.checks, outcome.problems)
    scan = subjects[0][1]["input"]
    assert entry.main(["--t1", str(scan), "--output", str(tmp_path / "age.txt")]) == 2
    assert "fit none of the packed tasks [1, 2, 4]" in capsys.readouterr().err

    both = tmp_path / "both"
    assert packer.main(["--task-model", "3", str(packed_models[3]), "--task-model", "5", str(packed_models[5]),
                        "-o", str(both)]) == 0
    entry = load_module("app_predict_35", checker.fomo_nn_app(tmp_path / "app35", both) / "predict.py")
    capsys.readouterr()
    assert entry.main(["--describe"]) == 1
    assert ("FOMO26 task 5 and task 3 are called with the same arguments and output ending, so one image cannot "
            "serve both" in capsys.readouterr().err)
