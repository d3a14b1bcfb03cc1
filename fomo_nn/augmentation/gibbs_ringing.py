"""Gibbs ringing: oscillations next to sharp edges from a k-space acquisition truncated along one axis.

Only the central `keep_fraction` of the frequencies along the chosen axis are kept (the rest are set
to zero), as when fewer phase-encoding lines are acquired. Smooth regions barely change; at a step
edge the truncated Fourier series overshoots and oscillates, decaying with distance from the edge.
"""
from __future__ import annotations

import torch

from fomo_nn.augmentation.artifact_base import ArtifactTransform, choice, uniform
from fomo_nn.augmentation.motion_ghosting import apply_kspace_line_weights


def truncation_weights(n: int, keep_fraction: float) -> torch.Tensor:
    """1 for the lowest frequencies (|f| <= keep_fraction / 2 cycles per voxel), 0 for the others."""
    frequencies = torch.fft.fftfreq(n)
    return (frequencies.abs() <= keep_fraction / 2 + 1e-9).float()


class GibbsRingingTransform(ArtifactTransform):
    name = "gibbs_ringing"

    def __init__(self, keep_fraction=(0.45, 0.85), axes=(0, 1, 2), p_per_channel: float = 1.0, remask: bool = True):
        super().__init__(p_per_channel, remask)
        self.keep_fraction = tuple(float(k) for k in keep_fraction)
        self.axes = tuple(int(a) for a in axes)

    def sample_channel_parameters(self, spatial_shape):
        return {"axis": choice(self.axes), "keep_fraction": uniform(*self.keep_fraction)}

    def corrupt(self, channel, foreground, axis, keep_fraction):
        weights = truncation_weights(channel.shape[axis], keep_fraction)
        return apply_kspace_line_weights(channel, weights, axis)
