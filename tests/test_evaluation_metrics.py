import warnings

import numpy as np
import pytest
from scipy.stats import pearsonr
from sklearn.metrics import roc_auc_score
from sklearn.metrics import roc_curve as sklearn_roc_curve

from fomo_nn.evaluation.metrics import (ConstantInputWarning, auroc, dice, mean_absolute_error,
                                        normalized_surface_distance, pearson_r, roc_curve)


@pytest.mark.parametrize("seed", range(5))
def test_auroc_matches_sklearn_with_many_ties(seed):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 4, 60) / 3.0  # four distinct values: many ties across classes
    assert auroc(labels, scores) == pytest.approx(roc_auc_score(labels, scores), abs=1e-12)


def test_auroc_extremes_and_all_tied():
    labels = np.array([0, 0, 1, 1])
    assert auroc(labels, [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert auroc(labels, [0.9, 0.8, 0.2, 0.1]) == 0.0
    assert auroc(labels, [0.5, 0.5, 0.5, 0.5]) == 0.5


def test_auroc_single_class_is_a_clear_error():
    with pytest.raises(ValueError, match="both classes.*class 1"):
        auroc([1, 1, 1], [0.2, 0.4, 0.9])


def test_roc_curve_points_match_sklearn():
    rng = np.random.default_rng(3)
    labels, scores = rng.integers(0, 2, 40), rng.integers(0, 6, 40).astype(float)
    fpr, tpr = roc_curve(labels, scores)
    expected_fpr, expected_tpr, _ = sklearn_roc_curve(labels, scores, drop_intermediate=False)
    np.testing.assert_allclose(fpr, expected_fpr)
    np.testing.assert_allclose(tpr, expected_tpr)


def test_dice_by_hand():
    reference = np.zeros((4, 4, 4), bool)
    prediction = np.zeros((4, 4, 4), bool)
    reference[0, 0, :4] = True  # 4 voxels
    prediction[0, 0, 2:4] = True  # 2 voxels, both inside
    prediction[3, 3, 3] = True  # 1 false positive
    assert dice(reference, prediction) == pytest.approx(2 * 2 / (4 + 3))
    assert dice(np.zeros((3, 3, 3)), np.zeros((3, 3, 3))) == 1.0
    assert dice(reference, np.zeros_like(reference)) == 0.0


def _shifted_cubes(axis: int, side: int = 10, shift: int = 3):
    """Two cubes of `side` voxels, the second moved `shift` voxels along `axis`, well inside the grid."""
    shape = [side + 10] * 3
    shape[axis] = side + shift + 10
    reference, prediction = np.zeros(shape, bool), np.zeros(shape, bool)
    box = [slice(5, 5 + side)] * 3
    reference[tuple(box)] = True
    box[axis] = slice(5 + shift, 5 + shift + side)
    prediction[tuple(box)] = True
    return reference, prediction


def _expected_nsd(along: float, across: float, tolerance_mm: float, side: int = 10) -> float:
    """NSD by hand for two cubes shifted 3 voxels along an axis of spacing `along`; `across` (the other
    two axes) exceeds every tolerance used, so only the shift axis can bring surfaces close.

    Surfels (corner points) of one cube, with their areas: flat face points s_j s_k, edge points
    s_i |(s_j, s_k)| / 2 for an edge along axis i, corner points |(s_j s_k, s_i s_k, s_i s_j)| / 8.
    Along the shift each cube has its leading face (all its points) and the inner points of its
    trailing face 3 voxels from the other surface, and the rings of side points 1 and 2 voxels behind
    the other cube's face 1 and 2 voxels from it; everything else lies on the other surface.
    """
    inner = side - 1
    face_inner = inner ** 2 * across ** 2
    face_rim = (4 * inner * across * np.hypot(along, across) / 2
                + 4 * np.sqrt(across ** 4 + 2 * (along * across) ** 2) / 8)
    ring = 4 * inner * along * across + 4 * along * np.hypot(across, across) / 2
    total = 2 * (face_inner + face_rim) + inner * ring
    far = ((3 * along > tolerance_mm) * (2 * face_inner + face_rim) + (2 * along > tolerance_mm) * ring
           + (along > tolerance_mm) * ring)
    return 1 - far / total


@pytest.mark.parametrize("tolerance_mm", [0.5, 1.5, 2.2, 3.0])
@pytest.mark.parametrize("axis", [0, 2])
def test_nsd_of_shifted_cubes_at_anisotropic_spacing(axis, tolerance_mm):
    reference, prediction = _shifted_cubes(axis)
    spacing = [5.0, 5.0, 5.0]
    spacing[axis] = 1.0  # 1 mm along the shift, 5 mm across: only the shift axis is within tolerance
    expected = _expected_nsd(along=1.0, across=5.0, tolerance_mm=tolerance_mm)
    assert normalized_surface_distance(reference, prediction, spacing, tolerance_mm) == pytest.approx(expected)


def test_nsd_uses_the_spacing_of_the_shift_axis():
    reference, prediction = _shifted_cubes(axis=0)
    # shift of 3 voxels: 3 mm at 1 mm spacing (all within 3 mm), 6 mm at 2 mm spacing (not all)
    assert normalized_surface_distance(reference, prediction, (1.0, 5.0, 5.0), 3.0) == pytest.approx(1.0)
    coarse = normalized_surface_distance(reference, prediction, (2.0, 5.0, 5.0), 3.0)
    assert coarse == pytest.approx(_expected_nsd(along=2.0, across=5.0, tolerance_mm=3.0))
    assert coarse < 0.9


def test_nsd_of_a_voxel_against_its_neighbour_along_the_coarse_axis():
    """A single voxel has 8 corner surfels of equal area; against the voxel next to it along the 4 mm
    axis, the 4 shared corners are at 0 mm and the other 4 at exactly 4 mm."""
    reference = np.zeros((3, 3, 4), bool)
    reference[1, 1, 1] = True
    prediction = np.roll(reference, 1, axis=2)
    assert normalized_surface_distance(reference, prediction, (1, 1, 4), 3.9) == pytest.approx(0.5)
    assert normalized_surface_distance(reference, prediction, (1, 1, 4), 4.0) == 1.0


def test_nsd_empty_conventions_and_identity():
    empty = np.zeros((8, 8, 8), bool)
    blob = empty.copy()
    blob[2:5, 2:5, 2:5] = True
    assert normalized_surface_distance(empty, empty, (1, 1, 1), 1.0) == 1.0
    assert np.isnan(normalized_surface_distance(empty, empty, (1, 1, 1), 1.0, empty_pair="exclude"))
    for policy in ("score", "exclude"):
        assert normalized_surface_distance(blob, empty, (1, 1, 1), 1.0, empty_pair=policy) == 0.0
        assert normalized_surface_distance(empty, blob, (1, 1, 1), 1.0, empty_pair=policy) == 0.0
    assert normalized_surface_distance(blob, blob, (1, 2, 3), 0.0) == 1.0


def test_dice_of_two_empty_masks_follows_the_empty_pair_policy():
    empty = np.zeros((3, 3, 3), bool)
    assert dice(empty, empty) == 1.0
    assert np.isnan(dice(empty, empty, empty_pair="exclude"))
    with pytest.raises(ValueError, match="unknown empty-pair policy 'skip'; expected one of score, exclude"):
        dice(empty, empty, empty_pair="skip")


def test_nsd_refuses_bad_arguments():
    blob = np.ones((2, 2, 2), bool)
    with pytest.raises(ValueError, match="spacing must be positive"):
        normalized_surface_distance(blob, blob, (1, 0, 1), 1.0)
    with pytest.raises(ValueError, match="tolerance must be >= 0"):
        normalized_surface_distance(blob, blob, (1, 1, 1), -1.0)
    with pytest.raises(ValueError, match="3D masks"):
        normalized_surface_distance(np.ones((2, 2), bool), np.ones((2, 2), bool), (1, 1), 1.0)


def test_mae_and_pearson_against_scipy():
    rng = np.random.default_rng(7)
    targets = rng.uniform(20, 80, 50)
    predictions = targets + rng.normal(0, 8, 50)
    assert mean_absolute_error(targets, predictions) == pytest.approx(np.abs(targets - predictions).mean())
    assert pearson_r(targets, predictions) == pytest.approx(pearsonr(targets, predictions)[0], abs=1e-12)


def test_pearson_of_constant_predictions_warns_and_is_zero():
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        assert pearson_r([20.0, 40.0, 60.0], [50.0, 50.0, 50.0]) == 0.0
    assert any(issubclass(w.category, ConstantInputWarning) and "predictions are constant" in str(w.message)
               for w in caught)
