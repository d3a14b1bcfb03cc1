"""Performance tiers: which models the data cannot tell apart from the best one still in play.

Rule (bootstrap on the overall rank):
1. Order the models by overall rank (ties: mean bootstrap overall rank, then name).
2. The first model leads tier 1. Walking down the order, model X is significantly worse than the
   tier's leader L when p = (1 + #{resamples b: overall_b(X) <= overall_b(L)}) / (1 + B) < alpha,
   i.e. X ranks at least as well as L in fewer than an alpha share of the bootstrap resamples.
3. X joins L's tier unless it is significantly worse; the first model that is significantly worse
   leads the next tier, and the walk continues from it. Tiers are contiguous blocks of the leaderboard.

Why the bootstrap and not the permutation tests: the overall rank averages ranks across tasks and
puts a model without a task last, so there is no exchangeable per-case null for it, while every
bootstrap resample recomputes exactly that overall rank for all models together. The pairwise
permutation tests (permutation.py) are reported per task and metric next to the tiers.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class TierDecision:
    leader: str
    model: str
    p_value: float  # bootstrap: share of resamples where `model` ranks at least as well as `leader`
    significantly_worse: bool


def leaderboard_order(point_overall: np.ndarray, bootstrap_overall: np.ndarray, names: list[str]) -> list[int]:
    mean_bootstrap = bootstrap_overall.mean(axis=0)
    return sorted(range(len(names)), key=lambda m: (round(float(point_overall[m]), 12), mean_bootstrap[m], names[m]))


def not_worse_p_value(bootstrap_overall: np.ndarray, leader: int, model: int) -> float:
    at_least_as_good = np.count_nonzero(bootstrap_overall[:, model] <= bootstrap_overall[:, leader] + 1e-12)
    return (1.0 + at_least_as_good) / (1.0 + bootstrap_overall.shape[0])


def assign_tiers(order: list[int], bootstrap_overall: np.ndarray, names: list[str],
                 alpha: float = 0.05) -> tuple[dict[str, int], list[TierDecision]]:
    """{model name: tier (1 = best)} and the decision behind every model after a leader."""
    if not 0 < alpha < 1:
        raise ValueError(f"significance level must be in (0, 1), got {alpha}")
    tiers, decisions = {}, []
    tier, leader = 1, order[0]
    tiers[names[leader]] = tier
    for model in order[1:]:
        p = not_worse_p_value(bootstrap_overall, leader, model)
        worse = p < alpha
        decisions.append(TierDecision(names[leader], names[model], p, worse))
        if worse:
            tier, leader = tier + 1, model
        tiers[names[model]] = tier
    return tiers, decisions
