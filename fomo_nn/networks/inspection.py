"""Parameter counts, for reports and for comparing architectures."""
from __future__ import annotations

from torch import nn


def count_parameters(model: nn.Module, trainable_only: bool = False) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad or not trainable_only)


def parameters_by_part(model: nn.Module) -> dict[str, int]:
    """Parameter count per top-level child (encoder, decoder, head, fusion, ...)."""
    return {name: count_parameters(child) for name, child in model.named_children()}
