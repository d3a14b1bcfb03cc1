"""How much of sliding-window prediction is the network, and how much is tiling/accumulation overhead.

Runs fomo_nn's sliding_window_dense on a brain-sized volume and compares it with the bare forward
passes over the same number of tiles in the same batches (the floor any implementation pays).

    python benchmarks/bench_sliding_window.py [--shape 96 96 96] [--patch 48] [--features 8 16 32 64]
"""
from __future__ import annotations

import argparse
import math
import time

import numpy as np
import torch

from fomo_nn.inference.sliding_window import default_batch_size, sliding_window_dense, tile_corners
from fomo_nn.networks import SegmentationNet
from fomo_nn.plans import NetworkPlan


def build_network(features: list[int]) -> torch.nn.Module:
    stages = len(features)
    plan = NetworkPlan(features_per_stage=features, kernel_sizes=[[3, 3, 3]] * stages,
                       strides=[[1, 1, 1]] + [[2, 2, 2]] * (stages - 1), n_conv_per_stage=[2] * stages,
                       n_conv_per_stage_decoder=[2] * (stages - 1))
    return SegmentationNet(plan, 1, 2).eval()


def bare_forward_seconds(network, tiles: int, batch: int, patch: int, flips: int) -> float:
    started = time.perf_counter()
    with torch.inference_mode():
        for _ in range(flips):
            remaining = tiles
            while remaining > 0:
                size = min(batch, remaining)
                network(torch.randn(size, 1, patch, patch, patch))
                remaining -= size
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--shape", type=int, nargs=3, default=[96, 96, 96])
    parser.add_argument("--patch", type=int, default=48)
    parser.add_argument("--features", type=int, nargs="+", default=[8, 16, 32, 64])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    network = build_network(args.features)
    data = np.random.default_rng(0).normal(size=(1, *args.shape)).astype(np.float32)
    patch = (args.patch,) * 3
    tiles = len(tile_corners(args.shape, patch, 0.5))
    batch = default_batch_size(patch)
    print(f"volume {args.shape}, patch {args.patch}^3, {tiles} tiles, batch {batch}, {args.threads} threads", flush=True)
    bare_forward_seconds(network, batch, batch, args.patch, 1)  # warm-up: allocator, kernels
    for mirror in (False, True):
        flips = 8 if mirror else 1
        totals, floors = [], []
        for _ in range(args.repeats):  # interleaved, best of N: other jobs on the machine add noise
            started = time.perf_counter()
            sliding_window_dense(network, data, patch, 2, step=0.5, mirror=mirror)
            totals.append(time.perf_counter() - started)
            floors.append(bare_forward_seconds(network, tiles, batch, args.patch, flips))
        total, floor = min(totals), min(floors)
        print(f"tta={'on ' if mirror else 'off'}: sliding window {total:.2f} s, bare forward passes {floor:.2f} s, "
              f"overhead {100 * (total - floor) / total:.1f} % ({math.ceil(tiles / batch) * flips} forward calls)",
              flush=True)


if __name__ == "__main__":
    main()
