"""Spatial, intensity and MRI-artifact augmentation, configured from the plans' "augmentation" dict.

Public API:
    default_augmentation_plan(task_family) -> dict
    resolve_augmentation_plan(aug_plan) -> dict            (checked, defaults filled in)
    merge_augmentation_plans(base, override) -> dict
    initial_patch_size(patch_size, aug_plan) -> (x, y, z)  (what the loader must read)
    build_augmentation_pipeline(aug_plan, patch_size, is_segmentation=False) -> ComposeTransforms
    build_validation_pipeline(patch_size=None) -> ComposeTransforms
    render_augmentation_preview(volume, aug_plan, patch_size, out_png, ...)  (fomo_nn.augmentation.preview)
"""
from fomo_nn.augmentation.patch_size import initial_patch_size
from fomo_nn.augmentation.pipeline import (AugmentationStages, build_augmentation_pipeline,
                                           build_augmentation_stages, build_validation_pipeline)
from fomo_nn.augmentation.plan import merge_augmentation_plans, resolve_augmentation_plan
from fomo_nn.augmentation.presets import TASK_FAMILIES, default_augmentation_plan

__all__ = [
    "TASK_FAMILIES", "AugmentationStages", "build_augmentation_pipeline", "build_augmentation_stages",
    "build_validation_pipeline", "default_augmentation_plan", "initial_patch_size", "merge_augmentation_plans",
    "resolve_augmentation_plan",
]
