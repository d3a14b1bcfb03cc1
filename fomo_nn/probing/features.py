"""Pooled encoder features of whole preprocessed volumes, for probes.

How a single-channel encoder meets C sequences (``mode``):
- ``per_sequence``: the encoder runs on each sequence alone; the pooled features are concatenated
  (C x F values), so a probe can weigh DWI against ADC;
- ``sequence_mean``: the same passes, features averaged over sequences (F values);
- ``stem_expansion``: one pass with the stem copied to C channels and divided by C. A convolution is
  linear, so this equals the encoder applied to the mean of the sequences, which is how it is computed;
- ``native``: the encoder's stem already takes the C channels (a model finetuned with stem expansion).

``pooling``: ``all_stages`` (global average of every stage, concatenated), ``bottleneck`` (the
deepest stage only) or ``all_stages_avgmax`` (average and maximum of every stage: a small lesion
barely moves an average but sets a maximum).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fomo_nn.probing.encoders import FrozenEncoder

FEATURE_MODES = ("per_sequence", "sequence_mean", "stem_expansion", "native")
POOLINGS = ("all_stages", "bottleneck", "all_stages_avgmax")


def pad_to_multiple(volume: torch.Tensor, multiples) -> torch.Tensor:
    """Zero-pad the spatial axes at their far ends so each is a multiple of the encoder's total stride."""
    pads = []
    for size, multiple in zip(reversed(volume.shape[-3:]), reversed(list(multiples))):
        pads += [0, (-int(size)) % int(multiple)]
    return F.pad(volume, pads) if any(pads) else volume


def pool_stages(stages: list[torch.Tensor], pooling: str) -> torch.Tensor:
    """(B, F) pooled features from per-stage maps (B, F_s, X, Y, Z)."""
    if pooling not in POOLINGS:
        raise ValueError(f"pooling {pooling!r} is not one of {POOLINGS}")
    chosen = stages[-1:] if pooling == "bottleneck" else stages
    pooled = [s.mean(dim=(2, 3, 4)) for s in chosen]
    if pooling == "all_stages_avgmax":
        pooled += [s.amax(dim=(2, 3, 4)) for s in chosen]
    return torch.cat(pooled, dim=1)


def choose_mode(frozen: FrozenEncoder, channels: int, mode: str | None) -> str:
    """The feature mode for `channels` input sequences (None: per_sequence for a single-channel encoder)."""
    stem = frozen.in_channels
    if stem > 1:
        if stem != channels or mode not in (None, "native"):
            raise ValueError(f"{frozen.source}: its stem takes {stem} channels, the data have {channels}; "
                             "only mode 'native' applies to a multi-channel stem")
        return "native"
    if channels == 1:
        return "native"
    mode = mode or "per_sequence"
    if mode not in FEATURE_MODES[:3]:
        raise ValueError(f"feature mode {mode!r} is not one of {FEATURE_MODES[:3]} for a single-channel encoder")
    return mode


@torch.no_grad()
def pooled_features(frozen: FrozenEncoder, volume, mode: str | None = None, pooling: str = "all_stages",
                    device: str | torch.device = "cpu") -> np.ndarray:
    """One case (C, X, Y, Z) -> its feature vector (float64)."""
    x = torch.from_numpy(np.array(volume, dtype=np.float32)).to(device)
    channels = int(x.shape[0])
    mode = choose_mode(frozen, channels, mode)
    stride = frozen.network.total_downsampling
    if mode == "native":
        batch = x[None]
    elif mode == "stem_expansion":
        batch = x.mean(dim=0, keepdim=True)[None]
    else:
        batch = x[:, None]  # (C, 1, X, Y, Z): every sequence its own pass
    features = pool_stages(frozen.encoder(pad_to_multiple(batch, stride)), pooling).double()
    if mode == "per_sequence":
        return features.reshape(-1).cpu().numpy()
    return features.mean(dim=0).cpu().numpy()


def extract_features(frozen: FrozenEncoder, volumes, mode: str | None = None, pooling: str = "all_stages",
                     device: str | torch.device = "cpu") -> np.ndarray:
    """(N, D) features of an iterable of (C, X, Y, Z) volumes."""
    frozen.encoder.to(device)
    rows = [pooled_features(frozen, v, mode, pooling, device) for v in volumes]
    if not rows:
        raise ValueError("no volumes to extract features from")
    return np.stack(rows)
