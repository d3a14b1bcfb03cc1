"""k-space spikes: a few corrupt high-amplitude k-space samples (RF interference, arcing).

Each spike at integer frequency f adds one plane wave, amplitude * cos(2 pi f.x / N + phase): the
striped ("herringbone") pattern seen on spiked scans. The wave is built directly in image space
(separable complex exponentials), which equals setting those two k-space samples and transforming
back, without a 3D FFT. Spikes stay away from the k-space centre (at least N / 8 along one axis),
where they would be a slow shading rather than stripes. The amplitude is `intensity` times the mean
absolute foreground value of the channel, so it means the same on z-scored and [0, 1] images.
"""
from __future__ import annotations

import math

import torch

from fomo_nn.augmentation.artifact_base import ArtifactTransform, randint_inclusive, uniform


def random_spike_frequency(shape: tuple[int, int, int]) -> list[int]:
    """Integer frequency per axis in [-N/2, N/2), with one axis at least N/8 from the centre."""
    frequency = [randint_inclusive(-(n // 2), (n - 1) // 2) for n in shape]
    axis = randint_inclusive(0, 2)
    n = shape[axis]
    low, high = max(1, math.ceil(n / 8)), max(1, (n - 1) // 2)
    magnitude = randint_inclusive(min(low, high), high)
    frequency[axis] = magnitude if torch.rand(1).item() < 0.5 else -magnitude
    return frequency


def plane_wave(shape: tuple[int, int, int], frequency, phase: float) -> torch.Tensor:
    """cos(2 pi sum_i f_i x_i / N_i + phase) on the grid, from three 1D complex exponentials."""
    # angles reduced modulo one period in float64 before the complex64 exponentials
    factors = [torch.exp(1j * (2 * math.pi * ((f * torch.arange(n, dtype=torch.float64)) % n) / n)).to(torch.complex64)
               for f, n in zip(frequency, shape)]
    plane = (factors[1][:, None] * factors[2][None, :]) * complex(math.cos(phase), math.sin(phase))
    return (factors[0][:, None, None] * plane[None]).real


class KSpaceSpikeTransform(ArtifactTransform):
    name = "kspace_spikes"

    def __init__(self, num_spikes=(1, 3), intensity=(0.05, 0.2), p_per_channel: float = 1.0, remask: bool = True):
        super().__init__(p_per_channel, remask)
        self.num_spikes = tuple(int(n) for n in num_spikes)
        self.intensity = tuple(float(i) for i in intensity)

    def sample_channel_parameters(self, spatial_shape):
        spikes = [(random_spike_frequency(spatial_shape), uniform(0.0, 2 * math.pi), uniform(*self.intensity))
                  for _ in range(randint_inclusive(*self.num_spikes))]
        return {"spikes": spikes}

    def corrupt(self, channel, foreground, spikes):
        scale = channel.abs().sum() / foreground.sum()  # mean |x| over the foreground (background is 0)
        out = channel.clone()
        for frequency, phase, intensity in spikes:
            out += (intensity * scale) * plane_wave(tuple(channel.shape), frequency, phase)
        return out
