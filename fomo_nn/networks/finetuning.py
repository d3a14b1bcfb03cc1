"""Finetuning networks: a U-Net for segmentation, pooled-feature heads for classification/regression."""
from __future__ import annotations

import torch
from dynamic_network_architectures.building_blocks.unet_decoder import UNetDecoder

from fomo_nn.networks.backbone import EncoderModel
from fomo_nn.networks.encoders import decoder_spec, initialize_weights
from fomo_nn.networks.heads import LinearHead, global_average_pool

POOLING = ("bottleneck", "all_stages")
# the one default of the pooled heads' `pool` setting: every stage pooled (instance norm leaves the pooled
# bottleneck alone nearly constant across scans, which starves few-shot heads); 'bottleneck' = FOMO25 baseline
DEFAULT_POOL = "all_stages"


class SegmentationNet(EncoderModel):
    """Encoder + DNA UNetDecoder with skips; ``num_classes`` logits per voxel (background included).

    With ``deep_supervision`` the forward returns a list of logits, full resolution first.
    """

    def __init__(self, network, in_channels: int, num_classes: int, fusion: str | None = None,
                 fusion_weighting: str = "conv", deep_supervision: bool = False):
        if fusion_weighting == "concat":
            raise ValueError("fusion weighting 'concat' is for pooled heads; a decoder needs fused stage features "
                             "('conv', 'learned' or 'mean')")
        super().__init__(network, in_channels, fusion, fusion_weighting)
        if num_classes < 1:
            raise ValueError(f"num_classes must be >= 1, got {num_classes}")
        self.decoder = UNetDecoder(decoder_spec(self.encoder), num_classes,
                                   list(self.network_plan.n_conv_per_stage_decoder), deep_supervision)
        initialize_weights(self.decoder)
        self.num_classes = num_classes
        self.architecture_kwargs.update(num_classes=num_classes, deep_supervision=bool(deep_supervision))

    @property
    def deep_supervision(self) -> bool:
        return self.decoder.deep_supervision

    @deep_supervision.setter
    def deep_supervision(self, enabled: bool) -> None:
        self.decoder.deep_supervision = bool(enabled)

    def forward(self, x: torch.Tensor):
        return self.decoder(self.stage_features(x))


class PooledHeadNet(EncoderModel):
    """Encoder + global average pooling + dropout + Linear: ``num_outputs`` values per image.

    ``pool='bottleneck'`` pools the deepest features (the FOMO25 baseline); ``'all_stages'`` (the
    default, DEFAULT_POOL) concatenates the pooled features of every stage (more low-level detail for small data).
    """

    def __init__(self, network, in_channels: int, num_outputs: int, fusion: str | None = None,
                 fusion_weighting: str = "learned", pool: str = DEFAULT_POOL, dropout: float | None = None):
        super().__init__(network, in_channels, fusion, fusion_weighting)
        if pool not in POOLING:
            raise ValueError(f"pool {pool!r} is not one of {POOLING}")
        if num_outputs < 1:
            raise ValueError(f"num_outputs must be >= 1, got {num_outputs}")
        dropout = self.network_plan.head_dropout if dropout is None else float(dropout)
        self.pool = pool
        per_pass = self.stage_channels[-1] if pool == "bottleneck" else sum(self.stage_channels)
        self.sequences_apart = self.runs_per_sequence and self.fusion is None
        pooled_dim = per_pass * (self.in_channels if self.sequences_apart else 1)
        self.head = LinearHead(pooled_dim, num_outputs, dropout)
        self.num_outputs = num_outputs
        self.architecture_kwargs.update(num_outputs=num_outputs, pool=pool, dropout=dropout)

    def pooled_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B, D): pooled stage features; with ``concat`` fusion every sequence's, side by side."""
        features = self.sequence_features(x) if self.sequences_apart else self.stage_features(x)
        chosen = features[-1:] if self.pool == "bottleneck" else features
        pooled = torch.cat([global_average_pool(f) for f in chosen], dim=1)
        return pooled.reshape(x.shape[0], -1) if self.sequences_apart else pooled

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.pooled_features(x))


class ClassificationNet(PooledHeadNet):
    """(B, num_classes) logits."""

    def __init__(self, network, in_channels: int, num_classes: int, **options):
        super().__init__(network, in_channels, num_outputs=num_classes, **options)
        self.architecture_kwargs.pop("num_outputs")
        self.architecture_kwargs["num_classes"] = num_classes


class RegressionNet(PooledHeadNet):
    """(B, 1) predictions (of the normalized target; the trainer owns the target normalization)."""

    def __init__(self, network, in_channels: int, **options):
        super().__init__(network, in_channels, num_outputs=1, **options)
        self.architecture_kwargs.pop("num_outputs")
