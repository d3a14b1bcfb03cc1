"""Sliding-window prediction over a (C, X, Y, Z) volume, tiles batched, optional mirroring TTA.

nnU-Net's scheme: tiles of the training patch size at a stride of ``step`` x patch (0.5: every
voxel is seen by up to 8 tiles), dense outputs weighted by a Gaussian centred in the tile (σ =
patch/8, tile borders see less context and count less), summed and divided by the summed weights.
Volumes smaller than the patch are zero-padded (0 is the background of normalized data) and the
result is cropped back, so outputs always lie on the input array's grid.

Speed: the padded volume is moved to the device once; tiles are sliced there and stacked into
batches of ``batch_size`` so Python work per forward pass is constant, not per tile. Inference runs
under ``torch.inference_mode`` and, on CUDA, bf16 autocast (accumulation stays float32).
"""
from __future__ import annotations

import itertools
from contextlib import nullcontext
from typing import Callable, Iterator

import numpy as np
import torch

MIRROR_AXES = (2, 3, 4)  # spatial axes of a (B, C, X, Y, Z) batch
SIGMA_SCALE = 1.0 / 8
TILE_VOXEL_BUDGET = 2 * 128 ** 3  # voxels per forward batch when batch_size is not given


def tile_starts(size: int, patch: int, step: float) -> list[int]:
    """Evenly spaced starts from 0 to size - patch with gaps of at most step * patch (nnU-Net's rule)."""
    if size <= patch:
        return [0]
    stride = patch * step
    count = int(np.ceil((size - patch) / stride)) + 1
    return [int(round(i * (size - patch) / (count - 1))) for i in range(count)]


def tile_corners(shape, patch, step: float) -> list[tuple[int, int, int]]:
    """Lower corners of every tile covering a (padded, >= patch) volume of spatial `shape`."""
    if not 0 < step <= 1:
        raise ValueError(f"step must be in (0, 1], got {step}")
    return list(itertools.product(*[tile_starts(int(s), int(p), step) for s, p in zip(shape, patch)]))


def gaussian_importance(patch, sigma_scale: float = SIGMA_SCALE, device=None) -> torch.Tensor:
    """A (X, Y, Z) Gaussian with its peak (1) at the tile centre and σ = sigma_scale x patch per axis."""
    axes = []
    for size in patch:
        coordinates = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
        sigma = max(size * sigma_scale, 1e-6)
        axes.append(torch.exp(-0.5 * (coordinates / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    floor = weights[weights > 0].min()
    return weights.clamp_min(floor).to(torch.float32).to(device)  # no zero weight: every voxel gets a value


def pad_to_patch(data: torch.Tensor, patch) -> tuple[torch.Tensor, tuple[slice, ...]]:
    """Zero-pad the spatial axes of (C, X, Y, Z) symmetrically up to the patch; return the crop back."""
    shape = data.shape[-3:]
    missing = [max(int(p) - int(s), 0) for s, p in zip(shape, patch)]
    if not any(missing):
        return data, (slice(None),) * 3
    before = [m // 2 for m in missing]
    pad = []
    for b, m in zip(reversed(before), reversed(missing)):  # F.pad wants the last axis first
        pad += [b, m - b]
    padded = torch.nn.functional.pad(data, pad)
    return padded, tuple(slice(b, b + s) for b, s in zip(before, shape))


def default_batch_size(patch) -> int:
    return int(max(1, min(16, TILE_VOXEL_BUDGET // int(np.prod(patch)))))


def mirror_sets(enabled: bool) -> list[tuple[int, ...]]:
    """The 8 flip combinations of the 3 spatial axes (identity first), or just the identity."""
    if not enabled:
        return [()]
    return [axes for r in range(4) for axes in itertools.combinations(MIRROR_AXES, r)]


def autocast_for(device: torch.device):
    return torch.autocast("cuda", dtype=torch.bfloat16) if device.type == "cuda" else nullcontext()


def first_output(output):
    """Deep-supervised networks return a list (full resolution first)."""
    return output[0] if isinstance(output, (list, tuple)) else output


def tile(volume: torch.Tensor, corner, patch) -> torch.Tensor:
    x, y, z = corner
    return volume[:, x:x + patch[0], y:y + patch[1], z:z + patch[2]]


def batched_tiles(volume: torch.Tensor, corners: list, patch, batch_size: int
                  ) -> Iterator[tuple[list[tuple[int, int, int]], torch.Tensor]]:
    """(corners, (B, C, *patch) batch) for the given tiles of a padded volume already on the device."""
    for start in range(0, len(corners), batch_size):
        chunk = corners[start:start + batch_size]
        yield chunk, torch.stack([tile(volume, corner, patch) for corner in chunk])


def forward_with_mirroring(network: Callable, batch: torch.Tensor, mirror: bool, dense: bool,
                           device: torch.device) -> torch.Tensor:
    """Mean output over the flips; dense outputs are flipped back before averaging."""
    total = None
    flips = mirror_sets(mirror)
    for axes in flips:
        flipped = torch.flip(batch, axes) if axes else batch
        with autocast_for(device):
            output = first_output(network(flipped))
        output = output.float()
        if dense and axes:
            output = torch.flip(output, axes)
        total = output if total is None else total + output
    return total / len(flips)


def _as_tensor(data) -> torch.Tensor:
    if isinstance(data, np.ndarray):
        data = np.array(data, dtype=np.float32)  # a copy: memory maps are read-only
    tensor = torch.as_tensor(data)
    if tensor.dim() != 4:
        raise ValueError(f"sliding window expects (C, X, Y, Z) data, got shape {tuple(tensor.shape)}")
    return tensor.float()


def sliding_window_dense(network: Callable, data, patch, num_outputs: int, step: float = 0.5, mirror: bool = False,
                         batch_size: int | None = None, device: str | torch.device = "cpu",
                         gaussian: bool = True) -> torch.Tensor:
    """Gaussian-weighted (num_outputs, X, Y, Z) float32 network output on the grid of `data` (on CPU).

    Accumulates on `device`; if that runs out of memory, accumulates on the CPU instead.
    """
    device = torch.device(device)
    try:
        return _dense(network, data, patch, num_outputs, step, mirror, batch_size, device, device, gaussian)
    except torch.OutOfMemoryError:
        if device.type == "cpu":
            raise
        torch.cuda.empty_cache()
        return _dense(network, data, patch, num_outputs, step, mirror, batch_size, device, torch.device("cpu"),
                      gaussian)


def _dense(network, data, patch, num_outputs, step, mirror, batch_size, device, accumulate_on, gaussian):
    patch = tuple(int(p) for p in patch)
    with torch.inference_mode():
        volume, crop_back = pad_to_patch(_as_tensor(data).to(device), patch)
        shape = volume.shape[-3:]
        weight = (gaussian_importance(patch, device=accumulate_on) if gaussian
                  else torch.ones(patch, device=accumulate_on))
        summed = torch.zeros((num_outputs, *shape), dtype=torch.float32, device=accumulate_on)
        weights = torch.zeros(shape, dtype=torch.float32, device=accumulate_on)
        corners = tile_corners(shape, patch, step)
        for chunk, batch in batched_tiles(volume, corners, patch, batch_size or default_batch_size(patch)):
            outputs = forward_with_mirroring(network, batch, mirror, dense=True, device=device).to(accumulate_on)
            if outputs.shape[1:] != (num_outputs, *patch):
                raise ValueError(f"network output {tuple(outputs.shape[1:])} per tile, "
                                 f"expected {(num_outputs, *patch)}")
            outputs = outputs * weight  # one weighting op per batch
            for (x, y, z), output in zip(chunk, outputs):
                region = (slice(x, x + patch[0]), slice(y, y + patch[1]), slice(z, z + patch[2]))
                summed[(slice(None), *region)] += output
                weights[region] += weight
        result = summed / weights
        return result[(slice(None), *crop_back)].cpu()


def sliding_window_tiles(network: Callable, data, patch, step: float = 0.5, mirror: bool = False,
                         batch_size: int | None = None, device: str | torch.device = "cpu",
                         skip_empty: bool = True) -> tuple[torch.Tensor, list[tuple[int, int, int]]]:
    """Per-tile outputs (N_tiles, ...) of an image-level network (classification/regression heads).

    With `skip_empty`, tiles holding only zeros (background outside the brain) are not predicted,
    unless every tile is empty. Returns the outputs (CPU, float32) and the tiles' lower corners on
    the padded grid.
    """
    device = torch.device(device)
    patch = tuple(int(p) for p in patch)
    with torch.inference_mode():
        volume, _ = pad_to_patch(_as_tensor(data).to(device), patch)
        corners = tile_corners(volume.shape[-3:], patch, step)
        if skip_empty:
            corners = [c for c in corners if bool(tile(volume, c, patch).any())] or corners
        outputs = [forward_with_mirroring(network, batch, mirror, dense=False, device=device).cpu()
                   for _, batch in batched_tiles(volume, corners, patch, batch_size or default_batch_size(patch))]
        return torch.cat(outputs), corners
