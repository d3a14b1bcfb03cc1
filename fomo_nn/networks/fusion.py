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

FUSION_WEIGHTINGS = ("learned", "mean", "concat")  # concat: pooled heads only


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

    ``learned``: one softmax weight vector over sequences per stage, initialized uniform (= mean);
    ``mean``: a plain mean with no parameters.
    """

    def __init__(self, num_sequences: int, num_stages: int, weighting: str = "learned"):
        super().__init__()
        if weighting not in FUSION_WEIGHTINGS[:2]:
            raise ValueError(f"fusion weighting {weighting!r} is not one of {FUSION_WEIGHTINGS[:2]} (stage fusion)")
        if num_sequences < 1:
            raise ValueError(f"num_sequences must be >= 1, got {num_sequences}")
        self.num_sequences = num_sequences
        self.weighting = weighting
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
            weights = self.stage_weights(stage).to(feature.dtype).to(feature.device)
            weights = weights.view(1, -1, *([1] * (per_sequence.dim() - 2)))
            fused.append((per_sequence * weights).sum(dim=1))
        return fused


def fold_sequences(x: torch.Tensor) -> torch.Tensor:
    """(B, S, X, Y, Z) -> (B*S, 1, X, Y, Z): each sequence becomes its own batch element."""
    return x.reshape(x.shape[0] * x.shape[1], 1, *x.shape[2:])
