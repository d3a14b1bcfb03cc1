"""Rank-then-aggregate as an edition ranks (fomo_nn.challenges Ranking), for one leaderboard or a whole
stack of bootstrap resamples.

- Each metric ranks the models, 1 = best (lower MAE is better); tied values share the average rank.
- FOMO25 (the default): a model without the task counts as worse than every model with it; models
  missing the same task tie among themselves, so k missing models share the average of the last k
  places. Task rank = mean of that task's metric ranks; overall rank = mean of the task ranks over
  every task any model was scored on.
- FOMO26 (fomo26.github.io @ 105db28): task rank = the models' rank on the mean of their metric ranks
  (ties share the average); a model without the task gets the worst possible rank, the number of
  models; overall = the mean of task ranks weighted 25 % (tasks 2, 4) / 10 % (tasks 1, 3, 5, 6, 7),
  renormalised over the tasks ranked (a task nobody has adds the same to everybody).
The overall rank is a score (FOMO25 reported e.g. 2.7), the place is the competition ranking of it
("1, 2, 2, 4").
All functions take values shaped (..., M) so the same code ranks the point estimate and (B, M) resamples.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.stats import rankdata

from fomo_nn.challenges.edition import Ranking
from fomo_nn.evaluation.task_metrics import key_challenge, key_evaluation

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


FOMO25_RANKING = Ranking()


def _task_rank(metric_ranks: list[np.ndarray], missing: np.ndarray, ranking: Ranking) -> np.ndarray:
    mean = np.mean(metric_ranks, axis=0)
    if ranking.task_rank == "mean":
        rank = mean
    elif ranking.task_rank == "rank_of_mean":
        rank = rank_models(np.where(missing, np.nan, mean), higher_is_better=False)
    else:
        raise ValueError(f"unknown task_rank rule {ranking.task_rank!r}")
    if ranking.missing == "worst":
        rank = np.where(missing, float(mean.shape[-1]), rank)
    elif ranking.missing != "shared_last":
        raise ValueError(f"unknown missing-task rule {ranking.missing!r}")
    return rank


def task_weights(tasks, ranking: Ranking) -> np.ndarray:
    """Each task's share of the overall rank: equal ("mean"), or its challenge weight renormalised ("weighted")."""
    if ranking.overall == "mean":
        weights = np.ones(len(tasks))
    elif ranking.overall == "weighted":
        weights = np.array([key_challenge(task).weight for task in tasks], dtype=np.float64)
    else:
        raise ValueError(f"unknown overall rule {ranking.overall!r}")
    return weights / weights.sum()


def aggregate_ranks(metric_values: dict[str, dict[str, np.ndarray]], ranking: Ranking = FOMO25_RANKING) -> Ranks:
    """Metric values {task: {metric key: (..., M)}} (NaN = model lacks the task) -> all ranks, by `ranking`."""
    if not metric_values:
        raise ValueError("no task to rank")
    metric_ranks, task_ranks = {}, {}
    for task, values in metric_values.items():
        specs = key_evaluation(task).metrics
        metric_ranks[task] = {spec.key: rank_models(values[spec.key], spec.higher_is_better) for spec in specs}
        missing = np.all([np.isnan(np.asarray(values[spec.key], dtype=np.float64)) for spec in specs], axis=0)
        task_ranks[task] = _task_rank([metric_ranks[task][spec.key] for spec in specs], missing, ranking)
    weights = task_weights(list(task_ranks), ranking)
    overall = np.tensordot(weights, np.stack(list(task_ranks.values())), axes=1)
    return Ranks(metric_ranks, task_ranks, overall)
