import numpy as np
import pytest

from fomo_nn.evaluation.metrics import auroc, pearson_r
from fomo_nn.evaluation.permutation import (auroc_difference_contributions, pairwise_permutation_tests,
                                            pearson_swap_pvalues, sign_flip_pvalues)
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


def test_pearson_swap_pvalue_matches_a_plain_loop_over_the_same_swaps():
    rng = np.random.default_rng(1)
    targets = rng.uniform(20, 80, 40)
    a, b = targets + rng.normal(0, 8, 40), targets + rng.normal(0, 12, 40)
    p = pearson_swap_pvalues(targets, a[:, None], b[:, None], 300, np.random.default_rng(9))[0]
    swaps = np.random.default_rng(9).integers(0, 2, size=(300, 40)).astype(bool)  # the draws the test makes
    observed = abs(pearson_r(targets, a) - pearson_r(targets, b))
    extreme = sum(abs(pearson_r(targets, np.where(s, b, a)) - pearson_r(targets, np.where(s, a, b))) >= observed - 1e-9
                  for s in swaps)
    assert p == pytest.approx((1 + extreme) / 301)


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
    better = difficulty[:, 0] + 0.06 + rng.normal(0, 0.1, 60)
    worse = difficulty[:, 0] + rng.normal(0, 0.1, 60)
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
    assert 0.02 <= _null_false_positive_rate(pearson_swap_pvalues(targets, a, b, PERMUTATIONS, rng)) <= 0.09
    sharp, blurred = targets + rng.normal(0, 5, 60), targets + rng.normal(0, 25, 60)
    assert pearson_swap_pvalues(targets, sharp[:, None], blurred[:, None], PERMUTATIONS, rng)[0] < 0.01


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
