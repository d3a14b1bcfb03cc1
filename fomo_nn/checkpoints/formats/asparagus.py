"""asparagus Lightning checkpoints (Sllambias/asparagus @ 338450ba2f2ae7773df5ba9cea3b3f982e2a3568): AMAES on
FOMO300K (`FOMO-MRI/AMAES_resenc_b_fomo300k`, `resenc_unet_b.ckpt`) and any asparagus run's
`checkpoints/last.ckpt`.

How asparagus saves (pipeline/run/pretrain.py): Lightning's ModelCheckpoint writes the LightningModule
(`BaseModule`: the network at `self.model`, `torch.compile`d when hardware.compile_mode is set), so the
network's keys sit under `model.` or `model._orig_mod.`; `hyper_parameters` = BaseModule.save_hyperparameters
(learning rate, optimizer, ...; the network is ignored); hydra writes the run's composed config to
`RUN/hydra/config.yaml`, beside `RUN/checkpoints/` (the model repo ships it beside the .ckpt).

Networks (gardening-tools 0.3.5 classes, fomo_nn's families with asparagus' own keys):
- `encoder.stem.*` + `encoder.stages.N.blocks.M.*`: ResidualUNetEncoder (resenc_unet_s/b/l/h/g) ->
  "residual_unet_encoder"; features and blocks from the weights; the stride from the hydra config's
  `model.pretrain_net` (every asparagus preset but resenc_unet_debug uses 2; without a config 2 is assumed
  and the provenance says so);
- `encoder.in_conv.*` + `encoder.encoder_conv1..4.*` with `norm_op`: gardening-tools' UNet (unet_b, unet_m, ...)
  -> "maxpool_unet".

Preprocessing the weights expect (asparagus_preprocessing @ fce45b3 PT900_FOMO300K: no_norm, native spacing,
RAS, no crop; normalization happens while training: presets/pretrain.py `Torch_Normalize(normalize=True)`, i.e.
gardening-tools' `volume_wise_znorm` = (x - mean) / max(std, 1e-8) over the whole volume) -> fomo_nn's
"zscore_volume" per channel, spacing not recorded (native: fomo_nn plans the dataset's own), patch =
`training.patch_size` of the hydra config (160^3 by default_pretrain.yaml), orientation RAS. One difference
stays: fomo_nn normalizes the image cropped to its nonzero box, asparagus the whole volume, so on images with
a zero background the mean/std differ by the background share.
"""
from __future__ import annotations

from pathlib import Path

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.formats import lightning_common as lightning
from fomo_nn.checkpoints.record import CheckpointRecord, ExpectedPreprocessing
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.families import maxpool_unet, residual_unet_encoder
from fomo_nn.plans.records import NormalizationPlan

NAME = "asparagus"
HYDRA_CONFIG = Path("hydra") / "config.yaml"
NORMALIZATION = "zscore_volume"  # gardening-tools volume_wise_znorm (asparagus' Torch_Normalize default)
# asparagus/modules/networks/resenc_unet.py @ 338450b: the stride of each ResEnc preset
PRESET_STRIDES = {"resenc_unet_s": 2, "resenc_unet_b": 2, "resenc_unet_b_clsreg": 2, "resenc_unet_l": 2,
                  "resenc_unet_l_clsreg": 2, "resenc_unet_h": 2, "resenc_unet_g": 2, "resenc_unet_debug": 1}
DEFAULT_STRIDE = 2


def detect(contents: dict, path: Path) -> bool:
    return lightning.is_lightning(contents) and (
        lightning.has_keys(contents, "encoder.stem.conv1.conv.weight")
        or lightning.has_keys(contents, "encoder.in_conv.conv1.norm_op.weight"))


def hydra_config(path: Path) -> tuple[dict | None, Path | None]:
    """The run's hydra config beside the checkpoint (model repo) or one folder up (RUN/checkpoints/x.ckpt)."""
    for folder in (path.parent, path.parent.parent):
        candidate = folder / HYDRA_CONFIG
        if candidate.is_file():
            import yaml  # PyYAML: read only here, for this one file

            try:
                config = yaml.safe_load(candidate.read_text())
            except (yaml.YAMLError, UnicodeDecodeError) as error:
                raise BadInputError(candidate, f"not valid YAML ({type(error).__name__}: {error})") from None
            if not isinstance(config, dict):
                raise BadInputError(candidate, "holds no YAML mapping")
            return config, candidate
    return None, None


def _section(config: dict | None, name: str) -> dict:
    value = (config or {}).get(name)
    return value if isinstance(value, dict) else {}


def _patch(config: dict | None, where) -> list[int] | None:
    patch = _section(config, "training").get("patch_size")
    if patch is None or (isinstance(patch, str) and "${" in patch):
        return None
    try:
        patch = [int(p) for p in patch]
    except (TypeError, ValueError):
        raise BadInputError(where, f"training.patch_size {patch!r} is not a list of integers") from None
    return patch * 3 if len(patch) == 1 else patch


def convert(contents: dict, path: Path) -> CheckpointRecord:
    state = lightning.network_state(contents)
    encoder = lightning.encoder_of(state, path, NAME)
    config, config_path = hydra_config(path)
    model = _section(config, "model")
    net_name = model.get("pretrain_net") or model.get("net")
    notes = []
    try:
        if "stem.conv1.conv.weight" in encoder:
            stride = PRESET_STRIDES.get(net_name, DEFAULT_STRIDE)
            if net_name not in PRESET_STRIDES:
                notes.append(f"stride {DEFAULT_STRIDE} assumed (every asparagus ResEnc preset but resenc_unet_debug; "
                             f"the network is {net_name or 'not named: no hydra/config.yaml beside the checkpoint'})")
            network = residual_unet_encoder.plan_from_weights(encoder, stride, str(path))
        else:
            network = maxpool_unet.plan_from_weights(encoder, str(path))
    except ValueError as error:
        raise BadInputError(path, str(error)) from None
    channels = int(network.input_channels)
    patch = _patch(config, config_path)
    normalization = [NormalizationPlan(NORMALIZATION, [0.0, 100.0]) for _ in range(channels)]
    preprocessing = ExpectedPreprocessing(channels=channels, spacing=None, patch_size=patch,
                                          normalization=normalization, orientation="RAS")
    provenance = lightning.provenance(
        contents, NAME, network=net_name, source_dataset=(config or {}).get("task"),
        method="masked autoencoder (AMAES)" if _section(config, "training").get("mask_ratio") else None,
        mask_ratio=_section(config, "training").get("mask_ratio"),
        hydra_config=str(config_path) if config_path else None,
        notes=notes + ["asparagus normalizes the whole volume (gardening-tools volume_wise_znorm), fomo_nn the image "
                       "cropped to its nonzero box (zscore_volume); spacing: native (not resampled in pretraining)"])
    return CheckpointRecord(path=path, format=NAME, encoder={"encoder." + k: v for k, v in encoder.items()},
                            network=network, preprocessing=preprocessing, provenance=provenance)


FORMAT = CheckpointFormat(
    name=NAME,
    description="asparagus Lightning .ckpt (AMAES ResEnc-B on FOMO300K; gardening-tools ResEnc / max-pool U-Nets)",
    detect=detect, convert=convert)
