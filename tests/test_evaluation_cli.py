"""fomo_nn_evaluate and fomo_nn_rank end to end on small files written here."""
import csv
import json

import nibabel as nib
import numpy as np
import pytest

from fomo_nn.cli.evaluate import main as evaluate_main
from fomo_nn.cli.rank import main as rank_main

AFFINE = np.diag([1.0, 1.0, 2.0, 1.0])  # anisotropic: 2 mm along the last axis
CASES = [f"sub_{i}" for i in range(1, 7)]
LABELS = [0, 1, 0, 1, 0, 1]
AGES = [25.0, 38.0, 47.0, 59.0, 66.0, 78.0]


def _cube(corner, shape=(32, 32, 16), side=8):
    mask = np.zeros(shape, np.uint8)
    x, y, z = corner
    mask[x:x + side, y:y + side, z:z + side // 2] = 1
    return mask


def _save(path, mask):
    path.parent.mkdir(parents=True, exist_ok=True)
    nib.save(nib.Nifti1Image(mask, AFFINE), str(path))


def _write_reference(root):
    for index, case in enumerate(CASES):
        _save(root / "seg" / "labels" / case / "ses_1" / "seg.nii.gz", _cube((8 + index, 10, 4)))
        for kind, value in (("cls", LABELS[index]), ("age", AGES[index])):
            target = root / kind / "labels" / case / "ses_1" / "label.txt"
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_text(f"{value}\n")


def _write_predictions(root, shift, probabilities, ages, skip=()):
    for index, case in enumerate(CASES):
        if case in skip:
            continue
        _save(root / "seg" / f"{case}.nii.gz", _cube((8 + index + shift, 10, 4)))
        (root / "cls").mkdir(parents=True, exist_ok=True)
        (root / "cls" / f"{case}.txt").write_text(f"{probabilities[index]}")
        (root / "age").mkdir(parents=True, exist_ok=True)
        (root / "age" / f"{case}.txt").write_text(f"{ages[index]}")


def _evaluate(tmp_path, model, task, kind):
    output = tmp_path / "results" / model / f"{task}.json"
    code = evaluate_main(["--task", task, "-r", str(tmp_path / "ref" / kind), "-p", str(tmp_path / model / kind),
                          "-o", str(output), "--nsd-tolerance", "1.5", "--quiet"])
    assert code == 0
    return json.loads(output.read_text())


@pytest.fixture
def scored(tmp_path):
    _write_reference(tmp_path / "ref")
    _write_predictions(tmp_path / "good", shift=1, probabilities=[0.2, 0.9, 0.1, 0.7, 0.3, 0.8],
                       ages=[27, 36, 50, 57, 69, 75])
    _write_predictions(tmp_path / "patchy", shift=2, probabilities=[0.6, 0.4, 0.2, 0.7, 0.3, 0.8],
                       ages=[40, 40, 52, 50, 60, 60], skip=("sub_2",))
    return {(model, task): _evaluate(tmp_path, model, task, kind) for model in ("good", "patchy")
            for task, kind in (("segmentation", "seg"), ("classification", "cls"), ("regression", "age"))}


def test_evaluate_scores_cases_and_counts_a_missing_case_as_failure(scored):
    good = scored[("good", "segmentation")]
    # cube 8 x 8 x 4 voxels shifted 1 voxel along x: Dice 7/8; shift 1 mm <= 1.5 mm tolerance: NSD 1
    assert good["metrics"]["dice"] == pytest.approx(7 / 8)
    assert good["metrics"]["nsd"] == pytest.approx(1.0)
    assert good["nsd_tolerance_mm"] == 1.5 and good["missing_cases"] == []

    patchy = scored[("patchy", "segmentation")]
    assert patchy["missing_cases"] == ["sub_2"]
    missing = next(r for r in patchy["per_case"] if r["case_id"] == "sub_2")
    assert missing == {"case_id": "sub_2", "dice": 0.0, "nsd": 0.0, "missing": True}
    assert patchy["metrics"]["dice"] == pytest.approx(5 * (6 / 8) / 6)  # five cases at 6/8, one failure

    classification = scored[("patchy", "classification")]
    record = next(r for r in classification["per_case"] if r["case_id"] == "sub_2")
    assert record == {"case_id": "sub_2", "label": 1, "probability": 0.5, "missing": True}
    assert scored[("good", "classification")]["metrics"]["auroc"] == 1.0
    # patchy: positives .5 (missing) .7 .8 vs negatives .6 .2 .3 -> 8 of 9 pairs won
    assert classification["metrics"]["auroc"] == pytest.approx(8 / 9)

    regression = scored[("patchy", "regression")]
    record = next(r for r in regression["per_case"] if r["case_id"] == "sub_2")
    assert record["prediction"] == pytest.approx(np.mean(AGES)) and record["missing"]
    assert "mean of the reference targets" in regression["missing_policy"]
    assert scored[("good", "regression")]["metrics"]["mae"] == pytest.approx(2.5)


def test_rank_end_to_end_writes_the_report(scored, tmp_path):
    report = tmp_path / "report"
    code = rank_main([str(tmp_path / "results" / "good"), str(tmp_path / "results" / "patchy"), "-o", str(report),
                      "--bootstrap", "400", "--permutations", "300", "--seed", "7", "--quiet"])
    assert code == 0
    with open(report / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [(row["model"], row["place"], float(row["overall_rank"])) for row in rows] == [("good", "1", 1.0),
                                                                                      ("patchy", "2", 2.0)]
    for name in ("roc_curves.png", "age_scatter.png", "dice_per_case.png", "bootstrap_ranks.png"):
        assert (report / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    markdown = (report / "leaderboard.md").read_text()
    assert "| 1 | good | 1.00 |" in markdown and "1 of 6 cases had no prediction" in markdown
    first = (report / "ranks_bootstrap.json").read_text()
    assert rank_main([str(tmp_path / "results" / "good"), str(tmp_path / "results" / "patchy"), "-o", str(report),
                      "--bootstrap", "400", "--permutations", "300", "--seed", "7", "--quiet"]) == 0
    assert (report / "ranks_bootstrap.json").read_text() == first


def test_evaluate_reports_bad_input_with_the_file_name(tmp_path, capsys):
    _write_reference(tmp_path / "ref")
    prediction = tmp_path / "bad"
    prediction.mkdir()
    (prediction / "sub_1.txt").write_text("0.4")
    (prediction / "sub_2.txt").write_text("yes")
    code = evaluate_main(["--task", "classification", "-r", str(tmp_path / "ref" / "cls"), "-p", str(prediction)])
    assert code == 1
    assert "sub_2.txt: expected one number, found 'yes'" in capsys.readouterr().err
