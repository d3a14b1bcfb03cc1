"""A lightweight decoder without skip connections, for masked reconstruction and the VAE.

Without skips the encoder's bottleneck must carry everything the reconstruction needs, which is
the point of MAE-style pretraining of a U-Net encoder.
"""
from __future__ import annotations

import torch
from dynamic_network_architectures.building_blocks.simple_conv_blocks import ConvDropoutNormReLU
from torch import nn

from fomo_nn.networks.encoders import initialize_weights
from fomo_nn.networks.families.dna_common import CONV_BIAS, CONV_OP, NONLIN, NONLIN_KWARGS, NORM_KWARGS, NORM_OP


def conv_block(in_channels: int, out_channels: int, kernel_size) -> ConvDropoutNormReLU:
    """conv -> instance norm -> LeakyReLU, stride 1."""
    return ConvDropoutNormReLU(CONV_OP, in_channels, out_channels, kernel_size, 1, CONV_BIAS, NORM_OP,
                               dict(NORM_KWARGS), None, None, NONLIN, dict(NONLIN_KWARGS))


class LightDecoder(nn.Module):
    """From bottleneck features to ``out_channels`` at input resolution.

    Per encoder stage (deepest first) a transposed convolution undoes that stage's stride and one
    conv block follows; a 1x1x1 convolution gives the output.
    """

    def __init__(self, features_per_stage, strides, kernel_sizes, out_channels: int = 1,
                 in_features: int | None = None):
        super().__init__()
        features = list(features_per_stage)
        current = features[-1] if in_features is None else in_features
        upsamplers, blocks = [], []
        for stage in reversed(range(len(features))):
            stride = list(strides[stage])
            if all(s == 1 for s in stride):
                continue
            target = features[max(stage - 1, 0)]
            kernel = kernel_sizes[max(stage - 1, 0)]
            upsamplers.append(nn.ConvTranspose3d(current, target, stride, stride, bias=CONV_BIAS))
            blocks.append(conv_block(target, target, kernel))
            current = target
        self.upsamplers = nn.ModuleList(upsamplers)
        self.blocks = nn.ModuleList(blocks)
        self.output = nn.Conv3d(current, out_channels, 1, 1, 0, bias=True)
        initialize_weights(self)

    def forward(self, bottleneck: torch.Tensor) -> torch.Tensor:
        x = bottleneck
        for upsample, block in zip(self.upsamplers, self.blocks):
            x = block(upsample(x))
        return self.output(x)


def crop_to(x: torch.Tensor, spatial_shape) -> torch.Tensor:
    """Crop the trailing spatial dims to ``spatial_shape`` (strided convs round odd sizes up)."""
    spatial_shape = tuple(spatial_shape)
    if tuple(x.shape[2:]) == spatial_shape:
        return x
    if any(have < want for have, want in zip(x.shape[2:], spatial_shape)):
        raise ValueError(f"decoder output {tuple(x.shape[2:])} is smaller than the requested {spatial_shape}")
    return x[(..., *[slice(0, s) for s in spatial_shape])]
