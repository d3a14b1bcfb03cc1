"""DNA PlainConvEncoder: nnU-Net's default encoder (conv-norm-LeakyReLU x n per stage, strided first conv).

Built with dynamic-network-architectures' own class, so its keys are DNA's ('stages.N.0.convs.M.conv.weight'
and the alias 'stages.N.0.convs.M.all_modules.0.weight').
"""
from __future__ import annotations

from dynamic_network_architectures.building_blocks.plain_conv_encoder import PlainConvEncoder

from fomo_nn.networks.families.family import NetworkFamily, numbered_stage
from fomo_nn.networks.families.dna_common import dna_encoder_kwargs
from fomo_nn.plans.records import NetworkPlan


def build(plan: NetworkPlan, in_channels: int) -> PlainConvEncoder:
    return PlainConvEncoder(n_conv_per_stage=list(plan.n_conv_per_stage), **dna_encoder_kwargs(plan, in_channels))


def check(plan: NetworkPlan) -> list[str]:
    return [f"n_conv_per_stage must be >= 1 everywhere, got {plan.n_conv_per_stage}"] \
        if any(int(n) < 1 for n in plan.n_conv_per_stage) else []


FAMILY = NetworkFamily(
    name="plain_conv",
    description="DNA PlainConvEncoder (nnU-Net's default U-Net encoder; strided convolutions)",
    build_encoder=build,
    check_plan=check,
    stage_of_key=lambda key: numbered_stage(key, "stages"),
    default_blocks=lambda stages: [2] * stages,
    memory_factor=1.0,
    plannable=True,
)
