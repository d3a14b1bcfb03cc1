"""Pure patch geometry: where to crop, and cropping with zero padding outside the volume."""
from __future__ import annotations

import numpy as np


def crop_with_padding(array: np.ndarray, lower: np.ndarray, size, pad_value: float = 0) -> np.ndarray:
    """Crop `array[..., lo:lo+size]` over the last three axes; parts outside the volume are padded.

    Works on memory maps and on stored cases (array_store.StoredArray): only the overlapping region is read
    (from a stored case, only the blocks it touches are decompressed).
    """
    lower = np.asarray(lower, dtype=np.int64)
    size = np.asarray(size, dtype=np.int64)
    shape = np.asarray(array.shape[-3:])
    src_lo = np.maximum(lower, 0)
    src_hi = np.minimum(lower + size, shape)
    out = np.full(array.shape[:-3] + tuple(size), pad_value, dtype=array.dtype)
    if np.any(src_hi <= src_lo):
        return out
    dst_lo = src_lo - lower
    dst_hi = dst_lo + (src_hi - src_lo)
    out[(Ellipsis, *[slice(a, b) for a, b in zip(dst_lo, dst_hi)])] = \
        array[(Ellipsis, *[slice(a, b) for a, b in zip(src_lo, src_hi)])]
    return out


def random_lower_corner(shape, size, rng: np.random.Generator) -> np.ndarray:
    """Uniform corner so the patch lies inside the volume, or covers it when the volume is smaller."""
    shape, size = np.asarray(shape[-3:]), np.asarray(size)
    low = np.minimum(0, shape - size)
    high = np.maximum(0, shape - size)
    return np.array([rng.integers(lo, hi + 1) for lo, hi in zip(low, high)])


def centered_lower_corner(center, shape, size) -> np.ndarray:
    """Corner of a patch centred on `center`, shifted to stay inside the volume where it fits."""
    shape, size = np.asarray(shape[-3:]), np.asarray(size)
    lower = np.asarray(center) - size // 2
    return np.clip(lower, np.minimum(0, shape - size), np.maximum(0, shape - size))


def center_lower_corner(shape, size) -> np.ndarray:
    shape, size = np.asarray(shape[-3:]), np.asarray(size)
    return (shape - size) // 2
