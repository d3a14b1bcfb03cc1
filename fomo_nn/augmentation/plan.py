"""The augmentation plan: a plain JSON dict (plans.json -> "augmentation") checked and filled with defaults.

A plan names three pipelines, each transform with its probability `p` and its ranges:

    {"spatial":   {"random_crop": false, "rotation": {...}, "scaling": {...}, "elastic": {...}, "mirror": {...}},
     "intensity": {"gaussian_noise": {...}, "gaussian_blur": {...}, "multiplicative_noise": {...},
                   "brightness": {...}, "contrast": {...}, "low_resolution": {...}, "gamma": {...}},
     "artifacts": {"thick_slices": {...}, "bias_field": {...}, "motion_ghosting": {...}, "gibbs_ringing": {...},
                   "kspace_spikes": {...}},
     "keep_clean_target": false}

Anything left out takes the default below, and every default has p = 0 (off), so `{}` means "crop only".
Unknown keys are an error rather than silently ignored: a typo in a hand-edited plans.json
("rotaton") would otherwise switch an augmentation off without anyone noticing.

Meaning of `p`: the probability that one sample gets the transform. Exception: `mirror.p` is the
probability of flipping each listed axis (independently), as in nnU-Net.
Units: angles in degrees; `scaling.range` multiplies the sampling grid (batchgeneratorsv2's
convention: > 1 samples a larger region, so anatomy looks smaller); `elastic.scale` is the smoothing
sigma of the displacement field as a fraction of the patch edge and `elastic.magnitude` its peak
displacement in voxels; `thick_slices.thickness` is the slice thickness in voxels of the training grid;
`gaussian_noise.variance` is passed to batchgeneratorsv2's `noise_variance`,
which draws the noise standard deviation from it.
"""
from __future__ import annotations

import copy
import math

from fomo_nn.utils.errors import BadInputError

SPATIAL_DEFAULTS: dict = {
    "random_crop": False,  # False: centre crop of the (larger) read patch; the loader already chose where
    "rotation": {"p": 0.0, "max_degrees": 30.0, "p_per_axis": 1.0},
    "scaling": {"p": 0.0, "range": [0.9, 1.1], "synchronize_axes": True},
    "elastic": {"p": 0.0, "scale": [0.1, 0.2], "magnitude": [2.0, 6.0]},
    "mirror": {"p": 0.0, "axes": [0, 1, 2]},
}

INTENSITY_DEFAULTS: dict = {
    "gaussian_noise": {"p": 0.0, "variance": [0.0, 0.1]},
    "gaussian_blur": {"p": 0.0, "sigma": [0.5, 1.0], "p_per_channel": 0.5},
    "multiplicative_noise": {"p": 0.0, "sigma": [0.0, 0.1]},
    "brightness": {"p": 0.0, "range": [0.75, 1.25]},
    "contrast": {"p": 0.0, "range": [0.75, 1.25]},
    "low_resolution": {"p": 0.0, "scale": [0.5, 1.0], "p_per_channel": 0.5},
    "gamma": {"p": 0.0, "range": [0.7, 1.5], "p_invert": 0.0},
}

ARTIFACT_DEFAULTS: dict = {
    "thick_slices": {"p": 0.0, "thickness": [2.0, 5.0], "axes": [0, 1, 2], "p_per_channel": 0.5},
    "bias_field": {"p": 0.0, "strength": [0.1, 0.4], "order": 3, "p_per_channel": 1.0},
    "motion_ghosting": {"p": 0.0, "num_ghosts": [2, 8], "intensity": [0.3, 0.8], "axes": [0, 1, 2],
                        "p_per_channel": 1.0},
    "gibbs_ringing": {"p": 0.0, "keep_fraction": [0.45, 0.85], "axes": [0, 1, 2], "p_per_channel": 1.0},
    "kspace_spikes": {"p": 0.0, "num_spikes": [1, 3], "intensity": [0.05, 0.2], "p_per_channel": 1.0},
}

PLAN_DEFAULTS: dict = {
    "spatial": SPATIAL_DEFAULTS,
    "intensity": INTENSITY_DEFAULTS,
    "artifacts": ARTIFACT_DEFAULTS,
    "keep_clean_target": False,
}

# parameters that are (low, high) ranges; low <= high is checked, plus these bounds ("transform.key" first)
_RANGE_BOUNDS = {
    "range": (0.0, math.inf), "scale": (0.0, math.inf), "magnitude": (0.0, math.inf),
    "variance": (0.0, math.inf), "sigma": (0.0, math.inf), "strength": (0.0, 5.0),
    "num_ghosts": (2, math.inf), "intensity": (0.0, math.inf), "keep_fraction": (0.02, 1.0),
    "num_spikes": (1, math.inf), "thickness": (1.0, 16.0),
    "motion_ghosting.intensity": (0.0, 1.0),  # the fraction of each modulated k-space line removed
    "low_resolution.scale": (0.05, 1.0),
}
_INTEGER_RANGES = ("num_ghosts", "num_spikes")
_PROBABILITIES = ("p", "p_per_axis", "p_per_channel", "p_invert")


def resolve_augmentation_plan(aug_plan: dict | None, source: str = "plans.json") -> dict:
    """A complete, checked copy of `aug_plan`: every transform present, defaults where keys are missing.

    Raises BadInputError(source, problem) naming the offending key.
    """
    if aug_plan is None:
        aug_plan = {}
    if not isinstance(aug_plan, dict):
        raise BadInputError(source, f"augmentation plan must be a dict, got {type(aug_plan).__name__}")
    _reject_unknown(aug_plan, PLAN_DEFAULTS, "augmentation", source)
    resolved = copy.deepcopy(PLAN_DEFAULTS)
    resolved["keep_clean_target"] = _boolean(aug_plan.get("keep_clean_target", False),
                                             "augmentation.keep_clean_target", source)
    for section in ("spatial", "intensity", "artifacts"):
        given = aug_plan.get(section, {})
        where = f"augmentation.{section}"
        if not isinstance(given, dict):
            raise BadInputError(source, f"{where} must be a dict, got {type(given).__name__}")
        _reject_unknown(given, PLAN_DEFAULTS[section], where, source)
        for name, value in given.items():
            if isinstance(PLAN_DEFAULTS[section][name], dict):
                resolved[section][name] = _resolve_transform(value, PLAN_DEFAULTS[section][name],
                                                             f"{where}.{name}", source)
            else:
                resolved[section][name] = _boolean(value, f"{where}.{name}", source)
    return resolved


def merge_augmentation_plans(base: dict, override: dict) -> dict:
    """`base` with `override` laid over it key by key (nested dicts merged, everything else replaced)."""
    merged = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(merged.get(key), dict):
            merged[key] = merge_augmentation_plans(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def _resolve_transform(given, defaults: dict, where: str, source: str) -> dict:
    if not isinstance(given, dict):
        raise BadInputError(source, f"{where} must be a dict like {defaults}, got {given!r}")
    _reject_unknown(given, defaults, where, source)
    out = copy.deepcopy(defaults)
    out.update(copy.deepcopy(given))
    for key, value in out.items():
        name = f"{where}.{key}"
        if key in _PROBABILITIES:
            out[key] = _probability(value, name, source)
        elif key in _RANGE_BOUNDS:
            transform = where.rsplit(".", 1)[-1]
            bounds = _RANGE_BOUNDS.get(f"{transform}.{key}", _RANGE_BOUNDS[key])
            out[key] = _range(value, bounds, name, source)
            if key in _INTEGER_RANGES:
                out[key] = [int(round(v)) for v in out[key]]
        elif key == "axes":
            out[key] = _axes(value, name, source)
        elif key in ("max_degrees",):
            out[key] = _number(value, 0.0, 180.0, name, source)
        elif key == "order":
            out[key] = int(_number(value, 1, 8, name, source))
        elif key == "synchronize_axes":
            out[key] = _boolean(value, name, source)
    return out


def _reject_unknown(given: dict, known: dict, where: str, source: str) -> None:
    unknown = sorted(set(given) - set(known))
    if unknown:
        raise BadInputError(source, f"{where}: unknown key(s) {unknown}; known keys are {sorted(known)}")


def _number(value, low, high, name, source) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise BadInputError(source, f"{name} must be a number, got {value!r}")
    if not low <= value <= high:
        raise BadInputError(source, f"{name} = {value} is outside [{low}, {high}]")
    return float(value)


def _probability(value, name, source) -> float:
    return _number(value, 0.0, 1.0, name, source)


def _range(value, bounds, name, source) -> list[float]:
    if not isinstance(value, (list, tuple)) or len(value) != 2:
        raise BadInputError(source, f"{name} must be a [low, high] pair, got {value!r}")
    low, high = (_number(v, bounds[0], bounds[1], name, source) for v in value)
    if low > high:
        raise BadInputError(source, f"{name} = {list(value)}: low must not exceed high")
    return [low, high]


def _axes(value, name, source) -> list[int]:
    if not isinstance(value, (list, tuple)) or not value or \
            any(isinstance(a, bool) or a not in (0, 1, 2) for a in value) or len(set(value)) != len(value):
        raise BadInputError(source, f"{name} must be a non-empty list of distinct axes from 0, 1, 2; got {value!r}")
    return [int(a) for a in value]


def _boolean(value, name, source) -> bool:
    if not isinstance(value, bool):
        raise BadInputError(source, f"{name} must be true or false, got {value!r}")
    return value
