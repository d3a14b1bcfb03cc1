"""Per-class Dice and NSD of a label mask, background excluded, and how a case's classes are combined.

Each class is scored as its own binary pair `mask == label` with the binary metrics (metrics.py), so
the empty-pair policy applies per class: under "fomo26" a class absent from both masks scores Dice 1
and NSD 0, a class present in one only 0 and 0 — what fomo26/fomo-metrics' compute_multiclass_dsc /
compute_multiclass_nsd (segmentation.py @ 5a71db2) return when given the labels.

The classes scored are the task's declared labels (FOMO26 task 4: 1 nerve, 2 vessel), not those found
in the reference (fomo-metrics' default when no labels are passed): a vessel predicted in a case whose
reference has none is then a wrong answer (Dice 0), not ignored, and every case is the mean over the
same classes. A case's Dice (NSD) is the mean of its per-class values (NaN ones, "exclude" policy,
left out); the task's is the mean over cases, as the FOMO26 site says every metric is averaged over
the cases. How the organisers combine classes is not in fomo-metrics; this is the reading that keeps
each case one number, weighted equally, and each class equally within it.
"""
from __future__ import annotations

import warnings

import numpy as np

from fomo_nn.evaluation import metrics


def per_class_scores(reference: np.ndarray, prediction: np.ndarray, spacing, labels, tolerance_mm: float,
                     empty_pair: str) -> dict[int, tuple[float, float]]:
    """{label: (Dice, NSD)} for each of `labels` (background 0 is never scored)."""
    reference, prediction = np.asarray(reference), np.asarray(prediction)
    scores = {}
    for label in labels:
        if label == 0:
            raise ValueError("label 0 is the background and is not scored")
        ref, pred = reference == label, prediction == label
        scores[int(label)] = (metrics.dice(ref, pred, empty_pair),
                              metrics.normalized_surface_distance(ref, pred, spacing, tolerance_mm, empty_pair))
    return scores


def class_mean(values) -> float:
    """Mean over a case's classes, NaN (not scored) classes left out; NaN when none is scored."""
    values = np.asarray(list(values), dtype=np.float64)
    if np.isnan(values).all():
        return float("nan")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        return float(np.nanmean(values))
