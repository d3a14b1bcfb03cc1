"""The validation AUROC that picks the learning rate: torchmetrics' MulticlassAUROC(average="macro").

asparagus' LinearProbeModule keeps one ``MulticlassAUROC(num_classes, average="macro")`` per head
(torchmetrics 1.9, exact thresholds) and takes the head with the largest value. Its arithmetic is kept
here, float32 included, because the winner is an argmax over 13 heads whose AUROCs often tie: each
batch's logits are turned into probabilities with a softmax unless the whole batch already lies in
[0, 1]; per class, the ROC curve has one point per distinct score (ties collapsed), starts at (0, 0) and
is integrated with the trapezoid rule; a class with no positives (or no negatives) in the validation
split gets a zero-filled tpr (fpr), hence an AUROC of 0, not NaN; the macro value is the mean over classes.
"""
from __future__ import annotations

import torch


def batch_probabilities(logits: torch.Tensor) -> torch.Tensor:
    """torchmetrics' `normalize_logits_if_needed(..., "softmax")` on one update's (B, C) float32 logits."""
    logits = logits.float()
    if bool(((logits >= 0) & (logits <= 1)).all()):
        return logits
    return torch.softmax(logits, dim=1)


def class_auroc(scores: torch.Tensor, positive: torch.Tensor) -> torch.Tensor:
    """One class's one-vs-rest AUROC, float32, from (N,) scores and a (N,) boolean positive mask."""
    order = torch.argsort(scores, descending=True)
    scores = scores[order]
    hits = positive[order].to(torch.long) * 1.0  # float32, as torchmetrics' target * weight
    distinct = torch.where(scores[1:] - scores[:-1])[0]
    ends = torch.cat([distinct, torch.tensor([scores.numel() - 1])])
    tps = torch.cumsum(hits, dim=0)[ends]
    fps = 1 + ends - tps
    tps = torch.cat([torch.zeros(1, dtype=tps.dtype), tps])
    fps = torch.cat([torch.zeros(1, dtype=fps.dtype), fps])
    fpr = fps / fps[-1] if fps[-1] > 0 else torch.zeros_like(fps, dtype=torch.float32)
    tpr = tps / tps[-1] if tps[-1] > 0 else torch.zeros_like(tps, dtype=torch.float32)
    return torch.trapz(tpr, fpr)


def macro_auroc(batches: list[tuple[torch.Tensor, torch.Tensor]], num_classes: int) -> float:
    """Macro one-vs-rest AUROC of (logits, labels) batches accumulated as one torchmetrics state."""
    probabilities = torch.cat([batch_probabilities(logits) for logits, _ in batches])
    labels = torch.cat([labels for _, labels in batches])
    per_class = torch.stack([class_auroc(probabilities[:, c], labels == c) for c in range(num_classes)])
    return float(per_class[~torch.isnan(per_class)].mean().item())
