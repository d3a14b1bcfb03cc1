"""The task metrics for many resamples at once, as functions of case counts.

A bootstrap resample is a row of `counts` (B, n): how many times each case was drawn. Every metric
is then a weighted statistic of the original cases, so B resamples cost a few (B, n) array passes
(mostly matrix products) instead of B Python-level metric calls. `counts = ones((1, n))` gives the
plain metric, which is how the leaderboard's point values are computed too (one code path).
"""
from __future__ import annotations

import numpy as np

from fomo_nn.challenges.registry import edition
from fomo_nn.evaluation.task_metrics import key_challenge

_CONSTANT = 1e-10  # relative variance below which a resample is constant (Pearson r := 0)


def weighted_mean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Resampled means of per-case values (n, M) -> (B, M). Dice, NSD and MAE."""
    return (counts @ values) / counts.sum(axis=1, keepdims=True)


def weighted_nanmean(counts: np.ndarray, values: np.ndarray) -> np.ndarray:
    """Resampled means over the scored (non-NaN) cases of each column; NaN where a resample has none.
    Dice and NSD under the "exclude" empty-pair policy; equal to weighted_mean without NaN."""
    scored = ~np.isnan(values)
    if scored.all():
        return weighted_mean(counts, values)
    with np.errstate(invalid="ignore", divide="ignore"):
        return (counts @ np.where(scored, values, 0.0)) / (counts @ scored.astype(np.float64))


def weighted_pearson(counts: np.ndarray, targets: np.ndarray, predictions: np.ndarray,
                     constant_value: float = 0.0) -> np.ndarray:
    """Resampled Pearson r of targets (n,) against each prediction column (n, M) -> (B, M); a constant
    resample gives `constant_value` (0; FOMO26: -100, as metrics.pearson_r)."""
    x = targets - targets.mean()
    y = predictions - predictions.mean(axis=0)
    total = counts.sum(axis=1)[:, None]
    sum_x, sum_y = (counts @ x)[:, None], counts @ y
    sum_xx, sum_yy = (counts @ (x * x))[:, None], counts @ (y * y)
    covariance = counts @ (x[:, None] * y) - sum_x * sum_y / total
    var_x, var_y = sum_xx - sum_x ** 2 / total, sum_yy - sum_y ** 2 / total
    constant = (var_x <= _CONSTANT * sum_xx) | (var_y <= _CONSTANT * sum_yy)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = covariance / np.sqrt(var_x * var_y)
    return np.where(constant, constant_value, np.clip(r, -1.0, 1.0))


def _negatives_below(sorted_scores: np.ndarray, sorted_negative: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """For each sorted position: how many negatives sort strictly before its tie group, and up to its end."""
    negatives_before = np.r_[0, np.cumsum(sorted_negative)]  # negatives in sorted[:k]
    starts_group = np.r_[True, sorted_scores[1:] != sorted_scores[:-1]]
    group = np.cumsum(starts_group) - 1
    group_start = np.flatnonzero(starts_group)
    group_end = np.r_[group_start[1:], sorted_scores.size]
    return negatives_before[group_start[group]], negatives_before[group_end[group]]


def weighted_auroc(counts: np.ndarray, positive: np.ndarray, scores: np.ndarray) -> np.ndarray:
    """Resampled AUROC (Mann-Whitney, ties 1/2) of each score column (n, M) -> (B, M).

    Per model the cases are sorted once; in a resample, a positive drawn c times beats every drawn
    negative below its tie group and half of those inside it, c times over.
    """
    positive = np.asarray(positive, dtype=bool)
    n_pos = counts[:, positive].sum(axis=1)
    n_neg = counts[:, ~positive].sum(axis=1)
    result = np.empty((counts.shape[0], scores.shape[1]))
    for model in range(scores.shape[1]):
        order = np.argsort(scores[:, model], kind="stable")
        sorted_negative = ~positive[order]
        below, through = _negatives_below(scores[order, model], sorted_negative)
        negative_counts = np.zeros((counts.shape[0], int(sorted_negative.sum()) + 1))
        np.cumsum(counts[:, order[sorted_negative]], axis=1, out=negative_counts[:, 1:])
        positive_positions = np.flatnonzero(~sorted_negative)
        wins = 0.5 * (negative_counts[:, below[positive_positions]] + negative_counts[:, through[positive_positions]])
        result[:, model] = np.einsum("bj,bj->b", counts[:, order[positive_positions]], wins)
    with np.errstate(invalid="ignore", divide="ignore"):
        return result / (n_pos * n_neg)[:, None]


# ------------------------------------------------------- each task's metrics (task kinds' resampled_metrics hook)
# table: a fomo_nn.evaluation.results.TaskTable; values for the models that have the task: (B, present models)
def resampled_auroc(table, counts: np.ndarray) -> dict[str, np.ndarray]:
    scores = table.columns["probability"][:, table.present]
    return {"auroc": weighted_auroc(counts, table.reference.astype(bool), scores)}


def resampled_mask_scores(table, counts: np.ndarray) -> dict[str, np.ndarray]:
    """Dice and NSD means over the scored cases (NaN: left out by the "exclude" empty-pair policy)."""
    have = table.present
    scores = np.concatenate([table.columns["dice"][:, have], table.columns["nsd"][:, have]], 1)
    dice, nsd = np.split(weighted_nanmean(counts, scores), 2, axis=1)
    return {"dice": dice, "nsd": nsd}


def resampled_regression(table, counts: np.ndarray) -> dict[str, np.ndarray]:
    predictions = table.columns["prediction"][:, table.present]
    return {"mae": weighted_mean(counts, np.abs(predictions - table.reference[:, None])),
            "pearson_r": weighted_pearson(counts, table.reference, predictions, constant_pearson(table.task))}


def constant_pearson(task: str) -> float:
    """Pearson r of a constant input for a ranked task: its edition's rule (FOMO25 and task types: 0)."""
    challenge = key_challenge(task)
    return 0.0 if challenge is None else edition(challenge.edition).constant_pearson
