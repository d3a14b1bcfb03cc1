"""Which metrics score which task, and which direction is better: the one table ranking reads."""
from __future__ import annotations

from dataclasses import dataclass

TASKS = ("classification", "segmentation", "regression")


@dataclass(frozen=True)
class MetricSpec:
    key: str  # key in summary.json "metrics"
    label: str  # column title on the leaderboard
    higher_is_better: bool


TASK_METRICS: dict[str, tuple[MetricSpec, ...]] = {
    "classification": (MetricSpec("auroc", "AUROC", True),),
    "segmentation": (MetricSpec("dice", "Dice", True), MetricSpec("nsd", "NSD", True)),
    "regression": (MetricSpec("pearson_r", "Pearson r", True), MetricSpec("mae", "MAE", False)),
}


def check_task(task: str) -> str:
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task
