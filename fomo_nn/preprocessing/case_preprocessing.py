"""One case from raw files to the training grid, and predictions back to the raw grid.

Forward (`preprocess_case`): read all channels in RAS order, crop to the nonzero box (union over
channels and the mask), normalize per channel, resample to the plans' target spacing (cubic for
images, label-safe for masks, nearest along the slice axis of strongly anisotropic scans). The mask
is the segmentation target, or a classification/regression case's auxiliary mask (plans
`auxiliary_labels`, e.g. task 1 infarcts): both go through the same label-safe path.
Backward (`restore_to_original`): undo the resampling onto the cropped grid with the matching
interpolation, then paste into the full RAS grid. `fomo_nn.io.write_image` takes it from there
into the input's own orientation and header.
"""
from __future__ import annotations

import zlib

import numpy as np

from fomo_nn.preprocessing.case_reading import LoadedCase, read_case_images
from fomo_nn.preprocessing.crop import bounding_box, box_shape, crop, nonzero_mask, paste
from fomo_nn.preprocessing.normalization import clip_to_scheme_range, normalize_channels
from fomo_nn.preprocessing.resampling import (check_resampled_size, resample_channels, resample_labels,
                                              separate_z_axis)
from fomo_nn.tasks import VOXELS, task_kind

MAX_LOCATIONS_PER_LABEL = 10_000


def label_values_of(plans) -> list[int] | None:
    """Values the case's mask may hold (segmentation or auxiliary labels); None when plans expect no mask."""
    labels = plans.voxel_labels
    return sorted(int(v) for v in labels.values()) if labels else None


def voxel_label_file(case, plans) -> str | None:
    """The raw mask preprocessing reads for `case` (a fomo_nn.datasets.cases.Case), or None.

    Segmentation: the label file. Classification/regression with plans `auxiliary_labels`: the
    auxiliary mask, which must then exist (BadInputError naming where it was expected).
    """
    if task_kind(plans.task_type).target == VOXELS:
        return case.label_file
    if not plans.auxiliary_labels:
        return None
    if case.mask_file is None:
        from fomo_nn.io import BadInputError

        raise BadInputError(case.image_files[0], f"plans.json expects an auxiliary mask (auxiliary_labels) but case "
                                                 f"{case.case_id} has none in labelsTr; re-plan if dataset.json no "
                                                 "longer declares auxiliary_labels")
    return case.mask_file


def preprocess_case(image_files, plans, label_file: str | None = None):
    """(data (C, X, Y, Z) float32, seg (1, X, Y, Z) int8 or None, properties dict) for one case.

    Raises fomo_nn.io.BadInputError naming the file for unreadable, empty, NaN or misaligned input.
    """
    loaded = read_case_images(image_files, label_file, label_values_of(plans) if label_file else None)
    return preprocess_loaded(loaded, plans)


def preprocess_loaded(loaded: LoadedCase, plans):
    """The array work of `preprocess_case`, on images already read and checked."""
    if loaded.data.shape[0] != len(plans.normalization):
        raise ValueError(f"case has {loaded.data.shape[0]} channels but the plans expect {len(plans.normalization)} "
                         f"({', '.join(plans.channel_names)})")
    mask = nonzero_mask(loaded.data)
    box = bounding_box(mask if loaded.seg is None else (mask | (loaded.seg > 0)))
    data = crop(loaded.data, box)
    mask = crop(mask, box)
    data, stats = normalize_channels(data, mask, plans.normalization)
    del mask
    spacing = [float(s) for s in loaded.properties.spacing]
    target_spacing = [float(s) for s in plans.target_spacing]
    cropped_shape = box_shape(box)
    new_shape = check_resampled_size(loaded.properties.source, cropped_shape, spacing, target_spacing,
                                     loaded.data.shape[0])
    z_axis = separate_z_axis(spacing, target_spacing)
    data = clip_to_scheme_range(resample_channels(data, new_shape, "cubic", z_axis), plans.normalization)
    seg = None
    if loaded.seg is not None:
        seg = resample_labels(crop(loaded.seg, box), new_shape, z_axis).astype(np.int8)[None]
    properties = {
        "case_id": None, "image_files": list(loaded.image_files),
        "image_properties": loaded.properties.to_dict(),
        "shape_before_crop": [int(s) for s in loaded.properties.ras_shape],
        "crop_bbox": box, "shape_after_crop": cropped_shape,
        "spacing_original": spacing, "spacing_target": target_spacing,
        "shape_after_resampling": [int(s) for s in new_shape], "separate_z_axis": z_axis,
        "normalization": stats,
        "target": None, "subject": None, "session": None, "sequence": None,
        "foreground_locations": sample_foreground_locations(seg[0], _seed(loaded.image_files[0])) if seg is not None
        else {},
    }
    return data, seg, properties


def _seed(text: str) -> int:
    return zlib.crc32(text.encode("utf-8"))


def sample_foreground_locations(seg: np.ndarray, seed: int = 0, per_label: int = MAX_LOCATIONS_PER_LABEL) -> dict:
    """{label: [[x, y, z], ...]} with up to `per_label` voxels of each label > 0 (for oversampling)."""
    rng = np.random.default_rng(seed)
    locations = {}
    for value in np.unique(seg):
        if value <= 0:
            continue
        voxels = np.argwhere(seg == value)
        if len(voxels) > per_label:
            voxels = voxels[np.sort(rng.choice(len(voxels), per_label, replace=False))]
        locations[str(int(value))] = voxels.astype(int).tolist()
    return locations


def restore_to_original(array: np.ndarray, properties: dict, is_label: bool, probabilities: bool = False) -> np.ndarray:
    """Map (C, X, Y, Z) on the preprocessed grid back onto the original RAS grid (C, *ras_shape).

    is_label: integer label maps, resampled label-safely, 0 outside the crop.
    probabilities: per-class maps, linear interpolation, class 0 (background) = 1 outside the crop.
    otherwise (images, regression maps): cubic interpolation, 0 outside the crop.
    """
    array = np.asarray(array)
    if array.ndim != 4:
        raise ValueError(f"expected a (C, X, Y, Z) array, got shape {array.shape}")
    expected = tuple(properties["shape_after_resampling"])
    if tuple(array.shape[1:]) != expected:
        raise ValueError(f"array grid {tuple(array.shape[1:])} is not the preprocessed grid {expected}")
    cropped_shape = properties["shape_after_crop"]
    z_axis = properties.get("separate_z_axis")
    if is_label:
        restored = np.stack([resample_labels(channel, cropped_shape, z_axis) for channel in array])
        fill = 0
    else:
        restored = resample_channels(array.astype(np.float32, copy=False), cropped_shape,
                                     "linear" if probabilities else "cubic", z_axis)
        fill = [1.0] + [0.0] * (array.shape[0] - 1) if probabilities else 0.0
        if probabilities:
            np.clip(restored, 0.0, 1.0, out=restored)
    return paste(restored, properties["crop_bbox"], properties["shape_before_crop"], fill)
