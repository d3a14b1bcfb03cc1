"""fomo-metrics' one-vs-rest AUROC and F1 (fomo_challenge_metrics/classification.py @ 505d699).

A test subject without an embedding has no scores (None); it is scored as the worst prediction: for the
AUROC 0 for its true class and 1/(C-1) for every other, for the F1 the class after its own. The class set
is the width of the score rows, so a subset missing a class (a demographic group) still scores; AUROC is
the mean over classes that have both positives and negatives (NaN when none has), binary tasks use the
positive column; F1 is scikit-learn's macro F1 with zero_division=0 on argmax predictions (first maximum).
"""
from __future__ import annotations

import math

import numpy as np
from sklearn.metrics import f1_score, roc_auc_score


def is_invalid(value) -> bool:
    """None, or a score that is not a finite number."""
    if value is None:
        return True
    try:
        return not math.isfinite(float(value))
    except (TypeError, ValueError):
        return True


def _row_is_invalid(row) -> bool:
    return row is None or any(is_invalid(s) for s in row)


def _width(scores) -> int:
    return next((len(row) for row in scores if row is not None), 0)


def ovr_auroc(labels, scores) -> float:
    """Macro one-vs-rest AUROC of (N,) labels and N score rows (None: a missing embedding)."""
    classes = _width(scores)
    if classes < 2:
        return float("nan")
    rows = [[0.0 if c == label else 1.0 / (classes - 1) for c in range(classes)] if _row_is_invalid(row)
            else [float(s) for s in row] for label, row in zip(labels, scores)]
    y = np.asarray(labels)
    matrix = np.asarray(rows, dtype=float)
    if classes == 2:
        if len(np.unique(y)) < 2:
            return float("nan")
        return float(roc_auc_score(y, matrix[:, 1], labels=[0, 1]))
    usable = [c for c in range(classes) if 0 < int((y == c).sum()) < len(y)]
    if not usable:
        return float("nan")
    return float(np.mean([roc_auc_score((y == c).astype(int), matrix[:, c]) for c in usable]))


def ovr_f1(labels, scores) -> float:
    """Macro F1 of argmax predictions; a missing row predicts the class after the true one."""
    classes = _width(scores)
    if classes == 0:
        raise ValueError("no subject has scores: the F1 is undefined")
    predictions = [(int(label) + 1) % classes if _row_is_invalid(row) else int(np.argmax(np.asarray(row, float)))
                   for label, row in zip(labels, scores)]
    return float(f1_score(list(labels), predictions, average="macro", zero_division=0))


METRICS = {"ovr_f1": ovr_f1, "ovr_auroc": ovr_auroc}
