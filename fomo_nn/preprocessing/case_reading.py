"""Read one case (all channels, optionally its mask) and check it is usable.

Every problem is a BadInputError naming the offending file, so a 60K-scan run can list them all.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from fomo_nn.io import BadInputError, ImageProperties, read_image
from fomo_nn.io.geometry import same_grid


@dataclass
class LoadedCase:
    data: np.ndarray  # (C, X, Y, Z) float32, RAS
    properties: ImageProperties  # of channel 0: the grid everything else must share
    seg: np.ndarray | None  # (X, Y, Z) int16 label map on the same grid, or None
    image_files: list[str]


def grid_problem(reference: ImageProperties, other: ImageProperties) -> str | None:
    """Why `other` is not on the voxel grid of `reference` (None when it is)."""
    if same_grid(reference.ras_shape, np.asarray(reference.ras_affine), other.ras_shape, np.asarray(other.ras_affine)):
        return None
    if tuple(reference.ras_shape) != tuple(other.ras_shape):
        return (f"grid differs from {reference.source}: shape {tuple(other.ras_shape)} vs {tuple(reference.ras_shape)}"
                " (in RAS order); resample or register it onto the first channel")
    offset = float(np.abs(np.asarray(reference.ras_affine) - np.asarray(other.ras_affine)).max())
    return (f"grid differs from {reference.source}: same shape but the affines differ by up to {offset:.3g} mm "
            "(spacing, origin or orientation)")


def _check_not_empty(path: str, image: np.ndarray) -> None:
    if not np.any(image):
        raise BadInputError(path, "image is empty (every voxel is 0)")


def read_label_map(label_file: str, reference: ImageProperties, label_values=None) -> np.ndarray:
    """A segmentation on the grid of `reference`, with integer values from `label_values` only."""
    labels, props = read_image(label_file)
    problem = grid_problem(reference, props)
    if problem:
        raise BadInputError(label_file, problem)
    rounded = np.rint(labels)
    if not np.array_equal(rounded, labels):
        raise BadInputError(label_file, "segmentation holds non-integer values (is it an image or a probability map?)")
    present = np.unique(rounded).astype(np.int64)
    if label_values is not None:
        unknown = sorted(set(present.tolist()) - {int(v) for v in label_values})
        if unknown:
            raise BadInputError(label_file, f"label values {unknown} are not declared in dataset.json labels "
                                            f"{sorted(int(v) for v in label_values)}")
    if present.min() < 0 or present.max() > 127:
        raise BadInputError(label_file, f"label values must lie in 0..127, found {present.min()}..{present.max()}")
    return rounded.astype(np.int16)


def read_case_images(image_files, label_file: str | None = None, label_values=None) -> LoadedCase:
    """Read every channel (and the mask, when given) onto one RAS grid, or raise BadInputError."""
    image_files = [str(f) for f in image_files]
    if not image_files:
        raise ValueError("a case needs at least one image file")
    first, reference = read_image(image_files[0])
    _check_not_empty(image_files[0], first)
    data = np.empty((len(image_files), *first.shape), dtype=np.float32)
    data[0] = first
    del first
    for channel, path in enumerate(image_files[1:], start=1):
        image, props = read_image(path)
        problem = grid_problem(reference, props)
        if problem:
            raise BadInputError(path, problem)
        _check_not_empty(path, image)
        data[channel] = image
    seg = read_label_map(label_file, reference, label_values) if label_file else None
    return LoadedCase(data=data, properties=reference, seg=seg, image_files=image_files)
