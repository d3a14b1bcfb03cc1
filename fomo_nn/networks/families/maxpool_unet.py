"""The max-pool U-Net encoder of Yucca / gardening-tools: the FOMO25 baseline's unet_b / unet_xl and
asparagus' unet_* (five stages; per stage n x conv-dropout-instance norm-LeakyReLU; MaxPool3d(2) between
stages; features f, 2f, 4f, 8f, 16f).

Built with gardening-tools' own `UNetEncoder` (0.3.5), as gardening-tools' `UNet` builds it (Dropout3d with
p=0, which computes nothing), so its keys are asparagus' own: 'in_conv.conv1.conv.weight',
'encoder_conv4.conv2.norm_op.weight' and the aliases 'all_modules.0/2'. The FOMO25 baseline
(fomo25/baseline-codebase d2df6d4, models/conv_blocks/blocks.py, the same block as Yucca's conv_layers) names
the same tensors 'conv' and 'norm' and has no dropout module: `yucca_keys_to_family` converts.
fomo_nn's decoders read the pooling as each stage's stride (plan.strides = [1]+[2]*4).
"""
from __future__ import annotations

import re

from torch import nn

from fomo_nn.networks.families.family import NetworkFamily, set_stage_geometry
from fomo_nn.plans.records import NetworkPlan

STAGES = 5
STAGE_MODULES = ("in_conv",) + tuple(f"encoder_conv{i}" for i in range(1, STAGES))
_YUCCA_LAYER = re.compile(r"^(?P<block>.+\.conv\d+)\.(?P<part>conv|norm)\.(?P<tensor>weight|bias)$")


def build(plan: NetworkPlan, in_channels: int) -> nn.Module:
    # gardening-tools is imported here, not at module level: only this family and residual_unet_encoder need it
    from gardening_tools.modules.networks.components.blocks import MultiLayerConvDropoutNormNonlin
    from gardening_tools.modules.networks.components.encoders import UNetEncoder

    encoder = UNetEncoder(
        input_channels=in_channels,
        basic_block=MultiLayerConvDropoutNormNonlin.get_block_constructor(int(plan.n_conv_per_stage[0])),
        conv_op=nn.Conv3d,
        dropout_op=nn.Dropout3d,
        norm_op=nn.InstanceNorm3d,
        pool_op=nn.MaxPool3d,
        starting_filters=int(plan.features_per_stage[0]),
    )
    return set_stage_geometry(encoder, plan)


def check(plan: NetworkPlan) -> list[str]:
    problems = []
    if plan.num_stages != STAGES:
        return [f"the max-pool U-Net encoder has {STAGES} stages, the plan {plan.num_stages}"]
    base = int(plan.features_per_stage[0])
    expected = [base * 2 ** i for i in range(STAGES)]
    if list(plan.features_per_stage) != expected:
        problems.append(f"features_per_stage must double from the first stage ({expected}), got "
                        f"{list(plan.features_per_stage)}")
    if [list(s) for s in plan.strides] != [[1, 1, 1]] + [[2, 2, 2]] * (STAGES - 1):
        problems.append(f"strides (the max pooling) must be [1,1,1] then [2,2,2] x4, got {list(plan.strides)}")
    if any(list(k) != [3, 3, 3] for k in plan.kernel_sizes):
        problems.append(f"kernel_sizes must all be [3,3,3], got {list(plan.kernel_sizes)}")
    if len(set(int(n) for n in plan.n_conv_per_stage)) != 1 or int(plan.n_conv_per_stage[0]) < 1:
        problems.append(f"n_conv_per_stage must be one value >= 1 for every stage, got {list(plan.n_conv_per_stage)}")
    return problems


def stage_of_key(key: str) -> int | None:
    head = key.split(".", 1)[0]
    return STAGE_MODULES.index(head) if head in STAGE_MODULES else None


def yucca_keys_to_family(state_dict: dict, encoder: nn.Module) -> dict:
    """Yucca / FOMO25-baseline encoder keys ('in_conv.conv1.norm.weight') -> this family's keys with every
    alias ('in_conv.conv1.norm_op.weight' and 'in_conv.conv1.all_modules.2.weight').

    `encoder` is one built by this family (any device, meta included): its parameters say which names are
    aliases of one tensor. Keys that are not Yucca conv/norm tensors are kept as they are.
    """
    aliases: dict[str, list[str]] = {}
    by_tensor: dict[int, list[str]] = {}
    for name, tensor in encoder.named_parameters(remove_duplicate=False):
        by_tensor.setdefault(id(tensor), []).append(name)
    for names in by_tensor.values():
        for name in names:
            aliases[name] = names
    converted = {}
    for key, value in state_dict.items():
        match = _YUCCA_LAYER.match(key)
        if not match:
            converted[key] = value
            continue
        part = "conv" if match["part"] == "conv" else "norm_op"
        canonical = f"{match['block']}.{part}.{match['tensor']}"
        for name in aliases.get(canonical, [canonical]):
            converted[name] = value
    return converted


FAMILY = NetworkFamily(
    name="maxpool_unet",
    description="Yucca/gardening-tools max-pool U-Net encoder (FOMO25 baseline unet_b/unet_xl, asparagus unet_*)",
    build_encoder=build,
    check_plan=check,
    stage_of_key=stage_of_key,
    default_blocks=lambda stages: [2] * stages,
    memory_factor=1.0,  # the same conv-norm-nonlin units; the max-pool outputs add < 1/16 (see memory.py)
    plannable=False,  # five isotropic 2x poolings: not a topology the planner derives from a spacing
)


def plan_from_weights(encoder_state: dict, where: str = "checkpoint") -> NetworkPlan:
    """The NetworkPlan of a max-pool U-Net encoder state dict (keys without 'encoder.', either layout):
    starting filters and input channels from the stem conv, convs per stage from the block names."""
    stem = encoder_state.get("in_conv.conv1.conv.weight")
    if stem is None or stem.dim() != 5:
        raise ValueError(f"{where}: no max-pool U-Net stem ('in_conv.conv1.conv.weight')")
    missing = [name for name in STAGE_MODULES if f"{name}.conv1.conv.weight" not in encoder_state]
    if missing:
        raise ValueError(f"{where}: the max-pool U-Net encoder lacks stage(s) {missing}")
    convs = {int(m.group(1)) for key in encoder_state
             if (m := re.match(r"^in_conv\.conv(\d+)\.conv\.weight$", key))}
    base = int(stem.shape[0])
    return NetworkPlan(encoder="maxpool_unet", features_per_stage=[base * 2 ** i for i in range(STAGES)],
                       kernel_sizes=[[int(k) for k in stem.shape[2:]]] * STAGES,
                       strides=[[1, 1, 1]] + [[2, 2, 2]] * (STAGES - 1), n_conv_per_stage=[max(convs)] * STAGES,
                       n_conv_per_stage_decoder=[2] * (STAGES - 1), input_channels=int(stem.shape[1]))
