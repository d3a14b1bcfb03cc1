"""fomo_nn plans as nnU-Net v2's plans.json and dataset.json (what nnunetv2 2.8.1's predictor reads).

Followed: nnunetv2 2.8.1 (PyPI): `utilities/plans_handling/plans_handler.py` (PlansManager,
ConfigurationManager), `preprocessing/preprocessors/default_preprocessor.py` (transpose -> crop to nonzero
-> normalize -> resample), `imageio/nibabel_reader_writer.py`, `preprocessing/normalization/
default_normalization_schemes.py`, `utilities/label_handling/label_handling.py`.

Geometry. fomo_nn works on arrays in RAS voxel order (x, y, z) = (R, A, S), spacing in that order.
nnU-Net's `NibabelIOWithReorient` reorients to RAS the same way (nibabel io_orientation) and then
transposes to (z, y, x); the exported plans undo that with nnU-Net's own `transpose_forward` = [2, 1, 0]
(and `transpose_backward` for the written mask), so nnU-Net's network sees exactly fomo_nn's array, patch
and spacing, and the weights need no permutation. The reader is named in plans.json (`image_reader_writer`,
what the predictor uses) and in dataset.json (`overwrite_image_reader_writer`, what nnU-Net's own
preprocessing would use).

Normalization. nnU-Net finds a scheme by class name inside its own package, so only its schemes exist:
- zscore_foreground -> ZScoreNormalization with use_mask_for_norm: both z-score with the mean/std of the
  nonzero region (any channel) after cropping and leave the outside at 0. fomo_nn first clips that region to
  its `clip_percentiles` (default 0.5/99.5); nnU-Net's ZScoreNormalization does not clip. Voxels beyond those
  percentiles (hot spots, vessels, a bright lesion) reach the network unclipped and the mean/std shift
  slightly; with clip_percentiles [0, 100] the two are the same rule. nnU-Net also fills holes in the
  nonzero mask (fomo_nn does not), which only matters for zeros inside the brain.
- zscore_volume -> ZScoreNormalization without the mask: the same rule (mean/std of the whole cropped
  image, background included), as long as its clip_percentiles stay [0, 100].
- volume_wise_znorm with clip_percentiles [0, 100] -> RescaleTo01Normalization: both are
  (x - min) / (max - min) on the cropped image. With the FOMO25 baseline's [0, 99] the upper 1 % saturate
  at 1 in fomo_nn, which no nnU-Net scheme does (RescaleTo01 would divide by the maximum instead of the
  99th percentile: every intensity shrinks by a site-dependent factor), so that is refused.
Resampling: nnU-Net resamples images with its order-3 spline (nearest along the slice axis of anisotropic
scans, as fomo_nn) and logits with order 1; fomo_nn uses Keys cubic and linear kernels. On a case already at
the plans' spacing neither resamples.
"""
from __future__ import annotations

from fomo_nn.export.nnunet_network import NnUNetArchitecture, NotExportable
from fomo_nn.plans.records import NormalizationPlan, Plans

NNUNET_VERSION_FOLLOWED = "2.8.1"
NNUNET_TRAINER = "nnUNetTrainer"  # its build_network_architecture is get_network_from_plans
READER_WRITER = "NibabelIOWithReorient"
TRANSPOSE_RAS = [2, 1, 0]  # NibabelIOWithReorient's (z, y, x) back to fomo_nn's RAS (x, y, z)
FILE_ENDING = ".nii.gz"
MIRROR_AXES = (0, 1, 2)  # fomo_nn_predict's TTA flips every spatial axis
ANISOTROPY_THRESHOLD = 3.0  # nnU-Net's and fomo_nn's "separate z" rule
NO_CLIP = [0.0, 100.0]


def nnunet_normalization(plan: NormalizationPlan, channel: str) -> tuple[str, bool, str | None]:
    """(nnU-Net scheme class name, use_mask_for_norm, note on how it differs or None)."""
    clip = [float(v) for v in plan.clip_percentiles]
    if plan.scheme in ("zscore_foreground", "zscore_volume"):
        region = "foreground" if plan.scheme == "zscore_foreground" else "image"
        note = None if clip == NO_CLIP else (
            f"channel {channel}: fomo_nn clips the {region} to its {clip[0]:g}/{clip[1]:g} percentiles before the "
            "z-score, nnU-Net's ZScoreNormalization does not: voxels beyond them reach the network unclipped")
        return "ZScoreNormalization", plan.scheme == "zscore_foreground", note
    if plan.scheme == "volume_wise_znorm":
        if clip == NO_CLIP:
            return "RescaleTo01Normalization", False, None
        raise NotExportable(f"channel {channel}: volume_wise_znorm with clip_percentiles {clip} saturates the top "
                            f"{100 - clip[1]:g} % at 1, which no nnU-Net normalization does (RescaleTo01Normalization "
                            "divides by the maximum instead); only [0, 100] has a counterpart")
    raise NotExportable(f"channel {channel}: normalization {plan.scheme!r} has no nnU-Net counterpart")


def nnunet_labels(labels: dict[str, int] | None) -> dict[str, int]:
    """dataset.json labels: value 0 named 'background' (nnU-Net requires the name), values 0..K-1 (nnU-Net
    writes the output channel index as the label value; fomo_nn's channel i is the i-th smallest value)."""
    if not labels:
        raise NotExportable("the plans have no labels")
    values = sorted(int(v) for v in labels.values())
    if values != list(range(len(values))):
        raise NotExportable(f"label values {values} are not 0..{len(values) - 1}; nnU-Net writes the output "
                            "channel index as the label value")
    renamed = {}
    for name, value in sorted(labels.items(), key=lambda item: int(item[1])):
        if int(value) == 0:
            name = "background"
        elif name in ("background", "ignore"):
            raise NotExportable(f"label {name!r} = {value}: nnU-Net reserves that name "
                                "('background' is 0, 'ignore' is not predicted)")
        renamed[name] = int(value)
    return renamed


def nnunet_dataset_json(plans: Plans, num_training: int | None = None) -> dict:
    """dataset.json of the exported model folder (channel order = fomo_nn's channel order = _0000, _0001...)."""
    dataset = {"channel_names": {str(i): name for i, name in enumerate(plans.channel_names)},
               "labels": nnunet_labels(plans.labels),
               "file_ending": FILE_ENDING,
               "overwrite_image_reader_writer": READER_WRITER,
               "name": plans.dataset_name,
               "description": f"exported from the fomo_nn model of {plans.dataset_name} by fomo_nn_export_nnunet"}
    if num_training is not None:
        dataset["numTraining"] = int(num_training)
    return dataset


def nnunet_plans_json(plans: Plans, architecture: NnUNetArchitecture) -> tuple[dict, list[str]]:
    """(plans.json dict, notes on where nnU-Net's prediction will differ from fomo_nn's)."""
    schemes, masks, notes = [], [], []
    for name, normalization in zip(plans.channel_names, plans.normalization):
        scheme, use_mask, note = nnunet_normalization(normalization, name)
        schemes.append(scheme)
        masks.append(use_mask)
        if note:
            notes.append(note)
    spacing = [float(s) for s in plans.target_spacing]
    resampling = {"force_separate_z": None, "separate_z_anisotropy_threshold": ANISOTROPY_THRESHOLD}
    configuration = {
        "data_identifier": f"{plans.plans_name}_{plans.configuration}",
        "preprocessor_name": "DefaultPreprocessor",
        "batch_size": int(plans.batch_size),
        "patch_size": [int(p) for p in plans.patch_size],
        "median_image_size_in_voxels": [int(s) for s in plans.median_shape],
        "spacing": spacing,
        "normalization_schemes": schemes,
        "use_mask_for_norm": masks,
        "resampling_fn_data": "resample_data_or_seg_to_shape",
        "resampling_fn_seg": "resample_data_or_seg_to_shape",
        "resampling_fn_data_kwargs": {"is_seg": False, "order": 3, "order_z": 0, **resampling},
        "resampling_fn_seg_kwargs": {"is_seg": True, "order": 1, "order_z": 0, **resampling},
        "resampling_fn_probabilities": "resample_data_or_seg_to_shape",
        "resampling_fn_probabilities_kwargs": {"is_seg": False, "order": 1, "order_z": 0, **resampling},
        "architecture": architecture.to_json(),
        "batch_dice": False,
    }
    nnunet = {
        "dataset_name": plans.dataset_name,
        "plans_name": plans.plans_name,
        # fomo_nn plans keep only the target spacing and median shape (after resampling)
        "original_median_spacing_after_transp": spacing,
        "original_median_shape_after_transp": [int(s) for s in plans.median_shape],
        "image_reader_writer": READER_WRITER,
        "transpose_forward": list(TRANSPOSE_RAS),
        "transpose_backward": list(TRANSPOSE_RAS),
        "configurations": {plans.configuration: configuration},
        "experiment_planner_used": "fomo_nn (fomo_nn_export_nnunet)",
        "label_manager": "LabelManager",
        # read only by CTNormalization, which no export uses; fomo_nn normalizes per image
        "foreground_intensity_properties_per_channel": {str(i): {} for i in range(len(plans.channel_names))},
    }
    return nnunet, notes
