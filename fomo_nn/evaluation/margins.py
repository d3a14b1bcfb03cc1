"""Pretrained - scratch margins with a bootstrap 95 % interval and a paired permutation p-value.

Each side is given as per-case outputs of S finetuning seeds (n, S), on the same n test cases. A
side's metric is the mean over its seeds of the metric of each seed (AUROC of the probabilities;
mean Dice; MAE of the predictions), so the margin is what one would read off a table of seed means.
- Interval: cases are resampled (stratified by class for AUROC, as bootstrap.py does) and every
  seed of both sides is scored on the same resample; the 2.5/97.5 percentiles of the margin.
- p-value: two-sided, under per-case swaps of the two sides' outputs (all seeds of a case move
  together; seed s of one side is paired with seed s of the other). The seed-mean margin is linear in
  the swaps for each metric here: AUROC through auroc_difference_contributions (a sign-flip test),
  Dice and MAE as mean differences of the per-case seed means (permutation.py).
The margin is signed so that positive means pretraining is better (MAE: scratch - pretrained).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

from fomo_nn.evaluation.bootstrap import resample_counts
from fomo_nn.evaluation.permutation import (auroc_difference_contributions, mean_difference_pvalues,
                                            sign_flip_pvalues)
from fomo_nn.evaluation.resampled import weighted_auroc, weighted_mean

MARGIN_METRICS = {"auroc": True, "dice": True, "mae": False}  # metric -> higher is better


@dataclass(frozen=True)
class Margin:
    metric: str
    pretrained: float  # seed-mean metric of each side on all cases
    scratch: float
    margin: float  # positive: pretraining better
    low: float  # bootstrap 95 % interval of the margin
    high: float
    p_value: float  # paired permutation, two-sided
    num_cases: int
    num_seeds: tuple[int, int]  # (pretrained, scratch)
    num_resamples: int

    def to_json(self) -> dict:
        data = asdict(self)
        data["num_seeds"] = list(self.num_seeds)
        return data


def _as_columns(values, num_cases: int | None = None) -> np.ndarray:
    array = np.asarray(values, dtype=np.float64)
    array = array[:, None] if array.ndim == 1 else array
    if array.ndim != 2 or array.shape[1] < 1 or (num_cases is not None and array.shape[0] != num_cases):
        raise ValueError(f"expected per-case values (n, seeds) for {num_cases or 'n'} cases, got shape {array.shape}")
    return array


def _per_seed_metric(metric: str, counts: np.ndarray, outputs: np.ndarray, reference: np.ndarray | None) -> np.ndarray:
    """(B, S): each seed's metric on each resample."""
    if metric == "auroc":
        return weighted_auroc(counts, reference.astype(bool), outputs)
    if metric == "mae":
        return weighted_mean(counts, np.abs(outputs - reference[:, None]))
    return weighted_mean(counts, outputs)  # dice: per-case scores given


def paired_margin(metric: str, pretrained, scratch, reference=None, num_resamples: int = 2000,
                  num_permutations: int = 10_000, seed: int = 0) -> Margin:
    """Margin of `pretrained` over `scratch` on one task's test cases.

    `pretrained`, `scratch`: (n,) or (n, S) per-case outputs: AUROC -> probabilities of the positive class,
    dice -> per-case Dice, mae -> predicted values; `reference`: labels (0/1) for AUROC, targets for MAE.
    """
    if metric not in MARGIN_METRICS:
        raise ValueError(f"unknown margin metric {metric!r}; choose one of {', '.join(MARGIN_METRICS)}")
    a = _as_columns(pretrained)
    b = _as_columns(scratch, a.shape[0])
    n = a.shape[0]
    if metric in ("auroc", "mae"):
        if reference is None:
            raise ValueError(f"{metric} margins need the reference (labels or targets)")
        reference = np.asarray(reference, dtype=np.float64).reshape(-1)
        if reference.size != n:
            raise ValueError(f"reference has {reference.size} values for {n} cases")
    if metric == "auroc" and len(np.unique(reference)) != 2:
        raise ValueError("an AUROC margin needs both classes among the cases")
    sign = 1.0 if MARGIN_METRICS[metric] else -1.0
    rng = np.random.default_rng(seed)
    ones = np.ones((1, n))
    value_a = float(_per_seed_metric(metric, ones, a, reference).mean())
    value_b = float(_per_seed_metric(metric, ones, b, reference).mean())
    strata = reference.astype(int) if metric == "auroc" else None
    counts = resample_counts(rng, num_resamples, n, strata)
    margins = sign * (_per_seed_metric(metric, counts, a, reference).mean(axis=1)
                      - _per_seed_metric(metric, counts, b, reference).mean(axis=1))
    low, high = np.nanpercentile(margins, [2.5, 97.5])
    if metric == "auroc":
        seeds = min(a.shape[1], b.shape[1])  # seed s of one side swaps with seed s of the other
        contributions = np.mean([auroc_difference_contributions(reference.astype(bool), a[:, s], b[:, s])
                                 for s in range(seeds)], axis=0)
        p_value = float(sign_flip_pvalues(contributions[:, None], num_permutations, rng)[0])
    else:
        per_case = (np.abs(a - reference[:, None]), np.abs(b - reference[:, None])) if metric == "mae" else (a, b)
        values = np.stack([per_case[0].mean(axis=1), per_case[1].mean(axis=1)], axis=1)
        p_value = float(mean_difference_pvalues(values, [(0, 1)], num_permutations, rng)[0])
    return Margin(metric, value_a, value_b, sign * (value_a - value_b), float(low), float(high), p_value, n,
                  (a.shape[1], b.shape[1]), num_resamples)
