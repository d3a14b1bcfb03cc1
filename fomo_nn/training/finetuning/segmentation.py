"""Segmentation finetuning (FOMO25 Task 2, meningioma: Dice and NSD).

Network: the (pretrained) encoder + a U-Net decoder with skips (SegmentationNet), deep supervision
on by default (method setting ``deep_supervision``). Loss: nnU-Net's Dice + CE. Patches are
centred on foreground with probability ``plans.foreground_oversampling`` (lesions are small).
Per epoch: pseudo-Dice (true/false positives summed over all validation patches, per foreground
class, then averaged). Final summary: per-case Dice and NSD at ``nsd_tolerance_mm`` (default: fomo_nn_evaluate's)
with the voxel spacing of the preprocessed grid (plans.target_spacing), averaged over cases; for
several foreground labels, per-label values are kept and the case value is their mean.
"""
from __future__ import annotations

import numpy as np
import torch

from fomo_nn.evaluation.metrics import dice, normalized_surface_distance
from fomo_nn.evaluation.scoring import DEFAULT_NSD_TOLERANCE_MM
from fomo_nn.inference.sliding_window import first_output
from fomo_nn.utils.errors import BadInputError
from fomo_nn.training.finetuning.base import FinetuningTrainer
from fomo_nn.training.finetuning.segmentation_loss import segmentation_loss
from fomo_nn.training.registry import register_trainer
from fomo_nn.utils.files import atomic_path


def confusion_counts(logits: torch.Tensor, target: torch.Tensor, num_classes: int) -> np.ndarray:
    """(3, K-1) true positives, false positives, false negatives of argmax(logits) per foreground class."""
    predicted = logits.argmax(1)
    reference = target[:, 0].long() if target.dim() == logits.dim() else target.long()
    counts = np.zeros((3, num_classes - 1), dtype=np.int64)
    for k in range(1, num_classes):
        p, r = predicted == k, reference == k
        counts[:, k - 1] = [int((p & r).sum()), int((p & ~r).sum()), int((~p & r).sum())]
    return counts


def pseudo_dice(counts: np.ndarray) -> float | None:
    """Mean over foreground classes of 2TP / (2TP + FP + FN); classes absent from both sides are skipped."""
    tp, fp, fn = counts.astype(np.float64)
    denominator = 2 * tp + fp + fn
    valid = denominator > 0
    return float(np.mean(2 * tp[valid] / denominator[valid])) if valid.any() else None


def save_mask(path, mask: np.ndarray) -> None:
    """A predicted label map on the preprocessed grid, compressed (np.load(path)["segmentation"])."""
    temp = atomic_path(path, ".npz")
    try:
        np.savez_compressed(temp, segmentation=mask)
        temp.replace(path)
    finally:
        if temp.exists():
            temp.unlink()


@register_trainer
class SegmentationTrainer(FinetuningTrainer):
    name = "segmentation"
    description = "finetune (or train from scratch) encoder + U-Net decoder; Dice+CE, fg oversampling; Dice, NSD"
    task_types = ("segmentation",)
    augmentation_family = "segmentation"
    csv_columns = ("case_id", "dice", "nsd", "reference_voxels", "predicted_voxels")
    metric_name = "val_pseudo_dice"
    higher_is_better = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        labels = sorted((self.plans.labels or {}).values())
        if labels != list(range(len(labels))) or len(labels) < 2:
            raise BadInputError(f"plans.json of {self.plans.dataset_name}",
                                f"segmentation labels must be 0..K-1 with background 0, got {self.plans.labels}")

    def default_method_settings(self) -> dict:
        return {**super().default_method_settings(), "deep_supervision": True, "nsd_tolerance_mm": DEFAULT_NSD_TOLERANCE_MM}

    @property
    def num_classes(self) -> int:
        return self.plans.num_segmentation_heads

    @property
    def foreground_names(self) -> list[str]:
        by_value = {v: k for k, v in self.plans.labels.items()}
        return [by_value[k] for k in range(1, self.num_classes)]

    def foreground_oversampling(self) -> float:
        return float(self.plans.foreground_oversampling)

    def compute_loss(self, batch, generator):
        loss, soft_dice = segmentation_loss(self.model(batch["image"]), batch["segmentation"])
        return loss, {"soft_dice": float(soft_dice.mean())}

    def validation_step(self, batch, generator) -> dict:
        output = self.model(batch["image"])
        loss, _ = segmentation_loss(output, batch["segmentation"])
        return {"val_loss": float(loss),
                "counts": confusion_counts(first_output(output).float(), batch["segmentation"], self.num_classes)}

    def summarize_validation(self, outputs: list[dict]) -> dict:
        summary = {"val_loss": float(np.mean([o["val_loss"] for o in outputs]))}
        value = pseudo_dice(sum(o["counts"] for o in outputs))
        if value is not None:
            summary["val_pseudo_dice"] = value
        return summary

    def score_case(self, case, prediction, folder) -> dict:
        mask = prediction.argmax(0).astype(np.int8)
        save_mask(folder / f"{case.case_id}.npz", mask)
        reference = np.asarray(case.seg())[0]
        spacing = self.plans.target_spacing
        tolerance = float(self.method["nsd_tolerance_mm"])
        per_label = {name: {"dice": dice(reference == k, mask == k),
                            "nsd": normalized_surface_distance(reference == k, mask == k, spacing, tolerance)}
                     for k, name in enumerate(self.foreground_names, start=1)}
        return {"dice": float(np.mean([v["dice"] for v in per_label.values()])),
                "nsd": float(np.mean([v["nsd"] for v in per_label.values()])),
                "per_label": per_label, "reference_voxels": int((reference > 0).sum()),
                "predicted_voxels": int((mask > 0).sum())}

    def summarize_cases(self, records: list[dict]) -> dict:
        metrics = {"dice": float(np.mean([r["dice"] for r in records])),
                   "nsd": float(np.mean([r["nsd"] for r in records])), "num_cases": len(records)}
        if len(self.foreground_names) > 1:
            for name in self.foreground_names:
                metrics[f"dice_{name}"] = float(np.mean([r["per_label"][name]["dice"] for r in records]))
                metrics[f"nsd_{name}"] = float(np.mean([r["per_label"][name]["nsd"] for r in records]))
        return metrics

    def summary_fields(self) -> dict:
        return {"nsd_tolerance_mm": float(self.method["nsd_tolerance_mm"]),
                "spacing_mm": list(self.plans.target_spacing), "labels": self.plans.labels,
                "per_case_masks": "validation/CASE.npz (key 'segmentation', int8 labels on the preprocessed grid)"}
