"""Bias field: a smooth multiplicative intensity inhomogeneity, as from a receive coil's sensitivity.

The log of the field is a random low-order polynomial (Legendre basis over the patch, total degree <=
`order`, no constant term), scaled so its largest magnitude is the drawn `strength`: the field lies in
[exp(-strength), exp(strength)], is positive everywhere, and has no high-frequency content.

Multiplicative on which scale? Preprocessed FOMO images are z-scored inside the head, so they hold
negative values, and multiplying those by a field > 1 would darken them instead of brightening them.
The field therefore multiplies the intensity measured from zero_level = min(0, lowest foreground
value): x' = zero_level + field * (x - zero_level). For non-negative images (zero_level = 0) that is
the plain product x * field.
"""
from __future__ import annotations

import torch

from fomo_nn.augmentation.artifact_base import ArtifactTransform, uniform


def legendre_basis(n: int, order: int) -> torch.Tensor:
    """(n, order + 1): Legendre polynomials P_0..P_order at n points spread over [-1, 1]."""
    x = torch.linspace(-1.0, 1.0, n) if n > 1 else torch.zeros(1)
    basis = [torch.ones_like(x), x]
    for k in range(1, order):
        basis.append(((2 * k + 1) * x * basis[k] - k * basis[k - 1]) / (k + 1))
    return torch.stack(basis[:order + 1], dim=1)


def random_polynomial_coefficients(order: int) -> torch.Tensor:
    """Normal coefficients c[i, j, k] for i + j + k <= order, zero elsewhere and for the constant term."""
    coefficients = torch.randn(order + 1, order + 1, order + 1)
    i, j, k = torch.meshgrid(*(torch.arange(order + 1),) * 3, indexing="ij")
    coefficients[(i + j + k) > order] = 0
    coefficients[0, 0, 0] = 0
    return coefficients


def log_bias_field(shape: tuple[int, int, int], coefficients: torch.Tensor, strength: float) -> torch.Tensor:
    """Evaluate the polynomial separably (cost ~ voxels * (order + 1)) and scale its peak to `strength`."""
    order = coefficients.shape[0] - 1
    bx, by, bz = (legendre_basis(n, order) for n in shape)
    field = torch.einsum("ijk,zk->ijz", coefficients, bz)
    field = torch.einsum("ijz,yj->iyz", field, by)
    field = torch.einsum("iyz,xi->xyz", field, bx)
    peak = field.abs().max()
    if peak <= 0:
        return torch.zeros(shape)
    return field * (strength / peak)


class BiasFieldTransform(ArtifactTransform):
    name = "bias_field"

    def __init__(self, strength=(0.1, 0.4), order: int = 3, p_per_channel: float = 1.0, remask: bool = True):
        super().__init__(p_per_channel, remask)
        self.strength = tuple(float(s) for s in strength)
        self.order = int(order)

    def sample_channel_parameters(self, spatial_shape):
        return {"coefficients": random_polynomial_coefficients(self.order), "strength": uniform(*self.strength)}

    def corrupt(self, channel, foreground, coefficients, strength):
        field = torch.exp(log_bias_field(tuple(channel.shape), coefficients, strength)).to(channel.dtype)
        # min(0, lowest foreground value) == min(0, lowest value): the background is 0 (and no indexing copy)
        zero_level = torch.clamp(channel.min(), max=0)
        return zero_level + field * (channel - zero_level)
