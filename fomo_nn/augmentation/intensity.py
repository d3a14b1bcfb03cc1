"""The intensity stage: batchgeneratorsv2's noise, blur, brightness, contrast, low resolution and gamma
(configured like nnU-Net v2's training pipeline) plus the baseline's multiplicative noise.

Each transform fires with its plan probability `p` (one draw per sample). Channels get independent
draws where the library allows it, so the sequences of one case are not corrupted in lockstep.
"""
from __future__ import annotations

from batchgeneratorsv2.transforms.intensity.brightness import MultiplicativeBrightnessTransform
from batchgeneratorsv2.transforms.intensity.contrast import BGContrast, ContrastTransform
from batchgeneratorsv2.transforms.intensity.gamma import GammaTransform
from batchgeneratorsv2.transforms.intensity.gaussian_noise import GaussianNoiseTransform
from batchgeneratorsv2.transforms.noise.gaussian_blur import GaussianBlurTransform
from batchgeneratorsv2.transforms.spatial.low_resolution import SimulateLowResolutionTransform

from fomo_nn.augmentation.composition import Sometimes
from fomo_nn.augmentation.multiplicative_noise import MultiplicativeNoiseTransform


def _gaussian_noise(cfg):
    return GaussianNoiseTransform(noise_variance=tuple(cfg["variance"]), p_per_channel=1.0,
                                  synchronize_channels=True)


def _gaussian_blur(cfg):
    # benchmark=False: the FFT-or-direct choice by timing would make results depend on machine load
    return GaussianBlurTransform(blur_sigma=tuple(cfg["sigma"]), synchronize_channels=False,
                                 synchronize_axes=False, p_per_channel=cfg["p_per_channel"], benchmark=False)


def _multiplicative_noise(cfg):
    return MultiplicativeNoiseTransform(sigma=tuple(cfg["sigma"]))


def _brightness(cfg):
    return MultiplicativeBrightnessTransform(multiplier_range=BGContrast(tuple(cfg["range"])),
                                             synchronize_channels=False, p_per_channel=1.0)


def _contrast(cfg):
    return ContrastTransform(contrast_range=BGContrast(tuple(cfg["range"])), preserve_range=True,
                             synchronize_channels=False, p_per_channel=1.0)


def _low_resolution(cfg):
    return SimulateLowResolutionTransform(scale=tuple(cfg["scale"]), synchronize_channels=False,
                                          synchronize_axes=True, ignore_axes=None, allowed_channels=None,
                                          p_per_channel=cfg["p_per_channel"])


def _gamma(cfg):
    return GammaTransform(gamma=BGContrast(tuple(cfg["range"])), p_invert_image=cfg["p_invert"],
                          synchronize_channels=False, p_per_channel=1.0, p_retain_stats=1.0)


# pipeline order (nnU-Net's, with multiplicative noise beside the additive one)
INTENSITY_BUILDERS = {
    "gaussian_noise": _gaussian_noise,
    "gaussian_blur": _gaussian_blur,
    "multiplicative_noise": _multiplicative_noise,
    "brightness": _brightness,
    "contrast": _contrast,
    "low_resolution": _low_resolution,
    "gamma": _gamma,
}


def build_intensity_transforms(intensity: dict) -> list[Sometimes]:
    """One Sometimes(...) per enabled transform of the resolved `intensity` section, in pipeline order."""
    return [Sometimes(build(intensity[name]), intensity[name]["p"], name)
            for name, build in INTENSITY_BUILDERS.items() if intensity[name]["p"] > 0]
