"""Regression finetuning (FOMO25 Task 3, brain age in years: MAE and Pearson r).

Network: the encoder, global average pooling, one Linear output (RegressionNet). The network
learns the target normalized by the training fold's mean and std; both are stored in every
checkpoint (``extra.target_normalization``) and undone at prediction, so outputs are in the
target's unit (never truncated: the official baseline cast ages to int). Loss, method setting
``loss``: ``mse`` (default, as the baseline) or ``smooth_l1`` (robust to outlier labels; its
``smooth_l1_beta`` is in standard deviations of the target: 0.1 is L1 beyond a tenth of a SD).
"""
from __future__ import annotations

import warnings

import numpy as np
import torch
import torch.nn.functional as F

from fomo_nn.evaluation.metrics import mean_absolute_error, pearson_r
from fomo_nn.inference.case_prediction import TargetNormalization
from fomo_nn.training.finetuning.pooled_head import PooledHeadTrainer
from fomo_nn.training.registry import register_trainer

LOSSES = ("mse", "smooth_l1")


def quiet_pearson(x, y) -> float | None:
    """Pearson r, or None when undefined (fewer than 2 values or a constant side)."""
    if len(x) < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return pearson_r(x, y)


@register_trainer
class RegressionTrainer(PooledHeadTrainer):
    name = "regression"
    description = "finetune (or train from scratch) encoder + pooled linear head; normalized target; MAE, r"
    task_types = ("regression",)
    augmentation_family = "regression"
    metric_name = "val_mae"
    csv_columns = ("case_id", "target", "prediction", "absolute_error")
    higher_is_better = False

    def default_method_settings(self) -> dict:
        return {**super().default_method_settings(), "loss": "mse", "smooth_l1_beta": 0.1, "aggregation": "mean"}

    def on_cases_split(self, train, val) -> None:
        if self.method["loss"] not in LOSSES:
            raise ValueError(f"method setting loss={self.method['loss']!r}; use one of {LOSSES}")
        self.case_targets(val)  # fail before training if a validation case lacks its target
        self.train_targets = self.case_targets(train)
        self.target_normalization = TargetNormalization.fit(self.train_targets)

    def probe_targets(self, targets: np.ndarray) -> np.ndarray:
        return self.target_normalization.normalize(targets)

    def set_head_from_probe(self, estimator) -> None:
        linear = self.network.head.linear
        with torch.no_grad():
            linear.weight.copy_(torch.as_tensor(estimator.coef_, dtype=torch.float32).reshape(1, -1))
            linear.bias.fill_(float(estimator.intercept_))

    def extra_state(self) -> dict:
        return {"target_normalization": self.target_normalization.to_dict()}

    def load_extra_state(self, state: dict) -> None:
        if "target_normalization" in state:
            self.target_normalization = TargetNormalization.from_dict(state["target_normalization"])

    def _loss(self, prediction, target):
        if self.method["loss"] == "smooth_l1":
            return F.smooth_l1_loss(prediction, target, beta=float(self.method["smooth_l1_beta"]))
        return F.mse_loss(prediction, target)

    def compute_loss(self, batch, generator):
        prediction = self.model(batch["image"]).float()[:, 0]
        return self._loss(prediction, self.target_normalization.normalize(batch["label"])), {}

    def validation_step(self, batch, generator) -> dict:
        prediction = self.model(batch["image"]).float()[:, 0]
        loss = self._loss(prediction, self.target_normalization.normalize(batch["label"]))
        return {"val_loss": float(loss), "predictions": self.target_normalization.denormalize(prediction).cpu().numpy(),
                "targets": batch["label"].cpu().numpy()}

    def summarize_validation(self, outputs: list[dict]) -> dict:
        predictions = np.concatenate([o["predictions"] for o in outputs])
        targets = np.concatenate([o["targets"] for o in outputs])
        summary = {"val_loss": float(np.mean([o["val_loss"] for o in outputs])),
                   "val_mae": mean_absolute_error(targets, predictions)}
        r = quiet_pearson(targets, predictions)
        if r is not None:
            summary["val_pearson_r"] = r
        return summary

    def prediction_options(self) -> dict:
        return {"target_normalization": self.target_normalization, "aggregation": self.method["aggregation"]}

    def score_case(self, case, prediction, folder) -> dict:
        target = float(case.target)
        return {"target": target, "prediction": float(prediction), "absolute_error": abs(float(prediction) - target)}

    def summarize_cases(self, records: list[dict]) -> dict:
        targets = np.array([r["target"] for r in records])
        predictions = np.array([r["prediction"] for r in records])
        mean_of_training = float(np.mean(self.train_targets))
        metrics = {"mae": mean_absolute_error(targets, predictions),
                   # the trivial predictor a model must beat: the training fold's mean target for everyone
                   "mae_training_mean_predictor": mean_absolute_error(targets, np.full_like(targets, mean_of_training)),
                   "num_cases": len(records)}
        if len(records) >= 2:
            with warnings.catch_warnings():  # constant predictions: r = 0 by the metrics' convention
                warnings.simplefilter("ignore")
                metrics["pearson_r"] = pearson_r(targets, predictions)
        return metrics

    def summary_fields(self) -> dict:
        return {"target": self.plans.target, "target_normalization": self.target_normalization.to_dict(),
                "loss": self.method["loss"], "aggregation": self.method["aggregation"]}
