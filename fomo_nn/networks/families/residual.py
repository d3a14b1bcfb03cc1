"""DNA ResidualEncoder: nnU-Net's ResEnc presets and nnssl's ResEnc-L (OpenMind / SSL3D checkpoints).

Built with dynamic-network-architectures' own class (BasicBlockD, a stem conv before stage 0), so its keys
are the ones nnssl's `network_weights` hold under `encoder.*`. nnssl's ResEnc-L topology: features
32-64-128-256-320-320, blocks 1-3-4-6-6-6, strides 1,2,2,2,2,2, kernels 3 (presets.py: "resenc_l").
"""
from __future__ import annotations

from dynamic_network_architectures.building_blocks.residual_encoders import ResidualEncoder

from fomo_nn.networks.families.dna_common import dna_encoder_kwargs
from fomo_nn.networks.families.family import NetworkFamily, numbered_stage
from fomo_nn.plans.records import NetworkPlan

RESIDUAL_BLOCKS_PER_STAGE = (1, 3, 4, 6, 6, 6, 6, 6, 6, 6)  # nnU-Net ResEnc / nnssl ResEnc-L
# DNA's own feature-map count (compute_conv_feature_map_size) of ResEnc-L's encoder over
# sum(blocks x features x voxels): two convs per block, plus the stem and the strided blocks' skip projections
# (2.63 at any patch divisible by 32; tests/test_network_families.py checks the estimate against DNA's count)
MEMORY_FACTOR = 2.63


def build(plan: NetworkPlan, in_channels: int) -> ResidualEncoder:
    return ResidualEncoder(n_blocks_per_stage=list(plan.n_conv_per_stage), **dna_encoder_kwargs(plan, in_channels))


def check(plan: NetworkPlan) -> list[str]:
    return [f"n_conv_per_stage (residual blocks) must be >= 1 everywhere, got {plan.n_conv_per_stage}"] \
        if any(int(n) < 1 for n in plan.n_conv_per_stage) else []


def default_blocks(stages: int) -> list[int]:
    return [RESIDUAL_BLOCKS_PER_STAGE[min(i, len(RESIDUAL_BLOCKS_PER_STAGE) - 1)] for i in range(stages)]


FAMILY = NetworkFamily(
    name="residual",
    description="DNA ResidualEncoder (nnU-Net ResEnc, nnssl ResEnc-L; stem + BasicBlockD stages)",
    build_encoder=build,
    check_plan=check,
    stage_of_key=lambda key: numbered_stage(key, "stages"),  # 'stem.*' -> None (before stage 0)
    default_blocks=default_blocks,
    memory_factor=MEMORY_FACTOR,
    decoder_convs=1,
    plannable=True,
)
