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


class FeatureStandardizer(nn.Module):
    """(x - mean) / std per feature, with statistics of the training cases fixed before finetuning.

    Pooled features of instance-normalised encoders differ across scans by a few percent of their
    size, so a Linear head on raw features starts with almost no output variance and needs many
    steps to build it; standardised, every feature has unit spread across the training cases and a
    closed-form probe fit transfers exactly. Buffers, not parameters: saved in every checkpoint,
    never trained. Until fitted it is the identity.
    """

    def __init__(self, dim: int, eps: float = 1e-6):
        super().__init__()
        self.eps = eps
        self.register_buffer("mean", torch.zeros(dim))
        self.register_buffer("std", torch.ones(dim))

    def set_statistics(self, mean, std) -> None:
        """Set mean and std (D,) directly, e.g. from a fitted scikit-learn StandardScaler."""
        mean = torch.as_tensor(mean, dtype=torch.float64).reshape(-1)
        std = torch.as_tensor(std, dtype=torch.float64).reshape(-1)
        if mean.numel() != self.mean.numel() or std.numel() != self.std.numel():
            raise ValueError(f"expected statistics of {self.mean.numel()} features, got {mean.numel()} and {std.numel()}")
        floor = self.eps * max(float(std.max()), 1.0)
        self.mean.copy_(mean.to(self.mean.dtype))
        self.std.copy_(std.clamp_min(floor).to(self.std.dtype))

    def fit(self, features: torch.Tensor) -> None:
        """Statistics of (N >= 2, D) features (population std, as scikit-learn's StandardScaler)."""
        features = torch.as_tensor(features).detach().double()
        if features.dim() != 2 or features.shape[0] < 2:
            raise ValueError(f"expected (N >= 2, D) features, got {tuple(features.shape)}")
        self.set_statistics(features.mean(dim=0), features.std(dim=0, unbiased=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean.to(x.dtype)) / self.std.to(x.dtype)


class LinearHead(nn.Module):
    """Feature standardisation + dropout + one Linear layer (the FOMO25 baseline's head, standardised)."""

    def __init__(self, in_dim: int, num_outputs: int, dropout: float = 0.0):
        super().__init__()
        self.standardizer = FeatureStandardizer(in_dim)
        self.dropout = nn.Dropout(dropout)
        self.linear = nn.Linear(in_dim, num_outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.dropout(self.standardizer(x)))


class LesionHead(nn.Module):
    """Training-only auxiliary head: one lesion logit per voxel of an encoder stage (a 1x1x1 convolution).

    Classification with lesion masks (FOMO25 task 1) adds a segmentation loss on it, so the encoder
    learns where the lesion is, not only whether the case is positive. It reads one stage's features
    (``in_channels``: that stage's channels, times the sequences when a shared encoder runs per
    sequence) and is never part of the finetuned network: predictions do not need it.
    """

    def __init__(self, in_channels: int):
        super().__init__()
        self.conv = nn.Conv3d(in_channels, 1, kernel_size=1)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.conv(features)
