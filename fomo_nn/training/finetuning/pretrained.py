"""Load a pretrained encoder into a finetuning network, loudly: every key accounted for.

Accepted files: a pretraining checkpoint (``network`` = the whole pretraining model's state dict,
encoder keys under ``encoder.``), an exported encoder (``fomo_nn_export_encoder``: the encoder
state dict under ``encoder`` or ``network``), each with ``plans`` and/or the adaptation record
(under ``adaptation``, read as an AdaptationRecord), or a bare state dict. A supervised (finetuned)
checkpoint is accepted too, because transfer from a supervised model is a legitimate baseline: its
encoder is used, its decoder/head is not, and the log and report say so. The official FOMO25
baseline dropped mismatched weights silently; here a mismatch is an error naming keys and shapes,
unless partial loading is asked for, and the report is saved.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from fomo_nn.io.errors import BadInputError
from fomo_nn.networks import EncoderMismatchError, load_encoder_weights
from fomo_nn.networks.adaptation import AdaptationRecord
from fomo_nn.tasks import find_task_kind, task_kind
from fomo_nn.checkpoints.training_state import ENCODER, NETWORK, TRAINER, adaptation_entry, load_checkpoint, plans_entry, task_type_of

TOPOLOGY_FIELDS = ("encoder", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage")
REPORT_FILE = "pretrained_weights_report.json"


def supervised_source(state: dict) -> dict | None:
    """{'task', 'trainer'} when the checkpoint is a finetuned (supervised) model, else None."""
    task = task_type_of(state)
    kind = find_task_kind(task)
    if kind is None or not kind.supervised:
        return None
    return {"task": task, "trainer": state.get(TRAINER)}


def pretrained_state_dict(state: dict, path: str | Path) -> dict[str, torch.Tensor]:
    """The weights inside a checkpoint/export dict (keys as saved; encoder keys start with 'encoder.')."""
    for key in (ENCODER, NETWORK):
        weights = state.get(key)
        if isinstance(weights, dict) and weights and all(isinstance(v, torch.Tensor) for v in weights.values()):
            return weights
    if state and all(isinstance(v, torch.Tensor) for v in state.values()):
        return state  # a bare state dict
    raise BadInputError(path, f"holds no weights under {NETWORK!r} or {ENCODER!r} (top-level keys: {sorted(state)[:10]}); "
                              "pass a fomo_nn pretraining checkpoint or an exported encoder")


def adaptation_of(state: dict, path: str | Path = "checkpoint") -> AdaptationRecord | None:
    """The adaptation record a pretraining checkpoint or export carries (None if none); a malformed one
    (unknown or missing field, wrong type) is bad input naming the file and the field."""
    entry = adaptation_entry(state)
    if entry is None:
        return None
    try:
        return AdaptationRecord.from_dict(entry)
    except ValueError as error:
        raise BadInputError(path, str(error)) from None


def pretrained_network_plan(state: dict, path: str | Path = "checkpoint") -> dict | None:
    """The NetworkPlan (as a dict) the weights were built from: adaptation record first, then plans."""
    adaptation = adaptation_of(state, path)
    if adaptation is not None and adaptation.network_plan is not None:
        return adaptation.network_plan
    plans = plans_entry(state)
    if plans is not None and isinstance(plans.get("network"), dict):
        return plans["network"]
    return None


def topology_differences(pretrained_network: dict | None, network_plan) -> list[str]:
    """Human-readable differences between the encoder topologies (empty if unknown or equal)."""
    if pretrained_network is None:
        return []
    differences = []
    for name in TOPOLOGY_FIELDS:
        theirs, ours = pretrained_network.get(name), getattr(network_plan, name)
        if theirs is not None and _plain(theirs) != _plain(ours):
            differences.append(f"{name}: checkpoint {theirs} vs plans {ours}")
    return differences


def _plain(value):
    return [_plain(v) for v in value] if isinstance(value, (list, tuple)) else value


def plans_like_hint(checkpoint: str | Path, differences: list[str]) -> str:
    if not differences:
        return ""
    return (f". The checkpoint's encoder topology differs from these plans ({'; '.join(differences)}): plan the "
            f"dataset like the checkpoint with `fomo_nn_plan_and_preprocess -d DATASET --plans-like {checkpoint}`")


def load_pretrained_encoder(network: nn.Module, checkpoint: str | Path, network_plan, allow_partial: bool) -> dict:
    """Load the checkpoint's encoder into `network`; return the JSON-able report (raises on mismatch)."""
    path = Path(checkpoint)
    state = load_checkpoint(path)
    weights = pretrained_state_dict(state, path)
    differences = topology_differences(pretrained_network_plan(state, path), network_plan)
    try:
        result = load_encoder_weights(network, weights, allow_partial=allow_partial)
    except EncoderMismatchError as error:
        raise EncoderMismatchError(f"{path}: {error}{plans_like_hint(path, differences)}") from None
    adaptation = adaptation_of(state, path)
    report = {
        "checkpoint": str(path),
        "allow_partial": bool(allow_partial),
        "counts": {kind: len(result[kind]) for kind in ("loaded", "missing", "unexpected", "shape_mismatch")},
        **{kind: result[kind] for kind in ("loaded", "missing", "unexpected", "shape_mismatch", "stem_expanded")},
        "topology_differences": differences,
        "pretraining": adaptation.pretraining if adaptation else None,
        "data_provenance": adaptation.data_provenance if adaptation else None,
        "supervised_source": supervised_source(state),
    }
    if differences:
        report["hint"] = plans_like_hint(path, differences).lstrip(". ")
    return report


def describe_report(report: dict) -> str:
    counts = report["counts"]
    text = (f"pretrained encoder from {report['checkpoint']}: loaded {counts['loaded']}, missing {counts['missing']}, "
            f"unexpected {counts['unexpected']}, shape-mismatched {counts['shape_mismatch']}")
    if report["stem_expanded"]:
        text += " (single-channel stem expanded to the input channels)"
    source = report.get("supervised_source")
    if source:
        text += (f"\n[fomo_nn] note: {report['checkpoint']} is a supervised {source['task']} checkpoint (trainer "
                 f"{source['trainer']!r}), not a pretraining one: its encoder is used, its "
                 f"{task_kind(source['task']).head_name} is not")
    if report.get("hint"):
        text += f"\n[fomo_nn] warning: {report['hint']}"
    return "[fomo_nn] " + text


def print_report(report: dict) -> None:
    print(describe_report(report), file=sys.stderr)
