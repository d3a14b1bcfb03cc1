"""What any checkpoint file is, once read: a typed record every reader of checkpoints shares.

Formats (fomo_nn's own, nnssl, safetensors + config.json, asparagus, ...) differ in layout only; each
converts into this record, so finetuning (`--pretrained`), planning (`--plans-like`), probes, prediction
and export read one thing: the encoder weights in fomo_nn's names ("encoder." + the encoder module's
own state-dict keys), the network family and topology that holds them, the preprocessing the weights
expect, and where they came from.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from fomo_nn.networks import build_encoder
from fomo_nn.networks.adaptation import AdaptationRecord
from fomo_nn.networks.encoders import ENCODER_PREFIX, stem_weight_keys
from fomo_nn.networks.weights import strip_wrapper_prefixes
from fomo_nn.plans.records import NetworkPlan, NormalizationPlan, Plans


@dataclass(frozen=True)
class ExpectedPreprocessing:
    channels: int  # input channels of the pretrained stem
    spacing: list[float] | None  # mm; None: not recorded
    patch_size: list[int] | None  # recommended / pretraining patch
    normalization: list[NormalizationPlan] | None  # per channel; None: unknown
    orientation: str = "RAS"


@dataclass(frozen=True)
class CheckpointRecord:
    path: Path
    format: str  # the registry row's name
    encoder: dict[str, torch.Tensor]  # encoder weights in fomo_nn's names ("encoder.*")
    network: NetworkPlan  # family (network.encoder) + topology + input_channels
    preprocessing: ExpectedPreprocessing
    provenance: dict  # JSON-able: framework, method, source, data, epochs, ...
    plans: Plans | None = None  # fomo_nn's own checkpoints: the full plans
    adaptation: AdaptationRecord | None = None
    weights: dict[str, torch.Tensor] | None = None  # fomo_nn training checkpoints: the whole network state dict
    contents: dict | None = field(default=None, repr=False)  # fomo_nn formats: the loaded top-level dict

    @property
    def task_type(self) -> str | None:
        """The task the weights were trained for (fomo_nn plans), None when unknown."""
        return self.plans.task_type if self.plans is not None else None

    def summary(self) -> dict:
        """JSON-able description for reports and plans.plans_like."""
        return {"format": self.format, "family": self.network.encoder, "channels": self.preprocessing.channels,
                "spacing": self.preprocessing.spacing, "patch_size": self.preprocessing.patch_size,
                "normalization": None if self.preprocessing.normalization is None else
                [n.scheme for n in self.preprocessing.normalization],
                "encoder_tensors": len(self.encoder), "provenance": self.provenance}


def encoder_part(state_dict: dict) -> dict[str, torch.Tensor]:
    """The "encoder.*" tensors of a state dict, after DDP/compile wrapper prefixes are stripped."""
    return {k: v for k, v in strip_wrapper_prefixes(state_dict).items()
            if k.startswith(ENCODER_PREFIX) and isinstance(v, torch.Tensor)}


def stem_channels(encoder: dict[str, torch.Tensor], network: NetworkPlan) -> int | None:
    """Input channels of the stem convolution's weight in `encoder` (None: the file lacks it).

    The stem's key comes from the family's own encoder (its first Conv3d, built on the meta device: no
    memory), not from the file's key order: safetensors files, for one, store keys sorted.
    """
    with torch.device("meta"):
        holder = _EncoderHolder(build_encoder(dataclasses.replace(network, input_channels=1), 1))
    for key in stem_weight_keys(holder):
        if key in encoder and encoder[key].dim() == 5:
            return int(encoder[key].shape[1])
    return None


class _EncoderHolder(nn.Module):
    """Gives a bare encoder the "encoder." key prefix of fomo_nn's state dicts."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder
