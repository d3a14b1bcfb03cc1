"""batchgeneratorsv2's SpatialTransform, made cheaper without changing its geometry or conventions.

- Before resampling, the input is cut down to the box the drawn grid actually samples (plus the
  interpolation kernel's reach): the library builds its label indicators and unique-label lists over
  the whole input, so without the cut every patch pays for the worst-case read size.
- The elastic displacement field comes from coarse-grid noise (see elastic_field.py) instead of
  full-resolution float64 FFTs.
"""
from __future__ import annotations

import math

import numpy as np
import torch
from batchgeneratorsv2.helpers.scalar_type import sample_scalar
from batchgeneratorsv2.transforms.spatial.spatial import SpatialTransform

from fomo_nn.augmentation.elastic_field import displacement_field


class FastSpatialTransform(SpatialTransform):
    """SpatialTransform with a coarse-grid elastic field and a crop of its inputs to the sampled region.

    The crop keeps every voxel any linear-interpolation kernel touches, and where the grid leaves the
    input it stops at the input's border, so the output equals SpatialTransform's for the same grid
    (up to float rounding of the grid coordinates) and padding happens exactly where it did before.
    """

    def __init__(self, patch_size, *, p_elastic: float = 0.0, **kwargs):
        # the library's own elastic branch stays off (p_elastic_deform=0); ours runs with p_elastic
        super().__init__(patch_size, p_elastic_deform=0.0, **kwargs)
        self.p_elastic = float(p_elastic)

    def get_parameters(self, **data_dict) -> dict:
        do_deform = np.random.uniform() < self.p_elastic
        params = super().get_parameters(**data_dict)  # crop centre, rotation, scaling
        if do_deform:
            params = self._add_elastic_deformation(params, tuple(data_dict["image"].shape[1:]))
        return params

    def _add_elastic_deformation(self, params: dict, shape) -> dict:
        """grid = base @ A^T + (offsets - mean) @ A^T + centre: the library's construction, offsets added last."""
        dim = len(self.patch_size)
        if np.random.uniform() <= self.p_synchronize_def_scale_across_axes:
            scales = [sample_scalar(self.elastic_deform_scale, dim=None, patch_size=self.patch_size)] * dim
        else:
            scales = [sample_scalar(self.elastic_deform_scale, dim=d, patch_size=self.patch_size) for d in range(dim)]
        sigmas = [s * p for s, p in zip(scales, self.patch_size)]
        magnitudes = [sample_scalar(self.elastic_deform_magnitude, patch_size=self.patch_size, dim=d,
                                    deformation_scale=scales[d]) for d in range(dim)]
        offsets = displacement_field(self.patch_size, sigmas, magnitudes).reshape(dim, -1)
        if self.center_deformation:
            offsets = offsets - offsets.mean(dim=1, keepdim=True)
        grid = params["grid"]
        if grid is None:  # no rotation/scaling drawn: the library left the grid out; build the plain crop grid
            centre = torch.tensor([c - s / 2 for c, s in zip(params["center_location_in_pixels"], shape)])
            grid = _to_grid_sample_coordinates(self._get_base_grid_clone() + centre, shape)
        # pixel offsets (row vectors) -> through the affine -> grid_sample's normalized, reversed coordinates,
        # folded into one 3x3 matrix and added to the grid in a single pass
        linear = np.eye(dim) if params["affine"] is None else params["affine"].T
        to_grid = (linear @ np.diag([2.0 / s for s in shape]))[:, ::-1]
        grid = grid.contiguous()
        grid.view(-1, dim).addmm_(offsets.T, torch.from_numpy(np.ascontiguousarray(to_grid)).float())
        params.update(grid=grid, elastic_offsets=offsets.reshape(dim, *self.patch_size))
        return params

    def apply(self, data_dict, **params):
        grid = params.get("grid")
        if grid is not None:
            shape = tuple(data_dict["image"].shape[1:])
            box = sampled_box(grid, shape)
            if box is not None:
                lower, upper = box
                region = (slice(None), *[slice(lo, hi) for lo, hi in zip(lower, upper)])
                for key in ("image", "segmentation", "regression_target"):
                    if data_dict.get(key) is not None:
                        data_dict[key] = data_dict[key][region]
                params = dict(params, grid=regrid_to_box(grid, shape, lower, upper))
        return super().apply(data_dict, **params)


def _to_grid_sample_coordinates(pixels: torch.Tensor, shape) -> torch.Tensor:
    """Pixel offsets from the input centre (last dim in axis order) -> grid_sample's normalized, reversed form."""
    scale = torch.tensor([s / 2 for s in shape], dtype=pixels.dtype)
    return (pixels / scale).flip(-1)


def _grid_axis(grid: torch.Tensor, spatial_axis: int) -> torch.Tensor:
    """grid_sample grids list coordinates in reverse axis order (x = last spatial axis)."""
    return grid[..., grid.shape[-1] - 1 - spatial_axis]


def sampled_box(grid: torch.Tensor, shape) -> tuple[list[int], list[int]] | None:
    """[lower, upper) voxel box (clipped to the input) holding every voxel a linear kernel reads at `grid`."""
    lower, upper = [], []
    for axis, size in enumerate(shape):
        low, high = torch.aminmax(_grid_axis(grid, axis))
        # align_corners=False: voxel index = ((g + 1) * size - 1) / 2; the kernel reads floor(i) and floor(i) + 1
        first = math.floor(((low.item() + 1) * size - 1) / 2)
        last = math.floor(((high.item() + 1) * size - 1) / 2) + 1
        lo, hi = max(first, 0), min(last + 1, size)
        if hi <= lo:
            return None  # the grid misses the input entirely: leave it to the padding
        lower.append(lo)
        upper.append(hi)
    if all(lo == 0 for lo in lower) and list(upper) == list(shape):
        return None
    return lower, upper


def regrid_to_box(grid: torch.Tensor, shape, lower, upper) -> torch.Tensor:
    """The same sample points, in normalized coordinates of the cropped input (rewrites `grid` in place)."""
    for axis, (size, lo, hi) in enumerate(zip(shape, lower, upper)):
        coordinate = _grid_axis(grid, axis)
        coordinate.add_(1.0).mul_(size).sub_(2.0 * lo).div_(hi - lo).sub_(1.0)
    return grid
