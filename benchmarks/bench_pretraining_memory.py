"""Peak memory of each pretraining method's training step, per sample, against the plan's U-Net (issue 21).

The planner sizes a batch for one sample through the plan's U-Net (planning/memory.py). Each method's step
costs a multiple of that (two views, teacher, cross-reconstruction): this measures the multiple on the CPU.

For each method: peak RSS (GNU time's "Maximum resident set size" of `fomo_nn_train D all -tr METHOD
--epochs 1 --iters-per-epoch 1 --val-iters 1 --num-workers 0 --batch-size B`) at two batch sizes; the slope is
the memory of one more sample. The reference is the plan's U-Net itself (SegmentationNet with the plan's
network, one channel, two classes, cross-entropy forward + backward) at the same two batch sizes. The
multiplier = method slope / reference slope.

`--plan-batch` then runs every method at the plan's batch as before (`--batch-size` = the plan's) and as
now (the trainer scales the batch by its memory_multiplier) and reports the peaks.

    python benchmarks/bench_pretraining_memory.py 501 --batches 2 6 --plan-batch
"""
from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

METHODS = ("mae", "contrastive", "hybrid", "vae", "dino")
RSS = re.compile(r"Maximum resident set size \(kbytes\): (\d+)")
BATCH_NOTE = re.compile(r"batch size (\d+) instead of the plan's (\d+)")

REFERENCE = """
import sys, torch
from fomo_nn.plans.records import load_plans
from fomo_nn.networks import SegmentationNet
plans = load_plans(sys.argv[1]); batch = int(sys.argv[2])
torch.manual_seed(0)
net = SegmentationNet(plans.network, 1, 2, fusion="none")
x = torch.randn(batch, 1, *plans.patch_size); y = torch.randint(0, 2, (batch, *plans.patch_size))
loss = torch.nn.functional.cross_entropy(net(x), y); loss.backward()
"""


def peak_rss_mb(command: list[str], env: dict) -> tuple[float, str]:
    done = subprocess.run(["/usr/bin/time", "-v", *command], env=env, capture_output=True, text=True)
    match = RSS.search(done.stderr)
    if done.returncode != 0 or not match:
        raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{done.stderr[-2000:]}")
    return int(match.group(1)) / 1024.0, done.stderr


def train_command(dataset: str, method: str, output: Path, batch: int | None) -> list[str]:
    command = ["fomo_nn_train", dataset, "all", "-tr", method, "--epochs", "1", "--iters-per-epoch", "1",
               "--val-iters", "1", "--num-workers", "0", "--device", "cpu", "--output", str(output), "--overwrite"]
    return command + (["--batch-size", str(batch)] if batch is not None else [])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dataset")
    parser.add_argument("--methods", nargs="+", default=list(METHODS))
    parser.add_argument("--batches", nargs=2, type=int, default=[2, 6])
    parser.add_argument("--plan-batch", action="store_true", help="also run every method at the plan's batch")
    parser.add_argument("--skip-before", nargs="*", default=[], help="methods not to run at the unscaled plan batch "
                        "(those whose multiplier keeps the plan's batch: the 'after' run is the same)")
    parser.add_argument("--no-slopes", action="store_true", help="only the plan-batch runs")
    args = parser.parse_args(argv)

    from fomo_nn import paths
    from fomo_nn.plans.records import load_plans

    plans_path = paths.preprocessed_root() / paths.resolve_dataset_name(args.dataset) / "plans.json"
    plans = load_plans(plans_path)
    env = dict(os.environ)
    small, large = args.batches
    result = {"patch_size": plans.patch_size, "plan_batch": plans.batch_size, "batches": args.batches}
    def reference_peak(batch: int) -> float:
        return peak_rss_mb([sys.executable, "-c", REFERENCE, str(plans_path), str(batch)], env)[0]

    reference_slope = None
    if not args.no_slopes:
        reference = [reference_peak(b) for b in (small, large)]
        reference_slope = (reference[1] - reference[0]) / (large - small)
        result["reference"] = {"peak_mb": reference, "mb_per_sample": reference_slope}
        print(f"plan U-Net (SegmentationNet): {reference[0]:.0f} / {reference[1]:.0f} MB at batch {small} / {large}: "
              f"{reference_slope:.1f} MB per sample", flush=True)
    if args.plan_batch:
        result["reference_at_plan_batch_mb"] = reference_peak(plans.batch_size)
        print(f"plan U-Net at the plan's batch {plans.batch_size}: {result['reference_at_plan_batch_mb']:.0f} MB",
              flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        for method in args.methods:
            entry = {}
            if not args.no_slopes:
                peaks = [peak_rss_mb(train_command(args.dataset, method, Path(scratch) / f"{method}_{b}", b), env)[0]
                         for b in (small, large)]
                slope = (peaks[1] - peaks[0]) / (large - small)
                entry = {"peak_mb": peaks, "mb_per_sample": slope, "multiplier": slope / reference_slope}
            if args.plan_batch:
                if method not in args.skip_before:
                    entry["before_mb"] = peak_rss_mb(train_command(args.dataset, method, Path(scratch) / f"{method}_b",
                                                                   plans.batch_size), env)[0]
                after, log = peak_rss_mb(train_command(args.dataset, method, Path(scratch) / f"{method}_a", None), env)
                note = BATCH_NOTE.search(log)
                entry.update(after_mb=after, after_batch=int(note.group(1)) if note else plans.batch_size)
            result[method] = entry
            print(f"{method}: {json.dumps(entry)}", flush=True)
    print(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
