"""Pretraining networks: masked reconstruction (MAE), embeddings (contrastive, DINO) and both (hybrid).

All are single-stream (fusion 'none'): pretraining sees one scan per sample.
"""
from __future__ import annotations

import torch
from torch import nn

from fomo_nn.networks.backbone import EncoderModel
from fomo_nn.networks.decoders import LightDecoder, crop_to
from fomo_nn.networks.heads import ProjectionHead, global_average_pool

MASK_TOKENS = ("zero", "learned")


class MaskToken(nn.Module):
    """Replace masked voxels by zero or by a learned scalar per input channel."""

    def __init__(self, in_channels: int, kind: str = "zero"):
        super().__init__()
        if kind not in MASK_TOKENS:
            raise ValueError(f"mask_token {kind!r} is not one of {MASK_TOKENS}")
        self.kind = kind
        if kind == "learned":
            self.token = nn.Parameter(torch.zeros(in_channels))
        else:
            self.register_parameter("token", None)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        if mask is None:
            return x
        if mask.dtype != torch.bool or mask.dim() != 5 or mask.shape[1] != 1 or \
                mask.shape[0] != x.shape[0] or mask.shape[2:] != x.shape[2:]:
            raise ValueError(f"mask must be bool (B, 1, X, Y, Z) matching input {tuple(x.shape)}, "
                             f"got {mask.dtype} {tuple(mask.shape)}")
        if self.token is None:
            return x.masked_fill(mask, 0.0)
        return torch.where(mask, self.token.to(x.dtype).view(1, -1, 1, 1, 1), x)


class MAENet(EncoderModel):
    """Masked autoencoder: encoder + LightDecoder (no skips) back to ``in_channels`` at input size.

    ``forward(x, mask)``: ``mask`` (B, 1, X, Y, Z) bool marks the masked voxels, which are replaced by
    the mask token before the encoder. Returns the reconstruction (B, C, X, Y, Z).
    """

    def __init__(self, network, in_channels: int = 1, mask_token: str = "zero"):
        super().__init__(network, in_channels, fusion="none")
        net = self.network_plan
        self.mask_token = MaskToken(in_channels, mask_token)
        self.decoder = LightDecoder(net.features_per_stage, net.strides, net.kernel_sizes, out_channels=in_channels)
        self.architecture_kwargs.update(mask_token=mask_token)
        for key in ("fusion", "fusion_weighting"):
            self.architecture_kwargs.pop(key)

    def encode_masked(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> list[torch.Tensor]:
        return self.stage_features(self.mask_token(x, mask))

    def reconstruct(self, features: list[torch.Tensor], spatial_shape) -> torch.Tensor:
        return crop_to(self.decoder(features[-1]), spatial_shape)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.reconstruct(self.encode_masked(x, mask), x.shape[2:])


class HybridNet(MAENet):
    """MAE + contrastive on one encoder pass: dict(reconstruction, embedding, projection)."""

    def __init__(self, network, in_channels: int = 1, mask_token: str = "zero",
                 projection_hidden: int = 512, projection_dim: int = 128):
        super().__init__(network, in_channels, mask_token)
        self.projection = ProjectionHead(self.stage_channels[-1], projection_hidden, projection_dim)
        self.architecture_kwargs.update(projection_hidden=projection_hidden, projection_dim=projection_dim)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        features = self.encode_masked(x, mask)
        embedding = global_average_pool(features[-1])
        return {
            "reconstruction": self.reconstruct(features, x.shape[2:]),
            "embedding": embedding,
            "projection": self.projection(embedding),
        }


class EmbeddingNet(EncoderModel):
    """Encoder + global average pool of the bottleneck, optionally followed by a ProjectionHead.

    Contrastive: ``forward(x)`` -> (B, projection_dim). DINO: with ``prototypes`` -> (B, prototypes)
    logits; ``forward(x, mask, tokens=True)`` additionally returns per-bottleneck-voxel logits
    (B, N, prototypes) for an iBOT-style masked-token loss. Without a projection head ``forward``
    returns the pooled embedding itself.
    """

    def __init__(self, network, in_channels: int = 1, projection_hidden: int | None = 512,
                 projection_dim: int | None = 128, projection_layers: int = 2, prototypes: int | None = None,
                 mask_token: str = "zero"):
        super().__init__(network, in_channels, fusion="none")
        self.mask_token = MaskToken(in_channels, mask_token)
        if projection_dim is None:
            self.projection = None
        else:
            self.projection = ProjectionHead(self.stage_channels[-1], projection_hidden or projection_dim,
                                             projection_dim, projection_layers, prototypes)
        for key in ("fusion", "fusion_weighting"):
            self.architecture_kwargs.pop(key)
        self.architecture_kwargs.update(projection_hidden=projection_hidden, projection_dim=projection_dim,
                                        projection_layers=projection_layers, prototypes=prototypes,
                                        mask_token=mask_token)

    @property
    def embedding_dim(self) -> int:
        return self.stage_channels[-1]

    def embed(self, x: torch.Tensor, mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, bottleneck features): the representation used downstream."""
        return global_average_pool(self.stage_features(self.mask_token(x, mask))[-1])

    def _project(self, z: torch.Tensor) -> torch.Tensor:
        return z if self.projection is None else self.projection(z)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, tokens: bool = False):
        bottleneck = self.stage_features(self.mask_token(x, mask))[-1]
        pooled = self._project(global_average_pool(bottleneck))
        if not tokens:
            return pooled
        token_features = bottleneck.flatten(2).transpose(1, 2)  # (B, N, F)
        return pooled, self._project(token_features)
