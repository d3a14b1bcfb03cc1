"""CNN encoders built from a NetworkPlan through its family (fomo_nn.networks.families: DNA PlainConv /
ResidualEncoder, gardening-tools' max-pool U-Net and ResidualUNetEncoder).

Every fomo_nn model holds its encoder at the attribute ``encoder`` so the state-dict keys
``encoder.*`` are the same in pretraining and finetuning models built from one NetworkPlan.
"""
from __future__ import annotations

from types import SimpleNamespace

import torch
from dynamic_network_architectures.initialization.weight_init import InitWeights_He, init_last_bn_before_add_to_0
from torch import nn

# nnU-Net's 3D conventions, which fomo_nn's decoders use whatever the encoder family
from fomo_nn.networks.families.dna_common import nnunet_layer_ops
from fomo_nn.networks.families.registry import FAMILY_NAMES, network_family
from fomo_nn.plans.records import FUSION_MODES, NetworkPlan

ENCODER_TYPES = FAMILY_NAMES  # the registry's names (fomo_nn.networks.families)
ENCODER_PREFIX = "encoder."


def as_network_plan(network: NetworkPlan | dict) -> NetworkPlan:
    """Accept a NetworkPlan or its JSON dict (adaptation records store the dict)."""
    if isinstance(network, NetworkPlan):
        return network
    if isinstance(network, dict):
        names = set(NetworkPlan.__dataclass_fields__)
        return NetworkPlan(**{k: v for k, v in network.items() if k in names})
    raise TypeError(f"expected a NetworkPlan or dict, got {type(network).__name__}")


def validate_network_plan(net: NetworkPlan) -> None:
    """Fail with one readable message instead of an assert deep inside the library."""
    n = net.num_stages
    problems = []
    try:
        family = network_family(net.encoder)
    except ValueError as error:
        family = None
        problems.append(str(error))
    if net.fusion not in FUSION_MODES:
        problems.append(f"fusion {net.fusion!r} is not one of {FUSION_MODES}")
    if n < 2:
        problems.append("at least 2 stages are needed (an encoder and a bottleneck)")
    for name, expected in (("kernel_sizes", n), ("strides", n), ("n_conv_per_stage", n),
                           ("n_conv_per_stage_decoder", n - 1)):
        if len(getattr(net, name)) != expected:
            problems.append(f"{name} has {len(getattr(net, name))} entries, expected {expected}")
    for name in ("kernel_sizes", "strides"):
        for entry in getattr(net, name):
            if len(entry) != 3:
                problems.append(f"{name} entry {entry} is not 3D")
    if family is not None and not problems:
        problems += [f"{family.name}: {problem}" for problem in family.check_plan(net)]
    if problems:
        raise ValueError("invalid network plan: " + "; ".join(problems))


def build_encoder(net: NetworkPlan | dict, in_channels: int) -> nn.Module:
    """The plan's family's encoder, returning every stage's features (skips, bottleneck last), He-initialised."""
    net = as_network_plan(net)
    validate_network_plan(net)
    if in_channels < 1:
        raise ValueError(f"in_channels must be >= 1, got {in_channels}")
    encoder = network_family(net.encoder).build_encoder(net, int(in_channels))
    initialize_weights(encoder)
    return encoder


def initialize_weights(module: nn.Module) -> None:
    """nnU-Net's He init (and zeroed last norm in residual blocks); deterministic given the torch seed."""
    module.apply(InitWeights_He(1e-2))
    module.apply(init_last_bn_before_add_to_0)


def decoder_spec(encoder: nn.Module) -> SimpleNamespace:
    """What DNA's UNetDecoder reads from an encoder, without registering the encoder inside the decoder.

    UNetDecoder stores the encoder it is given as a submodule; passing the real encoder would
    duplicate every encoder weight under ``decoder.encoder.*`` in the state dict. Every family's encoder
    carries its stages' channels, strides (a max-pool stage: its pooling) and kernels; the decoder's own
    layers follow nnU-Net's conventions whatever the family (conv bias, affine instance norm, LeakyReLU).
    """
    return SimpleNamespace(
        output_channels=list(encoder.output_channels),
        strides=[list(s) for s in encoder.strides],
        kernel_sizes=[list(k) for k in encoder.kernel_sizes],
        **nnunet_layer_ops(),
    )


def stem_conv(encoder: nn.Module) -> tuple[str, nn.Conv3d]:
    """The first convolution of the encoder (the only layer whose shape depends on input channels)."""
    for name, module in encoder.named_modules():
        if isinstance(module, nn.Conv3d):
            return name, module
    raise ValueError("encoder has no Conv3d layer")


def _state_dict_names(module: nn.Module, tensor: torch.Tensor) -> list[str]:
    """Every state-dict key under which ``tensor`` appears (DNA registers each conv twice:
    ``convs.0.conv`` and ``convs.0.all_modules.0``)."""
    return [name for name, p in module.named_parameters(remove_duplicate=False) if p is tensor]


def stem_weight_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the stem convolution's weight (the only weight whose shape depends on the
    number of input channels), e.g. ``encoder.stages.0.0.convs.0.conv.weight`` and its alias."""
    encoder = getattr(model, "encoder", model)
    return _state_dict_names(model, stem_conv(encoder)[1].weight)


def stem_keys(model: nn.Module) -> list[str]:
    """State-dict keys of the stem convolution: weight and bias, with aliases."""
    encoder = getattr(model, "encoder", model)
    conv = stem_conv(encoder)[1]
    return [name for p in conv.parameters() for name in _state_dict_names(model, p)]


def encoder_in_channels(model_or_encoder: nn.Module) -> int:
    encoder = getattr(model_or_encoder, "encoder", model_or_encoder)
    return stem_conv(encoder)[1].in_channels
