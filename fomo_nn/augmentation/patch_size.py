"""How large a patch the loader must read so that rotation, scaling and elastic deformation of the
final patch sample real data rather than padding (nnU-Net's "initial patch size").

Like nnU-Net's get_patch_size, rotations are taken one axis at a time: for each axis with rotation
enabled, the bounding box of the patch rotated by any angle up to max_degrees (sampled finely, so
angles between 0 and the maximum that give a larger box count too). Rotations about several axes at
once can still reach a little past it at the patch corners, where zero padding fills in, as in
nnU-Net. Unlike nnU-Net (which divides by the smallest scale), the box is multiplied by the largest
scale factor: in batchgeneratorsv2 the factor multiplies the sampling grid, so scale > 1 reads a
larger region. Elastic deformation adds its peak displacement on every side.
"""
from __future__ import annotations

import math

import numpy as np

from fomo_nn.augmentation.plan import resolve_augmentation_plan

_ANGLE_SAMPLES = 61


def rotation_about_axis(axis: int, angle: float) -> np.ndarray:
    c, s = math.cos(angle), math.sin(angle)
    i, j = [a for a in range(3) if a != axis]
    matrix = np.eye(3)
    matrix[i, i], matrix[i, j], matrix[j, i], matrix[j, j] = c, -s, s, c
    return matrix


def rotated_extent(half_size: np.ndarray, max_radians: float) -> np.ndarray:
    """Per-axis half extent of a box of `half_size`, rotated about any one axis by up to max_radians."""
    extent = half_size.copy()
    if max_radians <= 0:
        return extent
    for axis in range(3):
        for angle in np.linspace(0.0, min(max_radians, math.pi), _ANGLE_SAMPLES):
            extent = np.maximum(extent, np.abs(rotation_about_axis(axis, angle)) @ half_size)
    return extent


def initial_patch_size(patch_size, aug_plan: dict) -> tuple[int, int, int]:
    """The read size for `patch_size` under the plan; equals patch_size with no rotation/scaling/elastic."""
    spatial = resolve_augmentation_plan(aug_plan)["spatial"]
    patch = np.asarray(patch_size, dtype=float)
    if patch.shape != (3,) or np.any(patch < 1):
        raise ValueError(f"patch_size must be three positive sizes, got {patch_size!r}")
    rotation = spatial["rotation"]
    rotates = rotation["p"] > 0 and rotation["p_per_axis"] > 0 and rotation["max_degrees"] > 0
    max_radians = math.radians(rotation["max_degrees"]) if rotates else 0.0
    scale = max(1.0, spatial["scaling"]["range"][1]) if spatial["scaling"]["p"] > 0 else 1.0
    margin = spatial["elastic"]["magnitude"][1] if spatial["elastic"]["p"] > 0 else 0.0
    half = rotated_extent(patch / 2 + margin, max_radians) * scale
    size = np.maximum(np.ceil(2 * half - 1e-6), patch).astype(int)
    return tuple(int(s) for s in size)
