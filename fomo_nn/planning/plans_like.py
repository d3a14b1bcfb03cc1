"""Plan a finetuning dataset like a pretrained model, so the pretrained weights always load.

From a pretrained model (any checkpoint fomo_nn reads, through fomo_nn.checkpoints: its record's
network and expected preprocessing; or a pretraining run's plans.json) the finetuning plans take the
network topology (family, features, kernels, strides, convs per stage), the target spacing, the
normalization scheme and a patch of the same family (same divisibility; the same size
unless the images are smaller or memory is short). Input handling adapts a single-channel encoder
to the dataset's sequences through the fusion mode. What the dataset alone would have chosen is
kept in `plans_like.differences` as {field: [dataset_alone, used]}.
"""
from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.datasets.dataset_json import DatasetSpec
from fomo_nn.io import BadInputError
from fomo_nn.planning.family_defaults import default_training_plan
from fomo_nn.planning.memory import estimate_feature_map_elements, feature_map_budget
from fomo_nn.planning.planner import PlannerOptions, case_arrays, median_resampled_shape, output_channels
from fomo_nn.planning.sizing import batch_size_for, memory_batch_size
from fomo_nn.planning.topology import MIN_FEATURE_MAP_EDGE, round_up
from fomo_nn.plans.records import NetworkPlan, NormalizationPlan, Plans, load_plans

COMPARED_FIELDS = ("target_spacing", "patch_size", "batch_size", "median_shape", "normalization",
                   "network.encoder", "network.features_per_stage", "network.kernel_sizes", "network.strides",
                   "network.n_conv_per_stage", "network.n_conv_per_stage_decoder", "network.input_channels",
                   "network.fusion")


@dataclass(frozen=True)
class LikeSource:
    """What finetuning plans take from a pretrained model: its network and the inputs its weights expect.

    From a checkpoint's record (any format fomo_nn reads) or from a pretraining run's plans.json; a field
    the source does not record (None) is left as the dataset alone would plan it, with a note.
    """

    name: str  # for notes: the pretraining dataset, or the checkpoint's format
    task_type: str | None
    network: NetworkPlan
    target_spacing: list[float] | None
    patch_size: list[int] | None
    normalization: list[NormalizationPlan] | None
    checkpoint: dict | None = None  # the record's summary (format, provenance); None for a plans.json


def like_source(source: Plans | CheckpointRecord | LikeSource) -> LikeSource:
    if isinstance(source, LikeSource):
        return source
    if isinstance(source, Plans):
        return LikeSource(source.dataset_name, source.task_type, source.network, list(source.target_spacing),
                          list(source.patch_size), list(source.normalization))
    pre = source.preprocessing
    name = (source.plans.dataset_name if source.plans else None) or source.provenance.get("source_dataset") \
        or f"a {source.format} checkpoint"
    return LikeSource(name, source.task_type, source.network, pre.spacing, pre.patch_size, pre.normalization,
                      source.summary())


def load_source_plans(path: str | Path, trust_pickle: bool = False) -> tuple[LikeSource, dict | None]:
    """(what to plan like, the adaptation record dict or None) from any checkpoint fomo_nn reads or a plans.json."""
    path = Path(path)
    if not path.exists():
        raise BadInputError(path, "--plans-like source does not exist")
    if path.is_dir() or path.suffix == ".json":
        return like_source(load_plans(path)), None
    record = read_checkpoint(path, trust_pickle=trust_pickle)
    return like_source(record), record.adaptation.to_dict() if record.adaptation else None


def _adaptation_summary(adaptation: dict | None) -> dict | None:
    if not adaptation:
        return None
    summary = {"architecture": (adaptation.get("architecture") or {}).get("class_name"),
               "method": (adaptation.get("pretraining") or {}).get("method"),
               "input_channels": adaptation.get("input_channels"),
               "recommended_patch_size": adaptation.get("recommended_patch_size"),
               "data_provenance": adaptation.get("data_provenance")}
    try:
        json.dumps(summary)
    except TypeError:
        summary["data_provenance"] = str(summary["data_provenance"])
    return summary


def adapted_input(source: Plans | LikeSource, spec: DatasetSpec, fusion: str, source_path) -> tuple[int, str, int, list[str]]:
    """(encoder input channels, fusion, encoder passes, notes) so the pretrained stem fits the dataset."""
    channels = len(spec.channels)
    pretrained = int(source.network.input_channels)
    if pretrained == 1:
        if channels == 1:
            return 1, "none", 1, []
        if fusion == "none":
            return channels, "stem_expansion", 1, ["fusion 'none' cannot load a 1-channel stem into "
                                                    f"{channels} channels: using stem_expansion"]
        if fusion == "shared_encoder":
            return 1, fusion, channels, []
        return channels, fusion, 1, []
    if pretrained == channels:
        return channels, source.network.fusion, 1, []
    raise BadInputError(source_path, f"the pretrained encoder takes {pretrained} input channels but the dataset has "
                                     f"{channels}; only a single-channel encoder can be adapted to other channel counts")


def _fit_patch_family(ideal, divisor, median_shape, network, out_channels, passes, options: PlannerOptions):
    """A patch divisible like the pretrained one: its size, clipped to the data, shrunk to fit memory."""
    patch = []
    for size, div, median in zip(ideal, divisor, median_shape):
        smallest = MIN_FEATURE_MAP_EDGE * div
        patch.append(int(min(size, max(round_up(median, div), smallest))))
    max_edge = options.sizing.max_patch_edge
    if max_edge:
        patch = [max(min(p, (max_edge // d) * d), d) for p, d in zip(patch, divisor)]
    budget = feature_map_budget(options.sizing.gpu_memory_gb)
    estimate = estimate_feature_map_elements(network, patch, out_channels, passes)
    notes = []
    while estimate > budget:
        ratios = np.asarray(patch, float) / np.maximum(np.asarray(median_shape, float), 1)
        axes = [int(a) for a in np.argsort(-ratios, kind="stable") if patch[int(a)] - divisor[int(a)] >= divisor[int(a)]]
        if not axes:
            notes.append(f"patch {patch} still exceeds the {options.sizing.gpu_memory_gb:g} GB budget")
            break
        patch[axes[0]] -= divisor[axes[0]]
        estimate = estimate_feature_map_elements(network, patch, out_channels, passes)
    return patch, estimate, notes


def _get(plans: Plans, dotted: str):
    value = plans
    for part in dotted.split("."):
        value = getattr(value, part)
    if isinstance(value, list) and value and dataclasses.is_dataclass(value[0]):
        return [dataclasses.asdict(v) for v in value]
    return value


def plan_differences(alone: Plans, used: Plans) -> dict:
    differences = {}
    for name in COMPARED_FIELDS:
        before, after = _get(alone, name), _get(used, name)
        if json.dumps(before) != json.dumps(after):
            differences[name] = [before, after]
    return differences


def plan_like(alone: Plans, source: Plans | CheckpointRecord | LikeSource, source_path: str | Path,
              spec: DatasetSpec, fingerprint: dict, options: PlannerOptions | None = None,
              adaptation: dict | None = None) -> Plans:
    """Finetuning plans that reuse `source`'s network, spacing, normalization and patch family."""
    options = options or PlannerOptions()
    source = like_source(source)
    input_channels, fusion, passes, notes = adapted_input(source, spec, options.fusion, source_path)
    network = dataclasses.replace(source.network, input_channels=input_channels, fusion=fusion,
                                  head_dropout=alone.network.head_dropout)
    spacings, shapes = case_arrays(fingerprint)
    if source.target_spacing is not None:
        target_spacing = [float(s) for s in source.target_spacing]
        spacing_reason = f"taken from the pretrained model ({source.name}) so features match their scale"
    else:
        target_spacing = list(alone.target_spacing)
        spacing_reason = f"the pretrained model ({source.name}) records no spacing: the dataset's own"
        notes.append(spacing_reason)
    median_shape = median_resampled_shape(spacings, shapes, target_spacing)
    ideal = (adaptation or {}).get("recommended_patch_size") or source.patch_size or alone.patch_size
    out_channels = output_channels(spec)
    patch, estimate, patch_notes = _fit_patch_family(ideal, network.total_downsampling, median_shape, network,
                                                     out_channels, passes, options)
    dataset_voxels = float(np.prod(median_shape)) * int(fingerprint.get("num_cases", len(spacings)))
    batch, batch_reason = batch_size_for(estimate, feature_map_budget(options.sizing.gpu_memory_gb), patch,
                                         dataset_voxels, options.sizing)
    source_norm = source.normalization
    if source_norm:
        normalization = [NormalizationPlan(**dataclasses.asdict(source_norm[i if len(source_norm) > 1 else 0]))
                         for i in range(len(alone.channel_names))]
        used_schemes = sorted({n.scheme for n in normalization})
        if used_schemes != [options.normalization]:
            notes.append(f"normalization {', '.join(used_schemes)} of the pretrained model is used (the planner's "
                         f"normalization option is {options.normalization}): its weights expect those inputs")
    else:
        normalization = list(alone.normalization)
        notes.append(f"the pretrained model ({source.name}) records no normalization: the dataset's own "
                     f"({', '.join(sorted({n.scheme for n in normalization}))}) is used")
    used = alone.replace(target_spacing=target_spacing, spacing_reason=spacing_reason, median_shape=median_shape,
                         patch_size=patch, batch_size=batch, normalization=normalization, network=network,
                         memory_batch_size=memory_batch_size(estimate, feature_map_budget(options.sizing.gpu_memory_gb)),
                         training=default_training_plan(spec.task_type, finetuning=True))
    differences = plan_differences(alone, used)
    used.plans_like = {"source": str(source_path), "source_dataset": source.name,
                       "source_task_type": source.task_type, "source_patch_size": list(ideal),
                       "checkpoint": source.checkpoint,
                       "adaptation": _adaptation_summary(adaptation), "differences": differences}
    used.notes = [f"planned like {source_path}: network ({network.encoder}), spacing ({spacing_reason}), "
                  f"normalization and patch family of the pretrained model; patch {patch} (pretrained {list(ideal)}, "
                  f"divisible by {network.total_downsampling}), median shape {median_shape} at that spacing",
                  *notes, *patch_notes, batch_reason, f"training recipe: {spec.task_type} finetuning defaults",
                  *[f"[dataset alone] {note}" for note in alone.notes]]
    return used


def differences_report(plans: Plans) -> str:
    """Human-readable: what the pretrained model changed compared with the dataset-alone plans."""
    if not plans.plans_like:
        return "not planned like a pretrained model"
    differences = plans.plans_like.get("differences") or {}
    lines = [f"planned like {plans.plans_like['source']} ({len(differences)} difference(s) from the dataset-alone "
             "plans):"]
    for name, (alone, used) in differences.items():
        lines.append(f"  {name}: dataset alone {json.dumps(alone)} -> used {json.dumps(used)}")
    if not differences:
        lines.append("  none: the dataset alone would have chosen the same")
    return "\n".join(lines)
