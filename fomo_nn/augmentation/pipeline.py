"""Training and validation pipelines from an augmentation plan.

Training order: spatial stage (crop/rotation/scaling/elastic, mirroring; image, segmentation and
target together) -> copy to `target` if keep_clean_target -> artifacts -> intensity. Artifacts come
before intensity transforms because they model the acquisition of the clean image and re-mask to its
zero background, which additive noise would no longer show; both touch `image` only.

Everything is a batchgeneratorsv2 transform without lambdas, so the pipeline pickles into worker
processes, and all randomness comes from the global torch/numpy generators, which the loader seeds
per step: the same seeds give the same sample.
"""
from __future__ import annotations

from dataclasses import dataclass

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms

from fomo_nn.augmentation.artifacts import build_artifact_transforms
from fomo_nn.augmentation.composition import CopyImageToTarget, SpatialStage
from fomo_nn.augmentation.intensity import build_intensity_transforms
from fomo_nn.augmentation.plan import SPATIAL_DEFAULTS, resolve_augmentation_plan
from fomo_nn.augmentation.spatial import build_spatial_stage


@dataclass
class AugmentationStages:
    """The three pipelines separately (the preview shows each alone)."""

    spatial: SpatialStage
    artifacts: list[BasicTransform]
    intensity: list[BasicTransform]
    keep_clean_target: bool

    def compose(self) -> ComposeTransforms:
        head = [self.spatial] + ([CopyImageToTarget()] if self.keep_clean_target else [])
        return ComposeTransforms(head + self.artifacts + self.intensity)


def build_augmentation_stages(aug_plan: dict, patch_size, is_segmentation: bool = False) -> AugmentationStages:
    plan = resolve_augmentation_plan(aug_plan)
    return AugmentationStages(
        spatial=build_spatial_stage(plan["spatial"], _checked_patch_size(patch_size), is_segmentation),
        artifacts=build_artifact_transforms(plan["artifacts"]),
        intensity=build_intensity_transforms(plan["intensity"]),
        keep_clean_target=plan["keep_clean_target"],
    )


def build_augmentation_pipeline(aug_plan: dict, patch_size, is_segmentation: bool = False) -> ComposeTransforms:
    """Training pipeline: call it as `pipeline(image=..., segmentation=..., target=...)` -> dict.

    The input patch should be `initial_patch_size(patch_size, aug_plan)` large (smaller is padded
    with zeros); the output is `patch_size`. With is_segmentation=True a missing `segmentation` is
    an error rather than a silently unsupervised sample.
    """
    return build_augmentation_stages(aug_plan, patch_size, is_segmentation).compose()


def build_validation_pipeline(patch_size=None) -> ComposeTransforms:
    """Centre crop (zero padded) to patch_size of image/segmentation/target; no change when patch_size is None."""
    if patch_size is None:
        return ComposeTransforms([])
    return ComposeTransforms([build_spatial_stage(SPATIAL_DEFAULTS, _checked_patch_size(patch_size))])


def _checked_patch_size(patch_size) -> tuple[int, int, int]:
    size = tuple(int(p) for p in patch_size)
    if len(size) != 3 or any(p < 1 for p in size) or any(int(p) != p for p in patch_size):
        raise ValueError(f"patch_size must be three positive integers, got {patch_size!r}")
    return size
