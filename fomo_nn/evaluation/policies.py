"""How cases without anything to compare are scored: empty mask pairs and missing predictions.

Every summary.json records the rules it was scored with (`policy_record`), and fomo_nn_rank refuses to
rank models scored under different empty-pair policies.

Empty pair (reference and prediction masks both empty): the field disagrees, so it is an option.
- "score" (default): Dice 1 and NSD 1 — nothing to find, nothing found — and the case counts. It keeps
  the case set identical for every model, which the paired tests and the bootstrap rely on, and it
  gives credit for correctly predicting no lesion.
- "exclude": no Dice or NSD (null in per_case); the case is left out of that model's task mean, as
  nnU-Net and Yucca do (NaN, then nanmean), and so the FOMO25 baseline's evaluator built on Yucca.
  A model with no scored case at all has no task value and ranks last on it.
- "fomo26": the FOMO26 organisers' rules (fomo26/fomo-metrics segmentation.py @ 5a71db2): Dice 1 and
  NSD 0 for two empty masks, and a prediction that cannot be scored (unreadable, another grid) gets
  the worst value, Dice 0 and NSD 0 (their MetricsConfig.DSC_WORST / NSD_WORST), instead of stopping
  the evaluation. The default of FOMO26's segmentation tasks (fomo_nn.challenges.fomo26); FOMO25
  tasks keep "score".
One empty mask gives 0 under all three.

Missing prediction (a reference case the model gave no output for): one rule per task. None reads
the reference, and none can beat a trivial answer the model could have submitted itself. FOMO26's
classification tasks follow the organisers instead (`worst_missing`): fomo-metrics' compute_auroc
(classification.py @ 505d699) replaces a missing score by the worst one for the case's label, 0 for a
positive and 1 for a negative. (Its regression functions return MAE 100 and r -100 for the whole task
when one prediction is missing, which no per-case rule can express; FOMO26 regression keeps the rule
below.)
- classification: probability 0.5, the uninformative "don't know"; it ties with every other 0.5.
- segmentation: Dice 0 and NSD 0, the worst value of both, whatever the reference holds (a missing
  case is a failure, never excluded, also under "exclude").
- regression: the mean of the model's own predictions on the other reference cases. MAE has no worst
  value, and any fixed age (0, say) can raise Pearson r when the missing case happens to sit at that
  end; at the model's own mean the case leaves the covariance unchanged and adds only target
  variance, so |r| can only shrink, and MAE is what submitting that constant would have scored. The
  old rule (mean of the reference targets) used the answers and rewarded a poor model for failing.
"""
from __future__ import annotations

import numpy as np

from fomo_nn.evaluation.task_metrics import TASKS, task_evaluation

EMPTY_PAIR_POLICIES = {
    "score": "a case whose reference and prediction masks are both empty scores Dice 1 and NSD 1 "
             "(nothing to find, nothing found) and counts in the task mean",
    "exclude": "a case whose reference and prediction masks are both empty has no Dice or NSD (null) and is "
               "left out of that model's task mean, as in nnU-Net and Yucca",
    "fomo26": "as FOMO26 scores it (fomo26/fomo-metrics @ 5a71db2): two empty masks score Dice 1 and NSD 0; a "
              "prediction that cannot be scored gets Dice 0 and NSD 0",
}
# Dice and NSD of an empty pair, per policy (NaN: not scored)
_EMPTY_PAIR_VALUES = {"score": (1.0, 1.0), "exclude": (float("nan"), float("nan")), "fomo26": (1.0, 0.0)}
WORST_ON_FAILURE = ("fomo26",)  # policies that score an unscorable prediction as the worst value instead of stopping
DEFAULT_EMPTY_PAIR = "score"

MISSING_PROBABILITY = 0.5
MISSING_MASK_SCORE = 0.0
# every evaluated task's rule, in words (its task kind's evaluation.missing_rule; fomo_nn.tasks)
MISSING_RULES = {task: task_evaluation(task).missing_rule for task in TASKS}
WORST_MISSING_RULES = {**MISSING_RULES, "classification": (
    "a case without a prediction scores the worst probability for its label (0 for a positive case, 1 for a "
    "negative), as FOMO26 scores a missing score (fomo26/fomo-metrics compute_auroc @ 505d699)")}


def missing_rules(worst_missing: bool = False) -> dict[str, str]:
    return dict(WORST_MISSING_RULES if worst_missing else MISSING_RULES)


def missing_probability(label: int, worst_missing: bool = False) -> float:
    """A missing classification case's probability: 0.5, or the worst for its label (FOMO26)."""
    if not worst_missing:
        return MISSING_PROBABILITY
    return 0.0 if label else 1.0


def check_empty_pair(policy: str) -> str:
    if policy not in EMPTY_PAIR_POLICIES:
        raise ValueError(f"unknown empty-pair policy {policy!r}; expected one of {', '.join(EMPTY_PAIR_POLICIES)}")
    return policy


def empty_pair_value(policy: str, metric: str = "dice") -> float:
    """Dice ("dice") or NSD ("nsd") of two empty masks: 1 ("score"), NaN meaning not scored ("exclude"), or
    Dice 1 and NSD 0 ("fomo26")."""
    dice, nsd = _EMPTY_PAIR_VALUES[check_empty_pair(policy)]
    if metric not in ("dice", "nsd"):
        raise ValueError(f"empty-pair value of {metric!r}: expected dice or nsd")
    return dice if metric == "dice" else nsd


def missing_regression_value(submitted) -> float:
    """The regression fill-in: the mean of the model's predictions on the reference cases it answered."""
    submitted = np.asarray(submitted, dtype=np.float64)
    if submitted.size == 0:
        raise ValueError("no reference case has a prediction, so there is no prediction to fill missing cases with")
    return float(submitted.mean())


def policy_record(task: str, empty_pair: str | None = None, worst_missing: bool = False) -> dict:
    """What summary.json stores under "policies": every task's missing-case rule and, for tasks scored
    on masks (segmentation), the empty-pair rule used."""
    record = {"missing_case": missing_rules(worst_missing)}
    if task_evaluation(task).masks:
        record["empty_pair"] = {"policy": check_empty_pair(empty_pair), "rule": EMPTY_PAIR_POLICIES[empty_pair]}
    return record
