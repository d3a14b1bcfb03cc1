"""fomo_nn's training checkpoints: pretraining and finetuning (`checkpoint_final/best/latest.pth`).

Layout (fomo_nn.checkpoints.training_state): `network` = the whole model's state dict (encoder keys under
"encoder."), `plans` = the run's plans, and for pretraining the adaptation record under `adaptation`.
The record's network is the one the encoder was built from (adaptation record first, then plans), with
the stem's input channels as the weights have them.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from fomo_nn.checkpoints.format import CheckpointFormat
from fomo_nn.checkpoints.record import CheckpointRecord, ExpectedPreprocessing, encoder_part, stem_channels
from fomo_nn.checkpoints.training_state import ADAPTATION, EPOCH, NETWORK, PLANS, TRAINER
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks.adaptation import AdaptationRecord
from fomo_nn.networks.encoders import as_network_plan
from fomo_nn.networks.weights import strip_wrapper_prefixes
from fomo_nn.plans.records import Plans

NAME = "fomo_nn_training"


def detect(contents: dict, path: Path) -> bool:
    return isinstance(contents.get(NETWORK), dict) and (isinstance(contents.get(PLANS), dict)
                                                        or isinstance(contents.get(ADAPTATION), dict))


def adaptation_of(contents: dict, path: Path) -> AdaptationRecord | None:
    entry = contents.get(ADAPTATION)
    if entry is None:
        return None
    try:
        return AdaptationRecord.from_dict(entry, str(path))
    except ValueError as error:
        raise BadInputError(path, str(error)) from None


def fomo_nn_record(contents: dict, path: Path, weights: dict, format_name: str, whole_network: bool) -> CheckpointRecord:
    """The record of a fomo_nn file (training checkpoint or exported encoder) from its weights, plans, record."""
    if not isinstance(weights, dict) or not all(isinstance(v, torch.Tensor) for v in weights.values()):
        raise BadInputError(path, "its weights are not a state dict of tensors")
    encoder = encoder_part(weights)
    if not encoder:
        raise BadInputError(path, f"holds no 'encoder.*' weights (its weights start with {sorted(weights)[:5]})")
    adaptation = adaptation_of(contents, path)
    plans_json = contents.get(PLANS) if isinstance(contents.get(PLANS), dict) else (adaptation.plans if adaptation else None)
    plans = Plans.from_json(plans_json, str(path)) if plans_json else None
    network = (adaptation.network_plan if adaptation else None) or (plans.network if plans else None)
    if network is None:
        raise BadInputError(path, "holds neither plans nor an adaptation record: the encoder's topology is unknown")
    network = as_network_plan(network)
    channels = stem_channels(encoder, network) or int(network.input_channels)
    network = dataclasses.replace(network, input_channels=channels)
    patch = (list(adaptation.recommended_patch_size) if adaptation and adaptation.recommended_patch_size
             else list(plans.patch_size) if plans else None)
    preprocessing = ExpectedPreprocessing(
        channels=channels, spacing=[float(s) for s in plans.target_spacing] if plans else None, patch_size=patch,
        normalization=[dataclasses.replace(n) for n in plans.normalization] if plans else None)
    provenance = {"framework": "fomo_nn", "trainer": contents.get(TRAINER), "epoch": contents.get(EPOCH),
                  "task_type": plans.task_type if plans else None,
                  "source_dataset": plans.dataset_name if plans else None,
                  "method": adaptation.method if adaptation else None,
                  "data": adaptation.data_provenance if adaptation else None}
    return CheckpointRecord(path=path, format=format_name, encoder=encoder, network=network,
                            preprocessing=preprocessing, provenance=provenance, plans=plans, adaptation=adaptation,
                            weights=strip_wrapper_prefixes(weights) if whole_network else None, contents=contents)


def convert(contents: dict, path: Path) -> CheckpointRecord:
    return fomo_nn_record(contents, path, contents[NETWORK], NAME, whole_network=True)


FORMAT = CheckpointFormat(
    name=NAME,
    description="fomo_nn pretraining or finetuning checkpoint (network state dict + plans [+ adaptation record])",
    detect=detect, convert=convert)
