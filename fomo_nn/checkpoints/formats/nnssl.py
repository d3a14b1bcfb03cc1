"""nnssl checkpoints (MIC-DKFZ/nnssl @ 7044864; the OpenMind and SSL3D models): `checkpoint_final.pth`.

Layout, as `AbstractTrainer.save_checkpoint` writes it: `network_weights` = the state dict of a
dynamic-network-architectures U-Net (every encoder key also under `decoder.encoder.*`, since DNA's
decoder holds the encoder), `nnssl_adaptation_plan` = `AdaptationPlan.serialize()`:
`architecture_plans` {arch_class_name, arch_kwargs, arch_kwargs_requiring_import}, `pretrain_plan`
(an nnssl Plan whose `configurations.<name>` hold spacing, patch_size, normalization_schemes,
use_mask_for_norm), `pretrain_num_input_channels`, `recommended_downstream_patchsize`, `key_to_encoder`,
`key_to_stem`, `keys_to_in_proj`, `key_to_lpe`; plus optimizer, logging, init_args, trainer_name.

CNN architectures map onto fomo_nn's families with identical keys: `ResEncL` (nnssl's
`get_res_enc_l`: ResidualEncoderUNet 32-64-128-256-320-320, blocks 1-3-4-6-6-6, decoder 1 conv per stage)
and `ResidualEncoderUNet` -> "residual" (DNA ResidualEncoder: its stem `encoder.stem.*`, then
`encoder.stages.*`); `PlainConvUNet` -> "plain_conv" (DNA PlainConvEncoder, the stem is stage 0).
fomo_nn builds those encoders with Conv3d + affine InstanceNorm3d (eps 1e-5) + LeakyReLU(0.01) + conv
bias, so arch_kwargs asking for anything else are refused. Primus (transformer) checkpoints are refused:
fomo_nn has no transformer family yet.

Writing (`nnssl_checkpoint`, `adaptation_plan_of`): fomo_nn plain_conv/residual encoders as nnssl lays out a
checkpoint, loadable the way nnU-Net master's PretrainedTrainer.load_pretrained_weights does
(MIC-DKFZ/nnUNet @ 0e49508: build `cls(input_channels, num_classes, **arch_kwargs)` after locating the
classes named in arch_kwargs_requiring_import, take the keys under key_to_encoder / key_to_stem, load each
submodule strictly).
"""
from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import torch

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.record import CheckpointRecord, ExpectedPreprocessing, encoder_part, stem_channels
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.weights import strip_wrapper_prefixes
from fomo_nn.plans.records import NetworkPlan, NormalizationPlan

NAME = "nnssl"
WEIGHTS = "network_weights"
PLAN = "nnssl_adaptation_plan"
RES_ENC_L = dict(encoder="residual", features_per_stage=[32, 64, 128, 256, 320, 320],
                 kernel_sizes=[[3, 3, 3]] * 6, strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
                 n_conv_per_stage=[1, 3, 4, 6, 6, 6], n_conv_per_stage_decoder=[1] * 5)
FAMILY_OF_CLASS = {"ResidualEncoderUNet": "residual", "PlainConvUNet": "plain_conv"}
# what fomo_nn's plain_conv/residual families build (fomo_nn.networks.encoders), in DNA's kwarg names
FIXED_OPS = {"conv_op": ("Conv3d",), "norm_op": ("InstanceNorm3d",), "nonlin": ("LeakyReLU",),
             "dropout_op": (None,)}
IGNORED_KWARGS = {"n_stages", "deep_supervision", "dropout_op_kwargs", "num_classes", "input_channels"}
DEFAULT_RESIDUAL_KWARGS = {"block": (None, "BasicBlockD"), "bottleneck_channels": (None,), "stem_channels": (None,)}
# nnssl normalization scheme (+ use_mask_for_norm) -> fomo_nn scheme (fomo_nn.preprocessing.normalization)
ZSCORE = "ZScoreNormalization"


def detect(contents: dict, path: Path) -> bool:
    return isinstance(contents.get(WEIGHTS), dict) and isinstance(contents.get(PLAN), dict)


def _short(name) -> str | None:
    """'torch.nn.modules.conv.Conv3d' or a class -> 'Conv3d'; None stays None."""
    if name is None:
        return None
    return getattr(name, "__name__", None) or str(name).rsplit(".", 1)[-1]


def network_of(architecture: dict, channels: int, path: Path) -> NetworkPlan:
    """The fomo_nn NetworkPlan of an nnssl `architecture_plans` entry (refusing what fomo_nn cannot build)."""
    class_name = _short(architecture.get("arch_class_name")) or ""
    if class_name.startswith("Primus") or "Eva" in class_name:
        raise BadInputError(path, f"nnssl {class_name} (transformer) checkpoints are not supported yet: fomo_nn "
                                  "builds CNN encoders only (ResEncL, ResidualEncoderUNet, PlainConvUNet)")
    if class_name == "ResEncL":
        return NetworkPlan(**RES_ENC_L, input_channels=channels)
    if class_name not in FAMILY_OF_CLASS:
        raise BadInputError(path, f"nnssl architecture {class_name!r} is not supported (fomo_nn reads ResEncL, "
                                  f"ResidualEncoderUNet and PlainConvUNet)")
    kwargs = architecture.get("arch_kwargs")
    if not isinstance(kwargs, dict):
        raise BadInputError(path, f"nnssl {class_name} checkpoint has no arch_kwargs to rebuild it from")
    problems = []
    for key, allowed in FIXED_OPS.items():
        if _short(kwargs.get(key)) not in allowed:
            problems.append(f"{key} {kwargs.get(key)!r} (fomo_nn builds {allowed[0]})")
    norm = kwargs.get("norm_op_kwargs") or {}
    if not norm.get("affine", False) or not math.isclose(float(norm.get("eps", 1e-5)), 1e-5):
        problems.append(f"norm_op_kwargs {norm} (fomo_nn builds affine InstanceNorm3d, eps 1e-5)")
    slope = float((kwargs.get("nonlin_kwargs") or {}).get("negative_slope", 1e-2))
    if not math.isclose(slope, 1e-2):
        problems.append(f"LeakyReLU negative_slope {slope} (fomo_nn builds 0.01)")
    if not kwargs.get("conv_bias", False):
        problems.append("conv_bias False (fomo_nn builds convolutions with bias)")
    if class_name == "ResidualEncoderUNet":
        problems += [f"{key} {kwargs[key]!r}" for key, allowed in DEFAULT_RESIDUAL_KWARGS.items()
                     if key in kwargs and _short(kwargs[key]) not in allowed]
    if problems:
        raise BadInputError(path, f"nnssl {class_name} uses what fomo_nn's encoders do not build: {'; '.join(problems)}")
    blocks = kwargs.get("n_blocks_per_stage", kwargs.get("n_conv_per_stage"))
    features = list(kwargs.get("features_per_stage") or [])
    stages = len(features)
    try:
        decoder = kwargs.get("n_conv_per_stage_decoder", 1)
        decoder = [int(decoder)] * (stages - 1) if isinstance(decoder, (int, float)) else [int(d) for d in decoder]
        blocks = [int(blocks)] * stages if isinstance(blocks, (int, float)) else [int(b) for b in blocks]
        kernels = [_per_axis(k) for k in kwargs["kernel_sizes"]]
        strides = [_per_axis(s) for s in kwargs["strides"]]
    except (KeyError, TypeError, ValueError) as error:
        raise BadInputError(path, f"nnssl arch_kwargs are incomplete or malformed ({type(error).__name__}: {error})") \
            from None
    return NetworkPlan(encoder=FAMILY_OF_CLASS[class_name], features_per_stage=[int(f) for f in features],
                       kernel_sizes=kernels, strides=strides, n_conv_per_stage=blocks, n_conv_per_stage_decoder=decoder,
                       input_channels=channels)


def _per_axis(value) -> list[int]:
    return [int(value)] * 3 if isinstance(value, (int, float)) else [int(v) for v in value]


def normalization_of(configuration: dict, channels: int, path: Path) -> list[NormalizationPlan]:
    """nnssl's per-channel scheme as fomo_nn plans express it (nnssl @ 7044864 normalization_schemes.py)."""
    schemes = list(configuration.get("normalization_schemes") or [ZSCORE])
    masks = list(configuration.get("use_mask_for_norm") or [False])
    plans = []
    for channel in range(channels):
        scheme = schemes[min(channel, len(schemes) - 1)]
        masked = bool(masks[min(channel, len(masks) - 1)])
        if scheme != ZSCORE:
            raise BadInputError(path, f"nnssl normalization {scheme!r} has no fomo_nn equivalent (fomo_nn expresses "
                                      f"{ZSCORE} only)")
        # masked: z-score inside the nonzero mask, no clip (background stays 0) = zscore_foreground over [0, 100]
        plans.append(NormalizationPlan(scheme="zscore_foreground" if masked else "zscore_volume",
                                       clip_percentiles=[0.0, 100.0]))
    return plans


def _untransposed(values, plan: dict):
    """nnssl stores spacing/patch in its transposed axis order; back to the image's order."""
    backward = plan.get("transpose_backward") or [0, 1, 2]
    if values is None or len(values) != 3:
        return values
    return [values[int(backward[i])] for i in range(3)]


def convert(contents: dict, path: Path) -> CheckpointRecord:
    plan = contents[PLAN]
    try:
        architecture = plan["architecture_plans"]
        channels = int(plan["pretrain_num_input_channels"])
        key_to_encoder, key_to_stem = str(plan["key_to_encoder"]), str(plan["key_to_stem"])
        configurations = plan["pretrain_plan"]["configurations"]
        config_name, configuration = next(iter(configurations.items()))
    except (KeyError, TypeError, ValueError, StopIteration) as error:
        raise BadInputError(path, f"nnssl_adaptation_plan is incomplete ({type(error).__name__}: {error})") from None
    network = network_of(architecture, channels, path)  # refuses Primus by name first
    if plan.get("key_to_lpe"):
        raise BadInputError(path, f"nnssl checkpoint with a learned positional embedding ({plan['key_to_lpe']}): a "
                                  "transformer (Primus); such checkpoints are not supported yet")
    weights = strip_wrapper_prefixes(contents[WEIGHTS])
    if not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise BadInputError(path, f"{WEIGHTS} is not a state dict of tensors")
    encoder = encoder_part(weights)  # "decoder.encoder.*" (the same tensors again) is not kept
    outside = [k for k in encoder if not (k.startswith(key_to_encoder) or k.startswith(key_to_stem))]
    if not encoder or outside:
        raise BadInputError(path, f"encoder weights do not sit under key_to_encoder {key_to_encoder!r} / key_to_stem "
                                  f"{key_to_stem!r} (found {len(encoder)} 'encoder.*' keys, outside: {outside[:5]})")
    found_channels = stem_channels(encoder, network)
    if found_channels != channels:
        raise BadInputError(path, f"pretrain_num_input_channels is {channels} but the stem takes {found_channels}")
    pretrain_plan = plan["pretrain_plan"]
    spacing = configuration.get("spacing")
    patch = plan.get("recommended_downstream_patchsize") or configuration.get("patch_size")
    reader = str(pretrain_plan.get("image_reader_writer", ""))
    preprocessing = ExpectedPreprocessing(
        channels=channels,
        spacing=[float(s) for s in _untransposed(spacing, pretrain_plan)] if spacing else None,
        patch_size=[int(p) for p in _untransposed(patch, pretrain_plan)] if patch else None,
        normalization=normalization_of(configuration, channels, path),
        orientation="RAS" if "Reorient" in reader else f"as read by nnssl's {reader or 'reader'}")
    provenance = {"framework": "nnssl", "trainer": contents.get("trainer_name"),
                  "epoch": contents.get("current_epoch"), "architecture": _short(architecture.get("arch_class_name")),
                  "source_dataset": pretrain_plan.get("dataset_name"), "configuration": config_name,
                  "pretraining_patch_size": configuration.get("patch_size"), "image_reader_writer": reader or None,
                  "citations": contents.get("citations") if isinstance(contents.get("citations"), list) else None}
    return CheckpointRecord(path=path, format=NAME, encoder=encoder, network=network, preprocessing=preprocessing,
                            provenance=provenance)


FORMAT = CheckpointFormat(
    name=NAME,
    description="nnssl checkpoint_final.pth (network_weights + nnssl_adaptation_plan; OpenMind/SSL3D ResEnc-L)",
    detect=detect, convert=convert)


# ---------------------------------------------------------------- writing (fomo_nn_export_encoder --format nnssl)
# DNA class per family, in the short form nnssl's AdaptationPlan uses; nnU-Net master's PretrainedTrainer finds it
# (get_network_from_plans: pydoc.locate, then a search of dynamic_network_architectures.architectures)
CLASS_OF_FAMILY = {"residual": "ResidualEncoderUNet", "plain_conv": "PlainConvUNet"}
# what DNA's ResidualEncoderUNet / PlainConvUNet set as key_to_encoder, key_to_stem, keys_to_in_proj
# (dynamic-network-architectures 0.4.x architectures/unet.py)
KEYS_OF_FAMILY = {
    "residual": ("encoder.stages", "encoder.stem", ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"]),
    "plain_conv": ("encoder.stages", "encoder.stages.0",
                   ["encoder.stages.0.0.convs.0.all_modules.0", "encoder.stages.0.0.convs.0.conv"]),
}
IMPORTED_KWARGS = ["conv_op", "norm_op", "dropout_op", "nonlin"]
# fomo_nn scheme -> (nnssl scheme, use_mask_for_norm); zscore_foreground is nnssl's masked z-score plus the
# percentile clip fomo_nn adds (exact at clip_percentiles [0, 100])
SCHEME_TO_NNSSL = {"zscore_volume": (ZSCORE, False), "zscore_foreground": (ZSCORE, True)}


def arch_kwargs_of(network: NetworkPlan) -> dict:
    """DNA constructor kwargs (serialized as nnssl/nnU-Net plans do) that rebuild fomo_nn's encoder exactly."""
    blocks_key = "n_blocks_per_stage" if network.encoder == "residual" else "n_conv_per_stage"
    return {"n_stages": network.num_stages, "features_per_stage": [int(f) for f in network.features_per_stage],
            "conv_op": "torch.nn.modules.conv.Conv3d", "kernel_sizes": [list(map(int, k)) for k in network.kernel_sizes],
            "strides": [list(map(int, s)) for s in network.strides],
            blocks_key: [int(b) for b in network.n_conv_per_stage],
            "n_conv_per_stage_decoder": [int(n) for n in network.n_conv_per_stage_decoder], "conv_bias": True,
            "norm_op": "torch.nn.modules.instancenorm.InstanceNorm3d", "norm_op_kwargs": {"eps": 1e-5, "affine": True},
            "dropout_op": None, "dropout_op_kwargs": None, "nonlin": "torch.nn.LeakyReLU",
            "nonlin_kwargs": {"negative_slope": 0.01, "inplace": True}}


def adaptation_plan_of(record: CheckpointRecord) -> dict:
    """The `nnssl_adaptation_plan` (AdaptationPlan.serialize() layout) describing a record's encoder."""
    network, pre = record.network, record.preprocessing
    if network.encoder not in CLASS_OF_FAMILY:
        raise BadInputError(record.path, f"a {network.encoder!r} encoder has no nnssl / DNA U-Net equivalent (nnssl "
                                         f"export covers {', '.join(CLASS_OF_FAMILY)})")
    if pre.spacing is None or pre.patch_size is None or not pre.normalization:
        raise BadInputError(record.path, "records no spacing, patch or normalization: an nnssl adaptation plan needs all")
    unknown = sorted({n.scheme for n in pre.normalization} - set(SCHEME_TO_NNSSL))
    if unknown:
        raise BadInputError(record.path, f"normalization {unknown} has no nnssl scheme (nnssl expresses "
                                         f"{', '.join(SCHEME_TO_NNSSL)} as {ZSCORE})")
    key_to_encoder, key_to_stem, in_proj = KEYS_OF_FAMILY[network.encoder]
    configuration = {
        "data_identifier": "fomo_nn", "preprocessor_name": "DefaultPreprocessor", "spacing_style": "median",
        "normalization_schemes": [SCHEME_TO_NNSSL[n.scheme][0] for n in pre.normalization],
        "use_mask_for_norm": [SCHEME_TO_NNSSL[n.scheme][1] for n in pre.normalization],
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
        "resampling_fn_mask": "resample_data_or_seg_to_shape",
        "resampling_fn_mask_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
        "spacing": [float(s) for s in pre.spacing], "patch_size": [int(p) for p in pre.patch_size]}
    source = record.plans.dataset_name if record.plans else str(record.provenance.get("source_dataset") or "unknown")
    return {
        "architecture_plans": {"arch_class_name": CLASS_OF_FAMILY[network.encoder], "arch_kwargs": arch_kwargs_of(network),
                               "arch_kwargs_requiring_import": list(IMPORTED_KWARGS)},
        "pretrain_plan": {"dataset_name": source, "plans_name": "fomo_nnPlans",
                          "original_median_spacing_after_transp": [float(s) for s in pre.spacing],
                          "image_reader_writer": record.provenance.get("image_reader_writer") or "NibabelIOWithReorient",
                          "transpose_forward": [0, 1, 2],
                          "transpose_backward": [0, 1, 2], "configurations": {"fomo_nn": configuration},
                          "experiment_planner_used": "fomo_nn"},
        "pretrain_num_input_channels": int(pre.channels),
        "recommended_downstream_patchsize": [int(p) for p in pre.patch_size],
        "key_to_encoder": key_to_encoder, "key_to_stem": key_to_stem, "keys_to_in_proj": list(in_proj),
        "key_to_lpe": None}


def nnssl_checkpoint(record: CheckpointRecord) -> dict:
    """A checkpoint_final.pth dict as nnssl lays it out (encoder weights only; loadable with weights_only=True).

    `network_weights` holds the DNA U-Net's `encoder.*` keys (what nnU-Net's PretrainedTrainer loads: the
    keys under key_to_encoder and key_to_stem); the decoder is not part of an encoder export. fomo_nn's own
    preprocessing (exact normalization clip percentiles, provenance) rides along under `fomo_nn`.
    """
    plan = adaptation_plan_of(record)
    return {WEIGHTS: {k: v.detach().clone().contiguous() for k, v in record.encoder.items()}, PLAN: plan,
            "trainer_name": (record.provenance.get("trainer") if record.provenance.get("framework") == NAME
                             else f"fomo_nn:{record.provenance.get('method') or record.format}"),
            "current_epoch": record.provenance.get("epoch"),
            "fomo_nn": {"format": record.format, "source_checkpoint": str(record.path),
                        "normalization": [dataclasses.asdict(n) for n in record.preprocessing.normalization],
                        "provenance": _jsonable(record.provenance)}}


def _jsonable(value):
    try:
        json.dumps(value)
        return value
    except TypeError:
        return str(value)
