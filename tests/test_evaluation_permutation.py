import numpy as np
import pytest

from fomo_nn.evaluation.metrics import auroc, pearson_r
from fomo_nn.evaluation.permutation import (DEFAULT_PERMUTATIONS, auroc_difference_contributions,
                                            mean_difference_pvalues, pairwise_permutation_tests, pearson_swap_pvalues,
                                            sign_flip_pvalues, swap_blocks)
from fomo_nn.evaluation.results import TaskTable

ALPHA = 0.05
NULL_PAIRS = 400
PERMUTATIONS = 999


def test_auroc_difference_is_exactly_linear_in_the_swaps():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 30)
    a, b = rng.integers(0, 4, 30) / 3.0, rng.integers(0, 4, 30) / 3.0  # ties within and across models
    contributions = auroc_difference_contributions(labels.astype(bool), a, b)
    for _ in range(50):
        swap = rng.integers(0, 2, 30).astype(bool)
        swapped_a, swapped_b = np.where(swap, b, a), np.where(swap, a, b)
        expected = auroc(labels, swapped_a) - auroc(labels, swapped_b)
        assert np.where(swap, -1.0, 1.0) @ contributions == pytest.approx(expected, abs=1e-12)


def _draws(seed: int, permutations: int, cases: int) -> np.ndarray:
    """The swaps the tests draw from a fresh generator with this seed (True = swap the case)."""
    return np.concatenate(list(swap_blocks(np.random.default_rng(seed), permutations, cases))).astype(bool)


def test_pearson_swap_pvalue_matches_a_plain_loop_over_the_same_swaps():
    rng = np.random.default_rng(1)
    targets = rng.uniform(20, 80, 40)
    a, b = targets + rng.normal(0, 8, 40), targets + rng.normal(0, 12, 40)
    p = pearson_swap_pvalues(targets, np.stack([a, b], 1), [(0, 1)], 300, np.random.default_rng(9))[0]
    observed = abs(pearson_r(targets, a) - pearson_r(targets, b))
    extreme = sum(abs(pearson_r(targets, np.where(s, b, a)) - pearson_r(targets, np.where(s, a, b))) >= observed - 1e-9
                  for s in _draws(9, 300, 40))
    assert p == pytest.approx((1 + extreme) / 301)


def test_mean_difference_with_unscored_cases_matches_a_plain_loop_over_the_same_swaps():
    rng = np.random.default_rng(11)
    a, b = rng.uniform(0.4, 0.9, 30), rng.uniform(0.35, 0.85, 30)
    a[[2, 7]], b[[7, 19]] = np.nan, np.nan  # cases the "exclude" empty-pair policy left unscored
    p = mean_difference_pvalues(np.stack([a, b], 1), [(0, 1)], 400, np.random.default_rng(4))[0]
    observed = abs(np.nanmean(a) - np.nanmean(b))
    extreme = sum(abs(np.nanmean(np.where(s, b, a)) - np.nanmean(np.where(s, a, b))) >= observed - 1e-9
                  for s in _draws(4, 400, 30))
    assert 0 < extreme < 400  # the check has something to tell apart
    assert p == pytest.approx((1 + extreme) / 401)


def test_mean_difference_without_unscored_cases_is_the_sign_flip_test():
    rng = np.random.default_rng(12)
    values = rng.uniform(0, 1, (50, 3))
    pairs = [(0, 1), (0, 2), (1, 2)]
    by_pair = mean_difference_pvalues(values, pairs, 2000, np.random.default_rng(6))
    flips = sign_flip_pvalues(np.stack([values[:, i] - values[:, j] for i, j in pairs], 1), 2000,
                              np.random.default_rng(6))
    np.testing.assert_allclose(by_pair, flips)


def test_auroc_test_in_whole_numbers_equals_the_float64_test():
    rng = np.random.default_rng(13)
    labels = rng.integers(0, 2, 80).astype(bool)
    a, b = rng.integers(0, 6, 80) / 5.0, labels * 0.3 + rng.uniform(0, 1, 80)
    contributions = auroc_difference_contributions(labels, a, b)
    quarters = contributions * 4 * labels.sum() * (~labels).sum()
    np.testing.assert_allclose(quarters, np.rint(quarters), atol=1e-9)  # whole numbers, as the fast path assumes
    exact = sign_flip_pvalues(np.rint(quarters), 3000, np.random.default_rng(8), whole_numbers=True)
    assert exact == sign_flip_pvalues(contributions, 3000, np.random.default_rng(8))


def test_default_is_the_papers_100000_permutations_with_the_plus_one_p_value():
    assert DEFAULT_PERMUTATIONS == 100_000
    rng = np.random.default_rng(14)
    far_apart = np.stack([rng.uniform(0.8, 0.9, 60), rng.uniform(0.1, 0.2, 60)], 1)
    p = mean_difference_pvalues(far_apart, [(0, 1)], DEFAULT_PERMUTATIONS, np.random.default_rng(0))[0]
    assert p == 1 / (1 + DEFAULT_PERMUTATIONS)  # never 0: (1 + b) / (1 + m) with b = 0


def _null_false_positive_rate(p_values):
    assert p_values.shape == (NULL_PAIRS,)
    return float(np.mean(p_values < ALPHA))


def test_sign_flip_test_is_calibrated_under_the_null_and_detects_a_difference():
    rng = np.random.default_rng(2)
    difficulty = rng.uniform(0.2, 0.9, size=(60, 1))
    model_a = difficulty + rng.normal(0, 0.1, (60, NULL_PAIRS))
    model_b = difficulty + rng.normal(0, 0.1, (60, NULL_PAIRS))  # same distribution: exchangeable per case
    p_null = sign_flip_pvalues(model_a - model_b, PERMUTATIONS, rng)
    assert 0.02 <= _null_false_positive_rate(p_null) <= 0.09
    other = np.random.default_rng(20)  # the alternative's data do not depend on how many draws the null test made
    better = difficulty[:, 0] + 0.08 + other.normal(0, 0.1, 60)
    worse = difficulty[:, 0] + other.normal(0, 0.1, 60)
    assert sign_flip_pvalues(better - worse, PERMUTATIONS, rng)[0] < 0.01


def test_auroc_permutation_is_calibrated_under_the_null_and_detects_a_difference():
    rng = np.random.default_rng(3)
    labels = np.r_[np.zeros(30, bool), np.ones(30, bool)]
    signal = labels * 0.5
    contributions = np.stack([auroc_difference_contributions(labels, signal + rng.normal(0, 1, 60),
                                                             signal + rng.normal(0, 1, 60))
                              for _ in range(NULL_PAIRS)], axis=1)
    assert 0.02 <= _null_false_positive_rate(sign_flip_pvalues(contributions, PERMUTATIONS, rng)) <= 0.09
    informative, random = labels * 1.5 + rng.normal(0, 1, 60), rng.normal(0, 1, 60)
    p = sign_flip_pvalues(auroc_difference_contributions(labels, informative, random), PERMUTATIONS, rng)[0]
    assert p < 0.01


def test_pearson_permutation_is_calibrated_under_the_null_and_detects_a_difference():
    rng = np.random.default_rng(4)
    targets = rng.uniform(20, 80, 60)
    a = targets[:, None] + rng.normal(0, 15, (60, NULL_PAIRS))
    b = targets[:, None] + rng.normal(0, 15, (60, NULL_PAIRS))
    pairs = [(k, NULL_PAIRS + k) for k in range(NULL_PAIRS)]
    p_null = pearson_swap_pvalues(targets, np.concatenate([a, b], 1), pairs, PERMUTATIONS, rng)
    assert 0.02 <= _null_false_positive_rate(p_null) <= 0.09
    sharp, blurred = targets + rng.normal(0, 5, 60), targets + rng.normal(0, 25, 60)
    assert pearson_swap_pvalues(targets, np.stack([sharp, blurred], 1), [(0, 1)], PERMUTATIONS, rng)[0] < 0.01


def test_pairwise_tests_cover_every_pair_and_metric_reproducibly():
    rng = np.random.default_rng(5)
    targets = rng.uniform(20, 80, 50)
    predictions = np.stack([targets + rng.normal(0, s, 50) for s in (3, 3.2, 30)], axis=1)
    predictions[:, 1] = np.nan  # second model lacks the task
    table = TaskTable("regression", [f"c{i}" for i in range(50)], np.array([True, False, True]),
                      {"prediction": predictions}, targets)
    tests = pairwise_permutation_tests({"regression": table}, ["good", "absent", "poor"], 500, seed=3)
    assert {(t.metric, t.model_a, t.model_b) for t in tests} == {("mae", "good", "poor"), ("pearson_r", "good", "poor")}
    assert all(t.significant and t.better == "good" for t in tests)
    again = pairwise_permutation_tests({"regression": table}, ["good", "absent", "poor"], 500, seed=3)
    assert [t.p_value for t in tests] == [t.p_value for t in again]


def test_many_models_are_tested_in_slices_with_the_same_result():
    rng = np.random.default_rng(15)
    targets = rng.uniform(20, 80, 40)
    predictions = targets[:, None] + rng.normal(0, 10, (40, 90))
    pairs = [(i, j) for i in range(90) for j in range(i + 1, 90)]  # 4005 tests: a block is cut in slices
    for test in (mean_difference_pvalues, lambda v, p, m, r: pearson_swap_pvalues(targets, v, p, m, r)):
        together = test(predictions, pairs, 2500, np.random.default_rng(3))
        alone = test(predictions, pairs[-3:], 2500, np.random.default_rng(3))
        np.testing.assert_array_equal(together[-3:], alone)


def test_constant_targets_tell_no_pearson_r_apart():
    targets, predictions = np.full(20, 50.0), np.random.default_rng(16).normal(50, 10, (20, 2))
    assert pearson_swap_pvalues(targets, predictions, [(0, 1)], 100, np.random.default_rng(0)).tolist() == [1.0]
