"""The one case reader: all channels of a case (optionally its mask) on one RAS voxel grid, checked.

Training and prediction read cases here. The image rules are the raw-dataset validator's
(fomo_nn.datasets.validation: grid, not empty, mask values), so a case that validates is a case
that reads. Channels must share the reference channel's grid; what happens when one does not is
the `misaligned` policy:
- "error" (preprocessing, always: a training case is never silently resampled): BadInputError
  naming the file and the difference;
- "resample" (prediction's default, for hospital data that is not co-registered): the channel is
  resampled onto the reference grid in world coordinates (trilinear; voxels outside its field of
  view become 0), and a warning names both files.
A mask is always refused when off the reference grid.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fomo_nn.datasets.validation import ImageGrid, check_mask_values, check_not_empty, grid_mismatch
from fomo_nn.io import BadInputError, ImageProperties, read_image

MISALIGNED_POLICIES = ("error", "resample")


@dataclass
class LoadedCase:
    data: np.ndarray  # (C, X, Y, Z) float32, RAS
    properties: ImageProperties  # of the reference channel: the grid everything else shares
    seg: np.ndarray | None  # (X, Y, Z) int16 label map on the same grid, or None
    image_files: list[str]
    warnings: list[str] = field(default_factory=list)  # channels resampled onto the reference grid


def _grid(props: ImageProperties) -> ImageGrid:
    return ImageGrid.of(props.source, props)


def read_label_map(label_file: str, reference: ImageProperties, label_values=None) -> np.ndarray:
    """A segmentation on the grid of `reference`, with integer values from `label_values` only."""
    labels, props = read_image(label_file)
    grid = _grid(props)
    if not grid.same_as(_grid(reference)):
        raise grid_mismatch(label_file, grid, _grid(reference), "image")
    return check_mask_values(label_file, label_values, labels)


def world_to_grid_matrix(reference: ImageProperties, other: ImageProperties) -> np.ndarray:
    """4x4 map from reference RAS voxel indices to `other`'s RAS voxel indices (through world mm)."""
    return np.linalg.inv(np.asarray(other.ras_affine, dtype=float)) @ np.asarray(reference.ras_affine, dtype=float)


def resample_onto(image: np.ndarray, props: ImageProperties, reference: ImageProperties) -> np.ndarray:
    """`image` (on the RAS grid of `props`) sampled at the voxel centres of `reference`'s RAS grid."""
    matrix = world_to_grid_matrix(reference, props)
    return ndimage.affine_transform(image, matrix[:3, :3], offset=matrix[:3, 3], output_shape=reference.ras_shape,
                                    order=1, mode="constant", cval=0.0, prefilter=False).astype(np.float32)


def read_case_images(image_files, label_file: str | None = None, label_values=None, misaligned: str = "error",
                     reference_index: int = 0) -> LoadedCase:
    """Every channel (and the mask, when given) on the grid of channel `reference_index`, or BadInputError."""
    if misaligned not in MISALIGNED_POLICIES:
        raise ValueError(f"misaligned must be one of {MISALIGNED_POLICIES}, got {misaligned!r}")
    files = [str(f) for f in image_files]
    if not files:
        raise ValueError("a case needs at least one image file")
    if not 0 <= reference_index < len(files):
        raise ValueError(f"reference channel {reference_index} is not among the {len(files)} channels")
    first, reference = read_image(files[reference_index])
    check_not_empty(files[reference_index], first)
    data = np.empty((len(files), *first.shape), dtype=np.float32)
    data[reference_index] = first
    del first
    what = "first channel" if reference_index == 0 else "reference channel"
    warnings = []
    for channel, path in enumerate(files):
        if channel == reference_index:
            continue
        image, props = read_image(path)
        check_not_empty(path, image)
        grid = _grid(props)
        if not grid.same_as(_grid(reference)):
            mismatch = grid_mismatch(path, grid, _grid(reference), what)
            if misaligned == "error":
                raise mismatch
            image = resample_onto(image, props, reference)
            if not np.any(image):
                raise BadInputError(path, f"does not overlap {files[reference_index]} in world coordinates")
            warnings.append(f"{path}: {mismatch.problem}; resampled onto the grid of {files[reference_index]}")
        data[channel] = image
    seg = read_label_map(label_file, reference, label_values) if label_file else None
    return LoadedCase(data=data, properties=reference, seg=seg, image_files=files, warnings=warnings)
