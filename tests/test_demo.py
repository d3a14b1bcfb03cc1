"""The main job end to end at the tiny budget: every stage's outputs, and the report's numbers."""
import json
import re

import pytest

from fomo_nn.cli.demo import main as demo
from fomo_nn.cli.evaluate import main as evaluate
from fomo_nn.demo.budget import BUDGETS
from fomo_nn.demo.pipeline import TASKS, DemoPipeline

REPORT_COLUMNS = ["auroc", "dice", "nsd", "pearson_r", "mae"]


@pytest.fixture(scope="module")
def finished_demo(tmp_path_factory):
    workdir = tmp_path_factory.mktemp("demo")
    assert demo(["--workdir", str(workdir), "--budget", "tiny", "--device", "cpu"]) == 0
    return workdir


def _report_table(report: str) -> dict[str, dict[str, float]]:
    rows = {}
    for line in report.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 9 and re.fullmatch(r"\d+", cells[0]):
            rows[cells[1]] = {k: float(v) for k, v in zip(REPORT_COLUMNS, cells[4:])}
    return rows


def test_every_stage_leaves_its_outputs(finished_demo):
    pipeline = DemoPipeline(finished_demo, BUDGETS["tiny"])
    assert (finished_demo / "sample_data" / "fomo60k").is_dir()
    assert (pipeline.raw("Dataset001_FOMO60K") / "manifest.json").is_file()
    assert (pipeline.preprocessed("Dataset001_FOMO60K") / "plans.json").is_file()
    assert pipeline.pretraining_checkpoint("mae").is_file()
    for task in TASKS:
        plans = json.loads((pipeline.preprocessed(task.folder) / "plans.json").read_text())
        assert plans["plans_like"], "task plans must follow the pretrained model"
        for model in pipeline.model_names:
            assert (pipeline.model_dir(task, model) / "fold_all" / "checkpoint_final.pth").is_file()
            assert (pipeline.model_dir(task, model) / "fold_all" / "progress.png").is_file()
            predictions = list(pipeline.predictions_dir(task, model).iterdir())
            assert predictions, f"no predictions for {task.key} {model}"
            assert pipeline.summary_path(task, model).is_file()
    for task in pipeline.probed_tasks:  # frozen random and pretrained encoders probed on the held-out sites
        result = json.loads(pipeline.probe_path(task).read_text())
        encoders = {row["encoder"] for row in result["rows"]}
        assert encoders == {"random:0", "random:1", "pretrained_mae"}
        assert {row["split"] for row in result["rows"]} >= {"cv", "test"}
        assert any(row["split"].startswith("test:test_") for row in result["rows"])  # per site
    curve = [json.loads(line) for line in
             (pipeline.pretraining_checkpoint("mae").parent / "online_probe.jsonl").read_text().splitlines()]
    assert [row["epochs_done"] for row in curve] == [0, 1, 2]
    assert pipeline.model_names == ["supervised_scratch", "pretrained"]
    scratch = json.loads((pipeline.model_dir(TASKS[0], "supervised_scratch") / "plans.json").read_text())
    pretrained = json.loads((pipeline.model_dir(TASKS[0], "pretrained") / "plans.json").read_text())
    assert scratch["network"]["fusion"] == "stem_expansion" and pretrained["network"]["fusion"] == "shared_encoder"
    for name in ("leaderboard.md", "leaderboard.csv", "roc_curves.png", "dice_per_case.png", "age_scatter.png",
                 "bootstrap_ranks.png", "probe_curves.png"):
        assert (pipeline.report_dir / name).is_file(), name
    assert (finished_demo / "REPORT.md").is_file()
    assert "## Frozen-feature probes" in (finished_demo / "REPORT.md").read_text()


def test_report_numbers_equal_a_fresh_evaluation(finished_demo, tmp_path):
    pipeline = DemoPipeline(finished_demo, BUDGETS["tiny"])
    table = _report_table((finished_demo / "REPORT.md").read_text())
    assert set(table) == set(pipeline.model_names)
    for task in TASKS:
        for model in pipeline.model_names:
            out = tmp_path / f"{task.key}_{model}.json"
            assert evaluate(["--task-type", task.family, "-r", str(pipeline.raw(task.folder) / "labelsTs"),
                             "-p", str(pipeline.predictions_dir(task, model)), "-o", str(out), "--quiet"]) == 0
            metrics = json.loads(out.read_text())["metrics"]
            for key in REPORT_COLUMNS:
                if key in metrics:
                    assert table[model][key] == pytest.approx(metrics[key], abs=5e-4), (task.key, model, key)


def test_rerun_resumes_without_redoing_stages(finished_demo, capsys):
    before = (finished_demo / "REPORT.md").stat().st_mtime
    assert demo(["--workdir", str(finished_demo), "--budget", "tiny", "--device", "cpu"]) == 0
    assert "already done" in capsys.readouterr().err
    assert (finished_demo / "REPORT.md").stat().st_mtime == before


def test_other_configuration_in_same_workdir_is_refused(finished_demo):
    assert demo(["--workdir", str(finished_demo), "--budget", "tiny", "--methods", "dino", "--device", "cpu"]) == 1
