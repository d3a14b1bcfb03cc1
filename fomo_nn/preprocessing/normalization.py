"""Per-image intensity normalization (MRI intensities have no absolute scale between sites).

zscore_foreground: clip to the image's own foreground percentiles (robust to hot voxels and
vessels), then subtract the foreground mean and divide by its std; background stays exactly 0
so the brain mask survives normalization.
"""
from __future__ import annotations

import numpy as np

SCHEMES = ("zscore_foreground",)


def zscore_foreground(image: np.ndarray, mask: np.ndarray, clip_percentiles=(0.5, 99.5)) -> tuple[np.ndarray, dict]:
    """Normalize one 3D image in place-safe fashion; returns (float32 image, statistics used)."""
    values = image[mask]
    if values.size == 0:
        raise ValueError("no foreground voxels to normalize with")
    lower, upper = (float(v) for v in np.percentile(values, clip_percentiles))
    clipped = np.clip(values, lower, upper)
    mean = float(clipped.mean())
    std = float(clipped.std())
    scale = std if std > 1e-8 else 1.0  # a constant image becomes 0 instead of NaN
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = (clipped - mean) / scale
    return out, {"mean": mean, "std": std, "clip_lower": lower, "clip_upper": upper}


def normalize_channels(data: np.ndarray, mask: np.ndarray, plans_normalization) -> tuple[np.ndarray, list[dict]]:
    """(C, X, Y, Z) -> normalized float32 copy, one NormalizationPlan per channel."""
    if len(plans_normalization) != data.shape[0]:
        raise ValueError(f"plans hold {len(plans_normalization)} normalization entries for {data.shape[0]} channels")
    out = np.empty(data.shape, dtype=np.float32)
    stats = []
    for channel, plan in enumerate(plans_normalization):
        if plan.scheme not in SCHEMES:
            raise ValueError(f"normalization scheme {plan.scheme!r} is not one of {SCHEMES}")
        out[channel], channel_stats = zscore_foreground(data[channel], mask, tuple(plan.clip_percentiles))
        stats.append(channel_stats)
    return out, stats
