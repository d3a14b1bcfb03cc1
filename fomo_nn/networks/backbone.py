"""The part every fomo_nn model shares: an encoder at ``self.encoder`` and the multi-sequence fusion."""
from __future__ import annotations

from dataclasses import asdict

import torch
from torch import nn

from fomo_nn.networks.encoders import as_network_plan, build_encoder
from fomo_nn.networks.fusion import SequenceFusion, fold_sequences
from fomo_nn.plans.records import FUSION_MODES


class EncoderModel(nn.Module):
    """Encoder (+ per-stage sequence fusion for ``shared_encoder``) returning per-stage features.

    ``in_channels`` is the number of channels of the data the model receives. With
    ``fusion='shared_encoder'`` the encoder itself is single-channel and runs once per channel;
    otherwise the encoder's stem takes all ``in_channels``.

    ``architecture_kwargs`` holds the JSON-able constructor arguments, so the adaptation record can
    rebuild the exact model.
    """

    def __init__(self, network, in_channels: int, fusion: str | None = None, fusion_weighting: str = "learned"):
        super().__init__()
        network = as_network_plan(network)
        fusion = network.fusion if fusion is None else fusion
        if fusion not in FUSION_MODES:
            raise ValueError(f"fusion {fusion!r} is not one of {FUSION_MODES}")
        self.network_plan = network
        self.in_channels = int(in_channels)
        self.fusion_mode = fusion
        if fusion == "shared_encoder":
            self.encoder = build_encoder(network, 1)
            # "concat" keeps every sequence's features apart (pooled heads concatenate them)
            self.fusion = (None if fusion_weighting == "concat"
                           else SequenceFusion(self.in_channels, network.num_stages, fusion_weighting,
                                               list(self.encoder.output_channels)))
        else:
            self.encoder = build_encoder(network, self.in_channels)
            self.fusion = None
        self.architecture_kwargs = {
            "network": asdict(network),
            "in_channels": self.in_channels,
            "fusion": fusion,
            "fusion_weighting": fusion_weighting,
        }

    @property
    def stage_channels(self) -> list[int]:
        return list(self.encoder.output_channels)

    @property
    def runs_per_sequence(self) -> bool:
        return self.fusion_mode == "shared_encoder"

    def sequence_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Unfused features of every stage: (B, ...) for one encoder pass, (B*S, ...) per sequence."""
        if x.dim() != 5 or x.shape[1] != self.in_channels:
            raise ValueError(f"{type(self).__name__} expects input (B, {self.in_channels}, X, Y, Z), "
                             f"got {tuple(x.shape)}")
        return self.encoder(fold_sequences(x) if self.runs_per_sequence else x)

    def stage_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Features of every stage, highest resolution first, bottleneck last (sequences fused)."""
        features = self.sequence_features(x)
        if not self.runs_per_sequence:
            return features
        if self.fusion is None:
            raise ValueError(f"{type(self).__name__}: fusion weighting 'concat' keeps sequences apart and has no "
                             "fused stage features; use 'conv', 'learned' or 'mean'")
        return self.fusion(features)
