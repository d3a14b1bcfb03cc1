"""Multiplicative (speckle-like) noise: every voxel scaled by its own factor 1 + N(0, sigma^2).

Part of the official FOMO25 baseline's pretraining set. Unlike additive noise it leaves zero
background at zero and grows with the signal.
"""
from __future__ import annotations

import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform

from fomo_nn.augmentation.artifact_base import uniform


class MultiplicativeNoiseTransform(ImageOnlyTransform):
    name = "multiplicative_noise"

    def __init__(self, sigma=(0.0, 0.1), p_per_channel: float = 1.0):
        super().__init__()
        self.sigma = tuple(float(s) for s in sigma)
        self.p_per_channel = float(p_per_channel)

    def get_parameters(self, **data_dict) -> dict:
        channels = [c for c in range(data_dict["image"].shape[0]) if torch.rand(1).item() < self.p_per_channel]
        return {"channels": channels, "sigmas": [uniform(*self.sigma) for _ in channels]}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        for c, sigma in zip(params["channels"], params["sigmas"]):
            factors = torch.randn(img.shape[1:], dtype=img.dtype).mul_(sigma).add_(1.0)
            img[c].mul_(factors)
        return img
