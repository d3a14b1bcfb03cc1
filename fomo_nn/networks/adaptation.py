"""The adaptation record every pretraining checkpoint carries, so finetuning rebuilds the same encoder.

It says which architecture (class + constructor kwargs) and plans produced the weights, which
state-dict keys form the encoder and its stem, how it was pretrained and on which data (so a
Method-track model trained on FOMO60K only can be told from an Open-track one).
"""
from __future__ import annotations

import json

from torch import nn

from fomo_nn.networks.builders import architecture_options, build_architecture, build_pretraining_network
from fomo_nn.networks.encoders import ENCODER_PREFIX, encoder_in_channels, stem_keys, stem_weight_keys
from fomo_nn.plans.records import Plans

RECORD_VERSION = 1


def adaptation_record(model_or_plans: nn.Module | Plans, plans: Plans, method: str, method_settings: dict,
                      data_provenance: dict) -> dict:
    """A JSON-able dict describing the pretrained network.

    ``model_or_plans``: the trained model, or a Plans from which the method's network is built
    (with the architecture options found in ``method_settings``).
    """
    if isinstance(model_or_plans, Plans):
        model = build_pretraining_network(model_or_plans, method, **method_settings)
    elif isinstance(model_or_plans, nn.Module):
        model = model_or_plans
    else:
        raise TypeError(f"expected an nn.Module or Plans, got {type(model_or_plans).__name__}")
    if not hasattr(model, "architecture_kwargs"):
        raise TypeError(f"{type(model).__name__} is not a fomo_nn network (no architecture_kwargs)")
    record = {
        "record_version": RECORD_VERSION,
        "architecture": {"class_name": type(model).__name__, "kwargs": model.architecture_kwargs},
        "plans": plans.to_json(),
        "input_channels": int(getattr(model, "in_channels", encoder_in_channels(model))),
        "encoder_input_channels": encoder_in_channels(model),
        "recommended_patch_size": list(plans.patch_size),
        "encoder_keys": [k for k in model.state_dict() if k.startswith(ENCODER_PREFIX)],
        "stem_keys": stem_keys(model),
        "stem_weight_keys": stem_weight_keys(model),
        "pretraining": {"method": method.lower(), "settings": method_settings,
                        "architecture_options": architecture_options(method, method_settings)},
        "data_provenance": data_provenance,
    }
    _check_json(record)
    return record


def build_from_record(record: dict) -> nn.Module:
    """The (untrained) network an adaptation record describes."""
    architecture = record["architecture"]
    return build_architecture(architecture["class_name"], architecture["kwargs"])


def _check_json(record: dict) -> None:
    try:
        json.dumps(record)
    except TypeError as error:
        raise TypeError(f"adaptation record is not JSON-able ({error}); method settings and provenance "
                        "must hold only numbers, strings, lists and dicts") from None
