"""fomo_nn_convert against bad files and odd folders: one clear line per bad case, the rest converted,
never half a dataset; and the FOMO25 rules read from one home (fomo_nn.challenges), not the converters."""
from __future__ import annotations

import ast
import gzip
import os
import struct
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from fomo_nn.cli.convert import main
from fomo_nn.datasets.dataset_json import load_dataset_json
from test_converters import AFFINE, SHAPE, fomo60k_tree, raw, roots, task_tree, write_nifti  # noqa: F401

REPO = Path(__file__).resolve().parents[1]
TASK2 = "Dataset005_FOMOTask2Meningioma"


def convert_task(src: Path, task: int = 2, dataset: int = 5, *extra: str) -> int:
    return main(["fomo-task", str(src), "--task", str(task), "-d", str(dataset), "--no-progress", "-np", "1", *extra])


def files_under(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def assert_only_cases(target: Path, cases: list[str], channels: int = 3) -> None:
    """imagesTr/labelsTr hold exactly `cases`, dataset.json lists them, and no staging folder is left."""
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == [
        f"{c}_{k:04d}.nii.gz" for c in cases for k in range(channels)]
    assert load_dataset_json(target).case_subjects == {c: c for c in cases}
    assert not [p for p in target.parent.rglob(".*")], "a staging folder was left behind"


# ------------------------------------------------------------------------------------------- bad files
def zero_column_sform(path: Path) -> Path:
    """A NIfTI whose sform (code 1, qform 0) has an all-zero column: nibabel cannot orient it."""
    image = nib.Nifti1Image(np.ones(SHAPE, np.float32), AFFINE)
    image.set_qform(None, code=0)
    image.set_sform(AFFINE, code=1)
    plain = path.with_name("tmp.nii")
    nib.save(image, str(plain))
    header = bytearray(plain.read_bytes())
    header[280:328] = struct.pack("<12f", -1, 0, 0, 10, 0, 0, 0, -20, 0, 0, 1, 5)  # srow_x, srow_y, srow_z
    plain.unlink()
    path.write_bytes(gzip.compress(bytes(header)))
    return path


def rgb_image(path: Path) -> Path:
    rgb = np.zeros(SHAPE, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, AFFINE), str(path))
    return path


@pytest.mark.parametrize("kind, message", [("rgb", ""), ("zero_column_sform", "not invertible"),
                                           ("utf16_label", "UTF-16")])
def test_a_bad_file_is_one_line_and_the_other_cases_are_converted(roots, capsys, kind, message):
    task = 1 if kind == "utf16_label" else 2
    src = task_tree(roots / "src", task)
    session = src / "preprocessed" / "sub_2" / "ses_1"
    if kind == "rgb":
        bad = rgb_image(session / "flair.nii.gz")
    elif kind == "zero_column_sform":
        bad = zero_column_sform(session / "flair.nii.gz")
    else:
        bad = src / "labels" / "sub_2" / "label.txt"
        bad.write_bytes("1\n".encode("utf-16"))
    assert convert_task(src, task) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if str(bad) in line]
    assert len(lines) == 1 and message in lines[0], err
    assert "Traceback" not in err and "Unable to find out axis" not in err
    target = raw(roots, f"Dataset005_FOMOTask{task}{'Infarct' if task == 1 else 'Meningioma'}")
    assert_only_cases(target, ["sub_1", "sub_3"], channels=4 if task == 1 else 3)


def test_whatever_a_reader_raises_is_that_files_problem(roots, monkeypatch, capsys):
    import dataset_conversion.fomo_task as fomo_task

    real = fomo_task.read_image
    broken = roots / "src" / "preprocessed" / "sub_3" / "ses_1" / "swi.nii.gz"

    def reader(path):
        if Path(path) == broken:
            raise TypeError("Cannot cast array data")
        return real(path)

    monkeypatch.setattr(fomo_task, "read_image", reader)
    src = task_tree(roots / "src", 2)
    assert convert_task(src) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if str(broken) in line)
    assert "cannot be read as a 3D scalar image (TypeError: Cannot cast array data)" in line
    assert_only_cases(raw(roots, TASK2), ["sub_1", "sub_2"])


# ------------------------------------------------------------------------------------- never half-written
def fail_on_second_case(patch):
    import dataset_conversion.fomo_task as fomo_task

    real, calls = fomo_task.place_file, []

    def place(source, destination, link=True):
        calls.append(destination)
        if len(calls) > 4:  # the first case (three images, one mask) went in; the disk fills up on the next
            raise OSError(28, "No space left on device")
        return real(source, destination, link)

    patch.setattr(fomo_task, "place_file", place)


def test_a_first_conversion_that_fails_midway_leaves_no_dataset(roots, monkeypatch, capsys):
    src = task_tree(roots / "src", 2)
    with monkeypatch.context() as patch:
        fail_on_second_case(patch)
        assert convert_task(src) == 2
    assert "No space left" in capsys.readouterr().err
    assert files_under(roots / "fomo_nn_raw") == {}
    assert convert_task(src) == 0  # the rerun finishes it
    assert_only_cases(raw(roots, TASK2), ["sub_1", "sub_2", "sub_3"])


def test_a_rerun_that_fails_midway_leaves_the_dataset_as_it_was(roots, monkeypatch):
    src = task_tree(roots / "src", 3)
    assert convert_task(src, 3, 4) == 0
    target = raw(roots, "Dataset004_FOMOTask3BrainAge")
    before = files_under(target)
    for n, subject in enumerate(("sub_1", "sub_2", "sub_3")):  # corrected ages
        label = next((src / "labels" / subject).rglob("label.txt"))
        label.write_text(f"{70 + n}\n")
    import dataset_conversion.fomo_task as fomo_task

    real_write = fomo_task.write_text_atomic
    written = []

    def write(path, text):
        written.append(path)
        if len(written) > 1:
            raise OSError(28, "No space left on device")
        return real_write(path, text)

    with monkeypatch.context() as patch:
        patch.setattr(fomo_task, "write_text_atomic", write)
        assert convert_task(src, 3, 4) == 2
    assert files_under(target) == before
    assert not [p for p in (roots / "fomo_nn_raw").rglob(".*")]
    assert convert_task(src, 3, 4) == 0
    assert [(target / "labelsTr" / f"sub_{i}.txt").read_text() for i in (1, 2, 3)] == ["70\n", "71\n", "72\n"]


def test_a_worker_that_dies_is_reported_and_nothing_is_written(roots, monkeypatch, capsys):
    import dataset_conversion.fomo_task as fomo_task
    from fomo_nn.preprocessing.parallel import WorkerDiedError

    def dies(*_):
        raise WorkerDiedError(["sub_2"])

    monkeypatch.setattr(fomo_task, "_run", dies)
    assert convert_task(task_tree(roots / "src", 2)) == 2
    assert "sub_2" in capsys.readouterr().err
    assert files_under(roots / "fomo_nn_raw") == {}


def test_a_rerun_keeps_the_cases_that_are_not_in_the_source(roots):
    src = task_tree(roots / "src", 3)
    assert convert_task(src, 3, 4) == 0
    target = raw(roots, "Dataset004_FOMOTask3BrainAge")
    for k in range(2):
        write_nifti(target / "imagesTr" / f"extra_1_{k:04d}.nii.gz")
    (target / "labelsTr" / "extra_1.txt").write_text("50\n")
    report_args = ["fomo-task", str(src), "--task", "3", "-d", "4", "--no-progress", "-np", "1"]
    assert main(report_args) == 0
    assert (target / "imagesTr" / "extra_1_0001.nii.gz").is_file()
    assert (target / "labelsTr" / "extra_1.txt").read_text() == "50\n"


def test_an_nnunet_import_that_fails_midway_leaves_no_dataset(roots, monkeypatch):
    import dataset_conversion.nnunet_dataset as nnunet_dataset

    src = roots / "Dataset120_Hippo"
    for case in ("hippo_1", "hippo_2"):
        write_nifti(src / "imagesTr" / f"{case}_0000.nii.gz")
        write_nifti(src / "labelsTr" / f"{case}.nii.gz", np.zeros(SHAPE), dtype=np.uint8)
    (src / "dataset.json").write_text('{"channel_names": {"0": "T1"}, "labels": {"background": 0, "hippo": 1}, '
                                      '"numTraining": 2, "file_ending": ".nii.gz"}')
    real, calls = nnunet_dataset.place_file, []

    def place(source, destination, link=True):
        calls.append(source)
        if len(calls) == 3:
            raise OSError(28, "No space left on device")
        return real(source, destination, link)

    monkeypatch.setattr(nnunet_dataset, "place_file", place)
    assert main(["nnunet", str(src), "-d", "12", "--no-progress"]) == 2
    assert files_under(roots / "fomo_nn_raw") == {}


# -------------------------------------------------------------------------------------- odd folders
def test_hidden_subject_folders_are_named_in_a_note(roots, capsys):
    src = task_tree(roots / "src", 2, subjects=("sub_1", "sub_2", ".sub_3"))
    assert convert_task(src) == 0
    out = capsys.readouterr().out
    assert f"note: skipped hidden folder .sub_3 in {src / 'preprocessed'}" in out
    assert_only_cases(raw(roots, TASK2), ["sub_1", "sub_2"])

    corpus = fomo60k_tree(roots / "corpus")
    write_nifti(corpus / ".sub_9" / "ses_1" / "t1.nii.gz", shape=(6, 7, 5))
    assert main(["fomo60k", str(corpus), "-d", "1", "--no-progress"]) == 0
    assert f"note: skipped hidden folder .sub_9 in {corpus}" in capsys.readouterr().out


def test_prediction_inputs_name_hidden_subject_folders_too(roots, capsys):
    from fomo_nn.inference.inputs import discover_cases

    src = task_tree(roots / "src", 2, subjects=("sub_1", ".sub_3"))
    cases = discover_cases(src / "preprocessed", ["dwi_b1000", "flair", "swi_or_t2s"])
    assert [case.case_id for case in cases] == ["sub_1"]
    assert f"note: skipped hidden folder .sub_3 in {src / 'preprocessed'}" in capsys.readouterr().err


def test_a_sequence_given_twice_refuses_its_case_naming_both_files(roots, capsys):
    src = task_tree(roots / "src", 2)
    session = src / "preprocessed" / "sub_2" / "ses_1"
    (session / "flair.nii").write_bytes(gzip.decompress((session / "flair.nii.gz").read_bytes()))
    for ending in (".nii", ".nii.gz"):  # t1 is no channel of task 2: which file is meant does not matter
        write_nifti(src / "preprocessed" / "sub_3" / "ses_1" / f"t1{ending}")
    label = src / "labels" / "sub_1" / "ses_1"
    (label / "seg.nii").write_bytes(gzip.decompress((label / "seg.nii.gz").read_bytes()))
    assert convert_task(src) == 1
    err = capsys.readouterr().err
    assert f"{session}: ambiguous sequence flair: flair.nii and flair.nii.gz are both there; keep one" in err
    assert f"{label}: ambiguous label seg: seg.nii.gz and seg.nii are both there; keep one" in err
    assert_only_cases(raw(roots, TASK2), ["sub_3"])

    from fomo_nn.inference.inputs import discover_cases

    cases = discover_cases(src, ["dwi_b1000", "flair", "swi_or_t2s"])
    assert [c.problem is None for c in cases] == [True, False, True]
    assert "flair.nii and flair.nii.gz" in cases[1].problem.problem


@pytest.mark.parametrize("folder", ["sub 3", "-sub3", "sub_3\n"])
def test_a_subject_folder_that_cannot_be_a_case_id_is_refused_by_name(roots, capsys, folder):
    src = task_tree(roots / "src", 2, subjects=("sub_1", "sub_2", folder))
    assert convert_task(src) == 1
    err = capsys.readouterr().err
    from fomo_nn.datasets.cases import case_id_problem

    assert f"{src / 'preprocessed' / folder}: subject folder name cannot be a case id: " \
           f"{case_id_problem(folder)}; rename it" in err
    assert_only_cases(raw(roots, TASK2), ["sub_1", "sub_2"])


def test_conversion_and_preprocessing_apply_one_case_id_rule(roots, capsys):
    from fomo_nn.datasets.cases import case_id_problem
    from fomo_nn.preprocessing.dataset_cases import dataset_cases

    assert case_id_problem("sub_1") is None and case_id_problem("Case-2.b") is None
    assert all(case_id_problem(bad) for bad in ("sub 1", "-sub1", "_sub1", "sub/1", "sub_1\n", ""))
    src = task_tree(roots / "src", 2)
    assert convert_task(src) == 0
    target = raw(roots, TASK2)
    for k in range(3):  # a case someone added by hand
        os.link(target / "imagesTr" / f"sub_1_{k:04d}.nii.gz", target / "imagesTr" / f"sub 9_{k:04d}.nii.gz")
    os.link(target / "labelsTr" / "sub_1.nii.gz", target / "labelsTr" / "sub 9.nii.gz")
    _, usable, problems = dataset_cases(target)
    assert [c.case_id for c in usable] == ["sub_1", "sub_2", "sub_3"]
    assert [p.problem for p in problems] == [case_id_problem("sub 9")]

    corpus = fomo60k_tree(roots / "corpus")
    bad = write_nifti(corpus / "sub 4" / "ses_1" / "t1.nii.gz", shape=(6, 7, 5))
    assert main(["fomo60k", str(corpus), "-d", "1", "--no-progress"]) == 1
    line = next(line for line in capsys.readouterr().err.splitlines() if str(bad) in line)
    assert case_id_problem("sub 4_ses_1_t1") in line


# ---------------------------------------------------------------------------------- one home for the rules
ENTRY_POINTS = {"fomo_nn/cli/convert.py", "fomo_nn/cli/generate_sample_data.py", "fomo_nn/demo/pipeline.py"}


def _imports_of_converters(path: Path) -> list[tuple[int, bool]]:
    """(line, at module level) of every import of dataset_conversion in `path`."""
    tree = ast.parse(path.read_text(), str(path))
    module_level = {id(node) for node in tree.body}
    found = []
    for node in ast.walk(tree):
        names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                 else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
        if any(n == "dataset_conversion" or n.startswith("dataset_conversion.") for n in names):
            found.append((node.lineno, id(node) in module_level))
    return found


def test_the_library_never_imports_the_converters():
    """Only the commands that run a converter or the sample generator may, and only when they run."""
    offenders = []
    for path in sorted((REPO / "fomo_nn").rglob("*.py")):
        relative = path.relative_to(REPO).as_posix()
        for line, top_level in _imports_of_converters(path):
            if relative not in ENTRY_POINTS or top_level:
                offenders.append(f"{relative}:{line}")
    assert offenders == []


def test_fomo25_rules_are_read_from_one_place():
    from fomo_nn.challenges.fomo25 import TASK_RULES
    from fomo_nn.challenges.sequences import channel_candidates, pick_sequence

    import dataset_conversion.fomo_task as fomo_task
    import fomo_nn.inference.challenge as challenge

    assert fomo_task.challenge_task is challenge.challenge_task
    assert not hasattr(challenge, "TASKS") and not hasattr(challenge, "TASK_RULES")
    assert TASK_RULES[1].required_sequences == ("dwi_b1000", "flair", "adc")
    assert TASK_RULES[2].alternative_sequences == ("swi", "t2s") and TASK_RULES[3].alternative_sequences == ()
    assert [TASK_RULES[t].label_file for t in (1, 2, 3)] == ["label.txt", "seg.nii.gz", "label.txt"]
    assert channel_candidates("swi_or_t2s") == ("swi", "t2s") and channel_candidates("T1") == ("t1", "t1w")
    assert pick_sequence("swi_or_t2s", {"t2s", "swi"}) == "swi" and pick_sequence("swi_or_t2s", {"t2s"}) == "t2s"
    assert pick_sequence("t2s", {"t2s", "swi"}) == "t2s" and pick_sequence("adc", {"flair"}) is None
    assert not (REPO / "dataset_conversion" / "layout.py").exists() and not (REPO / "fomo_nn" / "fomo25").exists()
