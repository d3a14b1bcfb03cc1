"""What differs between task families in the plans: training recipe and augmentation preset.

The recipes and presets are facts of each task kind (fomo_nn/tasks/<task>.py says which and why);
this module turns them into plans records. Edit plans.json to change them for one dataset.
"""
from __future__ import annotations

from fomo_nn.plans.records import TrainingPlan
from fomo_nn.tasks import task_kind


def task_family(task_type: str, pretraining_family: str = "pretraining_reconstruction") -> str:
    """The augmentation preset of a task type (`pretraining_family`: the choice where it has several)."""
    return task_kind(task_type).augmentation_family(pretraining_family)


def default_training_plan(task_type: str, finetuning: bool = False) -> TrainingPlan:
    return TrainingPlan(**task_kind(task_type).training_recipe(finetuning))


def augmentation_preset(family: str) -> dict:
    """The augmentation plan of fomo_nn.augmentation for a task family."""
    try:
        from fomo_nn.augmentation.presets import default_augmentation_plan
    except ImportError as error:
        raise RuntimeError("fomo_nn.augmentation.presets is not available, so the planner cannot choose the "
                           f"augmentation preset for {family!r} ({error})") from error
    return default_augmentation_plan(family)
