"""A fomo_nn SegmentationNet as the dynamic-network-architectures U-Net nnU-Net v2 builds from plans.json.

Followed: nnunetv2 2.8.1 (PyPI; `utilities/get_network_from_plans.py`, `nnUNetTrainer.build_network_architecture`,
`inference/predict_from_raw_data.py` initialize_from_trained_model_folder) and dynamic-network-architectures
0.4.4 (`architectures/unet.py`). nnU-Net builds `cls(input_channels=C, num_classes=K, **arch_kwargs)` after
`pydoc.locate` of the class name and of the `_kw_requires_import` entries, with deep supervision off, and
loads `network_weights` strictly. fomo_nn's SegmentationNet is the same encoder class plus DNA's UNetDecoder,
except that its decoder does not register the encoder (`decoder_spec`), so DNA's `decoder.encoder.*` aliases
are filled from `encoder.*`. Both see arrays in one axis order (the exported plans transpose nnU-Net's
reader order back to RAS, see nnunet_plans), so no kernel is permuted and the weights are copied bit for bit.
"""
from __future__ import annotations

import pydoc
from dataclasses import dataclass

import torch
from torch import nn

from fomo_nn.inference.case_prediction import evaluation_mode
from fomo_nn.networks.finetuning import SegmentationNet

# fomo_nn encoder family -> (DNA U-Net class nnU-Net names in plans, the arch_kwargs key of convs/blocks per stage)
NNUNET_ARCHITECTURES = {
    "plain_conv": ("dynamic_network_architectures.architectures.unet.PlainConvUNet", "n_conv_per_stage"),
    "residual": ("dynamic_network_architectures.architectures.unet.ResidualEncoderUNet", "n_blocks_per_stage"),
}
REQUIRES_IMPORT = ["conv_op", "norm_op", "dropout_op", "nonlin"]
DECODER_ENCODER_PREFIX = "decoder.encoder."  # DNA's UNetDecoder holds the encoder: every encoder key twice
FORWARD_TOLERANCE = 1e-5  # max |difference| / max(1, max |logit|) of the self-check


class NotExportable(ValueError):
    """The model has no nnU-Net counterpart (the message says why); callers name the model folder."""


@dataclass(frozen=True)
class NnUNetArchitecture:
    """plans.json `configurations.<name>.architecture`."""

    network_class_name: str
    arch_kwargs: dict
    kw_requires_import: list[str]

    def to_json(self) -> dict:
        return {"network_class_name": self.network_class_name, "arch_kwargs": self.arch_kwargs,
                "_kw_requires_import": list(self.kw_requires_import)}


def dotted_name(obj) -> str | None:
    """`pydoc.locate`-able name of a class (None stays None), as nnU-Net's planners write them."""
    return None if obj is None else f"{obj.__module__}.{obj.__qualname__}"


def nnunet_architecture(network: nn.Module) -> NnUNetArchitecture:
    """The architecture entry nnU-Net needs to rebuild `network`; NotExportable when it has none."""
    if not isinstance(network, SegmentationNet):
        raise NotExportable(f"only segmentation networks can become nnU-Net models, this is a {type(network).__name__}")
    if network.runs_per_sequence:
        raise NotExportable("fusion 'shared_encoder' runs one encoder per sequence and fuses the features; nnU-Net's "
                            "U-Nets have one multi-channel stem (retrain with fusion 'stem_expansion' to export)")
    plan = network.network_plan
    if plan.encoder not in NNUNET_ARCHITECTURES:
        raise NotExportable(f"encoder family {plan.encoder!r} has no nnU-Net U-Net (exportable: "
                            f"{', '.join(NNUNET_ARCHITECTURES)})")
    class_name, per_stage_key = NNUNET_ARCHITECTURES[plan.encoder]
    encoder = network.encoder
    arch_kwargs = {
        "n_stages": plan.num_stages,
        "features_per_stage": [int(f) for f in encoder.output_channels],
        "conv_op": dotted_name(encoder.conv_op),
        "kernel_sizes": [[int(k) for k in kernel] for kernel in encoder.kernel_sizes],
        "strides": [[int(s) for s in stride] for stride in encoder.strides],
        per_stage_key: [int(n) for n in plan.n_conv_per_stage],
        "n_conv_per_stage_decoder": [int(n) for n in plan.n_conv_per_stage_decoder],
        "conv_bias": bool(encoder.conv_bias),
        "norm_op": dotted_name(encoder.norm_op),
        "norm_op_kwargs": dict(encoder.norm_op_kwargs or {}),
        "dropout_op": dotted_name(encoder.dropout_op),
        "dropout_op_kwargs": encoder.dropout_op_kwargs,
        "nonlin": dotted_name(encoder.nonlin),
        "nonlin_kwargs": dict(encoder.nonlin_kwargs or {}),
    }
    return NnUNetArchitecture(class_name, arch_kwargs, list(REQUIRES_IMPORT))


def build_nnunet_network(architecture: NnUNetArchitecture, input_channels: int, num_classes: int) -> nn.Module:
    """What nnU-Net's get_network_from_plans builds for inference (deep supervision off)."""
    kwargs = dict(architecture.arch_kwargs)
    for key in architecture.kw_requires_import:
        if kwargs[key] is not None:
            kwargs[key] = pydoc.locate(kwargs[key])
    network_class = pydoc.locate(architecture.network_class_name)
    if network_class is None:
        raise NotExportable(f"cannot import {architecture.network_class_name} (is dynamic-network-architectures "
                            "installed?)")
    return network_class(input_channels=input_channels, num_classes=num_classes, deep_supervision=False, **kwargs)


def nnunet_state_dict(network: SegmentationNet, target: nn.Module) -> dict[str, torch.Tensor]:
    """fomo_nn weights under the target's keys, loaded strictly into `target` (so shapes are proven equal)."""
    source = {k: v.detach().cpu() for k, v in network.state_dict().items()}
    mapped, missing = {}, []
    for key in target.state_dict():
        origin = "encoder." + key[len(DECODER_ENCODER_PREFIX):] if key.startswith(DECODER_ENCODER_PREFIX) else key
        if origin in source:
            mapped[key] = source[origin].clone()
        else:
            missing.append(key)
    used = {("encoder." + k[len(DECODER_ENCODER_PREFIX):]) if k.startswith(DECODER_ENCODER_PREFIX) else k
            for k in mapped}
    unexpected = sorted(set(source) - used)
    if missing or unexpected:
        raise NotExportable(f"the weights do not map onto {type(target).__name__}: {len(missing)} missing "
                            f"({', '.join(missing[:5])}), {len(unexpected)} without a place ({', '.join(unexpected[:5])})")
    try:
        target.load_state_dict(mapped, strict=True)
    except RuntimeError as error:
        raise NotExportable(f"the weights do not fit {type(target).__name__}: {error}") from None
    return target.state_dict()


def check_same_outputs(network: SegmentationNet, target: nn.Module, spatial_shape, seed: int = 0) -> float:
    """Max |logit difference| (relative to max(1, max |logit|)) of the two networks on one random input;
    NotExportable above FORWARD_TOLERANCE. A small input is enough: every weight takes part at any size."""
    generator = torch.Generator().manual_seed(seed)
    x = torch.randn(1, network.in_channels, *[int(s) for s in spatial_shape], generator=generator)
    target.eval()
    with torch.no_grad(), evaluation_mode(network):
        ours = network.cpu()(x)
        theirs = target(x)
    difference = float((ours - theirs).abs().max()) / max(1.0, float(ours.abs().max()))
    if not difference <= FORWARD_TOLERANCE:
        raise NotExportable(f"the nnU-Net network's logits differ from fomo_nn's by {difference:.3g} (relative) on "
                            f"a {tuple(x.shape)} input")
    return difference


def check_shape(plan_strides, patch_size) -> list[int]:
    """The self-check's input: twice the network's total downsampling per axis, at most the patch."""
    total = [1, 1, 1]
    for stride in plan_strides:
        total = [t * int(s) for t, s in zip(total, stride)]
    return [min(2 * t, int(p)) if int(p) >= t else t for t, p in zip(total, patch_size)]
