"""Which metrics score which task, and which direction is better: read from the task kinds' table.

The evaluated tasks are the kinds with an ``evaluation`` (fomo_nn.tasks), in the table's order, which
fixes the order of the leaderboard's columns and each task's random stream.
A ranked task is named by a key: a task type (a summary scored by --task-type, and FOMO25's tasks,
one per type) or a challenge task's key (`fomo26_task4`, fomo_nn.challenges); `key_*` resolve either.
"""
from __future__ import annotations

from fomo_nn.challenges.edition import ChallengeTask
from fomo_nn.challenges.registry import default_task_for_type, task_by_key
from fomo_nn.tasks import Evaluation, MetricSpec, task_kind, task_names

__all__ = ["TASKS", "TASK_METRICS", "MetricSpec", "check_task", "task_evaluation", "key_task_type",
           "key_evaluation", "key_challenge", "key_stream"]

TASKS = task_names(lambda kind: kind.evaluation is not None)
TASK_METRICS: dict[str, tuple[MetricSpec, ...]] = {task: task_kind(task).evaluation.metrics for task in TASKS}


def check_task(task: str) -> str:
    if task not in TASK_METRICS:
        raise ValueError(f"unknown task {task!r}; expected one of {', '.join(TASKS)}")
    return task


def task_evaluation(task: str) -> Evaluation:
    """How `task` is scored and ranked (after check_task's error for a task that is not evaluated)."""
    return task_kind(check_task(task)).evaluation


def key_challenge(key: str) -> ChallengeTask | None:
    """The challenge task a key names (a task type names the default edition's task of that type)."""
    return task_by_key(key) or (default_task_for_type(key) if key in TASKS else None)


def key_task_type(key: str) -> str:
    if key in TASKS:
        return key
    task = task_by_key(key)
    if task is None or task.task_type not in TASKS:
        raise ValueError(f"unknown task {key!r}; expected a task type ({', '.join(TASKS)}) or a challenge task key")
    return task.task_type


def key_evaluation(key: str) -> Evaluation:
    return task_evaluation(key_task_type(key))


def key_stream(key: str) -> int:
    """The task's random-stream index: a task type's position in TASKS (FOMO25's task n is stream n - 1
    either way), a challenge task's position in its edition."""
    return TASKS.index(key) if key in TASKS else task_by_key(key).stream
