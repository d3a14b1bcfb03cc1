"""Per-image intensity normalization (MRI intensities have no absolute scale between sites).

The one home of every scheme: preprocessing and inference both call `normalize_channels` (on the
cropped case, before resampling) and `clip_to_scheme_range` (after resampling), so a model sees
the same intensities in training and at prediction time. A plan picks one scheme per channel
(plans.json `normalization`, chosen by the planner's `normalization` option).

zscore_foreground (our default): clip the foreground to its own 0.5/99.5 percentiles (robust to
hot voxels and vessels at both ends), subtract the foreground mean and divide by its std;
foreground = voxels nonzero in any channel, background stays exactly 0 so the brain mask survives.

volume_wise_znorm (the FOMO25 baseline's, through Yucca's `normalizer`; for weights pretrained with
the official baseline, which expect its inputs): foreground = voxels above the image's minimum (of
this channel alone), the image is clipped from above at the foreground's 99th percentile (no lower
clip), z-scored with the foreground mean/std and then min-max rescaled over the whole image to
[0, 1]. The rescale undoes the z-score, so the result is exactly
    (min(x, p99) - min(x)) / (p99 - min(x)),
which is how it is computed here: background (the minimum) -> 0, the 99th percentile and above -> 1.
Yucca's cubic resize clips to the input range, so after resampling the values are clipped to
[0, 1] again. Differences from the default, in short: values in [0, 1] instead of mean 0 / std 1;
no lower clip; foreground defined per channel by the minimum, not by nonzero voxels (the same on
skull-stripped images with a zero background, different where background is negative or noisy);
outliers below the 99th percentile keep their linear spread, so the brain's mean sits wherever
the 99th percentile puts it (site-dependent) rather than at 0. Yucca asserts a nonzero foreground
std; here a constant foreground simply maps to 1.

zscore_volume (nnssl's and nnU-Net's `ZScoreNormalization` with use_mask_for_norm False, the default of
nnssl's planner, MIC-DKFZ/nnssl @ 7044864 preprocessing/normalization/normalization_schemes.py; for the
OpenMind / SSL3D weights): mean and std over every voxel of the image cropped to the nonzero box,
background included, no clipping (`clip_percentiles` [0, 100]); the background becomes -mean/std.
"""
from __future__ import annotations

import difflib

import numpy as np

from fomo_nn.plans.records import NormalizationPlan

SCHEMES = ("zscore_foreground", "volume_wise_znorm", "zscore_volume")  # the one list: the planner's choices, plans.json's check
DEFAULT_SCHEME = "zscore_foreground"
DEFAULT_CLIP_PERCENTILES = {"zscore_foreground": (0.5, 99.5), "volume_wise_znorm": (0.0, 99.0),
                            "zscore_volume": (0.0, 100.0)}
SCHEME_RANGES = {"zscore_foreground": None, "volume_wise_znorm": (0.0, 1.0), "zscore_volume": None}  # values after normalization


def check_scheme(scheme: str, where: str | None = None) -> str:
    """`scheme` if one of SCHEMES, else a ValueError naming the nearest one and all of them.

    The names are long, so a typo ('zscore_typo') sits further from its scheme than difflib's
    default cutoff allows: 0.4 still suggests it, and nothing for an unrelated name ('minmax').
    """
    if scheme not in SCHEMES:
        nearest = difflib.get_close_matches(str(scheme), SCHEMES, n=1, cutoff=0.4)
        prefix = f"{where}: " if where else ""
        hint = f"; did you mean {nearest[0]!r}?" if nearest else ""
        raise ValueError(f"{prefix}unknown normalization scheme {scheme!r}{hint} (known: {', '.join(SCHEMES)})")
    return scheme


def default_normalization(scheme: str = DEFAULT_SCHEME) -> NormalizationPlan:
    """The plans entry of one channel for `scheme`, with that scheme's clip percentiles."""
    return NormalizationPlan(scheme=check_scheme(scheme), clip_percentiles=list(DEFAULT_CLIP_PERCENTILES[scheme]))


def _check_percentiles(clip_percentiles) -> tuple[float, float]:
    lower, upper = (float(v) for v in clip_percentiles)
    if not 0.0 <= lower < upper <= 100.0:
        raise ValueError(f"clip_percentiles must satisfy 0 <= lower < upper <= 100, got {list(clip_percentiles)}")
    return lower, upper


def zscore_foreground(image: np.ndarray, mask: np.ndarray, clip_percentiles=(0.5, 99.5)) -> tuple[np.ndarray, dict]:
    """Normalize one 3D image in place-safe fashion; returns (float32 image, statistics used)."""
    values = image[mask]
    if values.size == 0:
        raise ValueError("no foreground voxels to normalize with")
    lower, upper = (float(v) for v in np.percentile(values, _check_percentiles(clip_percentiles)))
    clipped = np.clip(values, lower, upper)
    mean = float(clipped.mean())
    std = float(clipped.std())
    scale = std if std > 1e-8 else 1.0  # a constant image becomes 0 instead of NaN
    out = np.zeros(image.shape, dtype=np.float32)
    out[mask] = (clipped - mean) / scale
    return out, {"mean": mean, "std": std, "clip_lower": lower, "clip_upper": upper}


def volume_wise_znorm(image: np.ndarray, clip_percentiles=(0.0, 99.0)) -> tuple[np.ndarray, dict]:
    """The FOMO25 baseline's rule on one 3D image: (min(x, p_upper) - min x) / (p_upper - min x) in [0, 1].

    Foreground = voxels above the image minimum; the percentiles are of the foreground (numpy's
    linear interpolation, as np.quantile in Yucca). A lower percentile above 0 also clips the
    foreground from below (the baseline uses 0: no lower clip); the background stays at 0.
    """
    image = np.asarray(image, dtype=np.float64)
    minimum = float(image.min())
    foreground = image > minimum
    if not foreground.any():
        raise ValueError("no voxel above the image minimum to normalize with (constant image)")
    lower_p, upper_p = _check_percentiles(clip_percentiles)
    lower, upper = (float(v) for v in np.percentile(image[foreground], (lower_p, upper_p)))
    clipped = image.copy()
    clipped[foreground] = np.clip(image[foreground], lower if lower_p > 0 else None, upper)
    scale = upper - minimum  # > 0: the upper percentile of values above the minimum is above it
    out = ((clipped - minimum) / scale).astype(np.float32)
    return out, {"minimum": minimum, "clip_lower": lower if lower_p > 0 else None, "clip_upper": upper,
                 "scale": scale}


def zscore_volume(image: np.ndarray, clip_percentiles=(0.0, 100.0)) -> tuple[np.ndarray, dict]:
    """nnssl's ZScoreNormalization without a mask: (x - mean) / max(std, 1e-8) over the whole image.

    Percentiles other than [0, 100] clip the image first (nnssl does not clip).
    """
    image = np.asarray(image, dtype=np.float32)
    lower_p, upper_p = _check_percentiles(clip_percentiles)
    if (lower_p, upper_p) != (0.0, 100.0):
        lower, upper = (float(v) for v in np.percentile(image, (lower_p, upper_p)))
        image = np.clip(image, lower, upper)
    mean, std = float(image.mean()), float(image.std())
    out = ((image - mean) / max(std, 1e-8)).astype(np.float32)
    return out, {"mean": mean, "std": std}


def normalize_channels(data: np.ndarray, mask: np.ndarray, plans_normalization) -> tuple[np.ndarray, list[dict]]:
    """(C, X, Y, Z) -> normalized float32 copy, one NormalizationPlan per channel.

    `mask` (nonzero in any channel) is the foreground of zscore_foreground; volume_wise_znorm finds
    its own per channel.
    """
    if len(plans_normalization) != data.shape[0]:
        raise ValueError(f"plans hold {len(plans_normalization)} normalization entries for {data.shape[0]} channels")
    out = np.empty(data.shape, dtype=np.float32)
    stats = []
    for channel, plan in enumerate(plans_normalization):
        scheme = check_scheme(plan.scheme)
        if scheme == "volume_wise_znorm":
            out[channel], channel_stats = volume_wise_znorm(data[channel], tuple(plan.clip_percentiles))
        elif scheme == "zscore_volume":
            out[channel], channel_stats = zscore_volume(data[channel], tuple(plan.clip_percentiles))
        else:
            out[channel], channel_stats = zscore_foreground(data[channel], mask, tuple(plan.clip_percentiles))
        stats.append({"scheme": scheme, **channel_stats})
    return out, stats


def clip_to_scheme_range(data: np.ndarray, plans_normalization) -> np.ndarray:
    """After resampling: bring channels of range-bounded schemes back into their range (in place).

    Cubic interpolation overshoots at edges; volume_wise_znorm inputs are [0, 1] by definition (Yucca's
    resize clips to the input range too). Unbounded schemes are left as they are.
    """
    for channel, plan in enumerate(plans_normalization):
        bounds = SCHEME_RANGES[check_scheme(plan.scheme)]
        if bounds is not None:
            np.clip(data[channel], bounds[0], bounds[1], out=data[channel])
    return data
