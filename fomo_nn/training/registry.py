"""Explicit trainer registry: a name maps to a class; nothing is found by importing every module.

Trainer modules register themselves with @register_trainer; `fomo_nn.training.trainers` imports
the list of modules that ship with fomo_nn, in one place a reader can see.
"""
from __future__ import annotations

from fomo_nn.tasks import task_kind

_TRAINERS: dict[str, type] = {}


def register_trainer(cls):
    key = cls.name.lower()
    if key in _TRAINERS and _TRAINERS[key] is not cls:
        raise ValueError(f"trainer name {cls.name!r} is registered twice")
    _TRAINERS[key] = cls
    return cls


def all_trainers() -> dict[str, type]:
    import fomo_nn.training.trainers  # noqa: F401  (registers the shipped trainers)

    return dict(sorted(_TRAINERS.items()))


def get_trainer(name: str):
    trainers = all_trainers()
    try:
        return trainers[name.lower()]
    except KeyError:
        raise KeyError(f"unknown trainer {name!r}; registered: {', '.join(trainers)}") from None


def trainer_for(task_type: str, name: str | None = None):
    """The trainer named by -tr, or the default of the dataset's task kind (fomo_nn.tasks); checks they fit."""
    cls = get_trainer(name or task_kind(task_type).default_trainer)
    if task_type not in cls.task_types:
        raise ValueError(f"trainer {cls.name!r} trains {', '.join(cls.task_types)} datasets, "
                         f"but this dataset is {task_type}")
    return cls
