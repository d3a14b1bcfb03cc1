"""FOMO25 rank-then-aggregate, for one leaderboard or for a whole stack of bootstrap resamples.

- Each metric ranks the models, 1 = best (lower MAE is better); tied values share the average rank.
- A model without the task counts as worse than every model with it; models missing the same task
  tie among themselves, so k missing models share the average of the last k places.
- Task rank = mean of that task's metric ranks; overall rank = mean of the task ranks over every task
  any model was scored on. The overall rank is a score (FOMO25 reported e.g. 2.7), the place is the
  competition ranking of it ("1, 2, 2, 4").
All functions take values shaped (..., M) so the same code ranks the point estimate and (B, M) resamples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from fomo_nn.evaluation.task_metrics import TASK_METRICS

_DECIMALS = 12  # values equal up to float noise are ties


def rank_models(values: np.ndarray, higher_is_better: bool) -> np.ndarray:
    """Average ranks along the last axis, 1 = best; NaN (task missing) ranks below every number."""
    values = np.asarray(values, dtype=np.float64)
    key = np.round(-values if higher_is_better else values, _DECIMALS)
    key = np.where(np.isnan(key), np.inf, key)
    return rankdata(key, axis=-1, method="average")


def places(overall_ranks: np.ndarray) -> np.ndarray:
    """Competition placing of the overall rank (lower is better): 1, 2, 2, 4."""
    return rankdata(np.round(overall_ranks, _DECIMALS), axis=-1, method="min").astype(np.int64)


@dataclass
class Ranks:
    metric_ranks: dict[str, dict[str, np.ndarray]]  # task -> metric key -> (..., M)
    task_ranks: dict[str, np.ndarray]  # task -> (..., M)
    overall: np.ndarray  # (..., M)


def aggregate_ranks(metric_values: dict[str, dict[str, np.ndarray]]) -> Ranks:
    """Metric values {task: {metric key: (..., M)}} (NaN = model lacks the task) -> all ranks."""
    if not metric_values:
        raise ValueError("no task to rank")
    metric_ranks, task_ranks = {}, {}
    for task, values in metric_values.items():
        specs = TASK_METRICS[task]
        metric_ranks[task] = {spec.key: rank_models(values[spec.key], spec.higher_is_better) for spec in specs}
        task_ranks[task] = np.mean([metric_ranks[task][spec.key] for spec in specs], axis=0)
    overall = np.mean(list(task_ranks.values()), axis=0)
    return Ranks(metric_ranks, task_ranks, overall)
