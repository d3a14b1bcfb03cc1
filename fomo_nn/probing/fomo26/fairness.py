"""The FOMO26 fairness score: per demographic variable the largest metric gap between its groups, 1 - gap,
averaged over the variables where the gap is defined.

Sources: fomo-lp `pipeline/fairness_report.py` @ f915d5a (group labels: the categorical variable stripped
and lower-cased, the continuous one binned by inclusive upper bounds, a value <= 0 or above every bound
unknown; the report layout) and fomo-metrics (`compute_max_disparity` / `compute_fairness_score`, README @
c80797b and tests/test_fairness.py @ 505d699: lengths must agree, unknown (None) groups are left out, all
unknown -> NaN, a group whose metric cannot be computed is skipped, fewer than two scored groups -> 0).
A group whose metric is NaN (e.g. one class only, for the AUROC) counts as not scored.
"""
from __future__ import annotations

import math
from typing import Callable

from fomo_nn.probing.fomo26.scores import METRICS


def normalize_categorical(value) -> str | None:
    """A categorical group label: stripped, lower-cased; None when empty."""
    if value is None:
        return None
    text = str(value).strip()
    return text.lower() if text else None


def bin_continuous(value, bins) -> int | None:
    """The label of the first (upper bound inclusive, label) bin holding `value`; None if missing, <= 0 or above."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    if not number > 0:
        return None
    return next((label for upper, label in bins if number <= upper), None)


def parse_bins(text: str) -> tuple[tuple[float, int], ...]:
    """'25:0,50:1,75:2,1000:3' -> ((25, 0), (50, 1), (75, 2), (1000, 3)), bounds ascending."""
    try:
        bins = tuple((float(upper), int(label)) for upper, label in
                     (part.split(":") for part in text.split(",") if part.strip()))
    except ValueError:
        raise ValueError(f"bins {text!r}: write UPPER:LABEL pairs separated by commas, e.g. 25:0,50:1,1000:2") \
            from None
    if not bins or any(a[0] >= b[0] for a, b in zip(bins, bins[1:])):
        raise ValueError(f"bins {text!r}: need at least one UPPER:LABEL pair with ascending upper bounds")
    return bins


def _scored(metric: Callable, labels, scores) -> float | None:
    try:
        value = float(metric(labels, scores))
    except Exception:  # fomo-metrics swallows a group it cannot score
        return None
    return None if math.isnan(value) else value


def per_group_metric(labels, scores, groups, metric: Callable) -> dict:
    """{group: metric on that group's subjects, or None where it cannot be computed}; unknown groups left out."""
    present = sorted({g for g in groups if g is not None}, key=str)
    return {g: _scored(metric, [y for y, x in zip(labels, groups) if x == g],
                       [s for s, x in zip(scores, groups) if x == g]) for g in present}


def max_disparity(labels, scores, groups, metric: Callable) -> float:
    """max - min of the metric over the variable's scored groups (0 with fewer than two, NaN with no group)."""
    if not len(labels) == len(scores) == len(groups):
        raise ValueError(f"labels ({len(labels)}), scores ({len(scores)}) and groups ({len(groups)}) differ in length")
    per_group = per_group_metric(labels, scores, groups, metric)
    if not per_group:
        return float("nan")
    values = [v for v in per_group.values() if v is not None]
    return float(max(values) - min(values)) if len(values) >= 2 else 0.0


def fairness_score(labels, scores, groups_by_variable: dict, metric: Callable) -> dict:
    """{score, disparities, variables_used, per_variable_contribution}: the mean of 1 - gap over variables."""
    disparities = {name: max_disparity(labels, scores, groups, metric) for name, groups in groups_by_variable.items()}
    used = [name for name, gap in disparities.items() if not math.isnan(gap)]
    contributions = {name: 1.0 - disparities[name] for name in used}
    score = sum(contributions.values()) / len(used) if used else float("nan")
    return {"score": score, "disparities": disparities, "variables_used": used,
            "per_variable_contribution": contributions}


def _json_number(value):
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def fairness_report(labels, scores, groups_by_variable: dict, metrics: dict | None = None) -> dict:
    """fomo-lp's report: overall metrics, per variable its groups, gaps and per-group values, the fairness score."""
    metrics = metrics or METRICS
    overall = {name: _json_number(_scored(fn, labels, scores)) for name, fn in metrics.items()}
    per_variable = {}
    for variable, groups in groups_by_variable.items():
        present = sorted({g for g in groups if g is not None}, key=str)
        per_variable[variable] = {
            "groups": {str(g): sum(1 for x in groups if x == g) for g in present},
            "disparities": {name: _json_number(max_disparity(labels, scores, groups, fn))
                            for name, fn in metrics.items()},
            "per_group_metrics": {name: {str(g): _json_number(v) for g, v in
                                         per_group_metric(labels, scores, groups, fn).items()}
                                  for name, fn in metrics.items()},
        }
    score = {}
    for name, fn in metrics.items():
        result = fairness_score(labels, scores, groups_by_variable, fn)
        score[name] = {"score": _json_number(result["score"]), "variables_used": result["variables_used"],
                       "per_variable_contribution": result["per_variable_contribution"]}
    return {"overall": overall, "per_variable": per_variable, "fairness_score": score}
