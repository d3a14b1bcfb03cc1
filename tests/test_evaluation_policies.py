"""The rules for cases without anything to compare (fomo_nn/evaluation/policies.py)."""
import numpy as np
import pytest

from fomo_nn.evaluation.metrics import mean_absolute_error, pearson_r
from fomo_nn.evaluation.policies import (EMPTY_PAIR_POLICIES, MISSING_RULES, check_empty_pair, empty_pair_value,
                                         missing_regression_value, policy_record)


@pytest.mark.parametrize("seed", range(20))
def test_missing_regression_cases_cannot_raise_pearson_r(seed):
    """Filled with the model's own mean, withheld cases leave the covariance and only add target variance."""
    rng = np.random.default_rng(seed)
    targets = rng.uniform(18, 90, 30)
    predictions = targets + rng.normal(0, rng.uniform(5, 40), 30)
    answered = rng.random(30) < 0.7
    fill = missing_regression_value(predictions[answered])
    filled = np.where(answered, predictions, fill)
    assert abs(pearson_r(targets, filled)) <= abs(pearson_r(targets[answered], predictions[answered])) + 1e-12
    # and MAE is exactly what submitting that constant for the withheld cases would have scored
    assert mean_absolute_error(targets, filled) == pytest.approx(
        np.mean(np.r_[np.abs(targets - predictions)[answered], np.abs(targets[~answered] - fill)]))


def test_missing_regression_value_needs_an_answered_case():
    assert missing_regression_value([40.0, 60.0]) == 50.0
    with pytest.raises(ValueError, match="no reference case has a prediction"):
        missing_regression_value([])


def test_empty_pair_policies_and_their_record():
    assert empty_pair_value("score") == 1.0 and np.isnan(empty_pair_value("exclude"))
    with pytest.raises(ValueError, match="unknown empty-pair policy 'nan'"):
        check_empty_pair("nan")
    record = policy_record("segmentation", "exclude")
    assert record == {"missing_case": MISSING_RULES,
                      "empty_pair": {"policy": "exclude", "rule": EMPTY_PAIR_POLICIES["exclude"]}}
    assert policy_record("regression") == {"missing_case": MISSING_RULES}
    assert set(MISSING_RULES) == {"classification", "segmentation", "regression"}
