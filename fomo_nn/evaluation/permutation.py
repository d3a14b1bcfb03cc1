"""Paired permutation tests between two models on the same cases.

Null hypothesis: on every case the two models' outputs are exchangeable. A permutation swaps the
two models' outputs on a random subset of cases and recomputes the metric difference; the two-sided
p-value is (1 + b) / (1 + m), b = #{permutations with |difference| >= |observed difference|} out of m,
which keeps the false-positive rate at or below alpha. m defaults to 100,000 (DEFAULT_PERMUTATIONS),
as in the FOMO25 paper.

Vectorized so that 100,000 permutations of every pair of models stay seconds
(benchmarks/bench_bootstrap.py): the swaps are 0/1 indicators s (m, n), drawn eight per random byte
and shared by every test of a task, and a task costs one matrix product per block of swaps.
- Mean metrics (Dice, NSD, MAE): swapping moves s @ (b - a) from one model's sum to the other's, so
  the product s @ V with the per-model values V (n, M) serves all M(M-1)/2 pairs. A case the
  "exclude" empty-pair policy left unscored is NaN: the counts of scored cases move the same way, and
  each mean is its sum over its count.
- AUROC: with pairwise win indicators H, the swapped AUROC difference is exactly linear in the swap
  signs, a sign-flip test on per-case contributions (auroc_difference_contributions, counted by
  sorting). They are multiples of 1 / (4 n_pos n_neg), so the product runs on whole numbers, exactly,
  in float32.
- Pearson r: every sum behind r (of y, y^2, x y) is linear in the swaps and per model; r is recomputed
  from the swapped sums.
"""
from __future__ import annotations

from dataclasses import dataclass
from itertools import combinations
from typing import Callable

import numpy as np

from fomo_nn.evaluation.results import TaskTable
from fomo_nn.evaluation.task_metrics import key_evaluation, key_stream

DEFAULT_PERMUTATIONS = 100_000
CHUNK = 2000  # permutations per block
_ELEMENTS = 4_000_000  # per temporary array: many models are tested in slices of a block
_TIE = 1e-9  # relative tolerance: a permuted statistic equal to the observed one counts as extreme
_FLOAT32_WHOLE = 2 ** 24  # whole numbers below this add up exactly in float32


def swap_blocks(rng: np.random.Generator, num_permutations: int, num_cases: int):
    """The swap draws, in blocks of up to CHUNK permutations: uint8 (block, num_cases), 1 = swap this case."""
    for start in range(0, num_permutations, CHUNK):
        size = min(CHUNK, num_permutations - start)
        random_bytes = rng.integers(0, 256, size=(size, (num_cases + 7) // 8), dtype=np.uint8)
        yield np.unpackbits(random_bytes, axis=1, count=num_cases)


@dataclass
class _SwapStatistic:
    """One family of tests driven by the swaps: `columns` (n, C) are the per-case amounts a swap moves,
    `extreme` turns their swapped sums (block, C) into "as extreme as observed" flags (block, K)."""

    columns: np.ndarray
    extreme: Callable[[np.ndarray], np.ndarray]
    tests: int  # K
    undefined: np.ndarray | None = None  # (K,) tests with no observed statistic: p = 1

    def count(self, moved: np.ndarray) -> np.ndarray:
        """How many rows of `moved` are as extreme as observed, per test; in slices that bound memory."""
        rows = max(1, _ELEMENTS // (3 * max(1, self.tests)))  # Pearson's temporaries are (rows, 3 K)
        return sum(np.count_nonzero(self.extreme(moved[start:start + rows]), axis=0)
                   for start in range(0, moved.shape[0], rows))


def _p_values(statistics: list[_SwapStatistic], num_permutations: int, rng: np.random.Generator,
              dtype=np.float64) -> list[np.ndarray]:
    """(1 + b) / (1 + m) for every test of every statistic; one product per block serves them all."""
    columns = np.concatenate([statistic.columns for statistic in statistics], axis=1).astype(dtype)
    bounds = np.cumsum([statistic.columns.shape[1] for statistic in statistics])[:-1]
    exceed = [None] * len(statistics)
    for swaps in swap_blocks(rng, num_permutations, columns.shape[0]):
        moved = swaps.astype(dtype) @ columns
        for index, (statistic, part) in enumerate(zip(statistics, np.split(moved, bounds, axis=1))):
            counts = statistic.count(part)
            exceed[index] = counts if exceed[index] is None else exceed[index] + counts
    p_values = []
    for statistic, counts in zip(statistics, exceed):
        p = (1.0 + counts) / (1.0 + num_permutations)
        if statistic.undefined is not None:
            p[statistic.undefined] = 1.0
        p_values.append(p)
    return p_values


def _sign_flip_statistic(contributions: np.ndarray) -> _SwapStatistic:
    """T = sum_i c_i; swapping case i flips its sign, so swapped T = sum c - 2 (s @ c)."""
    total = contributions.sum(axis=0)
    threshold = np.abs(total) - _TIE * np.abs(contributions).sum(axis=0)

    def extreme(moved: np.ndarray) -> np.ndarray:
        moved = moved.astype(np.float64)
        moved *= -2.0
        moved += total
        return np.abs(moved, out=moved) >= threshold

    return _SwapStatistic(contributions, extreme, contributions.shape[1])


def sign_flip_pvalues(contributions: np.ndarray, num_permutations: int, rng: np.random.Generator,
                      whole_numbers: bool = False) -> np.ndarray:
    """Two-sided p for statistics T = sum_i c_i (one column of (n, K) per comparison) under sign flips.

    `whole_numbers`: every c_i is a whole number; then, while the sums stay below 2**24, the products
    are exact in float32.
    """
    contributions = np.asarray(contributions, dtype=np.float64)
    contributions = contributions.reshape(contributions.shape[0], -1)
    exact_in_float32 = whole_numbers and np.abs(contributions).sum(axis=0).max(initial=0) < _FLOAT32_WHOLE
    return _p_values([_sign_flip_statistic(contributions)], num_permutations, rng,
                     np.float32 if exact_in_float32 else np.float64)[0]


def _split_pairs(pairs) -> tuple[np.ndarray, np.ndarray]:
    pairs = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    return pairs[:, 0], pairs[:, 1]


def _mean_difference_statistic(values: np.ndarray, pairs) -> _SwapStatistic:
    """|mean(column i) - mean(column j)| per pair; NaN = a case left out of that column's mean."""
    values = np.asarray(values, dtype=np.float64)
    first, second = _split_pairs(pairs)
    scored = ~np.isnan(values)
    filled = np.where(scored, values, 0.0)
    largest = np.abs(filled).max(axis=0, initial=0.0)
    tolerance = _TIE * (largest[first] + largest[second])
    if scored.all():  # means over all n cases: in sums, swapped difference = S_i - S_j + 2 (moved_j - moved_i)
        sums = filled.sum(axis=0)
        gap = sums[first] - sums[second]
        threshold = np.abs(gap) - values.shape[0] * tolerance

        def extreme(moved: np.ndarray) -> np.ndarray:
            statistic = moved[:, second]
            statistic -= moved[:, first]
            statistic *= 2.0
            statistic += gap
            return np.abs(statistic, out=statistic) >= threshold

        return _SwapStatistic(filled, extreme, first.size)

    width = values.shape[1]
    per_model = np.concatenate([filled, scored.astype(np.float64)], axis=1)  # scored counts move too
    totals = per_model.sum(axis=0)

    def difference(moved: np.ndarray) -> np.ndarray:
        moved_sum = moved[:, second] - moved[:, first]  # what swapping moves from model i to model j
        moved_count = moved[:, width + second] - moved[:, width + first]
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_first = (totals[first] + moved_sum) / (totals[width + first] + moved_count)
            mean_second = (totals[second] - moved_sum) / (totals[width + second] - moved_count)
        return np.abs(mean_first - mean_second)

    observed = difference(np.zeros((1, 2 * width)))[0]
    # a model without any scored case has no mean: nothing to compare (NaN compares as not extreme)
    return _SwapStatistic(per_model, lambda moved: difference(moved) >= observed - tolerance, first.size,
                          np.isnan(observed))


def mean_difference_pvalues(values: np.ndarray, pairs, num_permutations: int, rng: np.random.Generator) -> np.ndarray:
    """Two-sided p of mean(column i) - mean(column j) for each pair (i, j) of `values` (n, M) under per-case
    swaps; NaN marks a case not scored for that column, left out of its mean (and moved with the swap)."""
    return _p_values([_mean_difference_statistic(values, pairs)], num_permutations, rng)[0]


def _wins(values: np.ndarray, others: np.ndarray) -> np.ndarray:
    """sum_j H(v - others_j) for each v: how many of `others` v beats, ties counting 1/2 (by sorting)."""
    others = np.sort(others)
    return 0.5 * (np.searchsorted(others, values, "left") + np.searchsorted(others, values, "right"))


def _auroc_difference_quarters(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    """4 n_pos n_neg times auroc_difference_contributions: whole numbers (H is 0, 1/2 or 1)."""
    positive = np.asarray(positive, dtype=bool)
    a_pos, a_neg, b_pos, b_neg = scores_a[positive], scores_a[~positive], scores_b[positive], scores_b[~positive]
    quarters = np.empty(positive.size)
    # positive i: 2 sum_j (D00 + D01); negative j: 2 sum_i (D00 - D01); sum_i H(p_i - w) = n_pos - wins(w, p)
    quarters[positive] = 2.0 * (_wins(a_pos, a_neg) - _wins(b_pos, b_neg) + _wins(a_pos, b_neg) - _wins(b_pos, a_neg))
    quarters[~positive] = 2.0 * (_wins(b_neg, b_pos) - _wins(a_neg, a_pos) + _wins(b_neg, a_pos) - _wins(a_neg, b_pos))
    return quarters


def auroc_difference_contributions(positive: np.ndarray, scores_a: np.ndarray, scores_b: np.ndarray) -> np.ndarray:
    """c (n,) with AUROC(a') - AUROC(b') = sum_i s_i c_i for swap signs s (+1 keep, -1 swap).

    For a positive i and a negative j, the pair's term with signs (s_i, s_j) is
    s_i/2 (D00 + D01) + s_j/2 (D00 - D01), where D00 = H(a_i-a_j) - H(b_i-b_j) and
    D01 = H(a_i-b_j) - H(b_i-a_j); summing over pairs gives per-case coefficients.
    """
    positive = np.asarray(positive, dtype=bool)
    return _auroc_difference_quarters(positive, scores_a, scores_b) / (4.0 * positive.sum() * (~positive).sum())


def _pearson_from_sums(sum_y: np.ndarray, sum_yy: np.ndarray, sum_xy: np.ndarray, sum_xx: float, n: int) -> np.ndarray:
    """r from the sums of a centred x; works in place on (overwrites) sum_y and sum_xy, returns sum_xy."""
    variance = np.multiply(sum_y, sum_y, out=sum_y)
    variance /= -n
    variance += sum_yy  # sum_yy - sum_y^2 / n
    constant = variance <= 1e-10 * sum_yy
    variance *= sum_xx
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.divide(sum_xy, np.sqrt(variance, out=variance), out=sum_xy)  # x is centred, so sum_x = 0
    r[constant] = 0.0
    return r


def _pearson_statistic(targets: np.ndarray, predictions: np.ndarray, pairs) -> _SwapStatistic:
    """|r(column i) - r(column j)| per pair, from the per-model sums of y, y^2 and x y that swaps move."""
    first, second = _split_pairs(pairs)
    x = targets - targets.mean()
    n, sum_xx = x.size, float(x @ x)
    y = predictions - predictions.mean()  # one shift for every model keeps the swapped sums consistent
    per_model = np.concatenate([y, y * y, x[:, None] * y], axis=1)
    totals = per_model.sum(axis=0)
    if sum_xx == 0:  # constant targets: r is 0 for everybody, nothing to tell apart
        return _SwapStatistic(per_model, lambda moved: np.ones((moved.shape[0], first.size), bool), first.size)

    offsets = np.arange(3)[:, None] * y.shape[1]  # the y, y^2 and x y blocks of per_model
    firsts, seconds = (first + offsets).ravel(), (second + offsets).ravel()
    base_first, base_second = totals[firsts], totals[seconds]

    def difference(moved: np.ndarray) -> np.ndarray:
        delta = moved[:, seconds]  # what swapping moves from model i to model j: (block, 3 K), y | y^2 | x y
        delta -= moved[:, firsts]
        sums_first = delta + base_first  # added to i's sums, taken from j's
        sums_second = np.subtract(base_second, delta, out=delta)
        r_first = _pearson_from_sums(*np.split(sums_first, 3, axis=1), sum_xx, n)
        r_second = _pearson_from_sums(*np.split(sums_second, 3, axis=1), sum_xx, n)
        return np.abs(np.subtract(r_first, r_second, out=r_first), out=r_first)

    observed = difference(np.zeros((1, per_model.shape[1])))[0]
    threshold = observed - _TIE * (1 + observed)
    return _SwapStatistic(per_model, lambda moved: difference(moved) >= threshold, first.size)


def pearson_swap_pvalues(targets: np.ndarray, predictions: np.ndarray, pairs, num_permutations: int,
                         rng: np.random.Generator) -> np.ndarray:
    """Two-sided p of r(column i) - r(column j) for each pair (i, j) of `predictions` (n, M) under per-case swaps."""
    return _p_values([_pearson_statistic(targets, predictions, pairs)], num_permutations, rng)[0]


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
        """The model with the better value ('' when equal or when one has no value)."""
        spec = key_evaluation(self.task).metric(self.metric)
        if self.value_a == self.value_b or np.isnan(self.value_a) or np.isnan(self.value_b):
            return ""
        return self.model_a if (self.value_a > self.value_b) == spec.higher_is_better else self.model_b


def _present_pairs(table: TaskTable, pairs: list[tuple[int, int]]) -> tuple[np.ndarray, np.ndarray]:
    """(models that have the task, `pairs` as positions among them)."""
    present = np.flatnonzero(table.present)
    local = {model: index for index, model in enumerate(present.tolist())}
    return present, np.array([(local[i], local[j]) for i, j in pairs])


# Each task's tests (task kinds' permutation_pvalues hook): {metric key: p per pair}; every test of a
# task uses the same swap draws.
def mask_score_pvalues(table: TaskTable, pairs: list[tuple[int, int]], num_permutations: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    present, local_pairs = _present_pairs(table, pairs)
    values = np.concatenate([table.columns["dice"][:, present], table.columns["nsd"][:, present]], axis=1)
    both = np.concatenate([local_pairs, local_pairs + present.size])
    p = _p_values([_mean_difference_statistic(values, both)], num_permutations, rng)[0]
    return {"dice": p[:len(pairs)], "nsd": p[len(pairs):]}


def auroc_pvalues(table: TaskTable, pairs: list[tuple[int, int]], num_permutations: int,
                  rng: np.random.Generator) -> dict[str, np.ndarray]:
    scores, positive = table.columns["probability"], table.reference.astype(bool)
    quarters = np.stack([_auroc_difference_quarters(positive, scores[:, i], scores[:, j]) for i, j in pairs], axis=1)
    return {"auroc": sign_flip_pvalues(quarters, num_permutations, rng, whole_numbers=True)}  # p is scale-free


def regression_pvalues(table: TaskTable, pairs: list[tuple[int, int]], num_permutations: int,
                       rng: np.random.Generator) -> dict[str, np.ndarray]:
    present, local_pairs = _present_pairs(table, pairs)
    predictions = table.columns["prediction"][:, present]
    errors = np.abs(predictions - table.reference[:, None])
    mae, pearson = _p_values([_mean_difference_statistic(errors, local_pairs),
                              _pearson_statistic(table.reference, predictions, local_pairs)], num_permutations, rng)
    return {"mae": mae, "pearson_r": pearson}


def pairwise_permutation_tests(tables: dict[str, TaskTable], model_names: list[str],
                               num_permutations: int = DEFAULT_PERMUTATIONS, seed: int | None = 0,
                               alpha: float = 0.05) -> list[PairwiseTest]:
    """Every pair of models on every metric of every task both were scored on."""
    if num_permutations < 1:
        raise ValueError(f"need at least one permutation, got {num_permutations}")
    streams = {task: key_stream(task) for task in tables}  # a task's stream: its position in its edition
    children = np.random.SeedSequence(seed).spawn(max(streams.values(), default=0) + 1)
    tests = []
    for task, table in tables.items():
        present = np.flatnonzero(table.present)
        pairs = list(combinations(present.tolist(), 2))
        if not pairs:
            continue
        values = table.point_metrics()
        test = table.evaluation.hook("permutation_pvalues")
        p_values = test(table, pairs, num_permutations, np.random.default_rng(children[streams[task]]))
        for spec in table.evaluation.metrics:
            for (i, j), p in zip(pairs, p_values[spec.key]):
                tests.append(PairwiseTest(task, spec.key, model_names[i], model_names[j], float(values[spec.key][i]),
                                          float(values[spec.key][j]), float(p), bool(p < alpha)))
    return tests
