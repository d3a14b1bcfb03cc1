"""fomo_nn_convert on small FOMO-layout trees built here: what goes in, what comes out, what is refused."""
from __future__ import annotations

import gzip
import json
import os
from pathlib import Path

import nibabel as nib
import numpy as np
import pytest

from dataset_conversion.fomo60k import convert_fomo60k
from dataset_conversion.fomo_task import convert_fomo_task
from fomo_nn.challenges.layout import sequence_family
from fomo_nn.cli.convert import main
from fomo_nn.datasets.cases import list_cases, list_supervised_cases
from fomo_nn.datasets.dataset_json import load_dataset_json
from fomo_nn.datasets.manifest import load_manifest
from fomo_nn.datasets.validation import read_grid, validate_raw_dataset
from fomo_nn.utils.errors import BadInputError

SHAPE = (16, 18, 16)
AFFINE = np.array([[-1.0, 0, 0, 10], [0, 1.2, 0, -20], [0, 0, 1.0, 5], [0, 0, 0, 1]])


@pytest.fixture()
def roots(tmp_path, monkeypatch):
    for var in ("fomo_nn_raw", "fomo_nn_preprocessed", "fomo_nn_results"):
        monkeypatch.setenv(var, str(tmp_path / var))
    return tmp_path


def write_nifti(path: Path, data=None, affine=AFFINE, seed=0, shape=SHAPE, dtype=np.float32) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    if data is None:
        data = np.random.default_rng(seed).normal(100, 20, size=shape)
    nib.save(nib.Nifti1Image(np.asarray(data).astype(dtype), affine), str(path))
    return path


def truncate(path: Path, keep: float = 0.6) -> Path:
    payload = path.read_bytes()
    path.write_bytes(payload[: int(len(payload) * keep)])
    return path


def raw(roots, folder: str) -> Path:
    return roots / "fomo_nn_raw" / folder


# ---------------------------------------------------------------------------------------------- FOMO60K
FOMO60K_FILES = {
    "sub_1/ses_1": ["t1", "t1_2", "flair"],
    "sub_1/ses_2": ["t2"],
    "sub_2/ses_1": ["scan_3", "dwi_b1000"],
    "sub_10/ses_1": ["T1"],
}


def fomo60k_tree(root: Path) -> Path:
    for n, (session, sequences) in enumerate(FOMO60K_FILES.items()):
        for k, sequence in enumerate(sequences):
            write_nifti(root / session / f"{sequence}.nii.gz", seed=10 * n + k, shape=(6, 7, 5))
    (root / "sub_1" / "ses_1" / "t1.json").write_text("{}")  # a sidecar: ignored, not an image
    return root


def test_fomo60k_manifest_lists_every_image_in_place(roots):
    src = fomo60k_tree(roots / "corpus")
    report = convert_fomo60k(src, 1, progress=False)
    target = raw(roots, "Dataset001_FOMO60K")
    assert report.converted == 7 and report.bad == [] and report.exit_code(False) == 0
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "manifest.json"]  # no copy of any scan

    spec = load_dataset_json(target)
    assert spec.task_type == "pretraining" and spec.channel_names == {"0": "mri"} and spec.num_training == 7
    manifest = load_manifest(target)
    assert manifest.source_root == str(src.resolve())
    listed = {(im.subject, im.session, im.sequence, im.path) for im in manifest.images}
    expected = {(s.split("/")[0], s.split("/")[1], q, f"{s}/{q}.nii.gz") for s, qs in FOMO60K_FILES.items() for q in qs}
    assert listed == expected
    assert [im.subject for im in manifest.images][-1] == "sub_10"  # natural order: sub_2 before sub_10
    assert len({im.image_id for im in manifest.images}) == 7
    families = json.loads((target / "manifest.json").read_text())["sequence_families"]
    assert families["t1_2"] == "t1" and families["scan_3"] == "unknown" and families["T1"] == "t1"
    cases, _ = list_cases(target)
    assert all(Path(c.image_files[0]).is_file() for c in cases) and len(cases) == 7
    assert validate_raw_dataset(target, check_images=True) == []


def test_sequence_family_rules():
    assert [sequence_family(s) for s in ("t1", "t1_2", "FLAIR", "scan_3", "dwi_b1000", "t2s_12")] == \
        ["t1", "t1", "flair", "unknown", "dwi_b1000", "t2s"]


def fomo60k_bad_tree(root: Path) -> dict[str, Path]:
    fomo60k_tree(root)
    bad = {"empty": root / "sub_3/ses_1/t1.nii.gz", "truncated": root / "sub_4/ses_1/t1.nii.gz",
           "nan": root / "sub_5/ses_1/t1.nii.gz", "4d": root / "sub_6/ses_1/t1.nii.gz",
           "outside": root / "sub_7/t1.nii.gz"}
    bad["empty"].parent.mkdir(parents=True)
    bad["empty"].write_bytes(b"")
    truncate(write_nifti(bad["truncated"], shape=(20, 20, 20)))
    data = np.ones((6, 6, 6), np.float32)
    data[2, 2, 2] = np.nan
    write_nifti(bad["nan"], data)
    write_nifti(bad["4d"], shape=(6, 6, 6, 3))
    write_nifti(bad["outside"], shape=(6, 6, 6))
    return bad


@pytest.mark.parametrize("flag, caught", [(None, {"empty", "outside"}),
                                          ("--check-headers", {"empty", "outside", "truncated", "4d"}),
                                          ("--check-images", {"empty", "outside", "truncated", "4d", "nan"})])
def test_fomo60k_bad_inputs_are_reported_and_the_rest_converted(roots, capsys, flag, caught):
    bad = fomo60k_bad_tree(roots / "corpus")
    args = ["fomo60k", str(roots / "corpus"), "-d", "1", "--no-progress", "-np", "1"] + ([flag] if flag else [])
    assert main(args) == 1
    err = capsys.readouterr().err
    for kind, path in bad.items():
        assert (str(path) in err) == (kind in caught), kind
    assert "empty file" in err and "outside any session" in err
    if "nan" in caught:
        assert "NaN or infinite" in err and "4D" in err and "truncated" in err
    manifest = load_manifest(raw(roots, "Dataset001_FOMO60K"))
    listed = {Path(manifest.absolute_path(im)) for im in manifest.images}
    assert len(manifest.images) == 7 + 3 - len(caught - {"empty", "outside"})
    assert not listed & {bad[k] for k in caught}
    assert main(args + ["--skip-bad"]) == 0


def test_fomo60k_rerun_is_idempotent(roots):
    src = fomo60k_tree(roots / "corpus")
    convert_fomo60k(src, 1, progress=False)
    first = (raw(roots, "Dataset001_FOMO60K") / "manifest.json").read_bytes()
    convert_fomo60k(src, 1, progress=False)
    target = raw(roots, "Dataset001_FOMO60K")
    assert (target / "manifest.json").read_bytes() == first
    assert sorted(p.name for p in target.iterdir()) == ["dataset.json", "manifest.json"]  # no temp leftovers


def test_conflicting_dataset_id_is_refused(roots, capsys):
    src = fomo60k_tree(roots / "corpus")
    convert_fomo60k(src, 1, progress=False)
    assert main(["fomo60k", str(src), "-d", "1", "--name", "Other", "--no-progress"]) == 2
    assert "already used by" in capsys.readouterr().err


# --------------------------------------------------------------------------------------- FOMO task folders
TASK_SEQUENCES = {1: ["dwi_b1000", "flair", "adc", "swi"], 2: ["dwi_b1000", "flair", "swi"], 3: ["t1", "t2"]}


def task_tree(root: Path, task: int, subjects=("sub_1", "sub_2", "sub_3"), seed=0, masks: bool = False) -> Path:
    """Subjects alternate the two label layouts (labels/sub_X/ses_1/ and labels/sub_X/).

    `masks` (task 1): an infarct mask seg.nii.gz beside every label.txt, as the official data ship it:
    a small cube for the positives (odd n), all-zero for the negatives.
    """
    for n, subject in enumerate(subjects):
        session = root / "preprocessed" / subject / "ses_1"
        for k, sequence in enumerate(TASK_SEQUENCES[task]):
            write_nifti(session / f"{sequence}.nii.gz", seed=seed + 100 * n + k)
        labels = root / "labels" / subject / ("ses_1" if n % 2 == 0 else "")
        labels.mkdir(parents=True, exist_ok=True)
        if task == 2:
            mask = np.zeros(SHAPE, np.uint8)
            mask[4:8 + n, 5:9, 6:10] = 1
            write_nifti(labels / "seg.nii.gz", mask, dtype=np.uint8)
        else:
            (labels / "label.txt").write_text(f"{n % 2}\n" if task == 1 else f"{40.5 + 10 * n}\n")
        if masks and task == 1:
            write_nifti(labels / "seg.nii.gz", infarct_mask(n), dtype=np.uint8)
    return root


def infarct_mask(n: int) -> np.ndarray:
    mask = np.zeros(SHAPE, np.uint8)
    if n % 2:
        mask[6:9, 7:10, 5:7 + n] = 1
    return mask


def test_task1_channel_order_swi_or_t2s_rule_and_both_label_layouts(roots):
    src = task_tree(roots / "task1", 1)
    session = src / "preprocessed" / "sub_2" / "ses_1"
    write_nifti(session / "t2s.nii.gz", seed=999)  # sub_2 has swi and t2s: swi wins
    os.replace(src / "preprocessed/sub_3/ses_1/swi.nii.gz", src / "preprocessed/sub_3/ses_1/t2s.nii.gz")
    report = convert_fomo_task(src, 1, 2, progress=False)
    target = raw(roots, "Dataset002_FOMOTask1Infarct")
    assert report.converted == 3 and report.bad == []

    spec = load_dataset_json(target)
    assert spec.task_type == "classification" and spec.classes == {"0": "no_infarct", "1": "infarct"}
    assert spec.channels == ["dwi_b1000", "flair", "adc", "swi_or_t2s"]
    assert spec.case_subjects == {c: c for c in ("sub_1", "sub_2", "sub_3")} and spec.num_training == 3
    assert spec.extra["channel_choices"]["sub_2"] == {"swi_or_t2s": "swi"}
    assert spec.extra["channel_choices"]["sub_3"] == {"swi_or_t2s": "t2s"}
    for case in ("sub_1", "sub_2", "sub_3"):
        folder = src / "preprocessed" / case / "ses_1"
        fourth = "t2s" if case == "sub_3" else "swi"
        for channel, sequence in enumerate(["dwi_b1000", "flair", "adc", fourth]):
            written = target / "imagesTr" / f"{case}_{channel:04d}.nii.gz"
            assert written.read_bytes() == (folder / f"{sequence}.nii.gz").read_bytes(), (case, channel)
    labels = [(target / "labelsTr" / f"{c}.txt").read_text() for c in ("sub_1", "sub_2", "sub_3")]
    assert labels == ["0\n", "1\n", "0\n"]
    cases, problems = list_cases(target)
    assert [c.target for c in cases] == [0.0, 1.0, 0.0] and problems == []
    assert validate_raw_dataset(target) == []


def test_task1_infarct_masks_are_kept_as_auxiliary_labels(roots):
    src = task_tree(roots / "task1", 1, subjects=("sub_1", "sub_2", "sub_3", "sub_4"), masks=True)
    report = convert_fomo_task(src, 1, 2, progress=False)
    target = raw(roots, "Dataset002_FOMOTask1Infarct")
    assert report.converted == 4 and report.bad == []
    assert any("lesion masks (seg.nii.gz) kept for 4 case(s)" in note for note in report.notes)
    spec = load_dataset_json(target)
    assert spec.auxiliary_labels == {"background": 0, "infarct": 1} and "auxiliary_labels" not in spec.extra
    assert json.loads((target / "dataset.json").read_text())["auxiliary_labels"] == {"background": 0, "infarct": 1}
    cases, problems = list_cases(target)
    assert problems == [] and [c.target for c in cases] == [0.0, 1.0, 0.0, 1.0]
    for n, case in enumerate(cases):
        layout = "ses_1/" if n % 2 == 0 else ""
        assert case.mask_file == str(target / "labelsTr" / f"{case.case_id}.nii.gz")
        assert Path(case.mask_file).read_bytes() == (src / "labels" / case.case_id / f"{layout}seg.nii.gz").read_bytes()
        np.testing.assert_array_equal(np.asanyarray(nib.load(case.mask_file).dataobj), infarct_mask(n))
        assert (target / "labelsTr" / f"{case.case_id}.txt").read_text() == f"{n % 2}\n"
    assert validate_raw_dataset(target) == []

    # a case without its mask while the others have one is refused, naming the file looked for
    (src / "labels" / "sub_3" / "ses_1" / "seg.nii.gz").unlink()
    report = convert_fomo_task(src, 1, 2, progress=False)
    assert report.converted == 3 and len(report.bad) == 1
    assert report.bad[0].path.endswith("labels/sub_3/ses_1/seg.nii.gz")
    assert "lesion mask is missing" in report.bad[0].problem
    assert not (target / "labelsTr" / "sub_3.nii.gz").exists() and not (target / "labelsTr" / "sub_3.txt").exists()

    # without any mask in the source the dataset is plain classification again, and no stale mask stays behind
    for mask in (src / "labels").rglob("seg.nii.gz"):
        mask.unlink()
    report = convert_fomo_task(src, 1, 2, progress=False)
    assert report.converted == 4 and load_dataset_json(target).auxiliary_labels is None
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == [f"sub_{i}.txt" for i in range(1, 5)]
    assert all(c.mask_file is None for c in list_cases(target)[0]) and validate_raw_dataset(target) == []


@pytest.mark.parametrize("kind", ["grid", "values"])
def test_task1_bad_mask_is_named_and_its_case_left_out(roots, kind):
    src = task_tree(roots / "task1", 1, masks=True)
    mask = src / "labels" / "sub_2" / "seg.nii.gz"
    if kind == "grid":
        moved = AFFINE.copy()
        moved[1, 3] += 3.0
        write_nifti(mask, infarct_mask(1), affine=moved, dtype=np.uint8)
    else:
        write_nifti(mask, infarct_mask(1) * 2, dtype=np.uint8)
    report = convert_fomo_task(src, 1, 2, progress=False)
    assert report.converted == 2 and [e.path for e in report.bad] == [str(mask)]
    assert ("grid differs" if kind == "grid" else "values [2]") in report.bad[0].problem


def test_auxiliary_labels_are_declared_and_checked_in_dataset_json(roots):
    src = task_tree(roots / "task1", 1, masks=True)
    convert_fomo_task(src, 1, 2, progress=False)
    target = raw(roots, "Dataset002_FOMOTask1Infarct")
    data = json.loads((target / "dataset.json").read_text())
    for bad, message in (({"lesion": 1}, "include 'background'"), ({"background": 0, "infarct": 1.5}, "integer"),
                         ({"background": 0}, "at least one label")):
        (target / "dataset.json").write_text(json.dumps({**data, "auxiliary_labels": bad}))
        with pytest.raises(BadInputError, match=message):
            load_dataset_json(target)
    (target / "dataset.json").write_text(json.dumps({**data, "task_type": "segmentation",
                                                     "labels": {"background": 0, "infarct": 1}}))
    with pytest.raises(BadInputError, match="declares its voxel labels in 'labels'"):
        load_dataset_json(target)
    (target / "dataset.json").write_text(json.dumps(data))
    (target / "labelsTr" / "sub_2.nii.gz").unlink()
    problems = validate_raw_dataset(target)
    assert len(problems) == 1 and problems[0].path.endswith("labelsTr/sub_2.nii.gz")
    assert "auxiliary mask of case sub_2 is missing" in problems[0].problem
    # a mask beside the targets of a dataset that declares none is a stale file, not silently ignored
    (target / "dataset.json").write_text(json.dumps({k: v for k, v in data.items() if k != "auxiliary_labels"}))
    problems = validate_raw_dataset(target)
    assert [Path(p.path).name for p in problems] == ["sub_1.nii.gz", "sub_3.nii.gz"]
    assert all("declares no auxiliary_labels" in p.problem for p in problems)


def test_task2_masks_keep_their_exact_geometry_and_images_are_linked(roots):
    src = task_tree(roots / "task2", 2)
    report = convert_fomo_task(src, 2, 3, progress=False)
    target = raw(roots, "Dataset003_FOMOTask2Meningioma")
    assert report.converted == 3 and report.bad == []
    spec = load_dataset_json(target)
    assert spec.labels == {"background": 0, "meningioma": 1} and spec.channels == ["dwi_b1000", "flair", "swi_or_t2s"]
    for n, case in enumerate(("sub_1", "sub_2", "sub_3")):
        layout = "ses_1/" if n % 2 == 0 else ""
        source_mask = src / "labels" / case / f"{layout}seg.nii.gz"
        mask = nib.load(target / "labelsTr" / f"{case}.nii.gz")
        np.testing.assert_array_equal(mask.affine, nib.load(source_mask).affine)
        np.testing.assert_allclose(mask.affine, AFFINE, atol=1e-6)
        assert int(np.asanyarray(mask.dataobj).sum()) == 4 * (4 + n) * 4
        assert (target / "labelsTr" / f"{case}.nii.gz").read_bytes() == source_mask.read_bytes()
        flair = src / f"preprocessed/{case}/ses_1/flair.nii.gz"
        assert os.path.samefile(target / "imagesTr" / f"{case}_0001.nii.gz", flair)  # hard link, no copy
    assert validate_raw_dataset(target) == []


def test_task3_regression_targets_and_copy_mode(roots):
    src = task_tree(roots / "task3", 3)
    assert main(["fomo-task", str(src), "--task", "3", "-d", "4", "--name", "Age", "--copy", "--no-progress"]) == 0
    target = raw(roots, "Dataset004_Age")
    spec = load_dataset_json(target)
    assert spec.task_type == "regression" and spec.target == {"name": "age", "unit": "years"}
    assert spec.channels == ["t1", "t2"]
    cases, _ = list_cases(target)
    assert [c.target for c in cases] == [40.5, 50.5, 60.5]
    t2 = target / "imagesTr" / "sub_2_0001.nii.gz"
    assert not os.path.samefile(t2, src / "preprocessed/sub_2/ses_1/t2.nii.gz")
    assert t2.read_bytes() == (src / "preprocessed/sub_2/ses_1/t2.nii.gz").read_bytes()


def _break(src: Path, kind: str) -> tuple[Path, str]:
    """Spoil sub_2 of a task-2 tree in one way; return the file the message must name and a message part."""
    session = src / "preprocessed" / "sub_2" / "ses_1"
    if kind == "missing_sequence":
        (session / "swi.nii.gz").unlink()
        return session / "swi.nii.gz", "missing sequence"
    if kind == "truncated":
        return truncate(session / "flair.nii.gz"), "truncated or corrupt"
    if kind == "nan":
        data = np.ones(SHAPE, np.float32)
        data[3, 3, 3] = np.inf
        return write_nifti(session / "flair.nii.gz", data), "NaN or infinite"
    if kind == "4d":
        return write_nifti(session / "dwi_b1000.nii.gz", shape=SHAPE + (2,)), "4D"
    if kind == "label_grid":
        moved = AFFINE.copy()
        moved[0, 3] += 7.0
        mask = src / "labels" / "sub_2" / "seg.nii.gz"
        return write_nifti(mask, np.zeros(SHAPE), affine=moved, dtype=np.uint8), "grid differs"
    if kind == "channel_grid":
        return write_nifti(session / "swi.nii.gz", shape=(16, 18, 15)), "grid differs"
    raise ValueError(kind)


@pytest.mark.parametrize("kind", ["missing_sequence", "truncated", "nan", "4d", "label_grid", "channel_grid"])
def test_task_bad_case_is_named_left_out_and_the_rest_converted(roots, capsys, kind):
    src = task_tree(roots / "task2", 2)
    bad_file, message = _break(src, kind)
    args = ["fomo-task", str(src), "--task", "2", "-d", "5", "--no-progress", "-np", "1"]
    assert main(args) == 1
    err = capsys.readouterr().err
    line = next(line for line in err.splitlines() if str(bad_file) in line)
    assert message in line
    target = raw(roots, "Dataset005_FOMOTask2Meningioma")
    assert sorted(p.name for p in (target / "imagesTr").iterdir()) == [
        f"{c}_{k:04d}.nii.gz" for c in ("sub_1", "sub_3") for k in range(3)]
    assert sorted(p.name for p in (target / "labelsTr").iterdir()) == ["sub_1.nii.gz", "sub_3.nii.gz"]
    assert load_dataset_json(target).case_subjects == {"sub_1": "sub_1", "sub_3": "sub_3"}
    assert main(args + ["--skip-bad"]) == 0


@pytest.mark.parametrize("text, problem", [("infarct\n", "expected one number"), ("2\n", "not one of")])
def test_task1_label_that_is_not_a_class_is_refused(roots, capsys, text, problem):
    src = task_tree(roots / "task1", 1)
    label = src / "labels" / "sub_3" / "ses_1" / "label.txt"
    label.write_text(text)
    assert main(["fomo-task", str(src), "--task", "1", "-d", "6", "--no-progress", "-np", "1"]) == 1
    err = capsys.readouterr().err
    assert f"{label}: " in err and problem in err
    assert not (raw(roots, "Dataset006_FOMOTask1Infarct") / "labelsTr" / "sub_3.txt").exists()


def test_missing_label_names_where_it_was_looked_for(roots):
    src = task_tree(roots / "task3", 3)
    (src / "labels" / "sub_2" / "label.txt").unlink()
    report = convert_fomo_task(src, 3, 7, progress=False)
    assert report.converted == 2 and len(report.bad) == 1
    assert report.bad[0].path.endswith("labels/sub_2/ses_1/label.txt") and "label is missing" in report.bad[0].problem


def test_task_rerun_is_idempotent_and_drops_a_case_that_turned_bad(roots):
    src = task_tree(roots / "task1", 1)
    convert_fomo_task(src, 1, 2, progress=False)
    target = raw(roots, "Dataset002_FOMOTask1Infarct")
    before = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    report = convert_fomo_task(src, 1, 2, num_processes=2, progress=False)  # also the process pool
    after = {p.relative_to(target): p.read_bytes() for p in target.rglob("*") if p.is_file()}
    assert report.converted == 3 and after == before

    (src / "preprocessed" / "sub_1" / "ses_1" / "adc.nii.gz").unlink()
    report = convert_fomo_task(src, 1, 2, progress=False)
    assert report.converted == 2 and report.exit_code(skip_bad=False) == 1
    assert not list((target / "imagesTr").glob("sub_1_*")) and not (target / "labelsTr" / "sub_1.txt").exists()
    assert validate_raw_dataset(target) == []


def test_test_split_writes_imagesTs_and_keeps_the_training_dataset_json(roots):
    train, test = task_tree(roots / "train", 2), task_tree(roots / "test", 2, subjects=("sub_40", "sub_41"), seed=7)
    convert_fomo_task(train, 2, 8, progress=False)
    target = raw(roots, "Dataset008_FOMOTask2Meningioma")
    spec_before = (target / "dataset.json").read_text()
    report = convert_fomo_task(test, 2, 8, split="test", progress=False)
    assert report.converted == 2
    assert sorted(p.name for p in (target / "labelsTs").iterdir()) == ["sub_40.nii.gz", "sub_41.nii.gz"]
    assert len(list((target / "imagesTs").iterdir())) == 6 and len(list((target / "imagesTr").iterdir())) == 9
    assert (target / "dataset.json").read_text() == spec_before
    assert validate_raw_dataset(target) == []


def test_task1_test_split_keeps_masks_only_for_a_dataset_that_declares_them(roots):
    train = task_tree(roots / "train", 1, masks=True)
    test = task_tree(roots / "test", 1, subjects=("sub_40", "sub_41"), seed=7, masks=True)
    (test / "labels" / "sub_41" / "seg.nii.gz").unlink()  # the test split never requires one
    convert_fomo_task(train, 1, 8, progress=False)
    target = raw(roots, "Dataset008_FOMOTask1Infarct")
    report = convert_fomo_task(test, 1, 8, split="test", progress=False)
    assert report.converted == 2 and report.bad == []
    assert sorted(p.name for p in (target / "labelsTs").iterdir()) == ["sub_40.nii.gz", "sub_40.txt", "sub_41.txt"]
    tested, problems = list_supervised_cases(target, split="Ts")
    assert problems == [] and [c.mask_file is not None for c in tested] == [True, False]

    plain = raw(roots, "Dataset009_Plain")
    convert_fomo_task(task_tree(roots / "train2", 1), 1, 9, name="Plain", progress=False)  # no masks
    convert_fomo_task(test, 1, 9, name="Plain", split="test", progress=False)
    assert sorted(p.name for p in (plain / "labelsTs").iterdir()) == ["sub_40.txt", "sub_41.txt"]
    assert validate_raw_dataset(target) == [] and validate_raw_dataset(plain) == []


def test_a_task_folder_cannot_be_converted_into_another_task_dataset(roots, capsys):
    convert_fomo_task(task_tree(roots / "t1", 1), 1, 9, name="Mixed", progress=False)
    assert main(["fomo-task", str(task_tree(roots / "t3", 3)), "--task", "3", "-d", "9", "--name", "Mixed",
                 "--no-progress"]) == 2
    assert "already holds a classification dataset" in capsys.readouterr().err


# ------------------------------------------------------------------------------------------- validator
def test_validator_catches_a_dataset_json_that_disagrees_with_the_files(roots, capsys):
    src = task_tree(roots / "task2", 2)
    convert_fomo_task(src, 2, 2, progress=False)
    target = raw(roots, "Dataset002_FOMOTask2Meningioma")
    data = json.loads((target / "dataset.json").read_text())
    data["numTraining"] = 5
    data["case_subjects"]["sub_9"] = "sub_9"
    (target / "dataset.json").write_text(json.dumps(data))
    write_nifti(target / "imagesTr" / "sub_1_0003.nii.gz")  # a 4th channel dataset.json does not know
    (target / "imagesTr" / "sub_3_0000.nii").write_bytes(b"")  # wrong ending
    (target / "labelsTr" / "sub_1.nii.gz").unlink()
    mask = np.zeros(SHAPE)
    mask[1, 1, 1] = 2
    write_nifti(target / "labelsTr" / "sub_2.nii.gz", mask, dtype=np.uint8)  # a value that is no label
    write_nifti(target / "labelsTr" / "sub_77.nii.gz", mask, dtype=np.uint8)  # label without images
    problems = validate_raw_dataset(target)
    text = "\n".join(str(p) for p in problems)
    assert "numTraining is 5 but imagesTr holds 3" in text
    assert "sub_9" in text and "channel 3 is not in channel_names" in text
    assert "sub_3_0000.nii: name does not follow" in text
    assert "sub_1.nii.gz: segmentation of case sub_1 is missing" in text
    assert "values [2] are not declared" in text and "sub_77.nii.gz: label without images" in text
    assert main(["validate", "2", "--no-progress", "-np", "1"]) == 1
    assert "numTraining is 5" in capsys.readouterr().err


def test_header_check_finds_truncation_without_reading_voxels_and_accepts_multi_member_gzip(tmp_path):
    good = write_nifti(tmp_path / "good.nii.gz", shape=(20, 20, 20))
    assert read_grid(good).ras_shape == (20, 20, 20)
    uncompressed = gzip.decompress(good.read_bytes())
    multi = tmp_path / "multi.nii.gz"  # a valid file written in two gzip members (as bgzip does)
    multi.write_bytes(gzip.compress(uncompressed[:5000]) + gzip.compress(uncompressed[5000:]))
    assert read_grid(multi).ras_shape == (20, 20, 20)
    plain = tmp_path / "plain.nii"
    plain.write_bytes(uncompressed[:-100])
    with pytest.raises(BadInputError, match="truncated file"):
        read_grid(plain)
    with pytest.raises(BadInputError, match="truncated or corrupt"):
        read_grid(truncate(good))


def test_nnunet_raw_dataset_is_imported_as_is(roots):
    src = roots / "Dataset120_Hippo"
    for case in ("hippo_1", "hippo_2"):
        write_nifti(src / "imagesTr" / f"{case}_0000.nii.gz")
        write_nifti(src / "labelsTr" / f"{case}.nii.gz", np.zeros(SHAPE), dtype=np.uint8)
    (src / "dataset.json").write_text(json.dumps({"channel_names": {"0": "T1"}, "labels": {"background": 0, "hippo": 1},
                                                  "numTraining": 2, "file_ending": ".nii.gz"}))
    assert main(["nnunet", str(src), "-d", "12", "--no-progress"]) == 0
    target = raw(roots, "Dataset012_Hippo")
    assert load_dataset_json(target).task_type == "segmentation"
    assert (target / "dataset.json").read_bytes() == (src / "dataset.json").read_bytes()
    assert len(list_cases(target)[0]) == 2


def test_validator_checks_a_pretraining_manifest_against_its_files(roots):
    src = fomo60k_tree(roots / "corpus")
    convert_fomo60k(src, 1, progress=False)
    target = raw(roots, "Dataset001_FOMO60K")
    (src / "sub_1" / "ses_2" / "t2.nii.gz").unlink()
    data = json.loads((target / "dataset.json").read_text())
    data["numTraining"] = 9
    (target / "dataset.json").write_text(json.dumps(data))
    text = "\n".join(str(p) for p in validate_raw_dataset(target, check_images=False))
    assert f"{src / 'sub_1/ses_2/t2.nii.gz'}: file does not exist" in text
    assert "numTraining is 9 but manifest.json lists 7 images" in text


def test_scans_are_copied_when_hard_links_fail(roots, monkeypatch):
    def no_links(*_):
        raise OSError(18, "Invalid cross-device link")

    monkeypatch.setattr(os, "link", no_links)
    src = task_tree(roots / "task3", 3, subjects=("sub_1",))
    report = convert_fomo_task(src, 3, 4, progress=False)
    written = raw(roots, "Dataset004_FOMOTask3BrainAge") / "imagesTr" / "sub_1_0000.nii.gz"
    assert report.notes[0] == "images copied 2"
    assert written.read_bytes() == (src / "preprocessed/sub_1/ses_1/t1.nii.gz").read_bytes()
    assert not os.path.samefile(written, src / "preprocessed/sub_1/ses_1/t1.nii.gz")


def test_a_plain_nii_source_is_only_gzip_compressed(roots):
    src = task_tree(roots / "task3", 3, subjects=("sub_1",))
    original = src / "preprocessed/sub_1/ses_1/t1.nii.gz"
    plain = original.with_name("t1.nii")
    plain.write_bytes(gzip.decompress(original.read_bytes()))
    original.unlink()
    report = convert_fomo_task(src, 3, 4, progress=False)
    written = raw(roots, "Dataset004_FOMOTask3BrainAge") / "imagesTr" / "sub_1_0000.nii.gz"
    assert report.converted == 1 and "compressed 1" in report.notes[0]
    assert gzip.decompress(written.read_bytes()) == plain.read_bytes()
