"""Small heads on pooled encoder features: prediction heads and projection MLPs for SSL."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def global_average_pool(features: torch.Tensor) -> torch.Tensor:
    """(B, F, X, Y, Z) -> (B, F)."""
    return features.mean(dim=tuple(range(2, features.dim())))


class ProjectionHead(nn.Module):
    """MLP projection for contrastive learning and self-distillation.

    ``num_layers`` Linear layers (GELU between them) map in_dim -> hidden_dim ... -> out_dim. With
    ``prototypes`` set (DINO), the L2-normalized output is compared by cosine similarity with that
    many L2-normalized learned prototypes, giving (B, prototypes) logits in [-1, 1] (DINO's
    weight-normalized last layer with its norm fixed to 1).
    """

    def __init__(self, in_dim: int, hidden_dim: int, out_dim: int, num_layers: int = 2, prototypes: int | None = None):
        super().__init__()
        if num_layers < 1:
            raise ValueError(f"num_layers must be >= 1, got {num_layers}")
        dims = [in_dim] + [hidden_dim] * (num_layers - 1) + [out_dim]
        layers: list[nn.Module] = []
        for i in range(num_layers):
            layers.append(nn.Linear(dims[i], dims[i + 1]))
            if i < num_layers - 1:
                layers.append(nn.GELU())
        self.mlp = nn.Sequential(*layers)
        if prototypes is not None:
            self.prototypes = nn.Parameter(torch.randn(prototypes, out_dim) * 0.02)
        else:
            self.register_parameter("prototypes", None)
        for module in self.mlp:
            if isinstance(module, nn.Linear):
                nn.init.trunc_normal_(module.weight, std=0.02)
                nn.init.zeros_(module.bias)

    @property
    def out_features(self) -> int:
        return self.mlp[-1].out_features if self.prototypes is None else self.prototypes.shape[0]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        z = self.mlp(x)
        if self.prototypes is None:
            return z
        return F.normalize(z, dim=-1) @ F.normalize(self.prototypes, dim=-1).t()


class LinearHead(nn.Module):
    """Dropout + one Linear layer, like the official FOMO25 baseline heads."""

    def __init__(self, in_dim: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(x))
