"""Two ways for a single-channel pretrained encoder to meet 2-4 input sequences.

- stem expansion: the encoder takes C channels; its pretrained 1-channel stem is copied to every
  channel and divided by C (``expand_stem_weights``), so C identical channels give exactly the
  pretrained response;
- shared encoder: the 1-channel encoder runs on each sequence separately (sequences folded into the
  batch); ``SequenceFusion`` merges the per-stage features with a softmax-weighted mean (decoders),
  or pooled heads concatenate every sequence's pooled features (weighting ``concat``), so a head can
  weigh DWI against ADC instead of seeing their average.
"""
from __future__ import annotations

import torch
from torch import nn

FUSION_WEIGHTINGS = ("conv", "learned", "mean", "concat")  # concat: pooled heads only
STAGE_FUSIONS = FUSION_WEIGHTINGS[:3]


def expand_stem_weights(state_dict: dict, stem_key: str, new_in_channels: int) -> dict:
    """A copy of ``state_dict`` whose stem weight (out, 1, k, k, k) becomes (out, C, k, k, k) / C."""
    if stem_key not in state_dict:
        raise KeyError(f"stem key {stem_key!r} is not in the state dict")
    weight = state_dict[stem_key]
    if weight.dim() != 5 or weight.shape[1] != 1:
        raise ValueError(f"stem {stem_key} must be a 3D conv weight with 1 input channel to expand, "
                         f"got shape {tuple(weight.shape)}")
    if new_in_channels < 1:
        raise ValueError(f"new_in_channels must be >= 1, got {new_in_channels}")
    expanded = dict(state_dict)
    expanded[stem_key] = weight.repeat(1, new_in_channels, 1, 1, 1) / new_in_channels
    return expanded


class SequenceFusion(nn.Module):
    """Merge per-sequence features of every stage: (B*S, F, ...) -> (B, F, ...).

    ``conv`` (decoders' default): a 1x1x1 convolution of the S x F stacked features per stage,
    initialized to their mean, so every output channel can weigh every sequence's channels (a lesion
    bright on FLAIR and iso on SWI); ``learned``: one softmax weight per sequence and stage, initialized
    uniform (= mean); ``mean``: a plain mean with no parameters. Measured on the meningioma task
    (benchmarks/RESULTS.md): a one-weight-per-sequence mean kept the decoder from learning at all
    within the demo budget (Dice 0.00 from scratch, against 0.22 with a multi-channel stem).
    """

    def __init__(self, num_sequences: int, num_stages: int, weighting: str = "learned",
                 stage_channels: list[int] | None = None):
        super().__init__()
        if weighting not in STAGE_FUSIONS:
            raise ValueError(f"fusion weighting {weighting!r} is not one of {STAGE_FUSIONS} (stage fusion)")
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
        self.num_sequences = num_sequences
        self.weighting = weighting
        self.mixers = None
        if weighting == "conv":
            if not stage_channels or len(stage_channels) != num_stages:
                raise ValueError("conv fusion needs the channel count of every stage")
            self.mixers = nn.ModuleList(mean_mixer(num_sequences, channels) for channels in stage_channels)
        if weighting == "learned":
            self.logits = nn.Parameter(torch.zeros(num_stages, num_sequences))
        else:
            self.register_parameter("logits", None)

    def stage_weights(self, stage: int) -> torch.Tensor:
        if self.logits is None:
            return torch.full((self.num_sequences,), 1.0 / self.num_sequences)
        return torch.softmax(self.logits[stage], dim=0)

    def forward(self, features: list[torch.Tensor]) -> list[torch.Tensor]:
        fused = []
        for stage, feature in enumerate(features):
            per_sequence = feature.unflatten(0, (-1, self.num_sequences))  # (B, S, F, ...)
            if self.mixers is not None:
                fused.append(self.mixers[stage](per_sequence.flatten(1, 2)))
                continue
            weights = self.stage_weights(stage).to(feature.dtype).to(feature.device)
            weights = weights.view(1, -1, *([1] * (per_sequence.dim() - 2)))
            fused.append((per_sequence * weights).sum(dim=1))
        return fused


def mean_mixer(num_sequences: int, channels: int) -> nn.Conv3d:
    """1x1x1 convolution (S*F -> F) that starts as the mean over sequences of each channel."""
    conv = nn.Conv3d(num_sequences * channels, channels, 1)
    with torch.no_grad():
        conv.weight.zero_()
        conv.bias.zero_()
        for sequence in range(num_sequences):
            conv.weight[:, sequence * channels:(sequence + 1) * channels, 0, 0, 0] = torch.eye(channels) / num_sequences
    return conv


def fold_sequences(x: torch.Tensor) -> torch.Tensor:
    """(B, S, X, Y, Z) -> (B*S, 1, X, Y, Z): each sequence becomes its own batch element."""
    return x.reshape(x.shape[0] * x.shape[1], 1, *x.shape[2:])
