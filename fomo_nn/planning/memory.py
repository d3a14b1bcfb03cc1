"""GPU memory estimate of a U-Net configuration, calibrated like nnU-Net's planner; one formula for every
encoder family, read from the family's record (fomo_nn.networks.families: memory_factor).

The unit is nnU-Net's: the number of feature-map elements one training sample produces (what
dynamic-network-architectures' `compute_conv_feature_map_size` counts). nnU-Net found that 560e6 such
elements at batch size 2 fill about 8 GB; the budget scales linearly with the memory target.

Counted here without building a network: the encoder's conv entries (n_conv_per_stage x features x voxels
after the stage's stride), times the family's memory_factor (1 for a plain conv-norm-nonlin; DNA's count
of ResEnc-L's encoder is 2.63 times its blocks'), plus fomo_nn's U-Net decoder exactly as DNA counts it
(its convs, the transposed conv and the logits). For plain_conv this is DNA's number exactly
(tests/test_network_families.py). The pretraining method that trains on the plan multiplies it
(fomo_nn.training.pretraining.memory: two views, teacher, extra decoder).
"""
from __future__ import annotations

import numpy as np

from fomo_nn.networks.families import network_family

REFERENCE_FEATURE_MAP_ELEMENTS = 560_000_000  # at REFERENCE_BATCH_SIZE, nnU-Net's calibration
REFERENCE_GPU_MEMORY_GB = 8.0
REFERENCE_BATCH_SIZE = 2


def feature_map_budget(gpu_memory_gb: float) -> float:
    """Per-sample feature-map elements that fit a GPU of this size at REFERENCE_BATCH_SIZE."""
    return REFERENCE_FEATURE_MAP_ELEMENTS * gpu_memory_gb / REFERENCE_GPU_MEMORY_GB


def stage_sizes(patch_size, strides) -> list[list[int]]:
    """Each stage's feature-map size after its stride (the strided conv / pooling rounds down, as DNA counts)."""
    size = [int(s) for s in patch_size]
    sizes = []
    for stride in strides:
        size = [i // int(j) for i, j in zip(size, stride)]
        sizes.append(size)
    return sizes


def encoder_elements(network, patch_size) -> float:
    """The encoder's feature-map elements for one sample: conv entries x features x voxels x memory_factor."""
    sizes = stage_sizes(patch_size, network.strides)
    units = sum(int(n) * int(f) * int(np.prod(size, dtype=np.int64))
                for n, f, size in zip(network.n_conv_per_stage, network.features_per_stage, sizes))
    return units * network_family(network.encoder).memory_factor


def decoder_elements(network, patch_size, output_channels: int, deep_supervision: bool = False) -> int:
    """DNA UNetDecoder's count: per decoder stage (deepest first) its convs and transposed conv at the skip's
    size with the skip's features, and the logits (every stage with deep supervision, else the last)."""
    sizes = stage_sizes(patch_size, network.strides)[:-1]
    features = list(network.features_per_stage)[:-1]
    total = 0
    for stage, n_conv in enumerate(network.n_conv_per_stage_decoder):
        level = len(sizes) - 1 - stage
        voxels = int(np.prod(sizes[level], dtype=np.int64))
        total += (int(n_conv) + 1) * int(features[level]) * voxels
        if deep_supervision or stage == len(network.n_conv_per_stage_decoder) - 1:
            total += int(output_channels) * voxels
    return total


def estimate_feature_map_elements(network, patch_size, output_channels: int, encoder_passes: int = 1) -> int:
    """Elements for one sample of `patch_size` through the U-Net of a NetworkPlan.

    `encoder_passes` > 1 for a shared encoder that runs once per input sequence.
    """
    elements = encoder_elements(network, patch_size) + decoder_elements(network, patch_size,
                                                                        max(int(output_channels), 1))
    return int(round(elements)) * max(int(encoder_passes), 1)
