"""Smooth random displacement fields for elastic deformation, generated on a coarse grid.

batchgeneratorsv2 smooths full-resolution white noise with a Gaussian in the Fourier domain (float64
FFTs of the whole patch, ~0.15 s at 96^3 and ~0.3 s at 128^3). The field is smooth by construction
(sigma = 10-20 % of the patch edge), so the same statistics come from noise on a grid coarser by
a factor of sigma / 2, smoothed there with sigma / factor >= 2 coarse voxels (its spectrum is then
negligible beyond the coarse grid's Nyquist frequency) and upsampled trilinearly.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def smooth_noise(shape, sigma: float) -> torch.Tensor:
    """White noise smoothed by a Gaussian of `sigma` voxels (periodic boundary), at `shape`."""
    factor = max(1, int(sigma // 2))
    coarse = [max(2, math.ceil(n / factor)) for n in shape]
    noise = torch.randn(coarse)
    frequencies = torch.meshgrid(*[torch.fft.fftfreq(n) for n in coarse[:-1]], torch.fft.rfftfreq(coarse[-1]),
                                 indexing="ij")
    squared = sum(f ** 2 for f in frequencies)
    transfer = torch.exp(-2 * math.pi ** 2 * (sigma / factor) ** 2 * squared)
    smoothed = torch.fft.irfftn(torch.fft.rfftn(noise) * transfer, s=coarse)
    if factor == 1:
        return smoothed
    return F.interpolate(smoothed[None, None], size=tuple(shape), mode="trilinear", align_corners=False)[0, 0]


def displacement_field(shape, sigmas, magnitudes) -> torch.Tensor:
    """(len(shape), *shape): component d smoothed with sigmas[d], scaled so its peak |value| is magnitudes[d]."""
    components = []
    for sigma, magnitude in zip(sigmas, magnitudes):
        component = smooth_noise(shape, sigma)
        peak = component.abs().max().clamp_min(1e-12)
        components.append(component * (magnitude / peak))
    return torch.stack(components)
