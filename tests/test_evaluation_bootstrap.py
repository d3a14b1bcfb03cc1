import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score

from fomo_nn.evaluation.bootstrap import bootstrap_ranks, resample_counts
from fomo_nn.evaluation.resampled import weighted_auroc, weighted_mean, weighted_nanmean, weighted_pearson
from fomo_nn.evaluation.results import TaskTable


def _draws_and_counts(rng, num_resamples, num_cases):
    draws = rng.integers(0, num_cases, size=(num_resamples, num_cases))
    counts = np.stack([np.bincount(row, minlength=num_cases) for row in draws]).astype(float)
    return draws, counts


def test_weighted_metrics_equal_metrics_of_explicit_resamples():
    rng = np.random.default_rng(0)
    n = 40
    labels = np.r_[np.zeros(20, int), np.ones(20, int)]
    scores = rng.integers(0, 5, size=(n, 3)) / 4.0  # ties inside and across resamples
    targets = rng.uniform(20, 80, n)
    predictions = targets[:, None] + rng.normal(0, 10, size=(n, 3))
    draws, counts = _draws_and_counts(rng, 25, n)
    resampled_auroc = weighted_auroc(counts, labels.astype(bool), scores)
    resampled_r = weighted_pearson(counts, targets, predictions)
    resampled_mean = weighted_mean(counts, predictions)
    for b, rows in enumerate(draws):
        if len(np.unique(labels[rows])) < 2:
            continue
        for m in range(3):
            assert resampled_auroc[b, m] == pytest.approx(roc_auc_score(labels[rows], scores[rows, m]), abs=1e-12)
            assert resampled_r[b, m] == pytest.approx(pearsonr(targets[rows], predictions[rows, m])[0], abs=1e-10)
            assert resampled_mean[b, m] == pytest.approx(predictions[rows, m].mean())


def test_weighted_nanmean_skips_unscored_cases_of_each_resample():
    rng = np.random.default_rng(4)
    values = rng.uniform(0, 1, (30, 2))
    values[[1, 5, 9], 0] = np.nan  # cases the "exclude" empty-pair policy left unscored
    draws, counts = _draws_and_counts(rng, 20, 30)
    resampled = weighted_nanmean(counts, values)
    for b, rows in enumerate(draws):
        np.testing.assert_allclose(resampled[b], np.nanmean(values[rows], axis=0), rtol=1e-12)
    full = np.nan_to_num(values)
    assert np.array_equal(weighted_nanmean(counts, full), weighted_mean(counts, full))
    only_unscored = np.zeros((1, 30))
    only_unscored[0, [1, 5]] = 2
    assert np.isnan(weighted_nanmean(only_unscored, values)[0, 0])  # no scored case drawn: no value


def test_weighted_pearson_is_zero_for_a_constant_resample():
    counts = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0]])
    r = weighted_pearson(counts, np.array([1.0, 2.0, 3.0]), np.array([[2.0], [4.0], [6.0]]))
    assert r[:, 0].tolist() == [0.0, pytest.approx(1.0)]


def test_stratified_resampling_keeps_class_sizes_and_draws_every_case_count():
    rng = np.random.default_rng(1)
    strata = np.r_[np.zeros(7), np.ones(13)]
    counts = resample_counts(rng, 2000, 20, strata)
    np.testing.assert_array_equal(counts[:, :7].sum(1), 7)
    np.testing.assert_array_equal(counts[:, 7:].sum(1), 13)
    assert 0.9 < counts.mean(0).min() and counts.mean(0).max() < 1.1  # each case drawn once on average


def _table(seed=0):
    rng = np.random.default_rng(seed)
    labels = np.r_[np.zeros(15), np.ones(15)]
    probabilities = np.clip(labels[:, None] * np.array([0.3, 0.2, 0.0]) + rng.uniform(0, 0.7, (30, 3)), 0, 1)
    return {"classification": TaskTable("classification", [f"c{i:02d}" for i in range(30)], np.ones(3, bool),
                                        {"probability": probabilities}, labels)}


def test_bootstrap_is_reproducible_with_a_seed_and_changes_with_it():
    tables = _table()
    first = bootstrap_ranks(tables, num_resamples=700, seed=11)
    again = bootstrap_ranks(tables, num_resamples=700, seed=11)
    other = bootstrap_ranks(tables, num_resamples=700, seed=12)
    np.testing.assert_array_equal(first.ranks.overall, again.ranks.overall)
    np.testing.assert_array_equal(first.metric_values["classification"]["auroc"],
                                  again.metric_values["classification"]["auroc"])
    assert not np.array_equal(first.metric_values["classification"]["auroc"],
                              other.metric_values["classification"]["auroc"])
    assert first.ranks.overall.shape == (700, 3)
    # the strongest model (largest label effect) places first most often
    assert np.bincount(first.places[:, 0], minlength=4)[1] > 0.5 * 700
