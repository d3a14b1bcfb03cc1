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
    code = evaluate_main(["--task-type", task, "-r", str(tmp_path / "ref" / kind), "-p", str(tmp_path / model / kind),
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
    # the model's own mean on the cases it answered (40, 52, 50, 60, 60), not the reference targets' mean
    assert record["prediction"] == pytest.approx(52.4) and record["missing"]
    assert "model's own predictions" in regression["missing_policy"]
    assert scored[("good", "regression")]["metrics"]["mae"] == pytest.approx(2.5)


def test_every_summary_records_the_scoring_rules(scored):
    for (model, task), summary in scored.items():
        rules = summary["policies"]["missing_case"]
        assert set(rules) == {"classification", "segmentation", "regression"}
        assert summary["missing_policy"] == rules[task]
        if task == "segmentation":
            assert summary["empty_pair"] == "score"
            assert summary["policies"]["empty_pair"]["policy"] == "score"
            assert summary["num_excluded"] == 0
        else:
            assert summary["empty_pair"] is None and "empty_pair" not in summary["policies"]


def test_the_regression_fill_in_does_not_read_the_reference(tmp_path):
    predictions = tmp_path / "pred"
    predictions.mkdir()
    for case, age in (("a", 30.0), ("b", 50.0)):
        (predictions / f"{case}.txt").write_text(str(age))
    fills = []
    for targets in ((20, 40, 60), (70, 80, 90)):
        reference = tmp_path / f"ref_{targets[0]}"
        reference.mkdir()
        for case, age in zip("abc", targets):
            (reference / f"{case}.txt").write_text(str(age))
        output = tmp_path / f"{targets[0]}.json"
        assert evaluate_main(["--task-type", "regression", "-r", str(reference), "-p", str(predictions), "-o", str(output),
                              "--quiet"]) == 0
        fills.append(next(r["prediction"] for r in json.loads(output.read_text())["per_case"] if r["case_id"] == "c"))
    assert fills == [40.0, 40.0]


def _empty_pair_case(root):
    """Reference and prediction: case e with both masks empty, case f with a cube predicted 1 voxel off."""
    for case, reference, prediction in (("e", np.zeros((32, 32, 16), np.uint8), np.zeros((32, 32, 16), np.uint8)),
                                        ("f", _cube((8, 10, 4)), _cube((9, 10, 4)))):
        _save(root / "ref" / f"{case}.nii.gz", reference)
        _save(root / "pred" / f"{case}.nii.gz", prediction)


@pytest.mark.parametrize("policy, empty_dice, mean_dice", [("score", 1.0, (1 + 7 / 8) / 2), ("exclude", None, 7 / 8)])
def test_empty_pair_policy_is_an_option_and_recorded(tmp_path, policy, empty_dice, mean_dice):
    _empty_pair_case(tmp_path)
    output = tmp_path / "summary.json"
    assert evaluate_main(["--task-type", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"),
                          "-o", str(output), "--empty-pair", policy, "--quiet"]) == 0
    summary = json.loads(output.read_text())
    record = next(r for r in summary["per_case"] if r["case_id"] == "e")
    assert record["dice"] == empty_dice and record["nsd"] == empty_dice
    assert summary["metrics"]["dice"] == pytest.approx(mean_dice)
    assert summary["empty_pair"] == policy and summary["num_excluded"] == (policy == "exclude")
    assert summary["nsd_tolerance_mm"] == 1.0  # the default, Yucca's


def test_unknown_empty_pair_policy_is_refused(tmp_path, capsys):
    _empty_pair_case(tmp_path)
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--task-type", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"),
                       "--empty-pair", "ignore"])
    assert exit_info.value.code == 2
    assert "invalid choice: 'ignore'" in capsys.readouterr().err


def test_rank_ranks_excluded_cases_and_refuses_mixed_empty_pair_policies(tmp_path, capsys):
    _empty_pair_case(tmp_path)
    _save(tmp_path / "worse" / "e.nii.gz", np.zeros((32, 32, 16), np.uint8))
    _save(tmp_path / "worse" / "f.nii.gz", _cube((11, 10, 4)))
    for model in ("pred", "worse"):
        for policy in ("score", "exclude"):
            assert evaluate_main(["--task-type", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / model),
                                  "-o", str(tmp_path / policy / model / "segmentation.json"), "--empty-pair", policy,
                                  "--quiet"]) == 0
    report = tmp_path / "report"
    assert rank_main([str(tmp_path / "exclude" / "pred"), str(tmp_path / "exclude" / "worse"), "-o", str(report),
                      "--bootstrap", "50", "--permutations", "50", "--quiet"]) == 0
    with open(report / "leaderboard.csv") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    assert float(rows["pred"]["dice"]) == pytest.approx(7 / 8) and float(rows["worse"]["dice"]) == pytest.approx(5 / 8)
    assert "Empty mask pairs (exclude)" in (report / "leaderboard.md").read_text()
    code = rank_main([str(tmp_path / "exclude" / "pred"), str(tmp_path / "score" / "worse"), "-o", str(report),
                      "--bootstrap", "50", "--permutations", "50", "--quiet"])
    assert code == 1 and "empty_pair differs between models" in capsys.readouterr().err


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
    code = evaluate_main(["--task-type", "classification", "-r", str(tmp_path / "ref" / "cls"), "-p", str(prediction)])
    assert code == 1
    assert "sub_2.txt: expected one number, found 'yes'" in capsys.readouterr().err


def test_task_is_the_fomo25_task_number_as_in_convert_and_predict(tmp_path, capsys):
    """--task 2 means FOMO25 task 2 (segmentation) here too; the task type has its own flag."""
    _empty_pair_case(tmp_path)
    by_number, by_type = tmp_path / "number.json", tmp_path / "type.json"
    assert evaluate_main(["--task", "2", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"),
                          "-o", str(by_number), "--quiet"]) == 0
    assert evaluate_main(["--task-type", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred"),
                          "-o", str(by_type), "--quiet"]) == 0
    numbered = json.loads(by_number.read_text())
    assert numbered.pop("challenge") == {"edition": "fomo25", "task": 2}
    typed = json.loads(by_type.read_text())
    assert typed.pop("challenge") is None and numbered == typed
    with pytest.raises(SystemExit) as exit_info:
        evaluate_main(["--task", "segmentation", "-r", str(tmp_path / "ref"), "-p", str(tmp_path / "pred")])
    assert exit_info.value.code == 2 and "invalid int value: 'segmentation'" in capsys.readouterr().err
