"""nnssl checkpoints in and out, proven by forward equality with the reference networks.

nnssl does not install from the registry, so its checkpoint is written here exactly as its code writes it
(MIC-DKFZ/nnssl @ 7044864: AbstractTrainer.save_checkpoint's keys; AdaptationPlan / ArchitecturePlans /
DynamicArchitecturePlans.serialize for `nnssl_adaptation_plan`; get_res_enc_l for ResEnc-L), from the
dynamic-network-architectures network nnssl builds (`cls(input_channels=..., num_classes=..., **arch_kwargs)`).
The export is loaded the way nnU-Net master loads nnssl checkpoints (MIC-DKFZ/nnUNet @ 0e49508:
PretrainedTrainer.build_network_architecture -> get_network_from_plans, and load_pretrained_weights' CNN
branch: weights_only=True, keys under key_to_encoder / key_to_stem, each submodule loaded strictly, a
single-channel stem repeated over the input channels and divided by their number).
"""
from __future__ import annotations

import json
import pydoc

import dynamic_network_architectures.architectures.unet as dna_unet
import numpy as np
import pytest
import torch
from builders import make_segmentation_dataset
from foundation_flow import check_finetuned_predicts_and_evaluates
from torch import nn

from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.cli.export_encoder import main as export_main
from fomo_nn.cli.plan_and_preprocess import main as plan_main
from fomo_nn.cli.train import main as train_main
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_encoder, load_encoder_weights
from fomo_nn.plans.records import load_plans

SMALL_RESENC = dict(n_stages=4, features_per_stage=[8, 16, 32, 32], conv_op=nn.Conv3d, kernel_sizes=[[3, 3, 3]] * 4,
                    strides=[[1, 1, 1], [2, 2, 2], [2, 2, 2], [2, 2, 2]], n_blocks_per_stage=[1, 2, 2, 2],
                    n_conv_per_stage_decoder=[1, 1, 1], conv_bias=True, norm_op=nn.InstanceNorm3d,
                    norm_op_kwargs={"eps": 1e-5, "affine": True}, dropout_op=None, dropout_op_kwargs=None,
                    nonlin=nn.LeakyReLU, nonlin_kwargs={"inplace": True})
SMALL_PLAIN = {**{k: v for k, v in SMALL_RESENC.items() if k != "n_blocks_per_stage"}, "n_conv_per_stage": [2, 2, 2, 2]}
RES_ENC_L = dict(n_stages=6, features_per_stage=[32, 64, 128, 256, 320, 320], conv_op=nn.Conv3d,
                 kernel_sizes=[[3, 3, 3] for _ in range(6)], strides=[[1, 1, 1]] + [[2, 2, 2]] * 5,
                 n_blocks_per_stage=[1, 3, 4, 6, 6, 6], n_conv_per_stage_decoder=[1, 1, 1, 1, 1], conv_bias=True,
                 norm_op=nn.InstanceNorm3d, norm_op_kwargs={"eps": 1e-5, "affine": True}, nonlin=nn.LeakyReLU,
                 nonlin_kwargs={"inplace": True})  # nnssl architecture_registry.get_res_enc_l
CLASSES = {"ResidualEncoderUNet": dna_unet.ResidualEncoderUNet, "PlainConvUNet": dna_unet.PlainConvUNet,
           "ResEncL": dna_unet.ResidualEncoderUNet}


class Holder(nn.Module):
    """fomo_nn's models hold the encoder at `encoder`: its keys are 'encoder.*'."""

    def __init__(self, encoder):
        super().__init__()
        self.encoder = encoder


def serialized_arch_kwargs(kwargs: dict) -> tuple[dict, list[str]]:
    """DynamicArchitecturePlans.serialize + get_kwargs_requiring_import (nnssl adaptation_plan.py @ 7044864)."""
    requiring = [k for k, v in kwargs.items() if isinstance(v, type) and issubclass(v, nn.Module) or isinstance(v, str)]
    return ({k: v.__module__ + "." + v.__name__ if isinstance(v, type) and issubclass(v, nn.Module) else v
             for k, v in kwargs.items()}, requiring)


def adaptation_plan(arch_class_name: str, kwargs: dict | None, channels: int, patch=(32, 32, 32)) -> dict:
    """AdaptationPlan.serialize() of a MAE pretraining on the onemmiso configuration (nnssl @ 7044864)."""
    arch_kwargs, requiring = serialized_arch_kwargs(kwargs) if kwargs else (None, None)
    stem = "encoder.stages.0" if arch_class_name == "PlainConvUNet" else "encoder.stem"
    in_proj = ([f"{stem}.0.convs.0.all_modules.0", f"{stem}.0.convs.0.conv"] if arch_class_name == "PlainConvUNet"
               else ["encoder.stem.convs.0.conv", "encoder.stem.convs.0.all_modules.0"])
    configuration = {"data_identifier": "nnsslPlans_onemmiso", "preprocessor_name": "DefaultPreprocessor",
                     "spacing_style": "onemmiso", "normalization_schemes": ["ZScoreNormalization"] * channels,
                     "use_mask_for_norm": [False] * channels, "resampling_fn_data": "resample_data_or_seg_to_shape",
                     "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, "force_separate_z": None},
                     "resampling_fn_mask": "resample_data_or_seg_to_shape",
                     "resampling_fn_mask_kwargs": {"is_seg": False, "order": 1, "order_z": 0, "force_separate_z": None},
                     "spacing": [1, 1, 1], "patch_size": list(patch)}
    return {"architecture_plans": {"arch_class_name": arch_class_name, "arch_kwargs": arch_kwargs,
                                   "arch_kwargs_requiring_import": requiring},
            "pretrain_plan": {"dataset_name": "Dataset745_OpenMind", "plans_name": "nnsslPlans",
                              "original_median_spacing_after_transp": [1, 1, 1],
                              "image_reader_writer": "NibabelReaderWriter", "transpose_forward": [0, 1, 2],
                              "transpose_backward": [0, 1, 2], "configurations": {"onemmiso": configuration},
                              "experiment_planner_used": "ExperimentPlanner"},
            "pretrain_num_input_channels": channels, "recommended_downstream_patchsize": list(patch),
            "key_to_encoder": "encoder.stages", "key_to_stem": stem, "keys_to_in_proj": in_proj, "key_to_lpe": None}


def nnssl_network(arch_class_name: str, kwargs: dict, channels: int, seed: int = 0) -> nn.Module:
    """The DNA network nnssl trains, with non-trivial weights (norm affines too) so equality is meaningful."""
    torch.manual_seed(seed)
    network = CLASSES[arch_class_name](input_channels=channels, num_classes=2, **kwargs)
    with torch.no_grad():
        for name, parameter in network.named_parameters():
            if "norm" in name:
                parameter.copy_(torch.randn_like(parameter) * 0.2 + (1.0 if name.endswith("weight") else 0.0))
    return network.eval()


def nnssl_checkpoint_file(path, channels: int = 1, arch_class_name: str = "ResidualEncoderUNet", kwargs=None):
    """checkpoint_final.pth as nnssl's AbstractTrainer.save_checkpoint writes it; returns (path, network)."""
    kwargs = kwargs if kwargs is not None else (SMALL_PLAIN if arch_class_name == "PlainConvUNet" else SMALL_RESENC)
    network = nnssl_network(arch_class_name, kwargs, channels)
    optimizer = torch.optim.SGD(network.parameters(), lr=1e-2, momentum=0.99, nesterov=True)
    plan = adaptation_plan(arch_class_name, None if arch_class_name == "ResEncL" else kwargs, channels)
    torch.save({"network_weights": network.state_dict(), "optimizer_state": optimizer.state_dict(),
                "grad_scaler_state": None, "logging": {"train_losses": [1.0, 0.5], "epoch_end_timestamps": [1.0, 2.0]},
                "_best_ema": None, "current_epoch": 1000,
                "init_args": {"plan": plan["pretrain_plan"], "configuration_name": "onemmiso", "fold": 0,
                              "pretrain_json": {"collection_name": "OpenMind"}, "device": torch.device("cpu")},
                "trainer_name": "BaseMAETrainer", "nnssl_adaptation_plan": plan}, path)
    return path, network


def fomo_nn_encoder(record, channels: int | None = None) -> nn.Module:
    holder = Holder(build_encoder(record.network, channels or record.preprocessing.channels))
    load_encoder_weights(holder, record.encoder)
    return holder.encoder.eval()


def max_difference(first: list[torch.Tensor], second: list[torch.Tensor]) -> float:
    assert [tuple(a.shape) for a in first] == [tuple(b.shape) for b in second]
    return max(float((a - b).abs().max()) for a, b in zip(first, second))


# ------------------------------------------------------------------ reading nnssl
@pytest.mark.parametrize("arch_class_name", ["ResidualEncoderUNet", "PlainConvUNet"])
def test_nnssl_checkpoint_gives_the_reference_encoder_features(arch_class_name, tmp_path):
    path, reference = nnssl_checkpoint_file(tmp_path / "checkpoint_final.pth", arch_class_name=arch_class_name)
    record = read_checkpoint(path)
    family = "residual" if arch_class_name == "ResidualEncoderUNet" else "plain_conv"
    assert record.format == "nnssl" and record.network.encoder == family
    assert record.network.features_per_stage == [8, 16, 32, 32] and record.network.n_conv_per_stage_decoder == [1, 1, 1]
    assert not any(k.startswith("encoder.decoder") for k in record.encoder)
    assert sorted(record.encoder) == sorted(k for k in reference.state_dict() if k.startswith("encoder."))
    assert record.preprocessing.spacing == [1.0, 1.0, 1.0] and record.preprocessing.patch_size == [32, 32, 32]
    assert [(n.scheme, n.clip_percentiles) for n in record.preprocessing.normalization] == [("zscore_volume", [0.0, 100.0])]
    assert record.provenance["trainer"] == "BaseMAETrainer" and record.provenance["epoch"] == 1000
    x = torch.randn(2, 1, 32, 32, 32, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert max_difference(reference.encoder(x), fomo_nn_encoder(record)(x)) <= 1e-5


def test_nnssl_res_enc_l_checkpoint_gives_the_reference_encoder_features(tmp_path):
    """The OpenMind models' architecture ("ResEncL", arch_kwargs None) at 64^3 (6 stages: 32^3 leaves 1 voxel)."""
    path, reference = nnssl_checkpoint_file(tmp_path / "checkpoint_final.pth", arch_class_name="ResEncL", kwargs=RES_ENC_L)
    record = read_checkpoint(path)
    assert record.network.features_per_stage == [32, 64, 128, 256, 320, 320]
    assert record.network.n_conv_per_stage == [1, 3, 4, 6, 6, 6] and record.network.encoder == "residual"
    x = torch.randn(1, 1, 64, 64, 64, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        assert max_difference(reference.encoder(x), fomo_nn_encoder(record)(x)) <= 1e-5


def test_transformer_and_foreign_op_checkpoints_are_refused_naming_the_file(tmp_path):
    path, _ = nnssl_checkpoint_file(tmp_path / "resenc.pth")
    state = torch.load(path, weights_only=True)
    state["nnssl_adaptation_plan"]["architecture_plans"] = {"arch_class_name": "PrimusM", "arch_kwargs": None,
                                                            "arch_kwargs_requiring_import": None}
    state["nnssl_adaptation_plan"]["key_to_lpe"] = "eva.pos_embed"
    torch.save(state, tmp_path / "primus.pth")
    with pytest.raises(BadInputError, match=r"PrimusM \(transformer\) checkpoints are not supported yet") as error:
        read_checkpoint(tmp_path / "primus.pth")
    assert str(tmp_path / "primus.pth") in str(error.value)
    state = torch.load(path, weights_only=True)
    state["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]["norm_op"] = "torch.nn.BatchNorm3d"
    torch.save(state, tmp_path / "batchnorm.pth")
    with pytest.raises(BadInputError, match="norm_op 'torch.nn.BatchNorm3d'"):
        read_checkpoint(tmp_path / "batchnorm.pth")
    state = torch.load(path, weights_only=True)
    state["nnssl_adaptation_plan"]["architecture_plans"]["arch_kwargs"]["features_per_stage"] = [8, 16, 32, 64]
    torch.save(state, tmp_path / "lying.pth")
    with pytest.raises(BadInputError, match="mis-shaped encoder weights"):
        read_checkpoint(tmp_path / "lying.pth")


# ------------------------------------------------------------------ writing nnssl: nnU-Net master loads it
def nnunet_network(plan: dict, channels: int) -> nn.Module:
    """PretrainedTrainer.build_network_architecture -> get_network_from_plans (nnU-Net @ 0e49508)."""
    architecture = plan["architecture_plans"]
    kwargs = dict(architecture["arch_kwargs"])
    for name in architecture["arch_kwargs_requiring_import"]:
        if kwargs[name] is not None:
            kwargs[name] = pydoc.locate(kwargs[name])
    cls = pydoc.locate(architecture["arch_class_name"]) or getattr(dna_unet, architecture["arch_class_name"])
    return cls(input_channels=channels, num_classes=3, deep_supervision=False, **kwargs)


def nnunet_load_pretrained_weights(network: nn.Module, path, downstream_channels: int) -> nn.Module:
    """PretrainedTrainer.load_pretrained_weights, CNN branch (stem not a state-dict key), nnU-Net @ 0e49508."""
    checkpoint = torch.load(path, weights_only=True)
    weights, plan = checkpoint["network_weights"], checkpoint["nnssl_adaptation_plan"]
    key_to_encoder, key_to_stem, in_proj = plan["key_to_encoder"], plan["key_to_stem"], plan["keys_to_in_proj"]
    assert key_to_stem not in weights  # the branch nnU-Net takes for ResEnc / PlainConv U-Nets
    encoder_weights = {k: v for k, v in weights.items() if k.startswith(key_to_encoder)}
    stem_weights = {k: v for k, v in weights.items() if k.startswith(key_to_stem)}
    if downstream_channels > plan["pretrain_num_input_channels"]:
        values = stem_weights[in_proj[0] + ".weight"].repeat(1, downstream_channels, 1, 1, 1) / downstream_channels
        for key in in_proj:
            stem_weights[key + ".weight"] = values

    def strip(key: str, prefix: str) -> str:
        key = key.replace(prefix, "")
        return key[1:] if key.startswith(".") else key

    network.get_submodule(network.key_to_encoder).load_state_dict({strip(k, key_to_encoder): v
                                                                    for k, v in encoder_weights.items()})
    network.get_submodule(network.key_to_stem).load_state_dict({strip(k, key_to_stem): v for k, v in stem_weights.items()})
    return network.eval()


@pytest.mark.parametrize("arch_class_name,channels", [("ResidualEncoderUNet", 1), ("ResidualEncoderUNet", 2),
                                                      ("PlainConvUNet", 1)])
def test_nnssl_export_loads_into_nnunet_master_and_gives_fomo_nn_features(arch_class_name, channels, tmp_path):
    source, _ = nnssl_checkpoint_file(tmp_path / "source.pth", arch_class_name=arch_class_name)
    record = read_checkpoint(source)
    out = tmp_path / "export" / "checkpoint_final.pth"
    assert export_main([str(source), str(out), "--format", "nnssl"]) == 0
    exported = torch.load(out, weights_only=True)
    plan = json.loads((out.parent / "adaptation_plan.json").read_text())
    assert plan == json.loads(json.dumps(exported["nnssl_adaptation_plan"]))
    assert plan["architecture_plans"]["arch_class_name"] == arch_class_name and plan["key_to_lpe"] is None
    network = nnunet_load_pretrained_weights(nnunet_network(plan, channels), out, channels)
    ours = fomo_nn_encoder(record, channels)
    x = torch.randn(2, channels, 32, 32, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        assert max_difference(network.encoder(x), ours(x)) <= 1e-5
    again = read_checkpoint(out)  # and fomo_nn reads its own nnssl export back unchanged
    assert again.network == record.network and again.preprocessing == record.preprocessing


# ------------------------------------------------------------------ the whole path: plans-like -> finetune -> predict -> evaluate
def safetensors_layout(source, folder):
    """The Hugging Face layout of an nnssl model: model.safetensors (network_weights) + config.json (its
    adaptation plan, as nnssl model repos ship adaptation_plan.json beside the weights)."""
    from safetensors.torch import save_file

    state = torch.load(source, weights_only=True)
    folder.mkdir(parents=True, exist_ok=True)
    save_file({k: v.clone().contiguous() for k, v in state["network_weights"].items()}, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps(state["nnssl_adaptation_plan"]))
    return folder / "model.safetensors"


@pytest.mark.parametrize("layout", ["nnssl", "safetensors"])
def test_nnssl_model_plans_like_finetune_predict_evaluate(layout, tmp_path, monkeypatch, capsys):
    for kind in ("raw", "preprocessed", "results"):
        monkeypatch.setenv(f"fomo_nn_{kind}", str(tmp_path / kind))
    raw = make_segmentation_dataset(tmp_path / "raw", dataset_id=5, num_cases=6, channels=("t1", "flair"))
    checkpoint, reference = nnssl_checkpoint_file(tmp_path / "checkpoint_final.pth")
    if layout == "safetensors":
        checkpoint = safetensors_layout(checkpoint, tmp_path / "hf")
    record = read_checkpoint(checkpoint)
    x = torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(4))
    with torch.no_grad():
        assert max_difference(reference.encoder(x), fomo_nn_encoder(record)(x)) <= 1e-5

    assert plan_main(["-d", "5", "--plans-like", str(checkpoint), "-np", "1", "--no-progress"]) == 0
    plans = load_plans(tmp_path / "preprocessed" / "Dataset005_Seg")
    assert plans.network.encoder == "residual" and plans.network.features_per_stage == [8, 16, 32, 32]
    assert plans.network.n_conv_per_stage == [1, 2, 2, 2] and plans.network.fusion == "stem_expansion"
    assert plans.network.input_channels == 2 and plans.target_spacing == [1.0, 1.0, 1.0]
    assert [n.scheme for n in plans.normalization] == ["zscore_volume"] * 2
    assert plans.plans_like["checkpoint"]["format"] == ("nnssl" if layout == "nnssl" else "safetensors_config")
    assert "network.encoder" in plans.plans_like["differences"] and "normalization" in plans.plans_like["differences"]
    assert "planned like" in capsys.readouterr().out

    assert train_main(["5", "0", "--pretrained", str(checkpoint), "--epochs", "2", "--iters-per-epoch", "2",
                       "--val-iters", "1", "--num-workers", "0", "--device", "cpu"]) == 0
    check_finetuned_predicts_and_evaluates(tmp_path, raw, 5, record)


# ------------------------------------------------------------------ nnssl's normalization, expressed in plans
def nnssl_z_score(image: np.ndarray, use_mask_for_norm: bool, non_zero_mask: np.ndarray) -> np.ndarray:
    """z_score_normalization of nnssl @ 7044864 (preprocessing/normalization/normalization_schemes.py)."""
    image = image.astype(np.float32)
    if use_mask_for_norm:
        mask = non_zero_mask >= 0
        mean, std = image[mask].mean(), image[mask].std()
        image[mask] = (image[mask] - mean) / max(std, 1e-8)
    else:
        image = (image - image.mean()) / max(image.std(), 1e-8)
    return image


@pytest.mark.parametrize("use_mask_for_norm", [False, True])
def test_nnssl_normalization_maps_to_a_fomo_nn_scheme_with_the_same_values(use_mask_for_norm, tmp_path):
    from fomo_nn.preprocessing.normalization import normalize_channels

    path, _ = nnssl_checkpoint_file(tmp_path / "checkpoint_final.pth")
    state = torch.load(path, weights_only=True)
    state["nnssl_adaptation_plan"]["pretrain_plan"]["configurations"]["onemmiso"]["use_mask_for_norm"] = [use_mask_for_norm]
    torch.save(state, path)
    plan = read_checkpoint(path).preprocessing.normalization
    rng = np.random.default_rng(5)
    image = (rng.gamma(2.0, 150.0, size=(24, 28, 20)) * (rng.random((24, 28, 20)) > 0.3)).astype(np.float32)
    nonzero = image != 0
    seg = np.where(nonzero, 0, -1)  # nnU-Net/nnssl crop_to_nonzero: -1 outside the nonzero mask
    ours, _ = normalize_channels(image[None], nonzero, plan)
    np.testing.assert_allclose(ours[0], nnssl_z_score(image, use_mask_for_norm, seg), atol=1e-5)
