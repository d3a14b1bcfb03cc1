"""Default augmentation plans per task family, following what FOMO25 found.

- FOMO25: the more augmentations a pretraining used, the worse its classification and regression
  ranks; spatial augmentations helped segmentation. So classification/regression get a light plan
  (left-right mirror, small rotation and scaling, little intensity, rare artifacts) and
  segmentation a spatial-heavy one: every spatial kind (rotation and scaling with nnU-Net's
  probabilities and ranges, elastic deformation, which nnU-Net v2 dropped, mirroring on all axes),
  nnU-Net's intensity set and rare artifacts.
- Masked reconstruction pretraining uses the official baseline's set ("augmentation reversal": the
  input is corrupted, the target stays the clean, spatially transformed image): elastic .33,
  rotation .2 (+-30 deg), scaling .2 (0.9-1.1), additive noise .2, blur .2, multiplicative noise .2,
  motion ghosting .2, Gibbs ringing .2, low resolution .2, bias field .33, gamma .2.
- Contrastive pretraining needs views that differ in appearance but not in anatomy: moderate
  spatial, stronger intensity and artifacts (per channel, so paired scans get different corruptions).
  The acquisition differences between hospitals (contrast and gamma, coil bias, noise, thick 2D
  slices) fire in about half the views: the embedding must not tell hospitals apart, only subjects.
  Without them, probes of contrastive and hybrid encoders improved in domain but lost out of domain
  (site biases of -17 to +6 years on brain age, benchmarks/RESULTS.md).


Every preset is returned fully resolved, so plans.json shows a person every knob there is.
"""
from __future__ import annotations

from fomo_nn.augmentation.plan import resolve_augmentation_plan

TASK_FAMILIES = ("pretraining_reconstruction", "pretraining_contrastive", "classification", "regression",
                 "segmentation")

_NNUNET_INTENSITY = {
    "gaussian_noise": {"p": 0.1, "variance": [0.0, 0.1]},
    "gaussian_blur": {"p": 0.2, "sigma": [0.5, 1.0], "p_per_channel": 0.5},
    "brightness": {"p": 0.15, "range": [0.75, 1.25]},
    "contrast": {"p": 0.15, "range": [0.75, 1.25]},
    "low_resolution": {"p": 0.25, "scale": [0.5, 1.0], "p_per_channel": 0.5},
    "gamma": {"p": 0.3, "range": [0.7, 1.5], "p_invert": 0.0},
}

_LIGHT = {
    "spatial": {"rotation": {"p": 0.2, "max_degrees": 15.0}, "scaling": {"p": 0.2, "range": [0.9, 1.1]},
                "mirror": {"p": 0.5, "axes": [0]}},  # left-right only: the anatomically plausible flip
    "intensity": {"gaussian_noise": {"p": 0.1, "variance": [0.0, 0.05]},
                  "brightness": {"p": 0.1, "range": [0.9, 1.1]},
                  "contrast": {"p": 0.1, "range": [0.9, 1.1]},
                  "gamma": {"p": 0.1, "range": [0.8, 1.25]}},
    "artifacts": {"bias_field": {"p": 0.1, "strength": [0.05, 0.2]},
                  "motion_ghosting": {"p": 0.05, "intensity": [0.2, 0.5]},
                  "gibbs_ringing": {"p": 0.05, "keep_fraction": [0.6, 0.9]}},
}

_PRESETS = {
    "pretraining_reconstruction": {
        "spatial": {"rotation": {"p": 0.2, "max_degrees": 30.0, "p_per_axis": 0.66},
                    "scaling": {"p": 0.2, "range": [0.9, 1.1]},
                    "elastic": {"p": 0.33, "scale": [0.1, 0.2], "magnitude": [2.0, 6.0]}},
        "intensity": {"gaussian_noise": {"p": 0.2, "variance": [0.0, 0.1]},
                      "gaussian_blur": {"p": 0.2, "sigma": [0.5, 1.0], "p_per_channel": 0.5},
                      "multiplicative_noise": {"p": 0.2, "sigma": [0.0, 0.1]},
                      "low_resolution": {"p": 0.2, "scale": [0.5, 1.0], "p_per_channel": 0.5},
                      "gamma": {"p": 0.2, "range": [0.5, 2.0], "p_invert": 0.05}},
        "artifacts": {"bias_field": {"p": 0.33}, "motion_ghosting": {"p": 0.2}, "gibbs_ringing": {"p": 0.2}},
        "keep_clean_target": True,
    },
    "pretraining_contrastive": {
        "spatial": {"rotation": {"p": 0.2, "max_degrees": 30.0}, "scaling": {"p": 0.2, "range": [0.85, 1.15]},
                    "mirror": {"p": 0.5, "axes": [0, 1, 2]}},
        "intensity": {"gaussian_noise": {"p": 0.4, "variance": [0.0, 0.1]},
                      "gaussian_blur": {"p": 0.2, "sigma": [0.5, 1.0], "p_per_channel": 0.5},
                      "brightness": {"p": 0.5, "range": [0.75, 1.25]},
                      "contrast": {"p": 0.5, "range": [0.75, 1.25]},
                      "low_resolution": {"p": 0.2, "scale": [0.5, 1.0], "p_per_channel": 0.5},
                      "gamma": {"p": 0.5, "range": [0.7, 1.5], "p_invert": 0.1}},
        "artifacts": {"thick_slices": {"p": 0.5}, "bias_field": {"p": 0.5}, "motion_ghosting": {"p": 0.1},
                      "gibbs_ringing": {"p": 0.1}, "kspace_spikes": {"p": 0.05}},
    },
    "classification": _LIGHT,
    "regression": _LIGHT,
    "segmentation": {
        "spatial": {"rotation": {"p": 0.2, "max_degrees": 30.0}, "scaling": {"p": 0.2, "range": [0.7, 1.4]},
                    "elastic": {"p": 0.2, "scale": [0.1, 0.2], "magnitude": [2.0, 6.0]},
                    "mirror": {"p": 0.5, "axes": [0, 1, 2]}},
        "intensity": _NNUNET_INTENSITY,
        "artifacts": {"bias_field": {"p": 0.1, "strength": [0.05, 0.3]},
                      "motion_ghosting": {"p": 0.05, "intensity": [0.2, 0.5]},
                      "gibbs_ringing": {"p": 0.05, "keep_fraction": [0.6, 0.9]}},
    },
}


def default_augmentation_plan(task_family: str) -> dict:
    """The fully resolved default plan for one task family (see TASK_FAMILIES)."""
    if task_family not in _PRESETS:
        raise ValueError(f"unknown task family {task_family!r}; expected one of {TASK_FAMILIES}")
    return resolve_augmentation_plan(_PRESETS[task_family], source=f"preset {task_family}")
