"""The adaptation record every pretraining checkpoint carries, so finetuning rebuilds the same encoder.

It says which architecture (class + constructor kwargs) and plans produced the weights, which
state-dict keys form the encoder and its stem, how it was pretrained and on which data (so a
Method-track model trained on FOMO60K only can be told from an Open-track one).
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass

from torch import nn

from fomo_nn.networks.builders import architecture_options, build_architecture, build_pretraining_network
from fomo_nn.networks.encoders import ENCODER_PREFIX, encoder_in_channels, stem_keys, stem_weight_keys
from fomo_nn.plans.records import Plans
from fomo_nn.utils.strict_keys import check_known_keys

RECORD_VERSION = 1


@dataclass
class AdaptationRecord:
    """The adaptation record (one spelling: the checkpoint key ``adaptation``, fields as below).

    Stored as ``to_dict()`` (JSON-able); ``from_dict`` refuses an unknown field (naming it and the
    nearest valid one), a missing one, and a value of the wrong type.
    """

    architecture: dict  # {"class_name": ..., "kwargs": {...}} for build_architecture
    plans: dict  # Plans.to_json() of the pretraining run
    input_channels: int
    encoder_input_channels: int
    recommended_patch_size: list
    encoder_keys: list
    stem_keys: list
    stem_weight_keys: list
    pretraining: dict  # {"method", "settings", "architecture_options"[, "sampling"]}
    data_provenance: dict
    record_version: int = RECORD_VERSION

    def to_dict(self) -> dict:
        return {"record_version": self.record_version,
                **{f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name != "record_version"}}

    @classmethod
    def from_dict(cls, data, where: str = "adaptation record") -> "AdaptationRecord":
        if isinstance(data, AdaptationRecord):
            return data
        if not isinstance(data, dict):
            raise ValueError(f"{where}: an adaptation record is a dict, got {type(data).__name__}")
        fields = {f.name: f for f in dataclasses.fields(cls)}
        check_known_keys(where, data, fields, what="adaptation record field")
        missing = [name for name, f in fields.items() if f.default is dataclasses.MISSING and name not in data]
        if missing:
            raise ValueError(f"{where}: adaptation record lacks the field(s) {missing}")
        kinds = {"architecture": dict, "plans": dict, "input_channels": int, "encoder_input_channels": int,
                 "recommended_patch_size": (list, tuple), "encoder_keys": (list, tuple), "stem_keys": (list, tuple),
                 "stem_weight_keys": (list, tuple), "pretraining": dict, "data_provenance": dict,
                 "record_version": int}
        for name, kind in kinds.items():
            if name in data and (not isinstance(data[name], kind) or isinstance(data[name], bool)):
                wanted = kind.__name__ if isinstance(kind, type) else "list"
                raise ValueError(f"{where}: adaptation record field {name!r} should be a {wanted}, "
                                 f"got {type(data[name]).__name__} ({data[name]!r:.60})")
        architecture = data["architecture"]
        if not isinstance(architecture.get("class_name"), str) or not isinstance(architecture.get("kwargs"), dict):
            raise ValueError(f"{where}: adaptation record field 'architecture' needs 'class_name' (a str) and "
                             f"'kwargs' (a dict), got keys {sorted(architecture)}")
        if int(data.get("record_version", RECORD_VERSION)) > RECORD_VERSION:
            raise ValueError(f"{where}: adaptation record version {data['record_version']} is newer than this "
                             f"fomo_nn reads ({RECORD_VERSION}); update fomo_nn")
        return cls(**data)

    @property
    def method(self) -> str | None:
        return self.pretraining.get("method")

    @property
    def network_plan(self) -> dict | None:
        """The NetworkPlan (as a dict) the encoder was built from: architecture kwargs, then plans."""
        network = self.architecture["kwargs"].get("network")
        if isinstance(network, dict):
            return network
        network = self.plans.get("network")
        return network if isinstance(network, dict) else None


def adaptation_record(model_or_plans: nn.Module | Plans, plans: Plans, method: str, method_settings: dict,
                      data_provenance: dict) -> dict:
    """A JSON-able dict describing the pretrained network (``AdaptationRecord(...).to_dict()``).

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
    record = AdaptationRecord(
        architecture={"class_name": type(model).__name__, "kwargs": model.architecture_kwargs},
        plans=plans.to_json(),
        input_channels=int(getattr(model, "in_channels", encoder_in_channels(model))),
        encoder_input_channels=encoder_in_channels(model),
        recommended_patch_size=list(plans.patch_size),
        encoder_keys=[k for k in model.state_dict() if k.startswith(ENCODER_PREFIX)],
        stem_keys=stem_keys(model),
        stem_weight_keys=stem_weight_keys(model),
        pretraining={"method": method.lower(), "settings": method_settings,
                     "architecture_options": architecture_options(method, method_settings)},
        data_provenance=data_provenance,
    ).to_dict()
    _check_json(record)
    return record


def build_from_record(record: dict | AdaptationRecord) -> nn.Module:
    """The (untrained) network an adaptation record describes."""
    architecture = AdaptationRecord.from_dict(record).architecture
    return build_architecture(architecture["class_name"], architecture["kwargs"])


def _check_json(record: dict) -> None:
    try:
        json.dumps(record)
    except TypeError as error:
        raise TypeError(f"adaptation record is not JSON-able ({error}); method settings and provenance "
                        "must hold only numbers, strings, lists and dicts") from None
