"""GPU memory estimate of a U-Net configuration, calibrated like nnU-Net's planner.

The estimate is dynamic-network-architectures' `compute_conv_feature_map_size` of the full U-Net
(encoder + decoder): the number of feature-map elements one training sample produces. nnU-Net
found that 560e6 such elements at batch size 2 fill about 8 GB; the budget scales linearly with the
memory target. The network is built on torch's 'meta' device: no weights are allocated, so an
estimate costs milliseconds even for 30M-parameter nets.
"""
from __future__ import annotations

from functools import lru_cache

REFERENCE_FEATURE_MAP_ELEMENTS = 560_000_000  # at REFERENCE_BATCH_SIZE, nnU-Net's calibration
REFERENCE_GPU_MEMORY_GB = 8.0
REFERENCE_BATCH_SIZE = 2
RESIDUAL_BLOCKS_PER_STAGE = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6)  # nnU-Net ResEnc


def feature_map_budget(gpu_memory_gb: float) -> float:
    """Per-sample feature-map elements that fit a GPU of this size at REFERENCE_BATCH_SIZE."""
    return REFERENCE_FEATURE_MAP_ELEMENTS * gpu_memory_gb / REFERENCE_GPU_MEMORY_GB


@lru_cache(maxsize=4096)
def _feature_map_elements(encoder: str, patch_size: tuple, input_channels: int, output_channels: int,
                          features: tuple, kernel_sizes: tuple, strides: tuple, n_conv: tuple,
                          n_conv_decoder: tuple) -> int:
    import torch
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet
    from torch import nn

    common = dict(input_channels=input_channels, n_stages=len(features), features_per_stage=list(features),
                  conv_op=nn.Conv3d, kernel_sizes=[list(k) for k in kernel_sizes], strides=[list(s) for s in strides],
                  num_classes=output_channels, n_conv_per_stage_decoder=list(n_conv_decoder), conv_bias=True,
                  norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True},
                  nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    with torch.device("meta"):
        if encoder == "residual":
            net = ResidualEncoderUNet(n_blocks_per_stage=list(n_conv), **common)
        else:
            net = PlainConvUNet(n_conv_per_stage=list(n_conv), **common)
    return int(net.compute_conv_feature_map_size(tuple(int(s) for s in patch_size)))


def estimate_feature_map_elements(network, patch_size, output_channels: int, encoder_passes: int = 1) -> int:
    """Elements for one sample of `patch_size` through the U-Net of a NetworkPlan.

    `encoder_passes` > 1 for a shared encoder that runs once per input sequence.
    """
    elements = _feature_map_elements(
        network.encoder, tuple(int(s) for s in patch_size), int(network.input_channels), int(max(output_channels, 1)),
        tuple(network.features_per_stage), tuple(tuple(k) for k in network.kernel_sizes),
        tuple(tuple(s) for s in network.strides), tuple(network.n_conv_per_stage),
        tuple(network.n_conv_per_stage_decoder))
    return elements * max(int(encoder_passes), 1)
