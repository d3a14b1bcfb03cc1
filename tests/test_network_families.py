"""Encoder families as data: each family's encoder equals its reference network's (forward, float32, <= 1e-5),
every fomo_nn model builds on every family, the planner's memory estimate reads the family, bad plans are refused.

References: dynamic-network-architectures (PlainConvUNet, ResidualEncoderUNet), gardening-tools 0.3.5 (UNet and
ResidualEncoderUNet, built as Sllambias/asparagus 338450b builds unet_b / resenc_unet_b), and the FOMO25
baseline's encoder transcribed from fomo25/baseline-codebase d2df6d4 (tests/fomo25_baseline_reference.py).
"""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from fomo_nn.networks import (ClassificationNet, EmbeddingNet, HybridNet, MAENet, RegressionNet, SegmentationNet,
                              VAEHybridNet, build_encoder, load_encoder_weights)
from fomo_nn.networks.families import FAMILY_NAMES, PLANNABLE_FAMILIES, network_family, network_preset
from fomo_nn.networks.families.maxpool_unet import yucca_keys_to_family
from fomo_nn.planning.memory import estimate_feature_map_elements
from fomo_nn.plans.records import NetworkPlan
from tests.fomo25_baseline_reference import BaselineUNet

TINY_RESENC = dict(features_per_stage=[4, 8, 8, 8, 8, 8])  # 6 stages: 64^3 keeps a 2^3 bottleneck
TINY_UNET = dict(features_per_stage=[2, 4, 8, 16, 32])


def tiny(preset: str) -> NetworkPlan:
    return network_preset(preset, **(TINY_RESENC if preset.startswith("resenc") else TINY_UNET))


def edge(plan: NetworkPlan) -> int:
    return 64 if plan.num_stages == 6 else 32


def randomize(module: nn.Module, seed: int) -> None:
    """Non-trivial weights everywhere (norm affines included), so equality is not an accident of the init."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)


def assert_same_features(ours: list[torch.Tensor], reference: list[torch.Tensor]) -> None:
    assert len(ours) == len(reference)
    for mine, theirs in zip(ours, reference):
        assert mine.shape == theirs.shape
        assert mine.dtype == torch.float32
        assert (mine - theirs).abs().max().item() <= 1e-5


def load_into_fomo_nn(plan: NetworkPlan, reference_state: dict, in_channels: int = 1) -> nn.Module:
    """A fomo_nn model of `plan` with the reference network's "encoder.*" weights, loaded strictly."""
    model = ClassificationNet(plan, in_channels, 2, fusion="none")
    report = load_encoder_weights(model, reference_state)
    assert not report["missing"] and not report["unexpected"] and not report["shape_mismatch"]
    return model.eval()


def dna_reference(plan: NetworkPlan, in_channels: int) -> nn.Module:
    from dynamic_network_architectures.architectures.unet import PlainConvUNet, ResidualEncoderUNet

    common = dict(input_channels=in_channels, n_stages=plan.num_stages, features_per_stage=plan.features_per_stage,
                  conv_op=nn.Conv3d, kernel_sizes=plan.kernel_sizes, strides=plan.strides, num_classes=2,
                  n_conv_per_stage_decoder=plan.n_conv_per_stage_decoder, conv_bias=True, norm_op=nn.InstanceNorm3d,
                  norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})
    if plan.encoder == "residual":
        return ResidualEncoderUNet(n_blocks_per_stage=plan.n_conv_per_stage, **common)
    return PlainConvUNet(n_conv_per_stage=plan.n_conv_per_stage, **common)


@pytest.mark.parametrize("encoder", ["plain_conv", "residual"])
def test_dna_families_equal_dna_unets(encoder):
    plan = dataclasses.replace(tiny("resenc_l"), encoder=encoder)
    torch.manual_seed(0)
    reference = dna_reference(plan, 2).eval()
    randomize(reference, 1)
    model = load_into_fomo_nn(plan, reference.state_dict(), in_channels=2)
    x = torch.randn(1, 2, 64, 64, 64)
    with torch.no_grad():
        assert_same_features(model.encoder(x), reference.encoder(x))


def test_residual_unet_encoder_equals_asparagus_resenc_unet_b():
    from gardening_tools.modules.networks.resunet import ResidualEncoderUNet

    plan = tiny("resenc_b")
    # asparagus/modules/networks/resenc_unet.py resenc_unet_b, with tiny features
    reference = ResidualEncoderUNet(dimensions="3D", input_channels=1, output_channels=1,
                                    features_per_stage=tuple(plan.features_per_stage), stride=2, kernel_size=3,
                                    n_blocks_per_stage=(1, 3, 4, 6, 6, 6), n_conv_per_stage_decoder=(1, 1, 1, 1, 1),
                                    deep_supervision=False, use_skip_connections=True).eval()
    randomize(reference, 2)
    model = load_into_fomo_nn(plan, reference.state_dict())
    x = torch.randn(2, 1, 64, 64, 64)
    with torch.no_grad():
        assert_same_features(model.encoder(x), reference.encoder(x))


def test_maxpool_unet_equals_gardening_tools_unet_b():
    from gardening_tools.modules.networks.unet import UNet

    plan = tiny("unet_b")
    reference = UNet(input_channels=1, output_channels=1, dimensions="3D",
                     starting_filters=plan.features_per_stage[0]).eval()  # asparagus unet_b with tiny filters
    randomize(reference, 3)
    model = load_into_fomo_nn(plan, reference.state_dict())
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert_same_features(model.encoder(x), reference.encoder(x))


def test_maxpool_unet_equals_the_fomo25_baseline_encoder_through_yucca_keys():
    plan = tiny("unet_b")
    reference = BaselineUNet(1, plan.features_per_stage[0]).eval()
    randomize(reference, 4)
    state = reference.state_dict()
    assert "encoder.in_conv.conv1.norm.weight" in state and not any("norm_op" in k for k in state)
    target = build_encoder(plan, 1)
    converted = yucca_keys_to_family({k[len("encoder."):]: v for k, v in state.items() if k.startswith("encoder.")},
                                     target)
    assert converted["in_conv.conv1.all_modules.2.weight"] is converted["in_conv.conv1.norm_op.weight"]
    model = load_into_fomo_nn(plan, {"encoder." + k: v for k, v in converted.items()})
    x = torch.randn(2, 1, 32, 32, 32)
    with torch.no_grad():
        assert_same_features(model.encoder(x), reference.encoder(x))


@pytest.mark.parametrize("preset", ["resenc_l", "resenc_b", "unet_b"])
def test_every_model_builds_on_every_family(preset):
    plan = tiny(preset)
    n = edge(plan)
    torch.manual_seed(0)
    x2, x1 = torch.randn(2, 2, n, n, n), torch.randn(2, 1, n, n, n)
    assert SegmentationNet(plan, 2, 3, fusion="stem_expansion")(x2).shape == (2, 3, n, n, n)
    assert SegmentationNet(plan, 2, 3, fusion="shared_encoder")(x2).shape == (2, 3, n, n, n)
    assert ClassificationNet(plan, 2, 4, fusion="shared_encoder")(x2).shape == (2, 4)
    assert RegressionNet(plan, 2, fusion="stem_expansion")(x2).shape == (2, 1)
    assert MAENet(plan, 1)(x1).shape == x1.shape
    assert HybridNet(plan, 1)(x1)["projection"].shape == (2, 128)
    assert EmbeddingNet(plan, 1, projection_dim=16)(x1).shape == (2, 16)
    out = VAEHybridNet(plan, subject_channels=4)(x1)
    assert out["reconstruction"].shape == x1.shape and out["subject_mu"].shape[1] == 4


def test_stage_of_key_covers_every_stage_and_only_the_stem_is_outside():
    for preset in ("resenc_l", "resenc_b", "unet_b"):
        plan = tiny(preset)
        family = network_family(plan.encoder)
        keys = list(build_encoder(plan, 1).state_dict())
        stages = {key: family.stage_of_key(key) for key in keys}
        assert {s for s in stages.values() if s is not None} == set(range(plan.num_stages))
        outside = sorted({key.split(".")[0] for key, stage in stages.items() if stage is None})
        assert outside == ([] if preset == "unet_b" else ["stem"])


def test_memory_estimate_is_dna_count_for_plain_conv_and_close_for_resenc():
    for patch in ((96, 96, 96), (48, 56, 40)):
        plan = network_preset("resenc_l")
        if patch == (48, 56, 40):  # a 4-stage net, as the sample corpus plans
            plan = dataclasses.replace(plan, features_per_stage=[32, 64, 128, 256], kernel_sizes=[[3, 3, 3]] * 4,
                                       strides=[[1, 1, 1]] + [[2, 2, 2]] * 3, n_conv_per_stage=[1, 3, 4, 6],
                                       n_conv_per_stage_decoder=[1] * 3)
        plain = dataclasses.replace(plan, encoder="plain_conv", n_conv_per_stage=[2] * plan.num_stages)
        with torch.device("meta"):
            dna_plain = dna_reference(plain, 1).compute_conv_feature_map_size(patch)
            dna_residual = dna_reference(plan, 1).compute_conv_feature_map_size(patch)
        assert estimate_feature_map_elements(plain, patch, 2) == int(dna_plain)
        assert abs(estimate_feature_map_elements(plan, patch, 2) / int(dna_residual) - 1) < 0.03
    # the same topology in gardening-tools' ResEnc costs what DNA's ResEnc costs; the max-pool U-Net like plain convs
    assert estimate_feature_map_elements(network_preset("resenc_b"), (96,) * 3, 2) == \
        estimate_feature_map_elements(network_preset("resenc_l"), (96,) * 3, 2)
    unet = network_preset("unet_b")
    assert estimate_feature_map_elements(unet, (64,) * 3, 2) == \
        estimate_feature_map_elements(dataclasses.replace(unet, encoder="plain_conv"), (64,) * 3, 2)


def test_plans_a_family_cannot_build_are_refused_with_the_reason():
    resenc = network_preset("resenc_l")
    with pytest.raises(ValueError, match="maxpool_unet: the max-pool U-Net encoder has 5 stages"):
        build_encoder(dataclasses.replace(resenc, encoder="maxpool_unet"), 1)
    anisotropic = dataclasses.replace(network_preset("resenc_b"), strides=[[1, 1, 1]] + [[2, 2, 1]] * 5)
    with pytest.raises(ValueError, match="residual_unet_encoder: strides must be one isotropic value"):
        build_encoder(anisotropic, 1)
    with pytest.raises(ValueError, match="did you mean 'residual'"):
        build_encoder(dataclasses.replace(resenc, encoder="residul"), 1)
    with pytest.raises(ValueError, match="features_per_stage must double"):
        build_encoder(dataclasses.replace(network_preset("unet_b"), features_per_stage=[32, 64, 128, 256, 320]), 1)


def test_registry_lists_every_family_and_the_planner_only_the_plannable():
    assert set(FAMILY_NAMES) == {"plain_conv", "residual", "maxpool_unet", "residual_unet_encoder"}
    assert PLANNABLE_FAMILIES == ("plain_conv", "residual")
    for name in FAMILY_NAMES:
        assert network_family(name).name == name
