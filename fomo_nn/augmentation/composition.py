"""Small transforms that put the pipeline together: a named coin flip, the spatial stage that carries
`target` along, and the copy that keeps a clean reconstruction target.
"""
from __future__ import annotations

from batchgeneratorsv2.transforms.base.basic_transform import BasicTransform
from batchgeneratorsv2.transforms.utils.compose import ComposeTransforms
from batchgeneratorsv2.transforms.utils.random import RandomTransform

# batchgeneratorsv2's spatial transforms resample `regression_target` exactly like `image`; our
# reconstruction target travels under that key through the spatial stage.
_CARRIER_KEY = "regression_target"


class Sometimes(RandomTransform):
    """Apply `transform` with probability p (one draw per sample); `name` is what previews show."""

    def __init__(self, transform: BasicTransform, p: float, name: str):
        super().__init__(transform, apply_probability=float(p))
        self.name = name


class SpatialStage(ComposeTransforms):
    """Spatial transforms applied to image, segmentation and, when present, `target` alike."""

    name = "spatial"

    def __init__(self, transforms: list[BasicTransform], require_segmentation: bool = False):
        super().__init__(transforms)
        self.require_segmentation = require_segmentation

    def apply(self, data_dict, **params):
        if self.require_segmentation and data_dict.get("segmentation") is None:
            raise ValueError("segmentation augmentation pipeline called on a sample without 'segmentation'")
        target = data_dict.pop("target", None)
        if target is not None:
            if data_dict.get(_CARRIER_KEY) is not None:
                raise ValueError(f"a sample cannot carry both 'target' and '{_CARRIER_KEY}'")
            data_dict[_CARRIER_KEY] = target.clone() if target is data_dict.get("image") else target
        data_dict = super().apply(data_dict)
        if target is not None:
            data_dict["target"] = data_dict.pop(_CARRIER_KEY)
        return data_dict


class CopyImageToTarget(BasicTransform):
    """target := a copy of image (placed after the spatial stage: the clean, geometrically augmented image)."""

    name = "keep_clean_target"

    def apply(self, data_dict, **params):
        data_dict["target"] = data_dict["image"].clone()
        return data_dict
