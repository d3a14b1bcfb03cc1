"""The FOMO25 metrics as pure functions of arrays: AUROC, Dice, NSD, MAE, Pearson r.

Conventions (each one is a choice a reader of a leaderboard needs to know):
- AUROC is the Mann-Whitney U statistic divided by n_pos * n_neg; tied scores count one half.
  A reference with a single class has no AUROC: ValueError.
- Dice of two empty masks is 1 (nothing to find, nothing found); one empty mask gives 0.
- NSD (normalized surface distance, "surface Dice") at a tolerance in mm: the fraction of surface
  voxels of either mask lying within the tolerance of the other mask's surface. Surface voxels are
  the mask minus its 6-connected erosion (voxels on the array border count as surface); distances
  are Euclidean in mm with the voxel spacing of each axis, so anisotropic grids are honoured. Counts
  are per surface voxel, not area-weighted. Both empty = 1, one empty = 0.
- Pearson r of a constant input is undefined; we warn (ConstantInputWarning) and return 0, the
  value of "no linear association", so a model predicting one age for everybody ranks last on r.
"""
from __future__ import annotations

import warnings

import numpy as np
from scipy import ndimage
from scipy.stats import rankdata


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


def dice(reference, prediction) -> float:
    """2|A∩B| / (|A|+|B|); both empty = 1."""
    reference, prediction = _same_shape_masks(reference, prediction)
    total = int(reference.sum()) + int(prediction.sum())
    if total == 0:
        return 1.0
    return 2.0 * int(np.logical_and(reference, prediction).sum()) / total


def surface_voxels(mask: np.ndarray) -> np.ndarray:
    """The mask's voxels with a 6-neighbour outside it (or on the array border)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, border_value=0)


def _crop_to_union(reference: np.ndarray, prediction: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both masks cut to the union's bounding box plus one voxel: surfaces and distances are unchanged,
    the distance transform gets much cheaper on whole-brain grids."""
    coordinates = np.nonzero(reference | prediction)
    box = tuple(slice(max(int(c.min()) - 1, 0), int(c.max()) + 2) for c in coordinates)
    return reference[box], prediction[box]


def normalized_surface_distance(reference, prediction, spacing, tolerance_mm: float) -> float:
    """Fraction of both surfaces within `tolerance_mm` of the other surface (see module docstring)."""
    reference, prediction = _same_shape_masks(reference, prediction)
    spacing = tuple(float(s) for s in np.broadcast_to(np.asarray(spacing, dtype=float), (reference.ndim,)))
    if min(spacing) <= 0:
        raise ValueError(f"voxel spacing must be positive, got {spacing}")
    if tolerance_mm < 0:
        raise ValueError(f"NSD tolerance must be >= 0 mm, got {tolerance_mm}")
    reference_empty, prediction_empty = not reference.any(), not prediction.any()
    if reference_empty and prediction_empty:
        return 1.0
    if reference_empty or prediction_empty:
        return 0.0
    reference, prediction = _crop_to_union(reference, prediction)
    reference_surface, prediction_surface = surface_voxels(reference), surface_voxels(prediction)
    to_reference = ndimage.distance_transform_edt(~reference_surface, sampling=spacing)
    to_prediction = ndimage.distance_transform_edt(~prediction_surface, sampling=spacing)
    close = (np.count_nonzero(to_prediction[reference_surface] <= tolerance_mm)
             + np.count_nonzero(to_reference[prediction_surface] <= tolerance_mm))
    return close / float(reference_surface.sum() + prediction_surface.sum())


def mean_absolute_error(targets, predictions) -> float:
    targets, predictions = np.asarray(targets, dtype=np.float64), np.asarray(predictions, dtype=np.float64)
    if targets.shape != predictions.shape:
        raise ValueError(f"{targets.size} targets but {predictions.size} predictions")
    if targets.size == 0:
        raise ValueError("MAE of zero cases is undefined")
    return float(np.mean(np.abs(targets - predictions)))


def pearson_r(x, y) -> float:
    """Pearson correlation; a constant input warns (ConstantInputWarning) and gives 0."""
    x, y = np.asarray(x, dtype=np.float64).ravel(), np.asarray(y, dtype=np.float64).ravel()
    if x.shape != y.shape:
        raise ValueError(f"Pearson r of {x.size} against {y.size} values")
    if x.size < 2:
        raise ValueError(f"Pearson r needs at least 2 cases, got {x.size}")
    x_centred, y_centred = x - x.mean(), y - y.mean()
    scale = np.sqrt(np.dot(x_centred, x_centred) * np.dot(y_centred, y_centred))
    if scale == 0 or not np.isfinite(scale):
        which = "the reference" if np.ptp(x) == 0 else "the predictions"
        warnings.warn(f"Pearson r is undefined because {which} are constant; reporting r = 0",
                      ConstantInputWarning, stacklevel=2)
        return 0.0
    return float(np.clip(np.dot(x_centred, y_centred) / scale, -1.0, 1.0))
