"""The FOMO25 baseline's Lightning checkpoints (fomo25/baseline-codebase @ d2df6d40f0baab0a07445944e1a64703acd966fa):
`unet_b` / `unet_xl` (and their `_lw_dec` pretraining variants) written by Lightning's ModelCheckpoint, or the
bare LightningModule state dict its finetune.py loads as well (`FOMO25/baseline_pretrained_models` on Hugging Face).

Layout: src/models/self_supervised.py (and supervised_*.py) keep the network at `self.model`, compiled with
torch.compile when --compile was given, so keys are `model.encoder.*` or `model._orig_mod.encoder.*`;
`hyper_parameters` = save_hyperparameters() (model_name, patch_size, ..., and the run's `config` dict).
The encoder (src/models/networks/unet.py UNetEncoder, blocks of src/models/conv_blocks/blocks.py = Yucca's
conv_layers) names its tensors `conv` and `norm`: converted to the "maxpool_unet" family's gardening-tools names
(fomo_nn.networks.families.maxpool_unet.yucca_keys_to_family).

Preprocessing (src/data/fomo-60k/preprocess.py and the task preprocessing): RAS, 1 mm isotropic, Yucca's
volume_wise_znorm (fomo_nn's "volume_wise_znorm", [0, 99]); patch = hyper_parameters patch_size (64^3 by default
in pretrain.py).
"""
from __future__ import annotations

from pathlib import Path

import torch

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats import lightning_common as lightning
from fomo_nn.checkpoints.record import CheckpointRecord, ExpectedPreprocessing
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.families import maxpool_unet
from fomo_nn.plans.records import NormalizationPlan

NAME = "fomo25_baseline"
YUCCA_STEM_NORM = "encoder.in_conv.conv1.norm.weight"
VAE_HEAD = "conv_mu_shared.weight"  # FOMO2JOMO's MultiModalUNetVAE: the same encoder, read by fomo2jomo.py
SPACING = [1.0, 1.0, 1.0]
NORMALIZATION = "volume_wise_znorm"


def detect(contents: dict, path: Path) -> bool:
    """A Lightning checkpoint or the bare module state dict (both load in the baseline's finetune.py)."""
    return (lightning.has_keys(contents, YUCCA_STEM_NORM, bare=True)
            and not lightning.has_keys(contents, VAE_HEAD, bare=True))


def yucca_record(contents: dict, path: Path, name: str, framework: str, **extra) -> CheckpointRecord:
    """The record of a Lightning checkpoint whose encoder is the Yucca / FOMO25-baseline max-pool U-Net."""
    state = lightning.network_state(contents)
    yucca = lightning.encoder_of(state, path, framework)
    try:
        network = maxpool_unet.plan_from_weights(yucca, str(path))
    except ValueError as error:
        raise BadInputError(path, str(error)) from None
    with torch.device("meta"):
        target = maxpool_unet.build(network, int(network.input_channels))
    encoder = maxpool_unet.yucca_keys_to_family(yucca, target)
    hyper = contents.get(lightning.HYPER_PARAMETERS)
    hyper = hyper if isinstance(hyper, dict) else {}
    patch = hyper.get("patch_size") or (hyper.get("config") or {}).get("patch_size")
    try:
        patch = [int(p) for p in patch] if patch is not None else None
    except (TypeError, ValueError):
        patch = None
    channels = int(network.input_channels)
    normalization = [NormalizationPlan(NORMALIZATION, [0.0, 99.0]) for _ in range(channels)]
    preprocessing = ExpectedPreprocessing(channels=channels, spacing=list(SPACING), patch_size=patch,
                                          normalization=normalization, orientation="RAS")
    provenance = lightning.provenance(contents, framework, network=hyper.get("model_name"), **extra)
    return CheckpointRecord(path=path, format=name, encoder={"encoder." + k: v for k, v in encoder.items()},
                            network=network, preprocessing=preprocessing, provenance=provenance)


def convert(contents: dict, path: Path) -> CheckpointRecord:
    return yucca_record(contents, path, NAME, "fomo25_baseline", method="masked autoencoder (FOMO25 baseline)")


FORMAT = CheckpointFormat(
    name=NAME,
    description="FOMO25 baseline Lightning .ckpt (Yucca-style unet_b / unet_xl; model. / model._orig_mod. prefixes)",
    detect=detect, convert=convert)
