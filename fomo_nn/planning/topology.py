"""U-Net topology from spacing and patch size (nnU-Net's pooling rule, in our words).

Stage by stage, an axis is pooled (stride 2) while its feature map stays at least `min_edge`
voxels after pooling and its current spacing is within 2x of the finest pooled-able axis: coarse
axes wait until the fine ones catch up, so the receptive field grows isotropically in mm. A lone
axis is pooled only if it is still at least 3x `min_edge`. Kernels are 3 on axes within 2x of the
finest spacing, 1 on much coarser axes (a 3-tap kernel across 5 mm slices mostly mixes unrelated
anatomy); the bottleneck always uses 3. The patch is then made divisible by the total downsampling.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

MIN_FEATURE_MAP_EDGE = 4


@dataclass(frozen=True)
class Topology:
    strides: tuple[tuple[int, int, int], ...]  # per stage; the first is (1, 1, 1)
    kernel_sizes: tuple[tuple[int, int, int], ...]  # per stage
    pools_per_axis: tuple[int, int, int]
    patch_size: tuple[int, int, int]  # divisible by `divisible_by`

    @property
    def num_stages(self) -> int:
        return len(self.strides)

    @property
    def divisible_by(self) -> tuple[int, int, int]:
        return tuple(2 ** p for p in self.pools_per_axis)

    @property
    def bottleneck_shape(self) -> tuple[int, int, int]:
        return tuple(s // d for s, d in zip(self.patch_size, self.divisible_by))


def round_up(value: int, multiple: int) -> int:
    return int(math.ceil(value / multiple) * multiple)


def plan_topology(spacing, patch_size, min_edge: int = MIN_FEATURE_MAP_EDGE) -> Topology:
    """Strides, kernels and the patch size padded up to the pooling's divisibility."""
    current_spacing = [float(s) for s in spacing]
    current_size = [int(s) for s in patch_size]
    pools = [0, 0, 0]
    kernel = [1, 1, 1]
    strides = [(1, 1, 1)]
    kernels = []
    while True:
        candidates = [a for a in range(3) if current_size[a] >= 2 * min_edge]
        if not candidates:
            break
        finest = min(current_spacing[a] for a in candidates)
        candidates = [a for a in candidates if current_spacing[a] / finest < 2]
        if len(candidates) == 1 and current_size[candidates[0]] < 3 * min_edge:
            break
        overall_finest = min(current_spacing)
        kernel = [3 if kernel[a] == 3 or current_spacing[a] / overall_finest < 2 else 1 for a in range(3)]
        kernels.append(tuple(kernel))
        stride = tuple(2 if a in candidates else 1 for a in range(3))
        for a in candidates:
            pools[a] += 1
            current_spacing[a] *= 2
            current_size[a] = math.ceil(current_size[a] / 2)
        strides.append(stride)
    kernels.append((3, 3, 3))
    divisible = [2 ** p for p in pools]
    patch = tuple(round_up(int(s), d) for s, d in zip(patch_size, divisible))
    return Topology(tuple(strides), tuple(kernels), tuple(pools), patch)


def features_per_stage(num_stages: int, base: int = 32, maximum: int = 320) -> list[int]:
    return [min(base * 2 ** i, maximum) for i in range(num_stages)]
