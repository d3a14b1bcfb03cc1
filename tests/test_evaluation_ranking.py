import csv
import json

import numpy as np
import pytest

from fomo_nn.evaluation.ranking import aggregate_ranks, places, rank_models
from fomo_nn.evaluation.report import make_report
from fomo_nn.evaluation.tiers import assign_tiers

NAN = np.nan


def test_rank_models_averages_ties_and_puts_missing_last_together():
    assert rank_models(np.array([0.7, 0.9, 0.7, NAN, NAN]), higher_is_better=True).tolist() == [2.5, 1, 2.5, 4.5, 4.5]
    assert rank_models(np.array([10.0, 8.0, 12.0]), higher_is_better=False).tolist() == [2, 1, 3]
    assert places(np.array([1.5, 2.0, 2.0, 3.0])).tolist() == [1, 2, 2, 4]


# Models A, B, C, D. Hand-computed ranks:
#   classification AUROC .9 .8 .8 .7            -> 1, 2.5, 2.5, 4
#   segmentation Dice .5 .6 .4 .6 -> 3, 1.5, 4, 1.5; NSD .5 .5 .7 .3 -> 2.5, 2.5, 1, 4
#                task rank                        -> 2.75, 2, 2.5, 2.75
#   regression (D missing) r .8 .6 .7 -> 1, 3, 2, 4; MAE 10 8 12 -> 2, 1, 3, 4
#                task rank                        -> 1.5, 2, 2.5, 4
#   overall = mean of task ranks                  -> 1.75, 2.1667, 2.5, 3.5833
KNOWN_METRICS = {
    "classification": {"auroc": np.array([0.9, 0.8, 0.8, 0.7])},
    "segmentation": {"dice": np.array([0.5, 0.6, 0.4, 0.6]), "nsd": np.array([0.5, 0.5, 0.7, 0.3])},
    "regression": {"pearson_r": np.array([0.8, 0.6, 0.7, NAN]), "mae": np.array([10.0, 8.0, 12.0, NAN])},
}
KNOWN_OVERALL = [1.75, 13 / 6, 2.5, 43 / 12]


def test_rank_then_aggregate_on_a_known_example():
    ranks = aggregate_ranks(KNOWN_METRICS)
    np.testing.assert_allclose(ranks.task_ranks["segmentation"], [2.75, 2, 2.5, 2.75])
    np.testing.assert_allclose(ranks.task_ranks["regression"], [1.5, 2, 2.5, 4])
    np.testing.assert_allclose(ranks.overall, KNOWN_OVERALL)


def test_aggregation_is_the_same_for_a_stack_of_resamples():
    stacked = {task: {key: np.stack([value, value[::-1]]) for key, value in by_key.items()}
               for task, by_key in KNOWN_METRICS.items()}
    ranks = aggregate_ranks(stacked)
    np.testing.assert_allclose(ranks.overall[0], KNOWN_OVERALL)
    assert ranks.overall.shape == (2, 4)


def test_tiers_follow_the_bootstrap_rule():
    rng = np.random.default_rng(0)
    # A clearly first; B and C interchangeable; D clearly last
    overall = np.stack([np.full(1000, 1.0), 2.5 + rng.normal(0, 0.3, 1000), 2.5 + rng.normal(0, 0.3, 1000),
                        np.full(1000, 4.0)], axis=1)
    tiers, decisions = assign_tiers([0, 1, 2, 3], overall, ["A", "B", "C", "D"], alpha=0.05)
    assert tiers == {"A": 1, "B": 2, "C": 2, "D": 3}
    assert [(d.leader, d.model, d.significantly_worse) for d in decisions] == [
        ("A", "B", True), ("B", "C", False), ("B", "D", True)]
    tiers_lenient, _ = assign_tiers([0, 1, 2, 3], overall, ["A", "B", "C", "D"], alpha=0.0005)
    assert tiers_lenient == {"A": 1, "B": 1, "C": 1, "D": 1}  # p = 1/1001 is never below 0.0005


def _summary(task, per_case):
    return {"task": task, "per_case": per_case, "metrics": {}, "missing_cases": [], "missing_policy": "",
            "nsd_tolerance_mm": 2.0 if task == "segmentation" else None}


def _write_model(root, name, probabilities=None, dice=None, ages=None):
    folder = root / name
    folder.mkdir()
    labels = [0, 0, 0, 1, 1, 1]
    if probabilities is not None:
        records = [{"case_id": f"c{i}", "label": y, "probability": p} for i, (y, p) in enumerate(zip(labels, probabilities))]
        (folder / "task1.json").write_text(json.dumps(_summary("classification", records)))
    if dice is not None:
        records = [{"case_id": f"s{i}", "dice": d, "nsd": d} for i, d in enumerate(dice)]
        (folder / "nested").mkdir()
        (folder / "nested" / "task2.json").write_text(json.dumps(_summary("segmentation", records)))
    if ages is not None:
        targets = [20.0, 40.0, 60.0, 80.0]
        records = [{"case_id": f"a{i}", "target": t, "prediction": p} for i, (t, p) in enumerate(zip(targets, ages))]
        (folder / "task3.json").write_text(json.dumps(_summary("regression", records)))
    (folder / "unrelated.json").write_text(json.dumps({"note": "not a summary"}))
    return folder


def test_report_on_constructed_summaries_with_ties_and_a_missing_task(tmp_path):
    # perfect: AUROC 1, Dice 1, MAE 0 / r 1. tied: same classification and segmentation as perfect, no regression.
    # weak: AUROC 5/9, Dice .5, MAE 10, r < 1.
    folders = [_write_model(tmp_path, "perfect", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [1, 1, 1], [20, 40, 60, 80]),
               _write_model(tmp_path, "tied", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9], [1, 1, 1]),
               _write_model(tmp_path, "weak", [0.5, 0.1, 0.6, 0.2, 0.7, 0.4], [0.5, 0.5, 0.5], [30, 30, 70, 70])]
    report = make_report(folders, tmp_path / "report", num_resamples=300, seed=1, num_permutations=200,
                         progress=False)
    # classification: 1.5 1.5 3; segmentation: 1.5 1.5 3; regression: perfect 1, weak 2, tied (missing) 3
    expected = {"perfect": (4 / 3, 1), "tied": (2.0, 2), "weak": (8 / 3, 3)}
    with open(tmp_path / "report" / "leaderboard.csv") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["model"] for row in rows] == ["perfect", "tied", "weak"]
    for row in rows:
        assert float(row["overall_rank"]) == pytest.approx(expected[row["model"]][0], abs=1e-4)
        assert int(row["place"]) == expected[row["model"]][1]
    assert rows[0]["auroc"] == "1" and float(rows[2]["auroc"]) == pytest.approx(5 / 9, abs=1e-5)
    assert rows[1]["mae"] == "" and float(rows[2]["mae"]) == pytest.approx(10.0)
    produced = {path.name for path in (tmp_path / "report").iterdir()}
    assert {"leaderboard.md", "leaderboard.csv", "ranks_bootstrap.json", "pairwise_tests.csv", "roc_curves.png",
            "dice_per_case.png", "age_scatter.png", "bootstrap_ranks.png"} <= produced
    ranks = json.loads((tmp_path / "report" / "ranks_bootstrap.json").read_text())
    assert sum(ranks["models"]["perfect"]["place_counts"]) == 300
    assert "tied has no regression result" in (tmp_path / "report" / "leaderboard.md").read_text()


def test_report_refuses_models_scored_on_different_cases(tmp_path):
    first = _write_model(tmp_path, "one", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    second = _write_model(tmp_path, "two", [0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    data = json.loads((second / "task1.json").read_text())
    data["per_case"][0]["case_id"] = "other"
    (second / "task1.json").write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"task1.json: classification cases differ.*'other'"):
        make_report([first, second], tmp_path / "report", num_resamples=10, num_permutations=10, progress=False)


def test_null_dice_is_accepted_only_from_an_exclude_summary(tmp_path):
    folders = [_write_model(tmp_path, name, dice=[1.0, 0.8, 0.6]) for name in ("one", "two")]
    path = folders[1] / "nested" / "task2.json"
    data = json.loads(path.read_text())
    data["per_case"][0]["dice"] = data["per_case"][0]["nsd"] = None
    path.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="task2.json: per_case field 'dice' is null, which only .* --empty-pair exclude"):
        make_report(folders, tmp_path / "report", num_resamples=10, num_permutations=10, progress=False)
    for folder in folders:
        summary = folder / "nested" / "task2.json"
        summary.write_text(json.dumps({**json.loads(summary.read_text()), "empty_pair": "exclude"}))
    report = make_report(folders, tmp_path / "report", num_resamples=20, num_permutations=20, progress=False)
    assert {row.model: row.metrics["dice"] for row in report.rows} == {"one": pytest.approx(0.8),
                                                                       "two": pytest.approx(0.7)}


def test_a_summary_with_an_unknown_empty_pair_policy_is_refused(tmp_path):
    folder = _write_model(tmp_path, "one", dice=[1.0, 0.8])
    summary = folder / "nested" / "task2.json"
    summary.write_text(json.dumps({**json.loads(summary.read_text()), "empty_pair": "skip"}))
    with pytest.raises(ValueError, match="task2.json: empty_pair 'skip' is not one of score, exclude"):
        make_report([folder], tmp_path / "report", num_resamples=10, num_permutations=10, progress=False)
