"""What differs between task families in the plans: training recipe and augmentation preset.

Choices (edit plans.json to change them for one dataset):
- pretraining: AdamW 1e-4, weight decay 0.05, 10 warm-up epochs then cosine, 100 epochs of 250
  steps (the FOMO25 baseline's optimiser and length; MAE-style weight decay).
- classification / regression (few-shot, often from a pretrained encoder): AdamW 1e-4, weight
  decay 3e-5 (the baseline's finetuning), 5 warm-up epochs then cosine, 100 epochs of 100 steps.
- segmentation from scratch: nnU-Net's proven recipe, SGD 0.01 with Nesterov momentum 0.99 and a
  poly schedule, 1000 epochs of 250 steps. Finetuning a pretrained encoder (--plans-like) uses
  AdamW 1e-4 with warm-up and cosine instead: SGD at 0.01 tends to wash out pretrained features.
"""
from __future__ import annotations

from fomo_nn.plans.records import TrainingPlan

PRETRAINING_FAMILIES = ("pretraining_reconstruction", "pretraining_contrastive")


def task_family(task_type: str, pretraining_family: str = "pretraining_reconstruction") -> str:
    if task_type == "pretraining":
        if pretraining_family not in PRETRAINING_FAMILIES:
            raise ValueError(f"pretraining family {pretraining_family!r} is not one of {PRETRAINING_FAMILIES}")
        return pretraining_family
    if task_type in ("classification", "regression", "segmentation"):
        return task_type
    raise ValueError(f"unknown task type {task_type!r}")


def default_training_plan(task_type: str, finetuning: bool = False) -> TrainingPlan:
    if task_type == "pretraining":
        return TrainingPlan(optimizer="adamw", learning_rate=1e-4, weight_decay=0.05, schedule="warmup_cosine",
                            warmup_epochs=10, epochs=100, iterations_per_epoch=250)
    if task_type in ("classification", "regression"):
        return TrainingPlan(optimizer="adamw", learning_rate=1e-4, weight_decay=3e-5, schedule="warmup_cosine",
                            warmup_epochs=5, epochs=100, iterations_per_epoch=100)
    if task_type == "segmentation":
        if finetuning:
            return TrainingPlan(optimizer="adamw", learning_rate=1e-4, weight_decay=3e-5, schedule="warmup_cosine",
                                warmup_epochs=5, epochs=200, iterations_per_epoch=250)
        return TrainingPlan(optimizer="sgd", learning_rate=1e-2, weight_decay=3e-5, momentum=0.99, schedule="poly",
                            warmup_epochs=0, epochs=1000, iterations_per_epoch=250)
    raise ValueError(f"unknown task type {task_type!r}")


def augmentation_preset(family: str) -> dict:
    """The augmentation plan of fomo_nn.augmentation for a task family."""
    try:
        from fomo_nn.augmentation.presets import default_augmentation_plan
    except ImportError as error:
        raise RuntimeError("fomo_nn.augmentation.presets is not available, so the planner cannot choose the "
                           f"augmentation preset for {family!r} ({error})") from error
    return default_augmentation_plan(family)
