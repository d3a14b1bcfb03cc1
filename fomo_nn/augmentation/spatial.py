"""The spatial stage: batchgeneratorsv2's SpatialTransform (crop, rotation, scaling, elastic) and mirroring.

SpatialTransform crops `patch_size` out of the larger read patch (see initial_patch_size), in one
resampling for all of rotation, scaling and elastic deformation; with none of them drawn it crops
without interpolating. By default the crop is centred: the loader already chose a random location
(and, for segmentation, oversampled foreground), and the margin is what rotation needs. With
`spatial.random_crop` the centre moves uniformly as far as keeps the unrotated patch inside the read
patch (useful when the loader hands over a fixed region or a whole small volume).

The transform used is FastSpatialTransform (fast_spatial_transform.py): the library's, with the same
geometry, made cheaper.

Label maps are resampled the nnU-Net way (each label's indicator interpolated, then argmax; ties to
the nearest neighbour), so no new label values appear; outside the read patch the label is 0.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from batchgeneratorsv2.transforms.spatial.mirroring import MirrorTransform

from fomo_nn.augmentation.composition import SpatialStage
from fomo_nn.augmentation.fast_spatial_transform import FastSpatialTransform


class AxisMirrorTransform(MirrorTransform):
    """MirrorTransform with a configurable per-axis flip probability (batchgeneratorsv2 fixes it at 0.5)."""

    name = "mirror"

    def __init__(self, allowed_axes, p_per_axis: float = 0.5):
        super().__init__(tuple(int(a) for a in allowed_axes))
        self.p_per_axis = float(p_per_axis)

    def get_parameters(self, **data_dict) -> dict:
        return {"axes": [a for a in self.allowed_axes if torch.rand(1).item() < self.p_per_axis]}


def build_spatial_transform(spatial: dict, patch_size) -> FastSpatialTransform:
    """The spatial transform configured from the resolved `spatial` section of a plan."""
    patch_size = tuple(int(p) for p in patch_size)
    rotation, scaling, elastic = spatial["rotation"], spatial["scaling"], spatial["elastic"]
    max_radians = math.radians(rotation["max_degrees"])
    transform = FastSpatialTransform(
        patch_size=patch_size,
        patch_center_dist_from_border=[p / 2 for p in patch_size] if spatial["random_crop"] else 0,
        random_crop=bool(spatial["random_crop"]),
        p_elastic=elastic["p"],
        elastic_deform_scale=tuple(elastic["scale"]),
        elastic_deform_magnitude=tuple(elastic["magnitude"]),
        p_rotation=rotation["p"],
        rotation=(-max_radians, max_radians),
        p_rot_per_axis=rotation["p_per_axis"],
        p_scaling=scaling["p"],
        scaling=tuple(scaling["range"]),
        p_synchronize_scaling_across_axes=1.0 if scaling["synchronize_axes"] else 0.0,
        border_mode_seg="zeros",
        padding_mode_image="zeros",
    )
    transform.name = "crop/rotation/scaling/elastic"
    return transform


def build_spatial_stage(spatial: dict, patch_size, is_segmentation: bool = False) -> SpatialStage:
    transforms = [build_spatial_transform(spatial, patch_size)]
    mirror = spatial["mirror"]
    if mirror["p"] > 0:
        transforms.append(AxisMirrorTransform(mirror["axes"], mirror["p"]))
    return SpatialStage(transforms, require_segmentation=is_segmentation)


def describe_spatial_draw(params: dict) -> list[str]:
    """Names of what one SpatialTransform draw did (from its get_parameters output), for previews."""
    names = []
    affine = params.get("affine")
    if affine is not None:
        scales = np.linalg.norm(affine, axis=0)
        rotation = affine / scales
        if not np.allclose(rotation, np.eye(len(scales)), atol=1e-6):
            names.append("rotation")
        if not np.allclose(scales, 1.0, atol=1e-6):
            names.append(f"scale {np.mean(scales):.2f}")
    if params.get("elastic_offsets") is not None:
        names.append("elastic")
    return names
