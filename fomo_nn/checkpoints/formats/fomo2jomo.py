"""FOMO2JOMO, the FOMO25 winner (jbanusco/fomo25 @ de3578296d22a0bade40af5cd792c9b9122afa81; release v1.0.0
`fomo25_mmunetvae_pretrained.ckpt`): a Lightning checkpoint of src/models/self_supervised.py whose `self.model` is
`MultiModalUNetVAE` (src/models/networks/mmunetvae.py, `mmunetvae`: starting_filters 32, one input channel).

Its encoder is built from that repository's own source: `self.encoder = UNetEncoder(input_channels=1,
starting_filters=32, basic_block=MultiLayerConvDropoutNormNonlin.get_block_constructor(2))` with
src/models/networks/unet.py and src/models/conv_blocks/blocks.py, which are byte-identical to the FOMO25
baseline's (checked at those commits): the "maxpool_unet" family with Yucca key names, read like the baseline.
The VAE heads (`conv_mu_shared`, `conv_logvar_*`, `conv_mu_modality`) and decoders are not encoder weights and
are not kept. Preprocessing as the baseline's (src/data/fomo-60k/preprocess.py: RAS, 1 mm, volume_wise_znorm).
"""
from __future__ import annotations

from pathlib import Path

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats import lightning_common as lightning
from fomo_nn.checkpoints.formats.fomo25_baseline import VAE_HEAD, YUCCA_STEM_NORM, yucca_record
from fomo_nn.checkpoints.record import CheckpointRecord

NAME = "fomo2jomo"


def detect(contents: dict, path: Path) -> bool:
    return lightning.has_keys(contents, YUCCA_STEM_NORM, VAE_HEAD, bare=True)


def convert(contents: dict, path: Path) -> CheckpointRecord:
    return yucca_record(contents, path, NAME, "fomo2jomo",
                        method="multi-modal U-Net VAE (subject/modality latents, masked reconstruction)")


FORMAT = CheckpointFormat(
    name=NAME,
    description="FOMO2JOMO Lightning .ckpt (MultiModalUNetVAE; its Yucca max-pool U-Net encoder)",
    detect=detect, convert=convert)
