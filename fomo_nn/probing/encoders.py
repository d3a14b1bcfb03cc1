"""Any encoder fomo_nn holds, as a frozen feature extractor.

Sources: any checkpoint fomo_nn reads (a pretraining checkpoint, an exported encoder, an nnssl or
safetensors foundation model: the encoder its record names), a finetuned model (its encoder, with the
fusion it was trained with), or ``random[:SEED]``: the untrained encoder of the dataset's own plans, the baseline every probe must be read against
(random convolutional features with pooling are a strong few-shot baseline).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
from torch import nn

from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.inference.case_prediction import trained_model_from_record
from fomo_nn.networks import build_encoder, load_encoder_weights
from fomo_nn.networks.encoders import encoder_in_channels
from fomo_nn.plans import Plans
from fomo_nn.plans.records import NetworkPlan
from fomo_nn.tasks import find_task_kind

RANDOM = "random"


@dataclass
class FrozenEncoder:
    """An encoder in eval mode without gradients; ``in_channels`` is what its stem takes."""

    encoder: nn.Module
    network: NetworkPlan
    source: str

    @property
    def in_channels(self) -> int:
        return encoder_in_channels(self.encoder)

    @property
    def stage_channels(self) -> list[int]:
        return list(self.encoder.output_channels)


class _EncoderHolder(nn.Module):
    """Gives a bare encoder the ``encoder.`` key prefix that fomo_nn state dicts use."""

    def __init__(self, encoder: nn.Module):
        super().__init__()
        self.encoder = encoder


def _frozen(encoder: nn.Module, network: NetworkPlan, source: str) -> FrozenEncoder:
    encoder.eval()
    for parameter in encoder.parameters():
        parameter.requires_grad_(False)
    return FrozenEncoder(encoder, network, source)


def random_encoder(plans: Plans, seed: int = 0) -> FrozenEncoder:
    """The dataset's planned encoder, untrained, single-channel (as a pretrained one would be)."""
    network = dataclasses.replace(plans.network, input_channels=1, fusion="none")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        encoder = build_encoder(network, 1)
    return _frozen(encoder, network, f"{RANDOM}:{seed}")


def load_frozen_encoder(source: str, plans: Plans | None = None, trust_pickle: bool = False) -> FrozenEncoder:
    """``random[:SEED]`` (needs `plans`) or any checkpoint fomo_nn reads (fomo_nn.checkpoints.registry): a
    pretraining checkpoint, an exported encoder, a foreign foundation model or a finetuned model."""
    if source == RANDOM or source.startswith(f"{RANDOM}:"):
        if plans is None:
            raise ValueError("a random encoder needs the dataset's plans to know its topology")
        seed = source.split(":", 1)[1] if ":" in source else "0"
        if not seed.isdigit():
            raise ValueError(f"encoder source {source!r}: write random or random:SEED with an integer seed")
        return random_encoder(plans, int(seed))
    record = read_checkpoint(source, trust_pickle=trust_pickle)
    kind = find_task_kind(record.task_type)
    if record.task_type is not None and (kind is None or kind.supervised):  # a finetuned model: its fusion too
        model = trained_model_from_record(record).network
        return _frozen(model.encoder, model.network_plan, str(record.path))
    holder = _EncoderHolder(build_encoder(record.network, record.preprocessing.channels))
    load_encoder_weights(holder, record.encoder)
    return _frozen(holder.encoder, record.network, str(record.path))
