"""From a dataset fingerprint to plans.json: every decision made here, with its reason in notes."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np

from fomo_nn.datasets.dataset_json import DatasetSpec
from fomo_nn.planning.family_defaults import augmentation_preset, default_training_plan
from fomo_nn.planning.sizing import SizingOptions, plan_sizing
from fomo_nn.planning.target_spacing import determine_target_spacing
from fomo_nn.plans.records import FUSION_MODES, Plans
from fomo_nn.preprocessing.array_store import default_storage
from fomo_nn.preprocessing.normalization import DEFAULT_SCHEME, check_scheme, default_normalization
from fomo_nn.tasks import task_kind

SKULL_STRIPPED_RELATIVE_SIZE = 0.75  # nnU-Net: cropping removes > 25 % of the volume -> background is 0


@dataclass
class PlannerOptions:
    sizing: SizingOptions = field(default_factory=SizingOptions)
    fusion: str = "stem_expansion"  # multi-channel task datasets; see fomo_nn.plans.records.FUSION_MODES
    pretraining_family: str = "pretraining_reconstruction"
    target_spacing: list[float] | None = None  # override the spacing rule
    plans_name: str = "fomo_nnPlans"
    # per-channel intensity scheme (fomo_nn.preprocessing.normalization.SCHEMES); volume_wise_znorm
    # gives the FOMO25 baseline's inputs, for weights pretrained with it
    normalization: str = DEFAULT_SCHEME

    def __post_init__(self):
        if self.fusion not in FUSION_MODES:
            raise ValueError(f"fusion {self.fusion!r} is not one of {FUSION_MODES}")
        check_scheme(self.normalization)


def case_arrays(fingerprint: dict) -> tuple[np.ndarray, np.ndarray]:
    """(spacings (N, 3), shapes after crop (N, 3)) of the fingerprinted cases."""
    cases = fingerprint["cases"]
    if not cases:
        raise ValueError("the fingerprint holds no case")
    return (np.array([c["spacing"] for c in cases], dtype=float),
            np.array([c["shape_after_crop"] for c in cases], dtype=float))


def median_resampled_shape(spacings: np.ndarray, shapes: np.ndarray, target_spacing) -> list[int]:
    resampled = np.round(shapes * spacings / np.asarray(target_spacing, dtype=float))
    return [int(v) for v in np.median(resampled, axis=0)]


def input_handling(spec: DatasetSpec, fusion: str) -> tuple[list[str], int, str, int]:
    """(channel names, encoder input channels, fusion, encoder passes per sample)."""
    if task_kind(spec.task_type).corpus:
        return spec.channels[:1], 1, "none", 1
    return (spec.channels, *channel_handling(len(spec.channels), fusion))


def channel_handling(channels: int, fusion: str) -> tuple[int, str, int]:
    """(encoder input channels, fusion, encoder passes per sample) for `channels` input sequences."""
    if fusion not in FUSION_MODES:
        raise ValueError(f"fusion {fusion!r} is not one of {FUSION_MODES}")
    if channels == 1 or fusion == "none":
        return channels, "none", 1
    if fusion == "shared_encoder":
        return 1, fusion, channels
    return channels, fusion, 1


def with_fusion(plans: Plans, fusion: str) -> Plans:
    """The same plans with another input handling of their sequences (e.g. for a from-scratch
    baseline that learns its stem, where a pretrained encoder runs once per sequence)."""
    input_channels, fusion, _ = channel_handling(plans.num_input_channels, fusion)
    return plans.replace(network=dataclasses.replace(plans.network, input_channels=input_channels, fusion=fusion))


def output_channels(spec: DatasetSpec) -> int:
    return task_kind(spec.task_type).output_channels(spec)


def plan_from_fingerprint(fingerprint: dict, spec: DatasetSpec, options: PlannerOptions | None = None,
                          dataset_name: str | None = None) -> Plans:
    """The dataset-alone plans (no pretrained model to follow)."""
    options = options or PlannerOptions()
    kind = task_kind(spec.task_type)
    spacings, shapes = case_arrays(fingerprint)
    if options.target_spacing is not None:
        target_spacing = [float(s) for s in options.target_spacing]
        spacing_reason = f"set by the user to {target_spacing} mm"
    else:
        target_spacing, spacing_reason = determine_target_spacing(spacings, shapes)
    median_shape = median_resampled_shape(spacings, shapes, target_spacing)
    channels, input_channels, fusion, passes = input_handling(spec, options.fusion)
    num_cases = int(fingerprint.get("num_cases", len(spacings)))
    dataset_voxels = float(np.prod(median_shape)) * num_cases
    sizing = plan_sizing(target_spacing, median_shape, options.sizing, input_channels, output_channels(spec),
                         dataset_voxels, fusion, passes)
    family = kind.augmentation_family(options.pretraining_family)
    notes = [f"target spacing: {spacing_reason}", *sizing.notes,
             f"network: {options.sizing.encoder} U-Net, features {sizing.network.features_per_stage}",
             _input_note(spec, channels, input_channels, fusion),
             _normalization_note(fingerprint, options.normalization), f"augmentation preset: {family}",
             f"training recipe: {spec.task_type} defaults (see fomo_nn.planning.family_defaults)"]
    storage = default_storage(sizing.patch_size, len(channels))
    notes.append(_storage_note(storage, sizing.patch_size))
    auxiliary = spec.auxiliary_labels if kind.auxiliary_masks else None
    if auxiliary:
        notes.append(f"auxiliary labels {auxiliary}: every case's mask is preprocessed label-safely into "
                     "CASE_seg.b2nd (for auxiliary losses; the prediction target stays the case's value)")
    return Plans(
        dataset_name=dataset_name or spec.name, task_type=spec.task_type, channel_names=channels,
        target_spacing=target_spacing, spacing_reason=spacing_reason, median_shape=median_shape,
        patch_size=sizing.patch_size, batch_size=sizing.batch_size, memory_batch_size=sizing.memory_batch_size,
        normalization=[default_normalization(options.normalization) for _ in channels], network=sizing.network,
        training=default_training_plan(spec.task_type), augmentation=augmentation_preset(family),
        augmentation_family=family, method={},
        labels=spec.labels, classes=spec.classes, target=spec.target, auxiliary_labels=auxiliary,
        foreground_oversampling=kind.foreground_oversampling,
        plans_name=options.plans_name, notes=notes, storage=storage)


def _storage_note(storage, patch_size) -> str:
    return (f"storage: {storage.format} {storage.dtype} images ({storage.codec} level {storage.clevel}, "
            f"{storage.filter}), int8 masks; chunks {storage.chunks} and blocks {storage.blocks} from the patch "
            f"{list(patch_size)}, so a patch read decompresses only the blocks it touches (measured in "
            "benchmarks/bench_storage.py: float16 adds < 1e-3 to the normalized intensities)")


def _input_note(spec: DatasetSpec, channels, input_channels: int, fusion: str) -> str:
    if task_kind(spec.task_type).corpus:
        return "input: every image is its own single-channel sample (subject/session kept for pair sampling)"
    if fusion == "none":
        return f"input: {len(channels)} channel(s) {channels} stacked into the stem"
    if fusion == "stem_expansion":
        return (f"input: {len(channels)} sequences {channels}, fusion stem_expansion (a 1-channel pretrained stem is "
                f"replicated over the {input_channels} input channels)")
    return f"input: {len(channels)} sequences {channels}, fusion shared_encoder (one 1-channel encoder per sequence)"


def _normalization_note(fingerprint: dict, scheme: str = DEFAULT_SCHEME) -> str:
    relative = float(fingerprint.get("median_relative_size_after_crop", 1.0))
    if relative < SKULL_STRIPPED_RELATIVE_SIZE:
        state = f"cropping keeps {relative:.0%} of the volume: background is 0 (skull-stripped)"
    else:
        state = (f"cropping keeps {relative:.0%} of the volume: images may not be skull-stripped, so the "
                 "'foreground' is most of the image")
    if scheme == "volume_wise_znorm":
        return ("normalization: volume_wise_znorm per channel and image, the FOMO25 baseline's (Yucca) rule for "
                "weights pretrained with it: foreground = voxels above the image minimum, clipped above at its "
                "99th percentile, rescaled to [0, 1] (background 0, p99 and above 1; the baseline's z-score is "
                "undone by that rescale). It differs from our default zscore_foreground (clip to the 0.5/99.5 "
                "foreground percentiles, z-score: mean 0 / std 1 inside the nonzero mask): no lower clip, values "
                f"in [0, 1] instead of standardised, foreground found per channel; {state}")
    if scheme == "zscore_volume":
        return ("normalization: zscore_volume per channel and image, nnssl's and nnU-Net's ZScoreNormalization "
                "without a mask (the inputs of the OpenMind / SSL3D models): mean and std over the whole image cropped "
                f"to its nonzero box, background included, no clip (background becomes -mean/std); {state}")
    return ("normalization: zscore_foreground per channel and image (clip to the image's 0.5/99.5 foreground "
            f"percentiles, z-score inside the nonzero mask, background 0); {state}")
