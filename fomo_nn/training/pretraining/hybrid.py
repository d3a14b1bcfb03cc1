"""Hybrid pretraining: masked reconstruction and contrastive learning on one encoder pass.

The FOMO25 analysis found MAE (local) favouring segmentation and hybrid objectives favouring
classification/regression. Both views of a positive pair are masked and reconstructed (clean
targets, same crops/flips as the inputs); the pooled bottleneck of the masked views feeds the
projection head and NT-Xent. loss = mae_weight * reconstruction + contrastive_weight * NT-Xent.
"""
from __future__ import annotations

import torch

from fomo_nn.training.pretraining.contrastive import (
    ContrastivePositivesTrainer,
    check_contrastive_settings,
    contrastive_loss,
    contrastive_settings,
    positive_views,
)
from fomo_nn.training.pretraining.mae import check_mae_settings, mae_settings, masked_reconstruction
from fomo_nn.training.pretraining.losses import scalar
from fomo_nn.training.pretraining.masking import voxel_mask
from fomo_nn.training.pretraining.views import total_stride
from fomo_nn.training.registry import register_trainer


@register_trainer
class HybridTrainer(ContrastivePositivesTrainer):
    name = "hybrid"
    # two masked views per sample, each encoder + light decoder + projection: 1.50x (measured, RESULTS.md)
    memory_multiplier = 1.6
    description = "MAE + contrastive in one objective (weights mae_weight, contrastive_weight); subject pairs"
    augmentation_family = "pretraining_reconstruction"

    def default_method_settings(self) -> dict:
        settings = {**mae_settings(), **contrastive_settings(), "mae_weight": 1.0, "contrastive_weight": 0.5}
        settings.pop("projection_layers")  # HybridNet's projection head has a fixed depth of 2
        return settings

    def check_settings(self) -> None:
        check_mae_settings(self.method, self.plans.patch_size)
        check_contrastive_settings(self.method)
        for key in ("mae_weight", "contrastive_weight"):
            if float(self.method[key]) < 0:
                raise ValueError(f"setting {key} must be >= 0, got {self.method[key]}")

    def network_settings(self) -> dict:
        return {"mask_token": self.method["mask_value"], "projection_hidden": self.method["projection_hidden"],
                "projection_dim": self.method["projection_dim"]}

    def compute_loss(self, batch: dict, generator: torch.Generator):
        views = positive_views(batch, self.method, total_stride(self.plans.network), generator)
        inputs = torch.cat([views["inputs_a"], views["inputs_b"]])
        targets = torch.cat([views["targets_a"], views["targets_b"]])
        mask = voxel_mask(inputs.shape[0], inputs.shape[2:], self.method["token_size"], self.method["mask_ratio"],
                          generator, inputs.device)
        out = self.model(inputs, mask)
        reconstruction = masked_reconstruction(out["reconstruction"], targets, mask, self.method)
        contrastive, accuracy = contrastive_loss(out["projection"], views["groups"], self.method)
        loss = (float(self.method["mae_weight"]) * reconstruction
                + float(self.method["contrastive_weight"]) * contrastive)
        return loss, {"reconstruction": scalar(reconstruction), "contrastive": scalar(contrastive),
                      "pair_accuracy": scalar(accuracy)}
