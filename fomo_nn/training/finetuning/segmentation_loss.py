"""nnU-Net's segmentation loss: soft Dice (over the whole batch, background left out) + cross-entropy,
with deep supervision weights halving per resolution level (the coarsest level weighted 0)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

DICE_SMOOTH = 1e-5


def soft_dice(logits: torch.Tensor, target: torch.Tensor, smooth: float = DICE_SMOOTH) -> torch.Tensor:
    """Per-foreground-class soft Dice of softmax(logits) against integer labels (B, X, Y, Z).

    "Batch Dice": true/false positives are summed over the batch and all voxels before the ratio,
    so a patch without foreground does not produce a meaningless per-sample Dice.
    """
    probabilities = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target.long(), logits.shape[1]).movedim(-1, 1).to(probabilities.dtype)
    axes = (0, *range(2, logits.dim()))
    intersection = (probabilities * onehot).sum(axes)
    predicted = probabilities.sum(axes)
    reference = onehot.sum(axes)
    dice = (2 * intersection + smooth) / (predicted + reference + smooth).clamp_min(1e-8)
    return dice[1:]


def dice_ce_loss(logits: torch.Tensor, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(CE - mean foreground soft Dice, the per-class Dice); `target` is (B, 1, X, Y, Z) or (B, X, Y, Z)."""
    if target.dim() == logits.dim():
        target = target[:, 0]
    target = target.long()
    dice = soft_dice(logits, target)
    return F.cross_entropy(logits.float(), target) - dice.mean(), dice.detach()


def deep_supervision_weights(levels: int) -> list[float]:
    """1, 1/2, 1/4, ... with the coarsest level at 0, normalized to sum 1 (nnU-Net's choice)."""
    weights = [1.0 / 2 ** i for i in range(levels)]
    if levels > 1:
        weights[-1] = 0.0
    total = sum(weights)
    return [w / total for w in weights]


def downsample_labels(target: torch.Tensor, size) -> torch.Tensor:
    """Nearest-neighbour label map at a lower resolution (B, 1, ...) -> (B, 1, *size)."""
    if tuple(target.shape[2:]) == tuple(size):
        return target
    return F.interpolate(target.float(), size=tuple(size), mode="nearest").to(target.dtype)


def segmentation_loss(output, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Dice+CE of one output or a deep-supervision list (full resolution first); returns the loss and
    the full-resolution per-class soft Dice."""
    outputs = list(output) if isinstance(output, (list, tuple)) else [output]
    weights = deep_supervision_weights(len(outputs))
    total, full_resolution_dice = None, None
    for weight, logits in zip(weights, outputs):
        loss, dice = dice_ce_loss(logits, downsample_labels(target, logits.shape[2:]))
        total = weight * loss if total is None else total + weight * loss  # zero weights stay in the graph (DDP)
        full_resolution_dice = dice if full_resolution_dice is None else full_resolution_dice
    return total, full_resolution_dice
