"""Token masks for masked image modelling: the volume is cut into cubes and a fixed share is hidden.

Masks are drawn per sample with an exact count (round(ratio * tokens)), not per-token coin flips,
so every sample hides the same amount and the loss scale does not wander between batches. All
randomness comes from the generator passed in (the trainer seeds one per step).
"""
from __future__ import annotations

import math

import torch


def as_token_size(token_size) -> tuple[int, int, int]:
    """An edge (int) or three edges -> (tx, ty, tz); each >= 1."""
    sizes = [int(token_size)] * 3 if isinstance(token_size, (int, float)) else [int(t) for t in token_size]
    if len(sizes) != 3 or min(sizes) < 1:
        raise ValueError(f"token_size must be a positive edge or three positive edges, got {token_size!r}")
    return sizes[0], sizes[1], sizes[2]


def check_mask_ratio(ratio: float) -> float:
    ratio = float(ratio)
    if not 0.0 < ratio < 1.0:
        raise ValueError(f"mask_ratio must lie strictly between 0 and 1, got {ratio}")
    return ratio


def token_grid(spatial_shape, token_size) -> tuple[int, int, int]:
    """Tokens per axis; a partial token at the far edge counts as one."""
    sizes = as_token_size(token_size)
    grid = tuple(math.ceil(int(s) / t) for s, t in zip(spatial_shape, sizes))
    return grid[0], grid[1], grid[2]


def random_token_mask(batch: int, grid, ratio: float, generator: torch.Generator) -> torch.Tensor:
    """(B, gx, gy, gz) bool with exactly round(ratio * tokens) True per sample (at least 1, at most tokens - 1)."""
    ratio = check_mask_ratio(ratio)
    tokens = int(math.prod(grid))
    if tokens < 2:
        raise ValueError(f"a token grid of {tuple(grid)} has fewer than 2 tokens: use a smaller token_size")
    hidden = min(max(1, round(ratio * tokens)), tokens - 1)
    ranks = torch.rand(batch, tokens, generator=generator).argsort(dim=1).argsort(dim=1)
    return (ranks < hidden).view(batch, *grid)


def upsample_token_mask(token_mask: torch.Tensor, token_size, spatial_shape) -> torch.Tensor:
    """(B, gx, gy, gz) token mask -> (B, 1, X, Y, Z) voxel mask cropped to the spatial shape."""
    sizes = as_token_size(token_size)
    voxels = token_mask
    for axis, size in enumerate(sizes):
        voxels = voxels.repeat_interleave(size, dim=axis + 1)
    x, y, z = (int(s) for s in spatial_shape)
    return voxels[:, None, :x, :y, :z].contiguous()


def voxel_mask(batch: int, spatial_shape, token_size, ratio: float, generator: torch.Generator,
               device: torch.device | str = "cpu") -> torch.Tensor:
    """(B, 1, X, Y, Z) bool on `device`: True where the input is hidden."""
    tokens = random_token_mask(batch, token_grid(spatial_shape, token_size), ratio, generator)
    return upsample_token_mask(tokens.to(device), token_size, spatial_shape)
