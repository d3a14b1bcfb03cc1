"""FOMO2JOMO-style variational pretraining with subject and sequence latents (the FOMO25 winner).

Pairs are two scans of one subject and session (another sequence, same crop in world
coordinates), both masked. A shared single-channel encoder pools every stage to the bottleneck
grid; 1x1 convolutions give variational subject and sequence latents; a skip-free decoder
reconstructs from both. Loss (weights as FOMO2JOMO reported them):
- self-reconstruction of each scan from its own latents, SmoothL1 (beta 0.1), weight 3;
- cross-reconstruction with swapped sequence latents: subject(a) + sequence(b) -> b and vice versa, 1;
- subject latents of the pair pulled together (1 - cosine), 0.5;
- sequence latents of the pair pushed apart (positive cosine), 0.5;
- KL of all latents to N(0, 1) (mean per latent element), ramped linearly from 0 at epoch 0 to
  kl_weight (1e-3) at epoch kl_ramp_epochs (10).
Reconstruction targets are the clean patches (batch target/target_pair), over the whole image
(loss_on "all") by default.
"""
from __future__ import annotations

import torch

from fomo_nn.training.pretraining.base import PretrainingTrainer
from fomo_nn.training.pretraining.losses import gaussian_kl, pull_together, push_apart, scalar
from fomo_nn.training.pretraining.mae import check_mae_settings, masked_reconstruction
from fomo_nn.training.pretraining.masking import voxel_mask
from fomo_nn.training.pretraining.views import MAX_SEED
from fomo_nn.training.registry import register_trainer

LOSS_WEIGHTS = ("self_weight", "cross_weight", "subject_weight", "sequence_weight", "kl_weight")


def kl_ramp(epoch: int, ramp_epochs: int, weight: float) -> float:
    """Linear ramp: 0 at epoch 0, `weight` from epoch `ramp_epochs` on (no ramp when ramp_epochs <= 0)."""
    if ramp_epochs <= 0:
        return weight
    return weight * min(1.0, epoch / ramp_epochs)


@register_trainer
class VAETrainer(PretrainingTrainer):
    name = "vae"
    # a pair of scans per sample, each encoded and decoded twice (self- and cross-reconstruction): 2.02x
    # (measured, RESULTS.md)
    memory_multiplier = 2.1
    description = ("FOMO2JOMO-style VAE: subject/sequence latents, self- and cross-reconstruction, "
                   "latent pull/push, ramped KL; same-session pairs")
    augmentation_family = "pretraining_reconstruction"
    sampling = "subject_pairs"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.current_kl_weight = kl_ramp(0, int(self.method["kl_ramp_epochs"]), float(self.method["kl_weight"]))

    def default_method_settings(self) -> dict:
        return {"token_size": 8, "mask_ratio": 0.6, "mask_value": "zero", "loss_on": "all", "loss": "smooth_l1",
                "smooth_l1_beta": 0.1, "subject_channels": 256, "sequence_channels": None,
                "self_weight": 3.0, "cross_weight": 1.0, "subject_weight": 0.5, "sequence_weight": 0.5,
                "kl_weight": 1e-3, "kl_ramp_epochs": 10, "same_session_probability": 1.0}

    def check_settings(self) -> None:
        check_mae_settings(self.method, self.plans.patch_size)
        for key in LOSS_WEIGHTS:
            if float(self.method[key]) < 0:
                raise ValueError(f"setting {key} must be >= 0, got {self.method[key]}")
        if self.plans.num_input_channels != 1:
            raise ValueError(f"the vae method needs single-channel scans, plans list {self.plans.channel_names}")

    def network_settings(self) -> dict:
        return {"mask_token": self.method["mask_value"], "subject_channels": self.method["subject_channels"],
                "sequence_channels": self.method["sequence_channels"]}

    def on_epoch_start(self, epoch: int) -> None:
        self.current_kl_weight = kl_ramp(epoch, int(self.method["kl_ramp_epochs"]), float(self.method["kl_weight"]))

    def _forward_pair(self, inputs: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> dict:
        """One forward over both scans; the latent sampling noise is seeded from the step's generator."""
        seed = int(torch.randint(MAX_SEED, (1,), generator=generator))
        device = inputs.device
        devices = []
        if device.type == "cuda":
            devices = [torch.cuda.current_device() if device.index is None else device.index]
        with torch.random.fork_rng(devices=devices):
            torch.manual_seed(seed)
            return self.model(inputs, mask)

    def compute_loss(self, batch: dict, generator: torch.Generator):
        settings = self.method
        inputs = torch.cat([batch["image"], batch["image_pair"]])
        targets = torch.cat([batch["target"], batch["target_pair"]])
        mask = voxel_mask(inputs.shape[0], inputs.shape[2:], settings["token_size"], settings["mask_ratio"],
                          generator, inputs.device)
        out = self._forward_pair(inputs, mask, generator)
        half = batch["image"].shape[0]

        def swap(t: torch.Tensor) -> torch.Tensor:  # (a, b) -> (b, a) along the batch
            return torch.cat([t[half:], t[:half]])

        self_rec = masked_reconstruction(out["reconstruction"], targets, mask, settings)
        # subject latent of each scan + sequence latent of its partner -> the partner
        crossed = self.network.decode(out["subject_z"], swap(out["sequence_z"]), inputs.shape[2:])
        cross_rec = masked_reconstruction(crossed, swap(targets), swap(mask), settings)
        subject = pull_together(out["subject_mu"][:half], out["subject_mu"][half:])
        sequence = push_apart(out["sequence_mu"][:half], out["sequence_mu"][half:])
        kl = 0.5 * (gaussian_kl(out["subject_mu"], out["subject_logvar"])
                    + gaussian_kl(out["sequence_mu"], out["sequence_logvar"]))
        loss = (float(settings["self_weight"]) * self_rec + float(settings["cross_weight"]) * cross_rec
                + float(settings["subject_weight"]) * subject + float(settings["sequence_weight"]) * sequence
                + self.current_kl_weight * kl)
        return loss, {"self_reconstruction": scalar(self_rec), "cross_reconstruction": scalar(cross_rec),
                      "subject_distance": scalar(subject), "sequence_similarity": scalar(sequence), "kl": scalar(kl),
                      "kl_weight": self.current_kl_weight}
