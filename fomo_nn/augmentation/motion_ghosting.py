"""Motion ghosting: faint replicas of the image repeated along the phase-encoding axis.

Periodic motion (breathing, pulsation) corrupts k-space lines periodically along the phase-encoding
direction. Here every `num_ghosts`-th line along that axis is scaled by (1 - intensity). Multiplying
k-space by a comb of period n convolves the image with n evenly spaced copies, so the result is the
image minus (intensity / n) times its n shifted copies at multiples of N / n voxels (exactly so when
n divides N; otherwise the copies sit at fractional shifts):

    x' = x - (intensity / n) * sum_{j=0}^{n-1} roll(x, j * N / n, axis)

i.e. the change is exactly periodic along the phase axis (period N / n) and nowhere else. The real
part of the inverse transform is kept (the images are real-valued, z-scored, not magnitudes).
"""
from __future__ import annotations

import torch

from fomo_nn.augmentation.artifact_base import ArtifactTransform, choice, randint_inclusive, uniform


def ghosting_line_weights(n: int, num_ghosts: int, intensity: float) -> torch.Tensor:
    """Per k-space line weight: 1 - intensity on every num_ghosts-th line (DC included), 1 elsewhere."""
    weights = torch.ones(n)
    weights[::num_ghosts] = 1.0 - intensity
    return weights


def apply_kspace_line_weights(channel: torch.Tensor, weights: torch.Tensor, axis: int) -> torch.Tensor:
    """Re(ifft(weights * fft(channel))) along `axis`, computed with real FFTs.

    For a real signal the real part of the result only sees the even part of the weights,
    (w[k] + w[-k]) / 2, so the half spectrum of rfft with those weights gives the same image.
    """
    n = channel.shape[axis]
    even = (weights + torch.roll(weights.flip(0), 1)) / 2  # w[-k mod n] = roll(flip(w), 1)[k]
    shape = [1] * channel.ndim
    shape[axis] = -1
    half = even[:n // 2 + 1].reshape(shape)
    return torch.fft.irfft(torch.fft.rfft(channel, dim=axis) * half, n=n, dim=axis)


class MotionGhostingTransform(ArtifactTransform):
    name = "motion_ghosting"

    def __init__(self, num_ghosts=(2, 8), intensity=(0.3, 0.8), axes=(0, 1, 2), p_per_channel: float = 1.0,
                 remask: bool = True):
        super().__init__(p_per_channel, remask)
        self.num_ghosts = tuple(int(n) for n in num_ghosts)
        self.intensity = tuple(float(i) for i in intensity)
        self.axes = tuple(int(a) for a in axes)

    def sample_channel_parameters(self, spatial_shape):
        axis = choice(self.axes)
        num_ghosts = min(randint_inclusive(*self.num_ghosts), max(2, spatial_shape[axis] // 2))
        return {"axis": axis, "num_ghosts": num_ghosts, "intensity": uniform(*self.intensity)}

    def corrupt(self, channel, foreground, axis, num_ghosts, intensity):
        weights = ghosting_line_weights(channel.shape[axis], num_ghosts, intensity)
        return apply_kspace_line_weights(channel, weights, axis)
