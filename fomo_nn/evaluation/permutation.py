"""Paired permutation tests between two models on the same cases.

Null hypothesis: on every case the two models' outputs are exchangeable. A permutation swaps the
two models' outputs on a random subset of cases and recomputes the metric difference; the two-sided
p-value is (1 + #{|permuted difference| >= |observed difference|}) / (1 + permutations), which keeps
the false-positive rate at or below alpha.

All swaps are vectorized (one matrix product per block of permutations):
- Mean metrics (Dice, NSD, MAE): a swap flips the sign of that case's difference (sign-flip test).
- AUROC: with pairwise win indicators H, the swapped AUROC difference is exactly linear in the swap
  signs, so it is a sign-flip test on per-case contributions (see auroc_difference_contributions).
- Pearson r: every sum behind r is linear in the swap indicators; r is recomputed from the sums.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations

import numpy as np

from fomo_nn.evaluation.results import TaskTable
from fomo_nn.evaluation.task_metrics import TASK_METRICS, TASKS

CHUNK = 1000  # permutations per block
_TIE = 1e-9  # relative tolerance: a permuted statistic equal to the observed one counts as extreme


def _p_value(observed: np.ndarray, exceed: np.ndarray, num_permutations: int) -> np.ndarray:
    return (1.0 + exceed) / (1.0 + num_permutations)


def _swap_blocks(rng: np.random.Generator, num_permutations: int, num_cases: int):
    for start in range(0, num_permutations, CHUNK):
        size = min(CHUNK, num_permutations - start)
        yield rng.integers(0, 2, size=(size, num_cases)).astype(np.float64)  # 1 = swap this case


def sign_flip_pvalues(contributions: np.ndarray, num_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided p for statistics T = sum_i c_i (one column of (n, K) per comparison) under sign flips."""
    contributions = np.asarray(contributions, dtype=np.float64)
    contributions = contributions.reshape(contributions.shape[0], -1)
    observed = np.abs(contributions.sum(axis=0))
    threshold = observed - _TIE * np.abs(contributions).sum(axis=0)
    exceed = np.zeros(contributions.shape[1])
    for swaps in _swap_blocks(rng, num_permutations, contributions.shape[0]):
        exceed += (np.abs((1.0 - 2.0 * swaps) @ contributions) >= threshold).sum(axis=0)
    return _p_value(observed, exceed, num_permutations)


def _wins(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """H(a_i - b_j): 1 if a_i > b_j, 1/2 if equal, 0 otherwise; (len(a), len(b))."""
    difference = a[:, None] - b[None, :]
    return (difference > 0) + 0.5 * (difference == 0)


def auroc_difference_contributions(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    """c (n,) with AUROC(a') - AUROC(b') = sum_i s_i c_i for swap signs s (+1 keep, -1 swap).

    For a positive i and a negative j, the pair's term with signs (s_i, s_j) is
    s_i/2 (D00 + D01) + s_j/2 (D00 - D01), where D00 = H(a_i-a_j) - H(b_i-b_j) and
    D01 = H(a_i-b_j) - H(b_i-a_j); summing over pairs gives per-case coefficients.
    """
    positive = np.asarray(positive, dtype=bool)
    a_pos, a_neg, b_pos, b_neg = scores_a[positive], scores_a[~positive], scores_b[positive], scores_b[~positive]
    same = _wins(a_pos, a_neg) - _wins(b_pos, b_neg)
    crossed = _wins(a_pos, b_neg) - _wins(b_pos, a_neg)
    contributions = np.empty(positive.size)
    contributions[positive] = 0.5 * (same + crossed).sum(axis=1)
    contributions[~positive] = 0.5 * (same - crossed).sum(axis=0)
    return contributions / (positive.sum() * (~positive).sum())


def _pearson_from_sums(sum_y, sum_yy, sum_xy, sum_xx, n) -> np.ndarray:
    variance = sum_yy - sum_y ** 2 / n
    with np.errstate(invalid="ignore", divide="ignore"):
        r = sum_xy / np.sqrt(sum_xx * variance)  # x is centred, so sum_x = 0
    return np.where(variance <= 1e-10 * sum_yy, 0.0, r)


def pearson_swap_pvalues(targets: np.ndarray, predictions_a: np.ndarray, predictions_b: np.ndarray,
                         num_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided p of r(a) - r(b) under per-case swaps; a, b are (n, K) for K comparisons."""
    x = targets - targets.mean()
    centre = 0.5 * (predictions_a.mean(axis=0) + predictions_b.mean(axis=0))
    a, b = predictions_a - centre, predictions_b - centre
    n, sum_xx = x.size, float(x @ x)
    if sum_xx == 0:
        return np.ones(a.shape[1])  # constant targets: r is 0 for everybody, nothing to tell apart
    base = {"a": (a.sum(0), (a * a).sum(0), x @ a), "b": (b.sum(0), (b * b).sum(0), x @ b)}
    step = np.concatenate([b - a, b * b - a * a, x[:, None] * (b - a)], axis=1)  # change of a's sums per swap
    k = a.shape[1]

    def difference(moved: np.ndarray) -> np.ndarray:
        d_sum, d_sq, d_xy = moved[..., :k], moved[..., k:2 * k], moved[..., 2 * k:]
        r_a = _pearson_from_sums(base["a"][0] + d_sum, base["a"][1] + d_sq, base["a"][2] + d_xy, sum_xx, n)
        r_b = _pearson_from_sums(base["b"][0] - d_sum, base["b"][1] - d_sq, base["b"][2] - d_xy, sum_xx, n)
        return r_a - r_b

    observed = np.abs(difference(np.zeros(3 * k)))
    exceed = np.zeros(k)
    for swaps in _swap_blocks(rng, num_permutations, n):
        exceed += (np.abs(difference(swaps @ step)) >= observed - _TIE * (1 + observed)).sum(axis=0)
    return _p_value(observed, exceed, num_permutations)


@dataclass
class PairwiseTest:
    task: str
    metric: str  # metric key
    model_a: str
    model_b: str
    value_a: float
    value_b: float
    p_value: float
    significant: bool

    @property
    def better(self) -> str:
        """The model with the better value ('' when equal)."""
        spec = next(s for s in TASK_METRICS[self.task] if s.key == self.metric)
        if self.value_a == self.value_b:
            return ""
        return self.model_a if (self.value_a > self.value_b) == spec.higher_is_better else self.model_b


def _task_pvalues(table: TaskTable, pairs: list[tuple[int, int]], num_permutations: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    """{metric key: p per pair} for one task; every pair's test uses the same swap draws."""
    first, second = [i for i, _ in pairs], [j for _, j in pairs]
    if table.task == "segmentation":
        both = [table.columns[key][:, first] - table.columns[key][:, second] for key in ("dice", "nsd")]
        p = sign_flip_pvalues(np.concatenate(both, axis=1), num_permutations, rng)
        return {"dice": p[:len(pairs)], "nsd": p[len(pairs):]}
    if table.task == "classification":
        scores, positive = table.columns["probability"], table.reference.astype(bool)
        contributions = np.stack([auroc_difference_contributions(positive, scores[:, i], scores[:, j])
                                  for i, j in pairs], axis=1)
        return {"auroc": sign_flip_pvalues(contributions, num_permutations, rng)}
    predictions = table.columns["prediction"]
    errors = np.abs(predictions - table.reference[:, None])
    generators = rng.spawn(2)  # MAE and r draw separately, so each is reproducible on its own
    return {"mae": sign_flip_pvalues(errors[:, first] - errors[:, second], num_permutations, generators[0]),
            "pearson_r": pearson_swap_pvalues(table.reference, predictions[:, first], predictions[:, second],
                                              num_permutations, generators[1])}


def pairwise_permutation_tests(tables: dict[str, TaskTable], model_names: list[str], num_permutations: int = 10_000,
                               seed: int | None = 0, alpha: float = 0.05) -> list[PairwiseTest]:
    """Every pair of models on every metric of every task both were scored on."""
    if num_permutations < 1:
        raise ValueError(f"need at least one permutation, got {num_permutations}")
    children = np.random.SeedSequence(seed).spawn(len(TASKS))
    tests = []
    for task, table in tables.items():
        present = np.flatnonzero(table.present)
        pairs = list(combinations(present.tolist(), 2))
        if not pairs:
            continue
        values = table.point_metrics()
        p_values = _task_pvalues(table, pairs, num_permutations, np.random.default_rng(children[TASKS.index(task)]))
        for spec in TASK_METRICS[task]:
            for (i, j), p in zip(pairs, p_values[spec.key]):
                tests.append(PairwiseTest(task, spec.key, model_names[i], model_names[j], float(values[spec.key][i]),
                                          float(values[spec.key][j]), float(p), bool(p < alpha)))
    return tests
