"""Predict one preprocessed case with a trained network: what validation and fomo_nn_predict share.

Input is a case on the preprocessed grid, (C, X, Y, Z) float32, normalized as the plans say.
Output, by task type:
- segmentation: class probabilities (K, X, Y, Z) on that grid: logits from a Gaussian-weighted
  sliding window (optionally averaged over the 8 mirrorings), then softmax;
- classification: class probabilities (K,): the softmax of every sliding-window tile, averaged over
  tiles (patch aggregation: the network was trained on patches, so it is applied to patches). A
  volume no larger than the patch is one tile, zero-padded to the patch: one whole-volume pass.
  All-background tiles are skipped;
- regression: the value in the target's unit: tile outputs are de-normalized with the training
  fold's target mean/std (stored in the checkpoint) and averaged (``aggregation="median"`` is the
  robust alternative FOMO2JOMO used for age). Never rounded.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from fomo_nn.checkpoints import training_state as checkpoint
from fomo_nn.checkpoints.record import CheckpointRecord
from fomo_nn.checkpoints.registry import read_checkpoint
from fomo_nn.inference.sliding_window import sliding_window_dense, sliding_window_tiles
from fomo_nn.utils.errors import BadInputError
from fomo_nn.networks import build_finetuning_network
from fomo_nn.plans import Plans
from fomo_nn.tasks import task_kind

AGGREGATIONS = ("mean", "median")


@dataclass(frozen=True)
class TargetNormalization:
    """Regression targets are learned as (y - mean) / std of the training fold."""

    mean: float = 0.0
    std: float = 1.0

    @classmethod
    def fit(cls, targets) -> "TargetNormalization":
        values = np.asarray(list(targets), dtype=np.float64)
        if values.size == 0 or not np.isfinite(values).all():
            raise ValueError(f"cannot normalize regression targets {values.tolist()[:10]}: need finite values")
        std = float(values.std())
        return cls(float(values.mean()), std if std > 1e-8 else 1.0)

    def normalize(self, values):
        return (values - self.mean) / self.std

    def denormalize(self, values):
        return values * self.std + self.mean

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std}

    @classmethod
    def from_dict(cls, data: dict) -> "TargetNormalization":
        return cls(float(data["mean"]), float(data["std"]))


@contextmanager
def evaluation_mode(network: nn.Module):
    """eval() and no deep supervision for the duration; the previous state is restored after."""
    was_training = network.training
    deep = getattr(network, "deep_supervision", None)
    network.eval()
    if deep:
        network.deep_supervision = False
    try:
        yield network
    finally:
        if deep:
            network.deep_supervision = True
        network.train(was_training)


def predict_preprocessed(network: nn.Module, data, plans: Plans, task_type: str | None = None, tta: bool = False,
                         step: float = 0.5, device: str | torch.device = "cpu",
                         target_normalization: TargetNormalization | dict | None = None,
                         batch_size: int | None = None, aggregation: str = "mean"):
    """Prediction for one preprocessed case (see the module docstring for what each task returns).

    `network` must already live on `device`. `data` is a numpy array or tensor (C, X, Y, Z). The
    task kind's ``predict`` hook (fomo_nn.tasks) says which of the functions below runs.
    """
    kind = task_kind(task_type or plans.task_type)
    if kind.predict is None:
        raise ValueError(f"no case prediction for task type {kind.name!r}")
    data = data if isinstance(data, torch.Tensor) else torch.from_numpy(np.array(data, dtype=np.float32))  # any array-like
    if data.dim() != 4 or data.shape[0] != plans.num_input_channels:
        raise ValueError(f"expected preprocessed data ({plans.num_input_channels}, X, Y, Z) for channels "
                         f"{plans.channel_names}, got {tuple(data.shape)}")
    window = dict(step=step, mirror=tta, batch_size=batch_size, device=device)
    with evaluation_mode(network):
        return kind.hook("predict")(network, data, plans, window, target_normalization, aggregation)


def voxel_class_probabilities(network: nn.Module, data: torch.Tensor, plans: Plans, window: dict,
                              target_normalization=None, aggregation: str = "mean") -> np.ndarray:
    """(K, X, Y, Z): softmax of the Gaussian-weighted sliding-window logits."""
    logits = sliding_window_dense(network, data, plans.patch_size, plans.num_segmentation_heads, **window)
    return torch.softmax(logits, dim=0).numpy()


def case_class_probabilities(network: nn.Module, data: torch.Tensor, plans: Plans, window: dict,
                             target_normalization=None, aggregation: str = "mean") -> np.ndarray:
    """(K,): every tile's softmax, averaged over the tiles."""
    outputs, _ = sliding_window_tiles(network, data, plans.patch_size, **window)
    return torch.softmax(outputs, dim=1).mean(dim=0).numpy()


def case_value(network: nn.Module, data: torch.Tensor, plans: Plans, window: dict,
               target_normalization=None, aggregation: str = "mean") -> float:
    """The value in the target's unit, from the de-normalised tile outputs."""
    outputs, _ = sliding_window_tiles(network, data, plans.patch_size, **window)
    return regression_value(outputs, target_normalization, aggregation)


def regression_value(tile_outputs: torch.Tensor, target_normalization, aggregation: str = "mean") -> float:
    """De-normalize per-tile outputs (N, 1) and aggregate them into one value in the target's unit."""
    if target_normalization is None:
        raise ValueError("regression prediction needs the training target normalization (checkpoint 'extra')")
    if isinstance(target_normalization, dict):
        target_normalization = TargetNormalization.from_dict(target_normalization)
    if aggregation not in AGGREGATIONS:
        raise ValueError(f"aggregation {aggregation!r} is not one of {AGGREGATIONS}")
    values = target_normalization.denormalize(tile_outputs[:, 0].double().numpy())
    return float(np.median(values) if aggregation == "median" else np.mean(values))


@dataclass
class TrainedModel:
    """A finetuned network rebuilt from its checkpoint, with what prediction needs besides weights."""

    network: nn.Module
    plans: Plans
    trainer: str
    fold: str
    target_normalization: TargetNormalization | None
    checkpoint: str

    @property
    def task_type(self) -> str:
        return self.plans.task_type

    def predict(self, data, **options):
        return predict_preprocessed(self.network, data, self.plans, target_normalization=self.target_normalization,
                                    device=next(self.network.parameters()).device, **options)


def load_trained_model(checkpoint_path: str | Path, device: str | torch.device = "cpu",
                       trust_pickle: bool = False) -> TrainedModel:
    """Rebuild the network of a finetuning checkpoint (checkpoint_final/best.pth) from its own plans."""
    return trained_model_from_record(read_checkpoint(checkpoint_path, trust_pickle=trust_pickle), device)


def trained_model_from_record(record: CheckpointRecord, device: str | torch.device = "cpu") -> TrainedModel:
    """The whole trained network of a fomo_nn training checkpoint's record (its plans say how to build it)."""
    if record.plans is None or record.weights is None:
        raise BadInputError(record.path, f"a {record.format} checkpoint holds no whole trained network with its plans "
                                         f"(needs {checkpoint.NETWORK!r} and {checkpoint.PLANS!r} of a fomo_nn training "
                                         "checkpoint)")
    network = build_finetuning_network(record.plans)
    try:
        network.load_state_dict(record.weights)
    except RuntimeError as error:
        raise BadInputError(record.path, f"weights do not fit the network its plans describe ({error})") from None
    contents = record.contents or {}
    extra = contents.get(checkpoint.EXTRA) or {}
    normalization = extra.get("target_normalization")
    return TrainedModel(network.to(device), record.plans, str(contents.get(checkpoint.TRAINER, "")),
                        str(contents.get(checkpoint.FOLD, "")),
                        TargetNormalization.from_dict(normalization) if normalization else None, str(record.path))
