"""FOMO2JOMO-style variational model: subject and sequence latents from a shared 1-channel encoder.

Every encoder stage is average-pooled to the bottleneck grid and concatenated (multi-scale
features); 1x1x1 convolutions give mean and log-variance of a *subject* latent (what two scans of
one subject share) and a *sequence* latent (what the contrast adds). A light decoder without skips
reconstructs a scan from concat(subject, sequence), so swapping sequence latents between two scans
of one subject gives cross-reconstruction.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from fomo_nn.networks.backbone import EncoderModel
from fomo_nn.networks.decoders import LightDecoder, conv_block, crop_to
from fomo_nn.networks.encoders import initialize_weights
from fomo_nn.networks.pretraining import MaskToken

LOGVAR_RANGE = (-30.0, 20.0)  # keeps exp(logvar) finite in bf16/fp16


def reparameterize(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """A sample of N(mu, exp(logvar)) that gradients flow through."""
    return mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)


class VAEHybridNet(EncoderModel):
    """Shared single-channel encoder with variational subject/sequence latents and a skip-free decoder.

    ``forward(x, mask=None)`` returns dict(subject_mu, subject_logvar, sequence_mu, sequence_logvar,
    subject_z, sequence_z, reconstruction); latents are maps on the bottleneck grid. In eval mode
    z = mu (no sampling).
    """

    def __init__(self, network, subject_channels: int = 256, sequence_channels: int | None = None,
                 mask_token: str = "zero"):
        super().__init__(network, 1, fusion="none")
        sequence_channels = subject_channels if sequence_channels is None else sequence_channels
        net = self.network_plan
        multiscale = sum(self.stage_channels)
        self.mask_token = MaskToken(1, mask_token)
        self.subject_latent = nn.Conv3d(multiscale, 2 * subject_channels, 1)
        self.sequence_latent = nn.Conv3d(multiscale, 2 * sequence_channels, 1)
        self.latent_to_features = conv_block(subject_channels + sequence_channels, self.stage_channels[-1], 1)
        self.decoder = LightDecoder(net.features_per_stage, net.strides, net.kernel_sizes, out_channels=1)
        initialize_weights(self.latent_to_features)
        for head in (self.subject_latent, self.sequence_latent):  # start near the prior N(0, 1)
            nn.init.normal_(head.weight, std=1e-3)
            nn.init.zeros_(head.bias)
        self.subject_channels = subject_channels
        self.sequence_channels = sequence_channels
        for key in ("in_channels", "fusion", "fusion_weighting"):
            self.architecture_kwargs.pop(key)
        self.architecture_kwargs.update(subject_channels=subject_channels, sequence_channels=sequence_channels,
                                        mask_token=mask_token)

    def multiscale_features(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        features = self.stage_features(self.mask_token(x, mask))
        grid = features[-1].shape[2:]
        return torch.cat([F.adaptive_avg_pool3d(f, grid) for f in features], dim=1)

    def encode(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        pooled = self.multiscale_features(x, mask)
        subject_mu, subject_logvar = self.subject_latent(pooled).chunk(2, dim=1)
        sequence_mu, sequence_logvar = self.sequence_latent(pooled).chunk(2, dim=1)
        return {
            "subject_mu": subject_mu,
            "subject_logvar": subject_logvar.clamp(*LOGVAR_RANGE),
            "sequence_mu": sequence_mu,
            "sequence_logvar": sequence_logvar.clamp(*LOGVAR_RANGE),
        }

    def decode(self, subject_z: torch.Tensor, sequence_z: torch.Tensor, output_shape=None) -> torch.Tensor:
        """Reconstruction (B, 1, ...) from latents; cropped to ``output_shape`` when given."""
        x = self.decoder(self.latent_to_features(torch.cat([subject_z, sequence_z], dim=1)))
        return x if output_shape is None else crop_to(x, output_shape)

    def sample(self, mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
        return reparameterize(mu, logvar) if self.training else mu

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        out = self.encode(x, mask)
        out["subject_z"] = self.sample(out["subject_mu"], out["subject_logvar"])
        out["sequence_z"] = self.sample(out["sequence_mu"], out["sequence_logvar"])
        out["reconstruction"] = self.decode(out["subject_z"], out["sequence_z"], x.shape[2:])
        return out
