"""Crop to the nonzero region (skull-stripped MRI: the brain) and paste back.

Boxes are half-open `[[lo, hi], [lo, hi], [lo, hi]]` in voxels of the RAS grid.
"""
from __future__ import annotations

import numpy as np


def nonzero_mask(data: np.ndarray) -> np.ndarray:
    """(C, X, Y, Z) -> (X, Y, Z) bool: a voxel is foreground when any channel is nonzero."""
    return np.any(data != 0, axis=0)


def bounding_box(mask: np.ndarray) -> list[list[int]]:
    """Tight half-open box around the True voxels; the whole grid when nothing is set."""
    box = []
    for axis in range(mask.ndim):
        other = tuple(a for a in range(mask.ndim) if a != axis)
        hits = np.flatnonzero(mask.any(axis=other))
        box.append([int(hits[0]), int(hits[-1]) + 1] if hits.size else [0, int(mask.shape[axis])])
    return box


def box_slices(box) -> tuple[slice, slice, slice]:
    return tuple(slice(lo, hi) for lo, hi in box)


def box_shape(box) -> list[int]:
    return [int(hi - lo) for lo, hi in box]


def crop(array: np.ndarray, box) -> np.ndarray:
    """Crop the last three axes of `array` (works for (X, Y, Z) and (C, X, Y, Z))."""
    return array[(Ellipsis, *box_slices(box))]


def paste(cropped: np.ndarray, box, full_shape, fill=0) -> np.ndarray:
    """Inverse of `crop`: (C, *box) -> (C, *full_shape), `fill` outside (a scalar or one value per channel)."""
    channels = cropped.shape[0]
    out = np.empty((channels, *[int(s) for s in full_shape]), dtype=cropped.dtype)
    fills = np.broadcast_to(np.asarray(fill, dtype=cropped.dtype), (channels,))
    for channel in range(channels):
        out[channel] = fills[channel]
    out[(slice(None), *box_slices(box))] = cropped
    return out
