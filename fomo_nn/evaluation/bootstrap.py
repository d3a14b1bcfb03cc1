"""Rank stability: resample each task's cases B times and re-rank the models every time.

Within a task every model sees the same resampled cases (one counts matrix per task); tasks are
resampled independently (they are different patients). Classification resamples positives and
negatives separately, keeping both class sizes (stratified bootstrap, as pROC does), so every
resample has an AUROC. Seeds: task k draws from SeedSequence(seed).spawn(...)[k], so a seed gives
the same distribution on any machine, and adding a task does not change another task's draws; k is
the task's stream (task_metrics.key_stream: a challenge task's position in its edition, FOMO25's task
n and the type it stands for alike n - 1).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tqdm import tqdm

from fomo_nn.challenges.edition import Ranking
from fomo_nn.evaluation.ranking import FOMO25_RANKING, Ranks, aggregate_ranks, places
from fomo_nn.evaluation.results import TaskTable
from fomo_nn.evaluation.task_metrics import key_stream

CHUNK = 500  # resamples per vectorized block: bounds memory at CHUNK x cases


def _counts_from_draws(draws: np.ndarray, num_cases: int) -> np.ndarray:
    """Indices drawn per resample (c, k) -> how often each case was drawn (c, num_cases)."""
    rows = np.arange(draws.shape[0])[:, None] * num_cases
    flat = np.bincount((draws + rows).ravel(), minlength=draws.shape[0] * num_cases)
    return flat.reshape(draws.shape[0], num_cases).astype(np.float64)


def resample_counts(rng: np.random.Generator, num_resamples: int, num_cases: int,
                    strata: np.ndarray | None = None) -> np.ndarray:
    """Bootstrap case counts (num_resamples, num_cases); within each stratum when strata are given."""
    if strata is None:
        return _counts_from_draws(rng.integers(0, num_cases, size=(num_resamples, num_cases)), num_cases)
    counts = np.zeros((num_resamples, num_cases))
    for stratum in np.unique(strata):
        members = np.flatnonzero(strata == stratum)
        draws = members[rng.integers(0, members.size, size=(num_resamples, members.size))]
        counts += _counts_from_draws(draws, num_cases)
    return counts


def task_generators(seed: int | None, tasks) -> dict[str, np.random.Generator]:
    """One independent generator per task, fixed by the task's stream (its position in its edition)."""
    streams = {task: key_stream(task) for task in tasks}
    children = np.random.SeedSequence(seed).spawn(max(streams.values(), default=0) + 1)
    return {task: np.random.default_rng(children[stream]) for task, stream in streams.items()}


@dataclass
class BootstrapResult:
    num_resamples: int
    seed: int | None
    metric_values: dict[str, dict[str, np.ndarray]]  # task -> metric key -> (B, M)
    ranks: Ranks  # every array (B, M)

    @property
    def places(self) -> np.ndarray:
        return places(self.ranks.overall)


def bootstrap_ranks(tables: dict[str, TaskTable], num_resamples: int = 10_000, seed: int | None = 0,
                    progress: bool = False, ranking: Ranking = FOMO25_RANKING) -> BootstrapResult:
    """Metric values and ranks of every model on `num_resamples` resamples of each task's cases."""
    if num_resamples < 1:
        raise ValueError(f"need at least one bootstrap resample, got {num_resamples}")
    generators = task_generators(seed, tables)
    blocks: dict[str, dict[str, list[np.ndarray]]] = {task: {} for task in tables}
    starts = range(0, num_resamples, CHUNK)
    for start in tqdm(starts, desc="bootstrap", unit="block", disable=not progress):
        size = min(CHUNK, num_resamples - start)
        for task, table in tables.items():
            strata = table.reference if table.evaluation.class_reference else None
            counts = resample_counts(generators[task], size, table.num_cases, strata)
            for key, values in table.metric_values(counts).items():
                blocks[task].setdefault(key, []).append(values)
    metric_values = {task: {key: np.concatenate(parts) for key, parts in by_key.items()}
                     for task, by_key in blocks.items()}
    return BootstrapResult(num_resamples, seed, metric_values, aggregate_ranks(metric_values, ranking))
