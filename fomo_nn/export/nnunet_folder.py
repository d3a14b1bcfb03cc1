"""fomo_nn_export_nnunet: a finetuned fomo_nn segmentation model folder as an nnU-Net v2 model folder.

Output (what nnunetv2 2.8.1's `nnUNetPredictor.initialize_from_trained_model_folder` reads):
`OUT/plans.json`, `OUT/dataset.json`, `OUT/fold_K/checkpoint_final.pth` with `network_weights` (the DNA
U-Net's state dict), `init_args` (plans, configuration, fold, dataset_json, as nnUNetTrainer saves them),
`trainer_name` ('nnUNetTrainer') and `inference_allowed_mirroring_axes`; plus `fomo_nn_export` (provenance).
The checkpoint holds only tensors, dicts, lists, tuples, strings and numbers, so it also loads with
`torch.load(weights_only=True)`. Every fold is checked before anything is written: its weights load strictly
into the network nnU-Net builds from the written plans, and both networks give the same logits on a random
input. The folder appears whole under its final name or not at all.
"""
from __future__ import annotations

import logging
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from fomo_nn.export.nnunet_network import (NnUNetArchitecture, NotExportable, build_nnunet_network, check_same_outputs,
                                           check_shape, nnunet_architecture, nnunet_state_dict)
from fomo_nn.export.nnunet_plans import (MIRROR_AXES, NNUNET_TRAINER, NNUNET_VERSION_FOLLOWED, nnunet_dataset_json,
                                         nnunet_plans_json)
from fomo_nn.inference.model_folder import ModelEnsemble, load_ensemble
from fomo_nn.utils.errors import BadInputError
from fomo_nn.tasks import VOXELS
from fomo_nn.utils.files import NoSpaceLeftError, is_inside, is_no_space, write_json_atomic

logger = logging.getLogger(__name__)
CHECKPOINT_FILE = "checkpoint_final.pth"  # the name nnUNetv2_predict loads by default


@dataclass
class NnUNetExport:
    """What was written (or would be), for the CLI's summary."""

    output: Path
    folds: list[str]
    configuration: str
    plans_name: str
    dataset_name: str
    architecture: str
    max_logit_difference: float
    notes: list[str] = field(default_factory=list)

    @property
    def model_folder_name(self) -> str:
        """The folder name nnUNetv2_predict -d/-tr/-p/-c looks for under nnUNet_results/<dataset_name>/."""
        return f"{NNUNET_TRAINER}__{self.plans_name}__{self.configuration}"


def nnunet_fold(fold: str) -> int | str:
    """nnU-Net folds are integers or 'all' (fold_all)."""
    if fold.isdigit():
        return int(fold)
    if fold == "all":
        return fold
    raise NotExportable(f"fold {fold!r} is neither a number nor 'all', which nnU-Net cannot name")


def fold_checkpoint(weights: dict, plans_json: dict, dataset_json: dict, configuration: str, fold: str,
                    source: str, fomo_trainer: str) -> dict:
    """One fold's checkpoint_final.pth in nnUNetTrainer.save_checkpoint's layout (inference keys)."""
    return {
        "network_weights": weights,
        "init_args": {"plans": plans_json, "configuration": configuration, "fold": nnunet_fold(fold),
                      "dataset_json": dataset_json},
        "trainer_name": NNUNET_TRAINER,
        "inference_allowed_mirroring_axes": MIRROR_AXES,
        "fomo_nn_export": {"source_checkpoint": source, "fomo_nn_trainer": fomo_trainer, "fold": fold,
                           "nnunetv2_version_followed": NNUNET_VERSION_FOLLOWED},
    }


def converted_folds(ensemble: ModelEnsemble, architecture: NnUNetArchitecture) -> tuple[dict[str, dict], float]:
    """{fold: nnU-Net state dict} for every fold, each checked against its fomo_nn network; the worst difference."""
    plans = ensemble.plans
    shape = check_shape(architecture.arch_kwargs["strides"], plans.patch_size)
    weights, worst = {}, 0.0
    for model in ensemble.folds:
        if nnunet_architecture(model.network).to_json() != architecture.to_json():
            raise NotExportable(f"fold {model.fold} has another architecture than fold {ensemble.folds[0].fold}")
        target = build_nnunet_network(architecture, plans.num_input_channels, plans.num_segmentation_heads)
        try:
            weights[model.fold] = nnunet_state_dict(model.network, target)
            worst = max(worst, check_same_outputs(model.network, target, shape))
        except NotExportable as error:
            raise NotExportable(f"fold {model.fold}: {error}") from None
    return weights, worst


def export_nnunet_model(model_dir: str | Path, output: str | Path, folds=None, checkpoint: str = "final",
                        overwrite: bool = False) -> NnUNetExport:
    """Write the model folder `model_dir` (some or all folds) as the nnU-Net v2 model folder `output`."""
    model_dir, output = Path(model_dir), Path(output)
    if output.exists() and not overwrite:
        raise BadInputError(output, "exists; pass --overwrite to replace it")
    if output.exists() and not output.is_dir():
        raise BadInputError(output, "exists and is not a folder")
    if is_inside(model_dir, output):
        raise BadInputError(output, f"contains the model folder {model_dir} being exported; choose another output")
    ensemble = load_ensemble(model_dir, folds, checkpoint)
    plans = ensemble.plans
    try:
        if plans.kind.target != VOXELS:
            raise NotExportable(f"a {plans.task_type} model; nnU-Net predicts voxel labels only")
        architecture = nnunet_architecture(ensemble.folds[0].network)
        plans_json, notes = nnunet_plans_json(plans, architecture)
        dataset_json = nnunet_dataset_json(plans)
        weights, worst = converted_folds(ensemble, architecture)
        fold_names = [nnunet_fold(fold) for fold in weights]  # refuses a fold nnU-Net cannot name
    except NotExportable as error:
        raise BadInputError(model_dir, f"cannot be exported to nnU-Net: {error}") from None
    for note in notes:
        logger.warning("%s: %s", model_dir, note)
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".part", dir=output.parent))
    try:
        write_json_atomic(staging / "plans.json", plans_json)
        write_json_atomic(staging / "dataset.json", dataset_json)
        for model, fold in zip(ensemble.folds, fold_names):
            (staging / f"fold_{fold}").mkdir()
            torch.save(fold_checkpoint(weights[model.fold], plans_json, dataset_json, plans.configuration,
                                       model.fold, model.checkpoint, model.trainer),
                       staging / f"fold_{fold}" / CHECKPOINT_FILE)
        replace_folder(staging, output)
    except OSError as error:
        if is_no_space(error):
            raise NoSpaceLeftError(output.parent) from None
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
    return NnUNetExport(output, [str(f) for f in fold_names], plans.configuration, plans.plans_name,
                        plans.dataset_name, architecture.network_class_name.rsplit(".", 1)[-1], worst, notes)


def replace_folder(staging: Path, output: Path) -> None:
    """Move the finished `staging` folder to `output`; an old `output` is moved aside first, removed after."""
    old = None
    if output.exists():
        old = Path(tempfile.mkdtemp(prefix=f".{output.name}.", suffix=".old", dir=output.parent))
        os.rmdir(old)
        os.replace(output, old)
    try:
        os.replace(staging, output)
    except OSError:
        if old is not None:
            os.replace(old, output)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
