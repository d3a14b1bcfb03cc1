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

import re

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


def plan_from_weights(encoder_state: dict, stride: int, where: str = "checkpoint") -> NetworkPlan:
    """The NetworkPlan of a ResidualUNetEncoder state dict (keys without 'encoder.'): features and blocks per
    stage from the block names, kernel and input channels from the stem. The stride is not in the weights
    (a strided conv has the shape of an unstrided one): the caller says it."""
    stem = encoder_state.get("stem.conv1.conv.weight")
    if stem is None or stem.dim() != 5:
        raise ValueError(f"{where}: no ResidualUNetEncoder stem ('stem.conv1.conv.weight')")
    blocks: dict[int, set[int]] = {}
    for key in encoder_state:
        match = re.match(r"^stages\.(\d+)\.blocks\.(\d+)\.conv1\.conv\.weight$", key)
        if match:
            blocks.setdefault(int(match.group(1)), set()).add(int(match.group(2)))
    stages = sorted(blocks)
    if not stages or stages != list(range(len(stages))):
        raise ValueError(f"{where}: ResidualUNetEncoder stages are not numbered 0..N-1 (found {stages})")
    features = [int(encoder_state[f"stages.{s}.blocks.0.conv1.conv.weight"].shape[0]) for s in stages]
    kernel = [int(k) for k in stem.shape[2:]]
    return NetworkPlan(encoder="residual_unet_encoder", features_per_stage=features,
                       kernel_sizes=[kernel] * len(stages), strides=[[1, 1, 1]] + [[stride] * 3] * (len(stages) - 1),
                       n_conv_per_stage=[len(blocks[s]) for s in stages],
                       n_conv_per_stage_decoder=[1] * (len(stages) - 1), input_channels=int(stem.shape[1]))
