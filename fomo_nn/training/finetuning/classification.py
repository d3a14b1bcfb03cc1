"""Classification finetuning (FOMO25 Task 1, infarct yes/no: AUROC).

Network: the encoder, global average pooling, one Linear layer (ClassificationNet). Loss:
cross-entropy. Class imbalance (Task 1 has 13 positives and 8 negatives) is handled by the method
setting ``imbalance``:
- ``class_weights`` (default): CE weighted by n / (K x n_c) from the training fold's counts, every
  case sampled equally often (no case is seen more than others: fewer repeats of the rare class
  in a few-shot regime);
- ``balanced_sampling``: unweighted CE on batches that hold the classes in turn;
- ``none``: plain CE, every case sampled equally often.
Per epoch, AUROC over validation patches drawn class-balanced (every batch holds both classes, so
the curve is always defined; AUROC does not depend on prevalence). The final summary uses
whole-case probabilities (tile-averaged, see fomo_nn.inference.case_prediction).

Lesion masks (plans ``auxiliary_labels``, FOMO25 task 1's infarcts, preprocessed into CASE_seg.b2nd)
can guide training, opt-in:
- ``lesion_loss_weight`` λ (default 0: off): adds λ x (BCE + soft Dice) of a training-only 1x1x1
  convolution (networks.heads.LesionHead) on the features of encoder stage ``lesion_stage``
  (default 1, half resolution; per-sequence features side by side for a shared encoder) against
  the mask averaged down to that stage's grid (the fraction of lesion in each feature voxel). The
  encoder must then say where the infarct is, not only whether there is one; the head is kept in
  the checkpoint's ``extra`` for resuming and is not part of the network predictions use. Its
  gradients are not clipped with the network's.
- ``lesion_oversampling`` p (default 0): a training patch of a case with a lesion is centred on a
  lesion voxel with probability p, so a positive's patch holds its infarct (the label stays true
  for the patch); cases without lesions (negatives) keep random patches. Useless when the patch
  covers the brain (the demo's), a lever for patches much smaller than the head.
"""
from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from fomo_nn.evaluation.metrics import auroc
from fomo_nn.networks.heads import LesionHead
from fomo_nn.training.data.batch_sources import PatchSource, collate
from fomo_nn.training.finetuning.pooled_head import PooledHeadTrainer
from fomo_nn.training.registry import register_trainer

IMBALANCE_MODES = ("class_weights", "balanced_sampling", "none")


class ClassBalancedPatchSource(PatchSource):
    """Batches whose elements take the classes in turn; each class's cases are dealt like PatchSource's
    (every case of a class once per pass of that class, disjoint across ranks)."""

    def __init__(self, cases, labels: list[int], *args, **kwargs):
        super().__init__(cases, *args, **kwargs)
        by_class: dict[int, list[int]] = {}
        for index, label in enumerate(labels):
            by_class.setdefault(int(label), []).append(index)
        self.class_members = [by_class[c] for c in sorted(by_class)]

    def __call__(self, draw) -> dict:
        classes = len(self.class_members)
        picks = []
        for sample in draw.samples(self.batch_size):  # the rank's k-th sample: class k mod K, its (k div K)-th
            cls, turn = sample % classes, sample // classes
            members = self.class_members[cls]
            picks.append(members[draw.cases(len(members), [turn], cls)[0]])
        return collate([self.sample(self.cases[i], draw.rng) for i in picks])


def lesion_loss(logits: torch.Tensor, segmentation: torch.Tensor, smooth: float = 1.0) -> torch.Tensor:
    """BCE + soft Dice of (B, 1, x, y, z) lesion logits against a (B, 1, X, Y, Z) mask (> 0 = lesion).

    The mask is averaged down to the logits' grid (soft targets: the lesion fraction per voxel). Dice
    is over the whole batch, so a batch of lesion-free cases still has a defined loss (pushing
    predictions to 0) and small lesions are not drowned by background as in BCE alone.
    """
    target = (segmentation > 0).float()
    if target.shape[2:] != logits.shape[2:]:
        target = F.adaptive_avg_pool3d(target, logits.shape[2:])
    bce = F.binary_cross_entropy_with_logits(logits, target)
    probabilities = torch.sigmoid(logits)
    dice = (2 * (probabilities * target).sum() + smooth) / (probabilities.sum() + target.sum() + smooth)
    return bce + (1 - dice)


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
        return {**super().default_method_settings(), "imbalance": "class_weights", "lesion_loss_weight": 0.0,
                "lesion_stage": 1, "lesion_oversampling": 0.0}

    @property
    def lesion_loss_enabled(self) -> bool:
        return float(self.method["lesion_loss_weight"]) > 0

    def _uses_lesion_masks(self) -> bool:
        weight, oversampling = float(self.method["lesion_loss_weight"]), float(self.method["lesion_oversampling"])
        if weight < 0:
            raise ValueError(f"method setting lesion_loss_weight={weight} must be >= 0")
        if not 0.0 <= oversampling <= 1.0:
            raise ValueError(f"method setting lesion_oversampling={oversampling} must lie in [0, 1]")
        return weight > 0 or oversampling > 0

    def _check_lesion_masks(self) -> None:
        """The plans declare masks; that every case has its mask, case_store.list_cases already checked."""
        if not self.plans.auxiliary_labels:
            raise ValueError("lesion_loss_weight / lesion_oversampling need lesion masks, but the plans have no "
                             "auxiliary_labels: convert the dataset with its masks (task 1 seg.nii.gz), then plan "
                             "and preprocess it again")

    def build_network(self) -> nn.Module:
        network = super().build_network()
        self.lesion_head = None
        if not self.lesion_loss_enabled:
            return network
        stage = int(self.method["lesion_stage"])
        if not 0 <= stage < network.network_plan.num_stages:
            raise ValueError(f"method setting lesion_stage={stage}: the encoder has stages "
                             f"0..{network.network_plan.num_stages - 1}")
        self.lesion_sequences = network.in_channels if network.runs_per_sequence else 1
        channels = network.stage_channels[stage] * self.lesion_sequences
        self.lesion_head = LesionHead(channels).to(self.device)
        self._stage_features = None
        network.encoder.register_forward_hook(self._keep_stage_features)
        if self.dist.enabled:  # the head is outside DDP: average its gradients across ranks ourselves
            for parameter in self.lesion_head.parameters():
                parameter.register_hook(self._average_over_ranks)
        return network

    def _keep_stage_features(self, module, inputs, output) -> None:
        self._stage_features = output[int(self.method["lesion_stage"])]

    def _average_over_ranks(self, gradient: torch.Tensor) -> torch.Tensor:
        import torch.distributed as dist

        gradient = gradient.clone()
        dist.all_reduce(gradient)
        return gradient / self.dist.world_size

    def lesion_logits(self, batch_size: int) -> torch.Tensor:
        """The lesion head on the stage features the last forward pass left (sequences side by side)."""
        features, self._stage_features = self._stage_features, None
        if features is None:
            raise RuntimeError("no encoder stage features captured: call the model before lesion_logits")
        if self.lesion_sequences > 1:  # (B*S, F, ...) -> (B, S*F, ...)
            features = features.reshape(batch_size, -1, *features.shape[2:])
        return self.lesion_head(features)

    def parameter_groups(self) -> list[dict]:
        groups = super().parameter_groups()
        if self.lesion_head is not None:
            groups.append({"params": list(self.lesion_head.parameters()), "lr_scale": 1.0, "name": "lesion_head"})
        return groups

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
        if self._uses_lesion_masks():
            self._check_lesion_masks()

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
        pipeline, read_size = self.training_pipeline()
        options = {"foreground_oversampling": float(self.method["lesion_oversampling"]),
                   "read_seg": self.lesion_loss_enabled}
        if self.method["imbalance"] != "balanced_sampling":
            return PatchSource(cases, read_size, self.plans.batch_size, pipeline, **options)
        return ClassBalancedPatchSource(cases, self.train_labels, read_size, self.plans.batch_size, pipeline, **options)

    def make_validation_source(self, cases):
        return ClassBalancedPatchSource(cases, self.val_labels, self.plans.patch_size, self.plans.batch_size,
                                        read_seg=False)

    def extra_state(self) -> dict:
        state = {"class_counts": self.class_counts, "class_weights": self.loss_weights,
                 "imbalance": self.method["imbalance"]}
        if self.lesion_head is not None:
            state["lesion_head"] = self.lesion_head.state_dict()
        return state

    def load_extra_state(self, state: dict) -> None:
        if self.lesion_head is not None:
            if "lesion_head" not in state:
                raise RuntimeError("--continue: the checkpoint was trained without lesion_loss_weight; its lesion head "
                                   "is missing (start a new run or set lesion_loss_weight=0)")
            self.lesion_head.load_state_dict(state["lesion_head"])

    def compute_loss(self, batch, generator):
        logits = self.model(batch["image"]).float()
        weight = torch.tensor(self.loss_weights, dtype=torch.float32, device=logits.device)
        loss = F.cross_entropy(logits, batch["label"].long(), weight=weight)
        if self.lesion_head is None:
            return loss, {}
        if "segmentation" not in batch:
            raise RuntimeError("lesion_loss_weight > 0 but the batch holds no lesion masks")
        lesion = lesion_loss(self.lesion_logits(batch["image"].shape[0]).float(), batch["segmentation"])
        total = loss + float(self.method["lesion_loss_weight"]) * lesion
        return total, {"cross_entropy": float(loss.detach()), "lesion_loss": float(lesion.detach())}

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
