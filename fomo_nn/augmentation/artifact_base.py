"""Shared shape of the MRI artifact transforms: per-channel corruption of `image` only.

Artifacts model the acquisition of one sequence, so each channel (a sequence, or the other scan of a
subject pair) gets its own draw. `segmentation` and `target` are never touched: an artifact changes
what the scanner shows, not the anatomy, and a reconstruction target stays clean.

Background: FOMO images are skull-stripped and preprocessing sets everything outside the head to 0.
A k-space artifact spreads signal into that background (ghosts, stripes), which the network would
never see at test time, so with `remask=True` (the default) every channel is multiplied by its own
input's nonzero mask afterwards: zero voxels stay exactly zero and the artifact shows inside the
head only. Place artifact transforms before additive noise so that mask is still the head.
"""
from __future__ import annotations

from abc import ABC, abstractmethod

import torch
from batchgeneratorsv2.transforms.base.basic_transform import ImageOnlyTransform


class ArtifactTransform(ImageOnlyTransform, ABC):
    """Subclasses draw per-channel parameters (`sample_channel_parameters`) and apply them (`corrupt`)."""

    name = "artifact"

    def __init__(self, p_per_channel: float = 1.0, remask: bool = True):
        super().__init__()
        self.p_per_channel = float(p_per_channel)
        self.remask = bool(remask)

    @abstractmethod
    def sample_channel_parameters(self, spatial_shape: tuple[int, ...]) -> dict:
        """The random draw of one channel's artifact."""

    @abstractmethod
    def corrupt(self, channel: torch.Tensor, foreground: torch.Tensor, **params) -> torch.Tensor:
        """Return the corrupted channel (X, Y, Z); `foreground` is the channel's nonzero mask."""

    def get_parameters(self, **data_dict) -> dict:
        image = data_dict["image"]
        channels = [c for c in range(image.shape[0]) if torch.rand(1).item() < self.p_per_channel]
        spatial_shape = tuple(image.shape[1:])
        return {"channels": channels,
                "channel_parameters": [self.sample_channel_parameters(spatial_shape) for _ in channels]}

    def _apply_to_image(self, img: torch.Tensor, **params) -> torch.Tensor:
        for c, channel_params in zip(params["channels"], params["channel_parameters"]):
            foreground = img[c] != 0
            if not bool(foreground.any()):
                continue  # an empty channel (missing sequence) stays empty
            corrupted = self.corrupt(img[c], foreground, **channel_params).to(img.dtype)
            if self.remask:
                corrupted = torch.where(foreground, corrupted, torch.zeros((), dtype=img.dtype))
            img[c] = corrupted
        return img


def uniform(low: float, high: float) -> float:
    """One draw from the global torch generator (seeded per worker step by the loader)."""
    return float(low + (high - low) * torch.rand(1).item())


def randint_inclusive(low: int, high: int) -> int:
    return int(torch.randint(int(low), int(high) + 1, (1,)).item())


def choice(options) -> int:
    return int(options[int(torch.randint(len(options), (1,)).item())])
