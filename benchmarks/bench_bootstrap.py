"""Time fomo_nn_rank's statistics at challenge scale: bootstrap ranks and pairwise permutation tests.

Synthetic per-case results for every task (classification, segmentation, regression), each with
CASES cases and MODELS models; times 10,000 bootstrap resamples (metrics + ranks, all tasks) and the
pairwise permutation tests of all model pairs on all metrics (fomo_nn_rank's default: 100,000
permutations per test, as in the FOMO25 paper), all tasks and each task alone.

    python benchmarks/bench_bootstrap.py [--cases 800] [--models 20] [--resamples 10000] [--permutations 100000]
"""
from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

from fomo_nn.evaluation.bootstrap import bootstrap_ranks
from fomo_nn.evaluation.permutation import DEFAULT_PERMUTATIONS, pairwise_permutation_tests
from fomo_nn.evaluation.results import TaskTable


def synthetic_tables(num_cases: int, num_models: int, seed: int = 0) -> dict[str, TaskTable]:
    rng = np.random.default_rng(seed)
    skill = np.linspace(0.2, 1.0, num_models)
    case_ids = [f"case_{i:04d}" for i in range(num_cases)]
    present = np.ones(num_models, bool)
    labels = (rng.random(num_cases) < 0.4).astype(float)
    probabilities = 1 / (1 + np.exp(-(labels[:, None] - 0.5) * 2 * skill - rng.normal(0, 1, (num_cases, num_models))))
    difficulty = rng.uniform(0.1, 0.9, (num_cases, 1))
    dice = np.clip(difficulty * skill + rng.normal(0, 0.1, (num_cases, num_models)), 0, 1)
    nsd = np.clip(dice + rng.normal(0, 0.05, dice.shape), 0, 1)
    ages = rng.uniform(18, 90, num_cases)
    predictions = ages[:, None] + rng.normal(0, 1, (num_cases, num_models)) * (20 - 12 * skill)
    return {"classification": TaskTable("classification", case_ids, present, {"probability": probabilities}, labels),
            "segmentation": TaskTable("segmentation", case_ids, present, {"dice": dice, "nsd": nsd}),
            "regression": TaskTable("regression", case_ids, present, {"prediction": predictions}, ages)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", type=int, default=800)
    parser.add_argument("--models", type=int, default=20)
    parser.add_argument("--resamples", type=int, default=10_000)
    parser.add_argument("--permutations", type=int, default=DEFAULT_PERMUTATIONS)
    args = parser.parse_args()
    tables = synthetic_tables(args.cases, args.models)
    names = [f"model_{m:02d}" for m in range(args.models)]
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")

    start = time.perf_counter()
    result = bootstrap_ranks(tables, args.resamples, seed=0)
    bootstrap_seconds = time.perf_counter() - start
    print(f"bootstrap: {args.resamples} resamples x 3 tasks x {args.cases} cases x {args.models} models: "
          f"{bootstrap_seconds:.2f} s (overall ranks {result.ranks.overall.shape})")

    for task, table in tables.items():
        start = time.perf_counter()
        bootstrap_ranks({task: table}, args.resamples, seed=0)
        print(f"  {task} alone: {time.perf_counter() - start:.2f} s")

    start = time.perf_counter()
    tests = pairwise_permutation_tests(tables, names, args.permutations, seed=0)
    print(f"permutation tests: {len(tests)} tests ({args.models * (args.models - 1) // 2} pairs x 5 metrics) x "
          f"{args.permutations} permutations: {time.perf_counter() - start:.2f} s")

    for task, table in tables.items():
        start = time.perf_counter()
        pairwise_permutation_tests({task: table}, names, args.permutations, seed=0)
        print(f"  {task} alone: {time.perf_counter() - start:.2f} s")


if __name__ == "__main__":
    main()
