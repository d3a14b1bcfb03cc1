"""Thick slices: a 2D acquisition along one axis, resampled onto the isotropic training grid.

Clinical protocols often acquire T2, FLAIR, DWI and SWI as 2D stacks of 4-7 mm slices while the
planned grid is ~1 mm; after preprocessing such a scan is sharp in-plane and smeared across slices.
This transform averages `thickness` consecutive voxels along one axis (the slice profile) and
interpolates back linearly, per channel, so a model meets the slice blur of other hospitals in
training. Unlike batchgeneratorsv2's low-resolution simulation it degrades one axis only.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fomo_nn.augmentation.artifact_base import ArtifactTransform, choice, uniform


def thick_slice_profile(channel: torch.Tensor, axis: int, thickness: float) -> torch.Tensor:
    """(X, Y, Z) -> same shape, with slabs of `thickness` voxels along `axis` averaged and re-interpolated."""
    if thickness <= 1.0:
        return channel
    moved = channel.movedim(axis, -1)  # (A, B, N): slices along the last axis
    n = moved.shape[-1]
    slabs = max(1, int(round(n / thickness)))
    rows = moved.reshape(1, -1, n).float()
    low = F.adaptive_avg_pool1d(rows, slabs)
    back = F.interpolate(low, size=n, mode="linear", align_corners=False)
    return back.reshape(moved.shape).movedim(-1, axis).to(channel.dtype)


class ThickSliceTransform(ArtifactTransform):
    name = "thick_slices"

    def __init__(self, thickness=(2.0, 5.0), axes=(0, 1, 2), p_per_channel: float = 1.0, remask: bool = True):
        super().__init__(p_per_channel, remask)
        self.thickness = tuple(float(t) for t in thickness)
        self.axes = tuple(int(a) for a in axes)

    def sample_channel_parameters(self, spatial_shape):
        return {"axis": choice(self.axes), "thickness": uniform(*self.thickness)}

    def corrupt(self, channel, foreground, axis, thickness):
        return thick_slice_profile(channel, axis, thickness)
