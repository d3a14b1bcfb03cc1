"""What fomo_nn knows about one encoder family, as one record (issue 21: network families as data).

The planner (default blocks, memory), the CLI's choices, weight loading (stage of a key), plans-like
and the checkpoint formats read these records instead of comparing family names. A new family is one
file in this folder plus one line in registry.py.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from torch import nn

from fomo_nn.plans.records import NetworkPlan


@dataclass(frozen=True)
class NetworkFamily:
    name: str  # the value of NetworkPlan.encoder
    description: str
    # (plan, in_channels) -> encoder whose forward returns every stage's features (highest resolution first,
    # bottleneck last) and which carries output_channels / strides / kernel_sizes (what decoders read)
    build_encoder: Callable[[NetworkPlan, int], nn.Module]
    check_plan: Callable[[NetworkPlan], list[str]]  # problems that make a plan unbuildable in this family
    stage_of_key: Callable[[str], int | None]  # encoder key without "encoder." -> stage; None: the stem before stage 0
    default_blocks: Callable[[int], list[int]]  # convs/blocks per stage for n stages (planner)
    # feature-map elements per (conv entry of n_conv_per_stage x features x voxels) relative to one plain
    # conv-norm-nonlin: what planning/memory.py multiplies the encoder's count by
    memory_factor: float
    plannable: bool  # may the planner choose it for a dataset alone (its topology rule fits any spacing)
    decoder_convs: int = 2  # convs per decoder stage the planner gives it (nnU-Net: 2 plain, 1 for ResEnc)


def set_stage_geometry(encoder: nn.Module, plan: NetworkPlan) -> nn.Module:
    """Give an encoder built by another library the per-stage attributes fomo_nn's decoders read
    (networks/encoders.decoder_spec): channels, strides (a max-pool stage's stride is its pooling) and kernels."""
    encoder.output_channels = [int(f) for f in plan.features_per_stage]
    encoder.strides = [[int(s) for s in stride] for stride in plan.strides]
    encoder.kernel_sizes = [[int(k) for k in kernel] for kernel in plan.kernel_sizes]
    return encoder


def numbered_stage(key: str, container: str) -> int | None:
    """N of '<container>.N.…' (DNA and gardening-tools keep their stages in a list called 'stages')."""
    parts = key.split(".")
    if len(parts) > 1 and parts[0] == container and parts[1].isdigit():
        return int(parts[1])
    return None


def uniform_cubes(name: str, entries, skip_first: bool = False) -> tuple[list[str], int | None]:
    """(problems, edge) for a list of 3D entries that must all be the same isotropic value (one int per
    network in the libraries that take a scalar kernel size / stride)."""
    chosen = list(entries)[1 if skip_first else 0:]
    values = {tuple(int(v) for v in entry) for entry in chosen}
    if len(values) != 1 or len(set(next(iter(values)))) != 1:
        return [f"{name} must be one isotropic value for every stage{' after the first' if skip_first else ''}, "
                f"got {[list(e) for e in entries]}"], None
    return [], next(iter(values))[0]
