"""fomo_nn_rank on FOMO26 summaries: per-metric ranks, the rank of their mean per task, the worst rank for a
missing task, tasks weighted 25 % (2, 4) / 10 % (1, 3, 5) (fomo26.github.io @ 105db28), against a
hand-computed leaderboard. Two segmentation tasks of one model rank side by side."""
from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from fomo_nn.cli.rank import main as rank_main
from fomo_nn.challenges.registry import edition
from fomo_nn.evaluation.ranking import aggregate_ranks

LABELS = [0, 0, 1, 1]
TARGETS = [20.0, 40.0, 60.0, 80.0]
# model -> task -> what its summary holds (None: the model did not submit the task)
PROBABILITIES = {1: {"A": [0.1, 0.2, 0.8, 0.9], "B": [0.1, 0.6, 0.5, 0.9], "C": [0.5] * 4},  # AUROC 1, .75, .5
                 5: {"A": [0.5] * 4, "B": None, "C": [0.1, 0.2, 0.8, 0.9]}}  # AUROC .5, -, 1
AGES = {"A": [25.0, 45.0, 65.0, 85.0], "B": [30.0, 30.0, 70.0, 70.0], "C": [20.0, 40.0, 80.0, 60.0]}
MASKS = {2: {"A": (0.8, 0.6), "B": (0.7, 0.7), "C": None}, 4: {"A": (0.3, 0.2), "B": (0.5, 0.4), "C": (0.4, 0.5)}}
# Hand-computed, per task (ranks of A, B, C):
#   task 1 AUROC 1, .75, .5                      -> 1, 2, 3
#   task 2 Dice .8 .7 -  -> 1 2 3; NSD .6 .7 - -> 2 1 3; mean 1.5 1.5 (C missing) -> 1.5, 1.5, worst 3
#   task 3 MAE 5 10 10 -> 1 2.5 2.5; r 1 .894 .8 -> 1 2 3; mean 1 2.25 2.75 -> 1, 2, 3
#   task 4 Dice .3 .5 .4 -> 3 1 2; NSD .2 .4 .5 -> 3 2 1; mean 3 1.5 1.5 -> 3, 1.5, 1.5
#   task 5 AUROC .5 - 1                           -> 2, worst 3, 1
#   overall = (.1 t1 + .25 t2 + .1 t3 + .25 t4 + .1 t5) / .8
TASK_RANKS = {"fomo26_task1": [1, 2, 3], "fomo26_task2": [1.5, 1.5, 3], "fomo26_task3": [1, 2, 3],
              "fomo26_task4": [3, 1.5, 1.5], "fomo26_task5": [2, 3, 1]}
OVERALL = {"A": 1.525 / 0.8, "B": 1.45 / 0.8, "C": 1.825 / 0.8}  # B first, A second, C third


def _summary(task: int, task_type: str, per_case: list[dict], **extra) -> dict:
    return {"task": task_type, "per_case": per_case, "challenge": {"edition": "fomo26", "task": task}, **extra}


def write_results(root) -> list:
    folders = []
    for model in "ABC":
        folder = root / model
        folder.mkdir(parents=True)
        summaries = []
        for task, by_model in PROBABILITIES.items():
            if by_model[model] is not None:
                summaries.append(_summary(task, "classification", [
                    {"case_id": f"c{i}", "label": label, "probability": p, "missing": False}
                    for i, (label, p) in enumerate(zip(LABELS, by_model[model]))]))
        summaries.append(_summary(3, "regression", [
            {"case_id": f"c{i}", "target": t, "prediction": p, "absolute_error": abs(t - p), "missing": False}
            for i, (t, p) in enumerate(zip(TARGETS, AGES[model]))]))
        for task, by_model in MASKS.items():
            if by_model[model] is not None:
                dice, nsd = by_model[model]
                summaries.append(_summary(task, "segmentation", [
                    {"case_id": f"s{i}", "dice": dice + shift, "nsd": nsd - shift, "missing": False}
                    for i, shift in enumerate((-0.1, 0.1))], empty_pair="fomo26", nsd_tolerance_mm=1.0))
        for summary in summaries:
            name = f"task{summary['challenge']['task']}.json"
            (folder / name).write_text(json.dumps(summary))
        folders.append(folder)
    return folders


def test_fomo26_weighted_ranking_reproduces_the_hand_computed_leaderboard(tmp_path):
    folders = write_results(tmp_path / "results")
    report = tmp_path / "report"
    assert rank_main([*map(str, folders), "-o", str(report), "--bootstrap", "200", "--permutations", "50",
                      "--quiet"]) == 0
    with open(report / "leaderboard.csv") as handle:
        rows = {row["model"]: row for row in csv.DictReader(handle)}
    for model, overall in OVERALL.items():
        assert float(rows[model]["overall_rank"]) == pytest.approx(overall, abs=1e-4)
        for task, ranks in TASK_RANKS.items():
            assert float(rows[model][f"rank_{task}"]) == pytest.approx(ranks["ABC".index(model)], abs=1e-4)
    assert [rows[m]["place"] for m in "BAC"] == ["1", "2", "3"]
    assert float(rows["A"]["fomo26_task2_dice"]) == pytest.approx(0.8) and rows["C"]["fomo26_task2_dice"] == ""
    assert float(rows["C"]["fomo26_task4_nsd"]) == pytest.approx(0.5)
    bootstrap = json.loads((report / "ranks_bootstrap.json").read_text())
    assert set(bootstrap["models"]["A"]["task_ranks"]) == set(TASK_RANKS)
    assert (report / "dice_per_case_fomo26_task2.png").is_file() and (report / "dice_per_case_fomo26_task4.png").is_file()
    markdown = (report / "leaderboard.md").read_text()
    assert "weighted task 1 10%, task 2 25%, task 3 10%, task 4 25%, task 5 10%" in markdown


def test_the_same_numbers_ranked_by_fomo25_rules_give_another_winner():
    """FOMO25's rules (mean of metric ranks, unweighted) put A first on these numbers: the edition decides."""
    values = {"fomo26_task1": {"auroc": np.array([1.0, 0.75, 0.5])},
              "fomo26_task2": {"dice": np.array([0.8, 0.7, np.nan]), "nsd": np.array([0.6, 0.7, np.nan])},
              "fomo26_task3": {"mae": np.array([5.0, 10.0, 10.0]), "pearson_r": np.array([1.0, 0.894, 0.8])},
              "fomo26_task4": {"dice": np.array([0.3, 0.5, 0.4]), "nsd": np.array([0.2, 0.4, 0.5])},
              "fomo26_task5": {"auroc": np.array([0.5, np.nan, 1.0])}}
    fomo26 = aggregate_ranks(values, edition("fomo26").ranking)
    np.testing.assert_allclose(fomo26.overall, [OVERALL[m] for m in "ABC"])
    fomo25 = aggregate_ranks(values)
    np.testing.assert_allclose(fomo25.overall, [(1 + 1.5 + 1 + 3 + 2) / 5, (2 + 1.5 + 2.25 + 1.5 + 3) / 5,
                                                (3 + 3 + 2.75 + 1.5 + 1) / 5])
    assert np.argmin(fomo25.overall) == 0 and np.argmin(fomo26.overall) == 1


def test_editions_are_not_ranked_together(tmp_path, capsys):
    folders = write_results(tmp_path / "results")
    fomo25 = tmp_path / "results" / "D"
    fomo25.mkdir()
    (fomo25 / "seg.json").write_text(json.dumps({"task": "segmentation", "per_case": [
        {"case_id": "s0", "dice": 0.5, "nsd": 0.5, "missing": False}]}))
    assert rank_main([*map(str, folders), str(fomo25), "-o", str(tmp_path / "report"), "--bootstrap", "10",
                      "--permutations", "10", "--quiet"]) == 1
    assert "several challenge editions" in capsys.readouterr().err
