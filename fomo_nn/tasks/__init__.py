"""Task types in one table: each kind's targets, planning defaults, network, prediction, export and metrics.

Read a task's behaviour through ``task_kind(plans.task_type)`` instead of comparing names; see
kind.py for the fields and registry.py for the table. Imports only the standard library.
"""
from fomo_nn.tasks.kind import CASE_CLASS, CASE_VALUE, TARGETS, VOXELS, Evaluation, MetricSpec, TaskKind, resolve
from fomo_nn.tasks.registry import TASK_KINDS, find_task_kind, task_kind, task_names

__all__ = ["CASE_CLASS", "CASE_VALUE", "TARGETS", "VOXELS", "Evaluation", "MetricSpec", "TaskKind", "resolve",
           "TASK_KINDS", "find_task_kind", "task_kind", "task_names"]
