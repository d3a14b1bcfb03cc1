"""Which metrics score which task, and which direction is better: read from the task kinds' table.

The evaluated tasks are the kinds with an ``evaluation`` (fomo_nn.tasks), in the table's order, which
fixes the order of the leaderboard's columns and each task's random stream.
"""
from __future__ import annotations

from fomo_nn.tasks import Evaluation, MetricSpec, task_kind, task_names

__all__ = ["TASKS", "TASK_METRICS", "MetricSpec", "check_task", "task_evaluation"]

TASKS = task_names(lambda kind: kind.evaluation is not None)
TASK_METRICS: dict[str, tuple[MetricSpec, ...]] = {task: task_kind(task).evaluation.metrics for task in TASKS}


def check_task(task: str) -> str:
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def task_evaluation(task: str) -> Evaluation:
    """How `task` is scored and ranked (after check_task's error for a task that is not evaluated)."""
    return task_kind(check_task(task)).evaluation
