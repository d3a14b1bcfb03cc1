"""gardening-tools' ResidualUNetEncoder: asparagus' ResEnc U-Nets (resenc_unet_b of AMAES on FOMO300K).

A 1-conv stem, then per stage residual blocks (conv-norm-LeakyReLU, conv-norm, + skip, LeakyReLU); the first
block of stages 1.. downsamples with a strided conv, its skip with AvgPool3d (the pretraining networks'
pool op; asparagus' classification variant uses MaxPool3d there, which has no weights either) and a 1x1x1
conv. One kernel size and one stride for the whole network (gardening-tools takes scalars).

Built with gardening-tools' own class (0.3.5) with the arguments its `ResidualEncoderUNet` passes
(Sllambias/asparagus 338450b, asparagus/modules/networks/resenc_unet.py: resenc_unet_b = features
32-64-128-256-320-320, blocks 1-3-4-6-6-6, stride 2, kernel 3), so its keys are asparagus' own
('stem.conv1.conv.weight', 'stages.3.blocks.2.conv2.norm_op.weight', aliases 'all_modules.N').
"""
from __future__ import annotations

import torch
from torch import nn

from fomo_nn.networks.families.family import NetworkFamily, numbered_stage, set_stage_geometry, uniform_cubes
from fomo_nn.networks.families.residual import MEMORY_FACTOR, default_blocks
from fomo_nn.plans.records import NetworkPlan


def build(plan: NetworkPlan, in_channels: int) -> nn.Module:
    # gardening-tools is imported here, not at module level: only this family and maxpool_unet need it
    from gardening_tools.modules.networks.components.blocks import ResidualBlock
    from gardening_tools.modules.networks.components.encoders import ResidualUNetEncoder

    encoder = ResidualUNetEncoder(
        input_channels=in_channels,
        features_per_stage=[int(f) for f in plan.features_per_stage],
        conv_op=nn.Conv3d,
        pool_op=nn.AvgPool3d,
        kernel_size=int(plan.kernel_sizes[0][0]),
        stride=int(plan.strides[1][0]),
        n_blocks_per_stage=[int(n) for n in plan.n_conv_per_stage],
        conv_bias=True,
        norm_op=nn.InstanceNorm3d,
        norm_op_kwargs={"eps": 1e-05, "affine": True},
        dropout_op=None,
        dropout_op_kwargs=None,
        nonlin=torch.nn.LeakyReLU,
        nonlin_kwargs={"inplace": True},
        block=ResidualBlock,
    )
    return set_stage_geometry(encoder, plan)


def check(plan: NetworkPlan) -> list[str]:
    problems, kernel = uniform_cubes("kernel_sizes", plan.kernel_sizes)
    if kernel is not None and kernel % 2 == 0:
        problems.append(f"kernel size must be odd, got {kernel}")
    if [int(s) for s in plan.strides[0]] != [1, 1, 1]:
        problems.append(f"the first stage's stride must be [1,1,1], got {list(plan.strides[0])}")
    stride_problems, _ = uniform_cubes("strides", plan.strides, skip_first=True)
    problems += stride_problems
    if any(int(n) < 1 for n in plan.n_conv_per_stage):
        problems.append(f"n_conv_per_stage (residual blocks) must be >= 1 everywhere, got {plan.n_conv_per_stage}")
    return problems


FAMILY = NetworkFamily(
    name="residual_unet_encoder",
    description="gardening-tools ResidualUNetEncoder (asparagus resenc_unet_*, AMAES ResEnc-B; isotropic)",
    build_encoder=build,
    check_plan=check,
    stage_of_key=lambda key: numbered_stage(key, "stages"),  # 'stem.*' -> None (before stage 0)
    default_blocks=default_blocks,
    memory_factor=MEMORY_FACTOR,  # the same block structure as DNA's ResidualEncoder
    decoder_convs=1,
    plannable=False,  # one isotropic stride for every stage: not a topology the planner derives from a spacing
)
