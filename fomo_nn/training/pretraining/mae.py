"""Masked autoencoder pretraining (local objective): hide token cubes, reconstruct the clean image.

As in the FOMO25 baseline/AMAES: masked voxels are replaced (zero or a learned token), a light
decoder without skip connections reconstructs, so the encoder's bottleneck must carry the content.
The input is the augmented patch (batch["image"]), the target the clean one (batch["target"],
identical to the input when the augmentation plan keeps no clean target).
"""
from __future__ import annotations

import torch

from fomo_nn.networks.pretraining import MASK_TOKENS
from fomo_nn.training.pretraining.base import PretrainingTrainer
from fomo_nn.training.pretraining.losses import RECONSTRUCTION_LOSSES, reconstruction_loss
from fomo_nn.training.pretraining.masking import as_token_size, check_mask_ratio, voxel_mask
from fomo_nn.training.registry import register_trainer

LOSS_REGIONS = ("masked", "all")


def mae_settings() -> dict:
    """MAE settings with their defaults (token 8^3 suits 32^3-96^3 patches; the FOMO25 baseline used 4^3)."""
    return {"token_size": 8, "mask_ratio": 0.6, "mask_value": "zero", "loss_on": "masked", "loss": "mse",
            "smooth_l1_beta": 0.1}


def check_mae_settings(settings: dict, patch_size) -> None:
    token = as_token_size(settings["token_size"])
    if any(t > p for t, p in zip(token, patch_size)):
        raise ValueError(f"token_size {list(token)} is larger than the patch {list(patch_size)}")
    check_mask_ratio(settings["mask_ratio"])
    for key, allowed in (("mask_value", MASK_TOKENS), ("loss_on", LOSS_REGIONS), ("loss", RECONSTRUCTION_LOSSES)):
        if settings[key] not in allowed:
            raise ValueError(f"setting {key}={settings[key]!r} is not one of {allowed}")


def masked_reconstruction(reconstruction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor,
                          settings: dict) -> torch.Tensor:
    region = mask if settings["loss_on"] == "masked" else None
    return reconstruction_loss(reconstruction, target, region, settings["loss"], float(settings["smooth_l1_beta"]))


@register_trainer
class MAETrainer(PretrainingTrainer):
    name = "mae"
    # one masked view, encoder + skip-free light decoder: 0.81x the plan's U-Net per sample (measured on CPU,
    # benchmarks/RESULTS.md): the plan's batch fits as it is
    memory_multiplier = 0.9
    description = "masked autoencoder: token masking (4^3-16^3, ratio 0.6), skip-free decoder, clean target (local)"
    augmentation_family = "pretraining_reconstruction"
    sampling = "iid"

    def default_method_settings(self) -> dict:
        return mae_settings()

    def check_settings(self) -> None:
        check_mae_settings(self.method, self.plans.patch_size)

    def network_settings(self) -> dict:
        return {"mask_token": self.method["mask_value"]}

    def compute_loss(self, batch: dict, generator: torch.Generator):
        image, target = batch["image"], batch["target"]
        mask = voxel_mask(image.shape[0], image.shape[2:], self.method["token_size"], self.method["mask_ratio"],
                          generator, image.device)
        reconstruction = self.model(image, mask)
        loss = masked_reconstruction(reconstruction, target, mask, self.method)
        return loss, {}
