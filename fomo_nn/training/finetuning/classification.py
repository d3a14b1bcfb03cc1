"""Classification finetuning (FOMO25 Task 1, infarct yes/no: AUROC).

Network: the encoder, global average pooling, one Linear layer (ClassificationNet). Loss:
cross-entropy. Class imbalance (Task 1 has 13 positives and 8 negatives) is handled by the method
setting ``imbalance``:
- ``class_weights`` (default): CE weighted by n / (K x n_c) from the training fold's counts, every
  case sampled equally often (no case is seen more than others: fewer repeats of the rare class
  in a few-shot regime);
- ``balanced_sampling``: unweighted CE on batches that hold the classes in turn;
- ``none``: plain CE, i.i.d. cases.
Per epoch, AUROC over validation patches drawn class-balanced (every batch holds both classes, so
the curve is always defined; AUROC does not depend on prevalence). The final summary uses
whole-case probabilities (tile-averaged, see fomo_nn.inference.case_prediction).
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from fomo_nn.evaluation.metrics import auroc
from fomo_nn.training.data.batch_sources import PatchSource, collate
from fomo_nn.training.finetuning.pooled_head import PooledHeadTrainer
from fomo_nn.training.registry import register_trainer

IMBALANCE_MODES = ("class_weights", "balanced_sampling", "none")


class ClassBalancedPatchSource(PatchSource):
    """Batches whose elements take the classes in turn (random starting class), cases uniform within a class."""

    def __init__(self, cases, labels: list[int], *args, **kwargs):
        super().__init__(cases, *args, **kwargs)
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        self.class_members = [by_class[c] for c in sorted(by_class)]

    def __call__(self, rng: np.random.Generator) -> dict:
        offset = int(rng.integers(len(self.class_members)))
        picks = []
        for element in range(self.batch_size):
            members = self.class_members[(offset + element) % len(self.class_members)]
            picks.append(members[rng.integers(len(members))])
        return collate([self.sample(self.cases[i], rng) for i in picks])


def class_weights(counts: list[int]) -> list[float]:
    """n / (K x n_c): every class contributes equally to the loss."""
    total, classes = sum(counts), len(counts)
    return [total / (classes * c) for c in counts]


def macro_auroc(labels: np.ndarray, probabilities: np.ndarray) -> float | None:
    """Binary: AUROC of the positive class; K > 2: mean one-vs-rest AUROC. None if a class is absent."""
    labels = np.asarray(labels).astype(int)
    present = np.unique(labels)
    if len(present) < 2:
        return None
    if probabilities.shape[1] == 2:
        return auroc(labels == 1, probabilities[:, 1])
    return float(np.mean([auroc(labels == k, probabilities[:, k]) for k in present]))


@register_trainer
class ClassificationTrainer(PooledHeadTrainer):
    name = "classification"
    description = "finetune (or train from scratch) encoder + pooled linear head; weighted CE; AUROC"
    task_types = ("classification",)
    augmentation_family = "classification"
    metric_name = "val_auroc"
    csv_columns = ("case_id", "label", "probability", "predicted_class")
    higher_is_better = True

    def default_method_settings(self) -> dict:
        return {**super().default_method_settings(), "imbalance": "class_weights"}

    @property
    def num_classes(self) -> int:
        return len(self.plans.classes)

    def on_cases_split(self, train, val) -> None:
        if self.method["imbalance"] not in IMBALANCE_MODES:
            raise ValueError(f"method setting imbalance={self.method['imbalance']!r}; use one of {IMBALANCE_MODES}")
        self.train_labels = self._labels(train)
        self.val_labels = self._labels(val)
        self.class_counts = [int(np.sum(np.asarray(self.train_labels) == k)) for k in range(self.num_classes)]
        empty = [str(self.plans.classes.get(str(k), k)) for k, n in enumerate(self.class_counts) if n == 0]
        if empty:
            raise ValueError(f"fold {self.fold}: no training case of class(es) {empty}; cannot learn them "
                             f"(class counts {self.class_counts})")
        use_weights = self.method["imbalance"] == "class_weights"
        self.loss_weights = class_weights(self.class_counts) if use_weights else [1.0] * self.num_classes

    def _labels(self, cases) -> list[int]:
        labels = [int(round(t)) for t in self.case_targets(cases)]
        bad = sorted({label for label in labels if not 0 <= label < self.num_classes})
        if bad:
            raise ValueError(f"class labels {bad} are outside 0..{self.num_classes - 1} (classes {self.plans.classes})")
        return labels

    def set_head_from_probe(self, estimator) -> None:
        """Logistic regression -> logits: binary w.x + b becomes (-(w.x + b)/2, (w.x + b)/2), same softmax."""
        coef = torch.as_tensor(estimator.coef_, dtype=torch.float32)
        bias = torch.as_tensor(estimator.intercept_, dtype=torch.float32)
        if coef.shape[0] == 1:
            coef, bias = torch.cat([-coef, coef]) / 2, torch.cat([-bias, bias]) / 2
        linear = self.network.head.linear
        with torch.no_grad():
            linear.weight.copy_(coef)
            linear.bias.copy_(bias)

    def make_training_source(self, cases):
        if self.method["imbalance"] != "balanced_sampling":
            return super().make_training_source(cases)
        pipeline, read_size = self.training_pipeline()
        return ClassBalancedPatchSource(cases, self.train_labels, read_size, self.plans.batch_size, pipeline)

    def make_validation_source(self, cases):
        return ClassBalancedPatchSource(cases, self.val_labels, self.plans.patch_size, self.plans.batch_size)

    def extra_state(self) -> dict:
        return {"class_counts": self.class_counts, "class_weights": self.loss_weights,
                "imbalance": self.method["imbalance"]}

    def compute_loss(self, batch, generator):
        logits = self.model(batch["image"]).float()
        weight = torch.tensor(self.loss_weights, dtype=torch.float32, device=logits.device)
        loss = F.cross_entropy(logits, batch["label"].long(), weight=weight)
        return loss, {}

    def validation_step(self, batch, generator) -> dict:
        logits = self.model(batch["image"]).float()
        weight = torch.tensor(self.loss_weights, dtype=torch.float32, device=logits.device)
        loss = F.cross_entropy(logits, batch["label"].long(), weight=weight)
        return {"val_loss": float(loss), "probabilities": torch.softmax(logits, 1).cpu().numpy(),
                "labels": batch["label"].cpu().numpy()}

    def summarize_validation(self, outputs: list[dict]) -> dict:
        probabilities = np.concatenate([o["probabilities"] for o in outputs])
        labels = np.concatenate([o["labels"] for o in outputs]).astype(int)
        summary = {"val_loss": float(np.mean([o["val_loss"] for o in outputs])),
                   "val_accuracy": float(np.mean(probabilities.argmax(1) == labels))}
        value = macro_auroc(labels, probabilities)
        if value is not None:  # left out (no best checkpoint this epoch) when one class is absent
            summary["val_auroc"] = value
        return summary

    def score_case(self, case, prediction, folder) -> dict:
        label = int(round(case.target))
        return {"label": label, "probability": float(prediction[-1]) if self.num_classes == 2 else None,
                "probabilities": [float(p) for p in prediction], "predicted_class": int(np.argmax(prediction))}

    def summarize_cases(self, records: list[dict]) -> dict:
        labels = np.array([r["label"] for r in records])
        probabilities = np.array([r["probabilities"] for r in records])
        metrics = {"accuracy": float(np.mean(probabilities.argmax(1) == labels)), "num_cases": len(records)}
        value = macro_auroc(labels, probabilities)
        if value is not None:
            metrics["auroc"] = value
        return metrics

    def summary_fields(self) -> dict:
        fields = {"classes": self.plans.classes, "class_counts_training": self.class_counts,
                  "imbalance": self.method["imbalance"]}
        if self.num_classes == 2:
            fields["positive_class"] = 1.0
        return fields
