"""Views for the global objectives (contrastive, self-distillation), made on the device from a batch.

Crops are cut out of the loader's patch without resizing: MRI voxels have a physical size (1 mm
after preprocessing) and a CNN with global pooling accepts any input size, so a local crop shows
a smaller piece of the head at the same scale instead of a magnified one. Crop edges are rounded
to the encoder's total stride so bottleneck tokens align with mask tokens (iBOT term).

Every random number comes from the per-step generator: small draws directly, large noise tensors
from a device generator seeded by it.
"""
from __future__ import annotations

import torch

MAX_SEED = 2 ** 62


def device_generator(generator: torch.Generator, device: torch.device) -> torch.Generator:
    """A generator on `device` seeded from the step's CPU generator (deterministic, no global RNG)."""
    seed = int(torch.randint(MAX_SEED, (1,), generator=generator))
    return torch.Generator(device=device).manual_seed(seed)


def crop_edge(patch_edge: int, scale: float, multiple: int) -> int:
    """round(scale * patch_edge) to the nearest multiple of `multiple`, kept within [multiple, patch_edge]."""
    if not 0.0 < scale <= 1.0:
        raise ValueError(f"crop scale must lie in (0, 1], got {scale}")
    edge = int(round(scale * patch_edge / multiple)) * multiple
    largest = (patch_edge // multiple) * multiple or patch_edge
    return max(min(edge, largest), min(multiple, patch_edge))


def crop_shape(spatial_shape, scale: float, multiples) -> tuple[int, int, int]:
    shape = tuple(crop_edge(int(s), scale, int(m)) for s, m in zip(spatial_shape, multiples))
    return shape[0], shape[1], shape[2]


def random_corners(batch: int, spatial_shape, size, generator: torch.Generator) -> torch.Tensor:
    """(B, 3) lower corners of crops of `size` lying inside `spatial_shape`."""
    room = torch.tensor([int(s) - int(c) for s, c in zip(spatial_shape, size)])
    if (room < 0).any():
        raise ValueError(f"crop {tuple(size)} does not fit in the patch {tuple(spatial_shape)}")
    return (torch.rand(batch, 3, generator=generator) * (room + 1).float()).long().clamp_max(room)


def crop_at(x: torch.Tensor, corners: torch.Tensor, size) -> torch.Tensor:
    """(B, C, *size): sample b cropped at corners[b]."""
    sx, sy, sz = (int(s) for s in size)
    return torch.stack([x[b, :, cx:cx + sx, cy:cy + sy, cz:cz + sz]
                        for b, (cx, cy, cz) in enumerate(corners.tolist())])


def random_flip_axes(batch: int, generator: torch.Generator) -> torch.Tensor:
    """(B, 3) bool: which spatial axes to mirror per sample (each with p = 0.5)."""
    return torch.rand(batch, 3, generator=generator) < 0.5


def apply_flips(x: torch.Tensor, flips: torch.Tensor) -> torch.Tensor:
    out = []
    for b, axes in enumerate(flips.tolist()):
        dims = [1 + i for i, flip in enumerate(axes) if flip]  # x[b] is (C, X, Y, Z): spatial dims 1..3
        out.append(torch.flip(x[b], dims) if dims else x[b])
    return torch.stack(out)


def jitter_intensity(x: torch.Tensor, strength: float, generator: torch.Generator) -> torch.Tensor:
    """x * a + b + noise with a ~ U(1 +- s), b ~ U(+- s), noise std ~ U(0, s) per sample (z-scored input)."""
    if strength <= 0:
        return x
    batch, shape = x.shape[0], (x.shape[0],) + (1,) * (x.dim() - 1)
    draws = torch.rand(3, batch, generator=generator).to(x.device, x.dtype)
    scale = 1.0 + strength * (2 * draws[0] - 1)
    shift = strength * (2 * draws[1] - 1)
    noise_std = strength * draws[2]
    noise = torch.randn(x.shape, generator=device_generator(generator, x.device), device=x.device, dtype=x.dtype)
    return x * scale.view(shape) + shift.view(shape) + noise * noise_std.view(shape)


def make_view(image: torch.Tensor, size, generator: torch.Generator, jitter: float, flips: bool,
              target: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """One augmented view: a random crop (input and target alike), optional flips, intensity jitter
    of the input only (the target stays the clean image)."""
    corners = random_corners(image.shape[0], image.shape[2:], size, generator)
    view = crop_at(image, corners, size)
    view_target = crop_at(target, corners, size) if target is not None else None
    if flips:
        axes = random_flip_axes(image.shape[0], generator)
        view = apply_flips(view, axes)
        view_target = apply_flips(view_target, axes) if view_target is not None else None
    return jitter_intensity(view, jitter, generator), view_target


def total_stride(plans_network) -> tuple[int, int, int]:
    stride = plans_network.total_downsampling
    return int(stride[0]), int(stride[1]), int(stride[2])
