"""Read the channels of one new case onto one voxel grid, ready for the plans' preprocessing.

Hospital data are not always co-registered on one grid. Policy (`misaligned`):
- "resample" (default): a channel whose grid differs from the reference channel's is resampled
  onto it in world coordinates (trilinear; voxels outside the channel's field of view become 0),
  and a warning names both files;
- "error": such a case is refused with a BadInputError naming the file and the difference.
The reference is the first model channel, or any channel the caller names (challenge task 2 writes
its mask in the FLAIR's geometry, so the FLAIR is its reference).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage

from fomo_nn.io import BadInputError, ImageProperties, read_image
from fomo_nn.preprocessing.case_reading import LoadedCase, grid_problem

MISALIGNED_POLICIES = ("resample", "error")


@dataclass
class ReadCase:
    loaded: LoadedCase  # data on the reference grid, properties of the reference image
    warnings: list[str] = field(default_factory=list)


def world_to_grid_matrix(reference: ImageProperties, other: ImageProperties) -> np.ndarray:
    """4x4 map from reference RAS voxel indices to `other`'s RAS voxel indices (through world mm)."""
    return np.linalg.inv(np.asarray(other.ras_affine, dtype=float)) @ np.asarray(reference.ras_affine, dtype=float)


def resample_onto(image: np.ndarray, props: ImageProperties, reference: ImageProperties) -> np.ndarray:
    """`image` (on the RAS grid of `props`) sampled at the voxel centres of `reference`'s RAS grid."""
    matrix = world_to_grid_matrix(reference, props)
    return ndimage.affine_transform(image, matrix[:3, :3], offset=matrix[:3, 3], output_shape=reference.ras_shape,
                                    order=1, mode="constant", cval=0.0, prefilter=False).astype(np.float32)


def check_not_empty(path: str, image: np.ndarray) -> None:
    if not np.any(image):
        raise BadInputError(path, "image is empty (every voxel is 0)")


def read_case(image_files, misaligned: str = "resample", reference_index: int = 0) -> ReadCase:
    """All channels of a case on the grid of channel `reference_index`, or a BadInputError naming the file."""
    if misaligned not in MISALIGNED_POLICIES:
        raise ValueError(f"misaligned must be one of {MISALIGNED_POLICIES}, got {misaligned!r}")
    files = [str(f) for f in image_files]
    if not 0 <= reference_index < len(files):
        raise ValueError(f"reference channel {reference_index} is not among the {len(files)} channels")
    reference_image, reference = read_image(files[reference_index])
    check_not_empty(files[reference_index], reference_image)
    data = np.empty((len(files), *reference_image.shape), dtype=np.float32)
    data[reference_index] = reference_image
    del reference_image
    warnings = []
    for channel, path in enumerate(files):
        if channel == reference_index:
            continue
        image, props = read_image(path)
        check_not_empty(path, image)
        problem = grid_problem(reference, props)
        if problem is not None:
            if misaligned == "error":
                raise BadInputError(path, f"{problem} (--misaligned error; use --misaligned resample to resample it)")
            image = resample_onto(image, props, reference)
            if not np.any(image):
                raise BadInputError(path, f"does not overlap {files[reference_index]} in world coordinates")
            warnings.append(f"{path}: {problem}; resampled onto the grid of {files[reference_index]}")
        data[channel] = image
    return ReadCase(LoadedCase(data=data, properties=reference, seg=None, image_files=files), warnings)
