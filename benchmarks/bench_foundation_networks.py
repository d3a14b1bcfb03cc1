"""CPU time and peak memory of one finetuning step: ResEnc-L (nnssl), ResEnc-B (asparagus/AMAES) and fomo_nn's
default network, segmentation and classification heads, at one patch size, side by side in one run (issue 21).

Each (network, head) runs in its own subprocess (so its peak RSS is its own): build the fomo_nn finetuning model
(SegmentationNet: the family's encoder + fomo_nn's U-Net decoder; ClassificationNet: pooled head on every
stage), AdamW, then `--warmup` untimed and `--steps` timed steps of forward + cross-entropy + backward +
optimizer step on random input (float32, CPU). Reported per step: CPU seconds of the process (user + system,
all threads) and wall seconds; peak RSS (ru_maxrss) after the steps and the RSS before the first step.

The default network is what the planner builds for a 1 mm dataset at that patch (plain_conv, 32..320 features,
2 convs per stage); ResEnc-L and ResEnc-B are fomo_nn.networks.families presets "resenc_l" (DNA
ResidualEncoder) and "resenc_b" (gardening-tools ResidualUNetEncoder), 6 stages.

    python benchmarks/bench_foundation_networks.py --patch 96 --batch 2 --steps 2 --warmup 1
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time

NETWORKS = ("default", "resenc_l", "resenc_b")
HEADS = ("segmentation", "classification")


def network_plan(name: str, patch: int):
    from fomo_nn.networks.families import network_preset
    from fomo_nn.planning.sizing import SizingOptions, network_from_topology
    from fomo_nn.planning.topology import plan_topology

    if name == "default":
        topology = plan_topology([1.0, 1.0, 1.0], [patch] * 3)
        return network_from_topology(topology, SizingOptions(), 1, "none")
    return network_preset(name)


def run_one(name: str, head: str, patch: int, batch: int, steps: int, warmup: int, threads: int) -> dict:
    import torch

    from fomo_nn.networks import ClassificationNet, SegmentationNet
    from fomo_nn.networks.inspection import count_parameters

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    plan = network_plan(name, patch)
    model = (SegmentationNet(plan, 1, 2, fusion="none") if head == "segmentation"
             else ClassificationNet(plan, 1, 2, fusion="none"))
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, patch, patch, patch)
    target = (torch.randint(0, 2, (batch, patch, patch, patch)) if head == "segmentation"
              else torch.randint(0, 2, (batch,)))
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def step():
        optimizer.zero_grad(set_to_none=True)
        loss = torch.nn.functional.cross_entropy(model(x), target)
        loss.backward()
        optimizer.step()

    for _ in range(warmup):
        step()
    cpu, wall = [], []
    for _ in range(steps):
        c0, w0 = time.process_time(), time.perf_counter()
        step()
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
    return {"network": name, "family": plan.encoder, "head": head, "features": plan.features_per_stage,
            "blocks": plan.n_conv_per_stage, "parameters_M": round(count_parameters(model) / 1e6, 2),
            "cpu_s_per_step": round(sum(cpu) / len(cpu), 2), "wall_s_per_step": round(sum(wall) / len(wall), 2),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
            "rss_before_first_step_mb": round(rss_before)}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--patch", type=int, default=96)
    parser.add_argument("--batch", type=int, default=2)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--warmup", type=int, default=1)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--networks", nargs="+", default=list(NETWORKS))
    parser.add_argument("--heads", nargs="+", default=list(HEADS))
    parser.add_argument("--one", nargs=2, metavar=("NETWORK", "HEAD"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(run_one(*args.one, args.patch, args.batch, args.steps, args.warmup, args.threads)))
        return 0
    rows = []
    for head in args.heads:
        for name in args.networks:
            command = [sys.executable, __file__, "--one", name, head, "--patch", str(args.patch), "--batch",
                       str(args.batch), "--steps", str(args.steps), "--warmup", str(args.warmup), "--threads",
                       str(args.threads)]
            done = subprocess.run(command, capture_output=True, text=True)
            if done.returncode != 0:
                raise RuntimeError(f"{name} {head} failed:\n{done.stderr[-2000:]}")
            rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
            print(json.dumps(rows[-1]), flush=True)
    print(f"\npatch {args.patch}^3, batch {args.batch}, {args.steps} timed step(s) after {args.warmup} warm-up, "
          f"{args.threads} threads")
    print("| network | family | head | params (M) | CPU s / step | wall s / step | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['network']} | {r['family']} | {r['head']} | {r['parameters_M']} | {r['cpu_s_per_step']} | "
              f"{r['wall_s_per_step']} | {r['peak_rss_mb']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
