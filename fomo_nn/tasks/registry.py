"""The table of task types: an explicit list a reader can see, nothing found by importing modules.

Adding a task type: a file beside this one defining its TaskKind, and its line in TASK_KINDS. The
order is part of the results: evaluation tasks are ranked, listed and seeded in it (the bootstrap and
permutation streams of a task are its position), so append new kinds at the end.
"""
from __future__ import annotations

from typing import Callable

from fomo_nn.tasks.classification import CLASSIFICATION
from fomo_nn.tasks.kind import TaskKind
from fomo_nn.tasks.pretraining import PRETRAINING
from fomo_nn.tasks.regression import REGRESSION
from fomo_nn.tasks.segmentation import SEGMENTATION
from fomo_nn.utils.strict_keys import UnknownKeyError, unknown_key_message

TASK_KINDS: dict[str, TaskKind] = {k.name: k for k in (PRETRAINING, CLASSIFICATION, SEGMENTATION, REGRESSION)}


def find_task_kind(name) -> TaskKind | None:
    """The kind of a task type, or None for anything else (a name read from an old or foreign file)."""
    return TASK_KINDS.get(name) if isinstance(name, str) else None


def task_kind(name: str) -> TaskKind:
    """The kind of a task type; an unknown name is an error suggesting the nearest valid one."""
    kind = find_task_kind(name)
    if kind is None:
        raise UnknownKeyError(unknown_key_message("task_type", name, TASK_KINDS, "task type"), [str(name)])
    return kind


def task_names(where: Callable[[TaskKind], bool] | None = None) -> tuple[str, ...]:
    """Task type names in table order; `where`: only the kinds it accepts (e.g. those evaluated)."""
    return tuple(name for name, kind in TASK_KINDS.items() if where is None or where(kind))
