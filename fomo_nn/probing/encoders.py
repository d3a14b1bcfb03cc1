"""Any encoder fomo_nn holds, as a frozen feature extractor.

Sources: a pretraining checkpoint or exported encoder (single-channel, rebuilt from its adaptation
record), a finetuned model (its encoder, with the fusion it was trained with), or ``random[:SEED]``:
the untrained encoder of the dataset's own plans, the baseline every probe must be read against
(random convolutional features with pooling are a strong few-shot baseline).
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from fomo_nn.io.errors import BadInputError
from fomo_nn.networks import build_encoder, load_encoder_weights
from fomo_nn.networks.encoders import as_network_plan, encoder_in_channels
from fomo_nn.plans import Plans
from fomo_nn.plans.records import NetworkPlan
from fomo_nn.tasks import find_task_kind
from fomo_nn.checkpoints.training_state import load_checkpoint, task_type_of
from fomo_nn.training.finetuning.pretrained import pretrained_network_plan, pretrained_state_dict

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


def _is_finetuned(state: dict) -> bool:
    """A checkpoint with plans of a supervised task (or of one this version does not know)."""
    task = task_type_of(state)
    kind = find_task_kind(task)
    return task is not None and (kind is None or kind.supervised)


def load_frozen_encoder(source: str, plans: Plans | None = None) -> FrozenEncoder:
    """``random[:SEED]`` (needs `plans`), a pretraining checkpoint, an exported encoder or a finetuned model."""
    if source == RANDOM or source.startswith(f"{RANDOM}:"):
        if plans is None:
            raise ValueError("a random encoder needs the dataset's plans to know its topology")
        seed = source.split(":", 1)[1] if ":" in source else "0"
        if not seed.isdigit():
            raise ValueError(f"encoder source {source!r}: write random or random:SEED with an integer seed")
        return random_encoder(plans, int(seed))
    path = Path(source)
    state = load_checkpoint(path)
    if _is_finetuned(state):
        from fomo_nn.inference.case_prediction import load_trained_model

        model = load_trained_model(path).network
        return _frozen(model.encoder, model.network_plan, str(path))
    network = pretrained_network_plan(state, path)
    if network is None:
        raise BadInputError(path, "holds no network plan (adaptation record or plans): cannot rebuild its encoder")
    network = as_network_plan(network)
    weights = pretrained_state_dict(state, path)
    stem = next((v for k, v in weights.items() if k.startswith("encoder.") and v.dim() == 5), None)
    channels = int(stem.shape[1]) if stem is not None else int(network.input_channels)
    holder = _EncoderHolder(build_encoder(network, channels))
    load_encoder_weights(holder, weights)
    return _frozen(holder.encoder, network, str(path))
