"""Patch size, network topology and batch size under a GPU memory budget (nnU-Net's procedure).

1. Start from a patch with the aspect ratio of the target spacing and the volume of 256^3 voxels,
   clipped to the median image shape (and to `max_patch_edge` if given).
2. Derive the topology from it (topology.py) and estimate memory (memory.py).
3. While the estimate exceeds the budget, shrink the axis whose patch is largest relative to the
   median shape by one step of its pooling divisibility, and re-derive the topology.
4. Batch size: what the remaining memory allows (at least 2), but no more than 5 % of the
   dataset's voxels per step (a guard against overfitting small datasets).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from fomo_nn.networks.families import PLANNABLE_FAMILIES, network_family
from fomo_nn.planning.memory import REFERENCE_BATCH_SIZE, estimate_feature_map_elements, feature_map_budget
from fomo_nn.planning.topology import MIN_FEATURE_MAP_EDGE, Topology, features_per_stage, plan_topology
from fomo_nn.plans.records import NetworkPlan

ENCODERS = PLANNABLE_FAMILIES  # the families whose topology the planner may derive for a dataset alone
MIN_PATCH_EDGE = 2 * MIN_FEATURE_MAP_EDGE  # smaller cannot be pooled even once


@dataclass
class SizingOptions:
    gpu_memory_gb: float = 8.0
    base_features: int = 32
    max_features: int = 320
    encoder: str = "plain_conv"
    max_patch_edge: int | None = None  # voxels; small values plan tiny CPU-friendly runs
    max_patch_volume: int = 256 ** 3
    min_batch_size: int = 2
    max_batch_size: int | None = None
    max_dataset_fraction: float = 0.05

    def __post_init__(self):
        if self.encoder not in ENCODERS:
            raise ValueError(f"encoder {self.encoder!r} is not one of {ENCODERS}")
        if self.gpu_memory_gb <= 0 or self.base_features < 1 or self.max_features < self.base_features:
            raise ValueError("need gpu_memory_gb > 0 and 1 <= base_features <= max_features")
        if self.max_patch_edge is not None and self.max_patch_edge < MIN_PATCH_EDGE:
            raise ValueError(f"max_patch_edge must be at least {MIN_PATCH_EDGE} voxels")


@dataclass
class Sizing:
    patch_size: list[int]
    network: NetworkPlan
    batch_size: int
    estimate: int  # feature-map elements per sample
    budget: float  # per-sample elements that fit at REFERENCE_BATCH_SIZE
    notes: list[str] = field(default_factory=list)

    @property
    def memory_batch_size(self) -> int:
        return memory_batch_size(self.estimate, self.budget)


def network_from_topology(topology: Topology, options: SizingOptions, input_channels: int, fusion: str) -> NetworkPlan:
    stages = topology.num_stages
    family = network_family(options.encoder)
    blocks, decoder = family.default_blocks(stages), [family.decoder_convs] * (stages - 1)
    return NetworkPlan(encoder=options.encoder,
                       features_per_stage=features_per_stage(stages, options.base_features, options.max_features),
                       kernel_sizes=[list(k) for k in topology.kernel_sizes], strides=[list(s) for s in topology.strides],
                       n_conv_per_stage=blocks, n_conv_per_stage_decoder=decoder, input_channels=input_channels,
                       fusion=fusion)


def initial_patch(spacing, median_shape, options: SizingOptions) -> list[int]:
    aspect = 1.0 / np.asarray(spacing, dtype=float)
    patch = aspect * (options.max_patch_volume / np.prod(aspect)) ** (1 / 3)
    patch = np.minimum(np.round(patch), np.asarray(median_shape, dtype=float))
    if options.max_patch_edge:
        patch = np.minimum(patch, options.max_patch_edge)
    return [int(max(v, MIN_PATCH_EDGE)) for v in patch]


def capped_topology(spacing, patch, max_edge: int | None) -> Topology:
    """Topology whose (padded) patch never exceeds `max_edge`: round down instead of up where needed."""
    patch = list(patch)
    topology = plan_topology(spacing, patch)
    while max_edge and any(p > max_edge for p in topology.patch_size):
        for axis, (padded, divisor) in enumerate(zip(topology.patch_size, topology.divisible_by)):
            if padded > max_edge:
                patch[axis] = max((min(patch[axis], max_edge) // divisor) * divisor, MIN_PATCH_EDGE)
        topology = plan_topology(spacing, patch)
    return topology


def _shrunk_edge(spacing, patch, axis: int) -> int:
    """One step down along `axis`, by the divisibility the smaller patch will need (nnU-Net's two-step)."""
    trial = list(patch)
    trial[axis] -= plan_topology(spacing, patch).divisible_by[axis]
    trial[axis] = max(trial[axis], 1)
    return patch[axis] - plan_topology(spacing, trial).divisible_by[axis]


def fit_patch(spacing, median_shape, options: SizingOptions, input_channels: int, output_channels: int,
              fusion: str = "none", encoder_passes: int = 1, start_patch=None) -> tuple[Topology, NetworkPlan, int, list]:
    """Shrink the patch until the estimate fits `options.gpu_memory_gb`; (topology, network, estimate, notes)."""
    budget = feature_map_budget(options.gpu_memory_gb)
    topology = capped_topology(spacing, start_patch or initial_patch(spacing, median_shape, options),
                               options.max_patch_edge)
    network = network_from_topology(topology, options, input_channels, fusion)
    estimate = estimate_feature_map_elements(network, topology.patch_size, output_channels, encoder_passes)
    notes = []
    while estimate > budget:
        ratios = np.asarray(topology.patch_size, float) / np.maximum(np.asarray(median_shape, float), 1)
        shrunk = None
        for axis in np.argsort(-ratios, kind="stable"):
            edge = _shrunk_edge(spacing, topology.patch_size, int(axis))
            if edge < MIN_PATCH_EDGE:
                continue
            patch = list(topology.patch_size)
            patch[int(axis)] = edge
            candidate = capped_topology(spacing, patch, options.max_patch_edge)
            if np.prod(candidate.patch_size) < np.prod(topology.patch_size):
                shrunk = candidate
                break
        if shrunk is None:
            notes.append(f"the memory budget of {options.gpu_memory_gb:g} GB is too small even for patch "
                         f"{list(topology.patch_size)}; planning it anyway (expect out-of-memory on that GPU)")
            break
        topology = shrunk
        network = network_from_topology(topology, options, input_channels, fusion)
        estimate = estimate_feature_map_elements(network, topology.patch_size, output_channels, encoder_passes)
    return topology, network, estimate, notes


def memory_batch_size(estimate: int, budget: float) -> int:
    """The batch the memory budget alone allows for a sample of `estimate` feature-map elements."""
    return max(int(round(budget / max(estimate, 1) * REFERENCE_BATCH_SIZE)), 1)


def batch_size_for(estimate: int, budget: float, patch_size, dataset_voxels: float, options: SizingOptions
                   ) -> tuple[int, str]:
    """(batch size, reason): memory headroom, at least min_batch_size, at most 5 % of the dataset."""
    by_memory = memory_batch_size(estimate, budget)
    by_dataset = int(round(dataset_voxels * options.max_dataset_fraction / float(np.prod(patch_size))))
    batch = max(min(by_memory, by_dataset), options.min_batch_size)
    reason = (f"batch size {batch}: memory allows {by_memory}, {options.max_dataset_fraction:.0%} of the dataset's "
              f"voxels allows {by_dataset}, minimum {options.min_batch_size}")
    if options.max_batch_size is not None and batch > options.max_batch_size:
        batch = max(int(options.max_batch_size), 1)
        reason += f", capped at --max-batch-size {batch}"
    return batch, reason


def plan_sizing(spacing, median_shape, options: SizingOptions, input_channels: int, output_channels: int,
                dataset_voxels: float, fusion: str = "none", encoder_passes: int = 1, start_patch=None) -> Sizing:
    topology, network, estimate, notes = fit_patch(spacing, median_shape, options, input_channels, output_channels,
                                                   fusion, encoder_passes, start_patch)
    budget = feature_map_budget(options.gpu_memory_gb)
    batch, batch_reason = batch_size_for(estimate, budget, topology.patch_size, dataset_voxels, options)
    notes = [f"patch {list(topology.patch_size)} (median shape {[int(s) for s in median_shape]}), "
             f"{topology.num_stages} stages, pooling per axis {list(topology.pools_per_axis)}, bottleneck "
             f"{list(topology.bottleneck_shape)}; estimate {estimate / 1e6:.0f}M feature-map elements per sample vs "
             f"{budget / 1e6:.0f}M allowed (batch {REFERENCE_BATCH_SIZE}) at {options.gpu_memory_gb:g} GB", *notes, batch_reason]
    return Sizing(list(topology.patch_size), network, batch, estimate, budget, notes)
