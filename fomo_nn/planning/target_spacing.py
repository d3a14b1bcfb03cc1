"""Target spacing: the median spacing, with nnU-Net's rule for strongly anisotropic datasets.

When one axis is more than 3x coarser than the others (in spacing) and also has fewer than a
third of their voxels, the median would force most scans to be upsampled along thick slices.
That axis then takes the 10th percentile of its spacings instead (never finer than the other
axes), so few scans are interpolated between slices.
"""
from __future__ import annotations

import numpy as np

ANISOTROPY_THRESHOLD = 3.0


def _fmt(values) -> str:
    return "[" + ", ".join(f"{v:.3g}" for v in values) + "]"


def determine_target_spacing(spacings, shapes, threshold: float = ANISOTROPY_THRESHOLD) -> tuple[list[float], str]:
    """(target spacing in mm (RAS order), the reason in words) from per-case spacings and crop shapes."""
    spacings = np.asarray(spacings, dtype=float).reshape(-1, 3)
    shapes = np.asarray(shapes, dtype=float).reshape(-1, 3)
    if len(spacings) == 0:
        raise ValueError("no spacings to plan from")
    target = np.percentile(spacings, 50, axis=0)
    median_shape = np.percentile(shapes, 50, axis=0)
    reason = f"median spacing {_fmt(target)} mm of {len(spacings)} case(s)"
    coarse = int(np.argmax(target))
    others = [a for a in range(3) if a != coarse]
    anisotropic_spacing = target[coarse] > threshold * max(target[a] for a in others)
    anisotropic_voxels = median_shape[coarse] * threshold < min(median_shape[a] for a in others)
    if anisotropic_spacing and anisotropic_voxels:
        finest_other = max(target[a] for a in others)
        tenth = float(np.percentile(spacings[:, coarse], 10))
        chosen = max(tenth, finest_other)
        reason += (f"; axis {coarse} is anisotropic (median {target[coarse]:.3g} mm > {threshold:g}x the other axes "
                   f"and under 1/{threshold:g} of their voxels): its 10th percentile {tenth:.3g} mm is used"
                   + (f", raised to {chosen:.3g} mm (not finer than the other axes)" if chosen > tenth else ""))
        target[coarse] = chosen
    elif anisotropic_spacing:
        reason += (f"; axis {coarse} is coarse in spacing but not in voxel count, so the median is kept")
    return [float(v) for v in target], reason
