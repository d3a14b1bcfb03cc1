"""The FOMO25 metrics as pure functions of arrays: AUROC, Dice, NSD, MAE, Pearson r.

Conventions (each one is a choice a reader of a leaderboard needs to know):
- AUROC is the Mann-Whitney U statistic divided by n_pos * n_neg; tied scores count one half.
  A reference with a single class has no AUROC: ValueError.
- Dice and NSD of two empty masks follow the empty-pair policy (policies.py): 1 by default ("score"),
  NaN with "exclude" (nnU-Net's and Yucca's convention), Dice 1 and NSD 0 with "fomo26" (the FOMO26
  organisers'). One empty mask gives 0. Multiclass masks: per-class scores of `mask == label`
  (multiclass.py).
- NSD (normalized surface distance, "surface Dice") at a tolerance in mm is DeepMind's
  `compute_surface_dice_at_tolerance`: the area of both surfaces lying within the tolerance of the
  other surface, over the total area of both. Surfaces are area-weighted surface elements on the
  voxel-corner grid, distances in mm with each axis's spacing (surfaces.py); tests check it against
  the reference package within 1e-3. Counting boundary voxels instead, as fomo_nn did before, is
  biased, and the bias changes sign with the voxel shape, which reorders models: at 1 mm tolerance
  on the tests' random blobs it gave 0.685 for the reference's 0.713 at 1 mm isotropic, 0.835 for
  0.766 at 0.5 x 0.5 x 5 mm.
- NSD tolerance: FOMO25 published none. fomo_nn_evaluate defaults to 1 mm
  (scoring.DEFAULT_NSD_TOLERANCE_MM) because that is what the baseline's evaluator computes: it calls
  Yucca's get_surface_metrics_for_label, whose tolerance is 1 mm (hard-coded, a default later).
- Pearson r of a constant input is undefined; we warn (ConstantInputWarning) and return 0, the
  value of "no linear association", so a model predicting one age for everybody ranks last on r
  among models with a positive r. FOMO26 returns its worst constant, -100, instead
  (fomo-metrics regression.py @ 5a71db2, CORR_WORST): `constant_value`, the edition's constant_pearson.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy.stats import rankdata

from fomo_nn.evaluation.policies import DEFAULT_EMPTY_PAIR, empty_pair_value
from fomo_nn.evaluation.surfaces import surface_distances


class ConstantInputWarning(UserWarning):
    """Pearson r was asked of a constant input; 0 was returned."""


def _binary_labels(labels) -> np.ndarray:
    labels = np.asarray(labels)
    values = np.unique(labels)
    if not np.isin(values, (0, 1)).all():
        raise ValueError(f"AUROC labels must be 0/1 (or boolean), found values {values.tolist()[:10]}")
    if len(values) < 2:
        only = int(values[0]) if len(values) else "none"
        raise ValueError(f"AUROC needs both classes in the reference, but every one of the {labels.size} "
                         f"cases has class {only}")
    return labels.astype(bool)


def auroc(labels, scores) -> float:
    """Area under the ROC curve; `labels` 0/1, `scores` higher = more likely positive. Ties count 1/2."""
    positive = _binary_labels(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    if scores.shape != positive.shape:
        raise ValueError(f"{positive.size} labels but {scores.size} scores")
    if not np.isfinite(scores).all():
        raise ValueError("AUROC scores contain NaN or infinite values")
    ranks = rankdata(scores)  # average ranks: a tie between a positive and a negative counts 1/2
    n_pos = int(positive.sum())
    n_neg = positive.size - n_pos
    u_statistic = ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0
    return float(u_statistic / (n_pos * n_neg))


def roc_curve(labels, scores) -> tuple[np.ndarray, np.ndarray]:
    """(false positive rate, true positive rate) at every distinct threshold, from (0, 0) to (1, 1)."""
    positive = _binary_labels(labels).ravel()
    scores = np.asarray(scores, dtype=np.float64).ravel()
    order = np.argsort(-scores, kind="stable")
    sorted_scores, sorted_positive = scores[order], positive[order]
    last_of_each_threshold = np.r_[np.flatnonzero(np.diff(sorted_scores)), sorted_scores.size - 1]
    true_positives = np.cumsum(sorted_positive)[last_of_each_threshold]
    false_positives = (last_of_each_threshold + 1) - true_positives
    tpr = np.r_[0.0, true_positives / positive.sum()]
    fpr = np.r_[0.0, false_positives / (~positive).sum()]
    return fpr, tpr


def _same_shape_masks(reference, prediction) -> tuple[np.ndarray, np.ndarray]:
    reference, prediction = np.asarray(reference, dtype=bool), np.asarray(prediction, dtype=bool)
    if reference.shape != prediction.shape:
        raise ValueError(f"masks differ in shape: reference {reference.shape}, prediction {prediction.shape}")
    return reference, prediction


def dice(reference, prediction, empty_pair: str = DEFAULT_EMPTY_PAIR) -> float:
    """2|A∩B| / (|A|+|B|); both empty: 1, or NaN under empty_pair="exclude"."""
    reference, prediction = _same_shape_masks(reference, prediction)
    total = int(reference.sum()) + int(prediction.sum())
    if total == 0:
        return empty_pair_value(empty_pair, "dice")
    return 2.0 * int(np.logical_and(reference, prediction).sum()) / total


def normalized_surface_distance(reference, prediction, spacing, tolerance_mm: float,
                                empty_pair: str = DEFAULT_EMPTY_PAIR) -> float:
    """Area share of both surfaces within `tolerance_mm` of the other surface (see module docstring)."""
    reference, prediction = _same_shape_masks(reference, prediction)
    if reference.ndim != 3:
        raise ValueError(f"NSD scores 3D masks, got {reference.ndim} dimensions")
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (reference.ndim,)))
    if not min(spacing) > 0:
        raise ValueError(f"voxel spacing must be positive, got {spacing}")
    if not tolerance_mm >= 0:
        raise ValueError(f"NSD tolerance must be >= 0 mm, got {tolerance_mm}")
    reference_empty, prediction_empty = not reference.any(), not prediction.any()
    if reference_empty and prediction_empty:
        return empty_pair_value(empty_pair, "nsd")
    if reference_empty or prediction_empty:
        return 0.0
    surfaces = surface_distances(reference, prediction, spacing)
    close = (surfaces.reference_areas[surfaces.reference_to_prediction <= tolerance_mm].sum()
             + surfaces.prediction_areas[surfaces.prediction_to_reference <= tolerance_mm].sum())
    return float(close / (surfaces.reference_areas.sum() + surfaces.prediction_areas.sum()))


def mean_absolute_error(targets, predictions) -> float:
    targets, predictions = np.asarray(targets, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if targets.shape != predictions.shape:
        raise ValueError(f"{targets.size} targets but {predictions.size} predictions")
    if targets.size == 0:
        raise ValueError("MAE of zero cases is undefined")
    return float(np.mean(np.abs(targets - predictions)))


def pearson_r(x, y, constant_value: float = 0.0) -> float:
    """Pearson correlation; a constant input warns (ConstantInputWarning) and gives `constant_value` (0)."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"Pearson r of {x.size} against {y.size} values")
    if x.size < 2:
        raise ValueError(f"Pearson r needs at least 2 cases, got {x.size}")
    x_centred, y_centred = x - x.mean(), y - y.mean()
    scale = np.sqrt(np.dot(x_centred, x_centred) * np.dot(y_centred, y_centred))
    if scale == 0 or not np.isfinite(scale):
        which = "the reference" if np.ptp(x) == 0 else "the predictions"
        warnings.warn(f"Pearson r is undefined because {which} are constant; reporting r = {constant_value:g}",
                      ConstantInputWarning, stacklevel=2)
        return float(constant_value)
    return float(np.clip(np.dot(x_centred, y_centred) / scale, -1.0, 1.0))
