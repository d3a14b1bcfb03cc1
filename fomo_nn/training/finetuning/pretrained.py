"""Load a pretrained encoder into a finetuning network, loudly: every key accounted for.

Any checkpoint fomo_nn reads (fomo_nn.checkpoints.registry: fomo_nn pretraining/finetuning checkpoints,
exported encoders, nnssl, safetensors + config.json, ...) is read once into a CheckpointRecord; its
encoder weights (fomo_nn's names) are loaded here. A supervised (finetuned) checkpoint is accepted too,
because transfer from a supervised model is a legitimate baseline: its encoder is used, its
decoder/head is not, and the log and report say so. The official FOMO25 baseline dropped mismatched
weights silently; here another encoder family, a stem that cannot be adapted, or any mismatched key is
an error naming the file and keys, unless partial loading is asked for, and the report is saved.
"""
from __future__ import annotations

import sys
from pathlib import Path

import torch
from torch import nn

from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import EncoderMismatchError, build_encoder, load_encoder_weights
from fomo_nn.networks.encoders import ENCODER_PREFIX
from fomo_nn.networks.weights import describe_mismatch
from fomo_nn.tasks import find_task_kind, task_kind

TOPOLOGY_FIELDS = ("encoder", "features_per_stage", "kernel_sizes", "strides", "n_conv_per_stage")
REPORT_FILE = "pretrained_weights_report.json"


def supervised_source(record: CheckpointRecord) -> dict | None:
    """{'task', 'trainer'} when the checkpoint is a finetuned (supervised) model, else None."""
    kind = find_task_kind(record.task_type)
    if kind is None or not kind.supervised:
        return None
    return {"task": record.task_type, "trainer": record.provenance.get("trainer")}


def topology_differences(pretrained_network, network_plan) -> list[str]:
    """Human-readable differences between the encoder topologies (empty if unknown or equal)."""
    if pretrained_network is None:
        return []
    differences = []
    for name in TOPOLOGY_FIELDS:
        theirs = pretrained_network.get(name) if isinstance(pretrained_network, dict) else getattr(pretrained_network, name)
        ours = getattr(network_plan, name)
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


def check_compatible(record: CheckpointRecord, network_plan, allow_partial: bool = False) -> None:
    """Refuse, naming the file, what loading would refuse: another encoder family, a stem that cannot be
    adapted, and (unless partial loading is asked for) missing, unexpected or mis-shaped encoder keys.

    Called before a trainer writes anything, so a wrong --pretrained leaves no half-made run behind; the
    encoder is built on the meta device for the comparison (no memory, no init).
    """
    if record.network.encoder != network_plan.encoder:
        raise BadInputError(record.path, f"holds a {record.network.encoder!r} encoder ({record.format}) but the plans "
                                         f"build a {network_plan.encoder!r} one: plan the dataset like it with "
                                         f"`fomo_nn_plan_and_preprocess -d DATASET --plans-like {record.path}`")
    theirs, ours = record.preprocessing.channels, int(network_plan.input_channels)
    if theirs != ours and theirs != 1:
        raise BadInputError(record.path, f"its encoder stem takes {theirs} input channels but this network's takes "
                                         f"{ours}; only a single-channel stem can be adapted to other channel counts")
    if allow_partial:
        return
    with torch.device("meta"):
        expected = {ENCODER_PREFIX + k: tuple(v.shape) for k, v in build_encoder(network_plan, ours).state_dict().items()}
    found = {k: tuple(v.shape) for k, v in record.encoder.items()}
    stem_adapted = {k for k, shape in found.items() if k in expected and len(shape) == 5 and shape[1] == 1
                    and expected[k][1] == ours and shape[:1] + shape[2:] == expected[k][:1] + expected[k][2:]}
    report = {"missing": [k for k in expected if k not in found], "unexpected": [k for k in found if k not in expected],
              "shape_mismatch": [{"key": k, "checkpoint_shape": list(found[k]), "model_shape": list(expected[k])}
                                 for k in expected if k in found and found[k] != expected[k] and k not in stem_adapted]}
    if report["missing"] or report["unexpected"] or report["shape_mismatch"]:
        differences = topology_differences(record.network, network_plan)
        raise EncoderMismatchError(f"{record.path}: {describe_mismatch(report)}{plans_like_hint(record.path, differences)}")


def load_pretrained_encoder(network: nn.Module, checkpoint: str | Path | CheckpointRecord, network_plan,
                            allow_partial: bool, trust_pickle: bool = False) -> dict:
    """Load the checkpoint's encoder into `network`; return the JSON-able report (raises on mismatch).

    `checkpoint`: a path (read here) or the record a trainer read before writing anything.
    """
    record = checkpoint if isinstance(checkpoint, CheckpointRecord) else read_checkpoint(checkpoint,
                                                                                        trust_pickle=trust_pickle)
    path = record.path
    check_compatible(record, network_plan, allow_partial)
    differences = topology_differences(record.network, network_plan)
    try:
        result = load_encoder_weights(network, record.encoder, allow_partial=allow_partial)
    except EncoderMismatchError as error:
        raise EncoderMismatchError(f"{path}: {error}{plans_like_hint(path, differences)}") from None
    adaptation = record.adaptation
    report = {
        "checkpoint": str(path),
        "format": record.format,
        "allow_partial": bool(allow_partial),
        "counts": {kind: len(result[kind]) for kind in ("loaded", "missing", "unexpected", "shape_mismatch")},
        **{kind: result[kind] for kind in ("loaded", "missing", "unexpected", "shape_mismatch", "stem_expanded")},
        "topology_differences": differences,
        "pretraining": adaptation.pretraining if adaptation else {"method": record.provenance.get("method"),
                                                                  "framework": record.provenance.get("framework")},
        "data_provenance": adaptation.data_provenance if adaptation else record.provenance.get("data"),
        "supervised_source": supervised_source(record),
    }
    if differences:
        report["hint"] = plans_like_hint(path, differences).lstrip(". ")
    return report


def describe_report(report: dict) -> str:
    counts = report["counts"]
    text = (f"pretrained encoder from {report['checkpoint']} ({report.get('format', 'fomo_nn')}): loaded "
            f"{counts['loaded']}, missing {counts['missing']}, unexpected {counts['unexpected']}, "
            f"shape-mismatched {counts['shape_mismatch']}")
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
