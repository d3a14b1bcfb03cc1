"""FOMO26 tasks 1-5 end to end from folders in the released layout: convert, plan, train 2 epochs, predict, evaluate.

The layout and file names are asparagus_preprocessing @ fce45b3 (CLS002_FOMO26_Infarct,
SEG009_FOMO26_Meningioma, REGR002_FOMO26_BrainAge, SEG010_FOMO26_TrigeminalNeuralgia,
CLS003_FOMO26_Polymicrogyria): `Task_N/{preprocessed,labels}/sub-XX/ses-01/...`. Task 4 is multiclass
(1 nerve, 2 vessel): the prediction must be a {0, 1, 2} mask in the input's exact grid, and equal
the argmax of the three class probabilities.
"""
from __future__ import annotations

import json

import nibabel as nib
import numpy as np
import pytest
from builders import affine_for, brain_image, ellipsoid

from fomo_nn.challenges.registry import challenge_task
from fomo_nn.cli.convert import main as convert_main
from fomo_nn.cli.evaluate import main as evaluate_main
from fomo_nn.cli.plan_and_preprocess import main as plan_and_preprocess_main
from fomo_nn.cli.predict import main as predict_main
from fomo_nn.cli.train import main as train_main

SHAPE = (28, 32, 24)
TINY_PLANNER = ["--base-features", "4", "--max-features", "16", "--max-patch", "24"]
TINY_RUN = ["--epochs", "2", "--iters-per-epoch", "1", "--val-iters", "1", "--num-workers", "0", "--device", "cpu",
            "--batch-size", "2"]
# the released file names per task (images, label file)
FILES = {1: (("flair", "adc", "dwi_b1000", "swi"), "label.txt"), 2: (("flair", "dwi_b1000", "t2s"), "seg.nii.gz"),
         3: (("t1w",), "labels.txt"), 4: (("t2w",), "seg.nii.gz"), 5: (("t1",), "labels.txt")}
NUM_CASES = {1: 6, 2: 5, 3: 5, 4: 5, 5: 6}  # 5-fold splits are made even for fold "all"


def _tubes(index: int) -> np.ndarray:
    """Task 4's labels: a thin 'nerve' (1) running along x and a 'vessel' (2) along z beside it."""
    label = np.zeros(SHAPE, np.uint8)
    y, z = 14 + index % 3, 10 + index % 2
    label[6:22, y:y + 2, z:z + 2] = 1
    label[16:18, y + 4:y + 6, 4:20] = 2
    return label


def write_task(root, number: int):
    """Task_N/{preprocessed,labels}/sub-XX/ses-01/ as released; the affine is anisotropic and LPS."""
    sequences, label_name = FILES[number]
    affine = affine_for((1.0, 0.9, 1.3), "LPS")
    for index in range(NUM_CASES[number]):
        subject = f"sub-{index + 1:02d}"
        images = root / f"Task_{number}" / "preprocessed" / subject / "ses-01"
        labels = root / f"Task_{number}" / "labels" / subject / "ses-01"
        images.mkdir(parents=True)
        labels.mkdir(parents=True)
        mask = np.zeros(SHAPE, np.uint8)
        if number == 2:
            mask = ellipsoid(SHAPE, (0.4 + 0.04 * index, 0.5, 0.5), (0.12, 0.12, 0.15)).astype(np.uint8)
        elif number == 4:
            mask = _tubes(index)
        for channel, sequence in enumerate(sequences):
            image = brain_image(SHAPE, seed=10 * index + channel) * (1.0 + 0.8 * (mask > 0)) - 150.0 * (mask == 2)
            nib.save(nib.Nifti1Image(np.clip(image, 0, None).astype(np.float32), affine),
                     str(images / f"{sequence}.nii.gz"))
        if label_name == "seg.nii.gz":
            nib.save(nib.Nifti1Image(mask, affine), str(labels / label_name))
        elif number == 3:
            (labels / label_name).write_text(f"{20.5 + 11 * index}\n")
        else:
            (labels / label_name).write_text(f"{index % 2}\n")
    return root / f"Task_{number}"


@pytest.fixture
def folders(tmp_path, monkeypatch):
    for variable, folder in (("fomo_nn_raw", "raw"), ("fomo_nn_preprocessed", "pre"), ("fomo_nn_results", "res")):
        monkeypatch.setenv(variable, str(tmp_path / folder))
    return tmp_path


@pytest.mark.parametrize("number", [1, 2, 3, 4, 5])
def test_fomo26_task_converts_trains_predicts_and_evaluates(folders, number, capsys):
    rule = challenge_task("fomo26", number)
    source = write_task(folders / "src", number)
    dataset = str(60 + number)
    assert convert_main(["fomo-task", str(source), "--edition", "fomo26", "--task", str(number), "-d", dataset,
                         "--no-progress", "-np", "1"]) == 0
    raw = next((folders / "raw").glob(f"Dataset0{dataset}_*"))
    spec = json.loads((raw / "dataset.json").read_text())
    assert raw.name == f"Dataset0{dataset}_{rule.default_name}"
    assert list(spec["channel_names"].values()) == [c.name for c in rule.channels]
    assert spec["fomo_edition"] == "fomo26" and spec["fomo_task"] == number
    assert len(list((raw / "imagesTr").glob("*_0000.nii.gz"))) == NUM_CASES[number]
    if number == 4:
        assert spec["labels"] == {"background": 0, "nerve": 1, "vessel": 2}
        converted = np.asanyarray(nib.load(str(raw / "labelsTr" / "sub-01.nii.gz")).dataobj)
        assert np.array_equal(converted, _tubes(0))  # the label mask is linked as given, all three labels kept

    assert plan_and_preprocess_main(["-d", dataset, "-np", "1", "--no-progress", *TINY_PLANNER]) == 0
    assert train_main([dataset, "all", *TINY_RUN]) == 0
    output = folders / "predictions"
    extra = ["--save-probabilities"] if number == 4 else []
    assert predict_main(["-i", str(source), "-o", str(output), "-d", dataset, "-f", "all", "--device", "cpu",
                         "--no-progress", *extra]) == 0

    summary_file = folders / "summary.json"
    assert evaluate_main(["--edition", "fomo26", "--task", str(number), "-r", str(source), "-p", str(output),
                          "-o", str(summary_file), "--quiet"]) == 0
    summary = json.loads(summary_file.read_text())
    assert summary["challenge"] == {"edition": "fomo26", "task": number}
    assert summary["num_cases"] == NUM_CASES[number] and summary["num_missing"] == 0
    if rule.task_type == "segmentation":
        assert summary["empty_pair"] == "fomo26"
        for record in summary["per_case"]:
            per_class = record["dice_per_class"]
            assert set(per_class) == {str(v) for v in rule.foreground_labels}
            assert record["dice"] == pytest.approx(np.mean(list(per_class.values())))
    if number == 4:
        assert set(summary["class_metrics"]) == {"nerve", "vessel"}
        for index in range(NUM_CASES[4]):
            case = f"sub-{index + 1:02d}"
            image = nib.load(str(source / "preprocessed" / case / "ses-01" / "t2w.nii.gz"))
            mask_image = nib.load(str(output / f"{case}.nii.gz"))
            mask = np.asanyarray(mask_image.dataobj)
            assert mask.shape == image.shape and np.allclose(mask_image.affine, image.affine, atol=1e-6)
            assert set(np.unique(mask).tolist()) <= {0, 1, 2}
            probabilities = np.asarray(nib.load(str(output / f"{case}_probabilities.nii.gz")).dataobj)
            assert probabilities.shape == (*image.shape, 3)  # background, nerve, vessel in the input grid
            assert np.array_equal(mask, np.argmax(probabilities, axis=-1))


def test_fomo26_conversion_refuses_what_the_task_does_not_allow(folders, capsys):
    """A task-4 label outside {0, 1, 2} and a missing labels.txt are named and their cases left out; the
    probe tasks have nothing to convert; a FOMO25 task number that FOMO26 lacks is refused."""
    source = write_task(folders / "src", 4)
    bad = source / "labels" / "sub-02" / "ses-01" / "seg.nii.gz"
    image = nib.load(str(bad))
    nib.save(nib.Nifti1Image(np.asanyarray(image.dataobj) * 2, image.affine), str(bad))  # labels 2 and 4
    assert convert_main(["fomo-task", str(source), "--edition", "fomo26", "--task", "4", "-d", "70",
                         "--no-progress", "-np", "1"]) == 1
    error = capsys.readouterr().err
    assert str(bad) in error and "4" in error
    raw = next((folders / "raw").glob("Dataset070_*"))
    assert sorted(p.name for p in (raw / "labelsTr").iterdir()) == [f"sub-{i:02d}.nii.gz" for i in (1, 3, 4, 5)]

    age = write_task(folders / "src", 3)
    (age / "labels" / "sub-03" / "ses-01" / "labels.txt").unlink()
    assert convert_main(["fomo-task", str(age), "--edition", "fomo26", "--task", "3", "-d", "71",
                         "--no-progress", "-np", "1"]) == 1
    assert "labels/sub-03/ses-01/labels.txt: label is missing" in capsys.readouterr().err
    assert convert_main(["fomo-task", str(age), "--edition", "fomo26", "--task", "6", "-d", "72",
                         "--no-progress"]) == 2
    assert "FOMO26 task 6 (linear probing) has no finetuning data" in capsys.readouterr().err
    assert convert_main(["fomo-task", str(age), "--task", "4", "-d", "73", "--no-progress"]) == 2
    assert "fomo25 has no task 4" in capsys.readouterr().err
