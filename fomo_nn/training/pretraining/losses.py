"""Loss terms of the pretraining objectives, as small pure functions (computed in float32).

Under bf16 autocast the network outputs are half precision; every loss here upcasts first, because
softmax over thousands of prototypes and sums over 96^3 voxels lose too much in bf16.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

RECONSTRUCTION_LOSSES = ("mse", "smooth_l1")


def scalar(value: torch.Tensor) -> float:
    """A loss term as a plain float for the log (detached: no autograd warning, no graph kept)."""
    return float(value.detach())


def reconstruction_loss(prediction: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None,
                        kind: str = "mse", beta: float = 0.1) -> torch.Tensor:
    """Mean voxel error; with a (B, 1, X, Y, Z) bool `mask` only the masked voxels count."""
    prediction, target = prediction.float(), target.float()
    if kind == "mse":
        error = F.mse_loss(prediction, target, reduction="none")
    elif kind == "smooth_l1":
        error = F.smooth_l1_loss(prediction, target, reduction="none", beta=beta)
    else:
        raise ValueError(f"reconstruction loss {kind!r} is not one of {RECONSTRUCTION_LOSSES}")
    if mask is None:
        return error.mean()
    weights = mask.to(error.dtype).expand_as(error)
    return (error * weights).sum() / weights.sum().clamp_min(1.0)


def group_codes(groups) -> torch.Tensor:
    """Integer codes for a list of hashable group ids (e.g. subject names)."""
    lookup: dict = {}
    return torch.tensor([lookup.setdefault(g, len(lookup)) for g in groups], dtype=torch.long)


def batch_standardize(z: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit variance per feature (last axis) across the batch, and tokens if given
    (a BatchNorm without affine parameters or running statistics).

    Pooled bottlenecks of instance-normalized CNN encoders differ across samples by ~1 % of their
    magnitude (instance norm removes each sample's channel means), so at initialization every
    projection points the same way and NT-Xent has no usable gradient. Standardizing across the
    batch, as the BatchNorm ending SimCLR v2 / MoCo v3 projection heads does, keeps only what
    differs between samples.
    """
    dims = tuple(range(z.dim() - 1))  # every axis but the features: batch (and tokens)
    z = z.float()
    return (z - z.mean(dim=dims, keepdim=True)) / (z.var(dim=dims, unbiased=False, keepdim=True) + eps).sqrt()


def nt_xent(a: torch.Tensor, b: torch.Tensor, temperature: float = 0.1,
            groups: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """SimCLR's normalized-temperature cross entropy over 2B embeddings; a[i] and b[i] are positives.

    `groups` (B,) marks samples of one subject: other samples of the same group are neither
    positives nor negatives (a batch that drew one subject twice must not push it from itself).
    Returns (loss, top-1 retrieval accuracy of the positive).
    """
    batch = a.shape[0]
    z = F.normalize(torch.cat([a, b]).float(), dim=1)
    logits = z @ z.t() / temperature
    index = torch.arange(2 * batch, device=z.device)
    positive = torch.cat([index[batch:], index[:batch]])
    excluded = torch.eye(2 * batch, dtype=torch.bool, device=z.device)
    if groups is not None:
        codes = torch.cat([groups, groups]).to(z.device)
        same = codes[:, None] == codes[None, :]
        same[index, positive] = False
        excluded |= same
    logits = logits.masked_fill(excluded, float("-inf"))
    loss = F.cross_entropy(logits, positive)
    accuracy = (logits.argmax(dim=1) == positive).float().mean()
    return loss, accuracy


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, 1)), averaged over every latent element."""
    mu, logvar = mu.float(), logvar.float()
    return 0.5 * (mu.pow(2) + logvar.exp() - 1.0 - logvar).mean()


def flat_cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """(B,) cosine similarity of two latent maps, each flattened per sample."""
    return F.cosine_similarity(a.float().flatten(1), b.float().flatten(1), dim=1)


def pull_together(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """0 when the two latents point the same way, 2 when opposite."""
    return (1.0 - flat_cosine(a, b)).mean()


def push_apart(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Positive cosine similarity; 0 once the latents are orthogonal or opposed."""
    return flat_cosine(a, b).clamp_min(0.0).mean()


def teacher_distribution(teacher_logits: torch.Tensor, center: torch.Tensor, temperature: float) -> torch.Tensor:
    """DINO's centred and sharpened teacher targets: softmax((t - center) / temperature)."""
    return F.softmax((teacher_logits.float() - center) / temperature, dim=-1)


def distillation_cross_entropy(student_logits: torch.Tensor, teacher_probs: torch.Tensor,
                               temperature: float) -> torch.Tensor:
    """Mean over samples (and tokens) of -sum_k p_teacher log p_student."""
    log_student = F.log_softmax(student_logits.float() / temperature, dim=-1)
    return -(teacher_probs * log_student).sum(dim=-1).mean()


def updated_center(center: torch.Tensor, teacher_logits: torch.Tensor, momentum: float) -> torch.Tensor:
    """EMA of the teacher's mean output (averaged over DDP ranks when training distributed)."""
    batch_mean = teacher_logits.detach().float().reshape(-1, teacher_logits.shape[-1]).mean(dim=0)
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        torch.distributed.all_reduce(batch_mean)
        batch_mean /= torch.distributed.get_world_size()
    return center * momentum + batch_mean * (1.0 - momentum)
