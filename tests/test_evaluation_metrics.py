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


def _expected_nsd(side: int, shift: int, tolerance_voxels: int) -> float:
    """Cube shifted along a fine axis (other axes far coarser than the tolerance).

    Surface lines along the shift axis on the cube's rim (4L-4 of them) are surface at every voxel:
    L - max(0, shift - m) voxels per line and per cube lie within m voxels of the other surface.
    Interior lines hold two surface voxels, each `shift` away from the other cube's: within only if
    shift <= m. All surface voxels: L^3 - (L-2)^3 per cube.
    """
    rim_lines, inner_lines = 4 * side - 4, (side - 2) ** 2
    close = rim_lines * (side - max(0, shift - tolerance_voxels)) + (2 * inner_lines if shift <= tolerance_voxels else 0)
    return close / (side ** 3 - (side - 2) ** 3)


@pytest.mark.parametrize("tolerance_mm, tolerance_voxels", [(0.5, 0), (1.5, 1), (2.2, 2), (3.0, 3)])
@pytest.mark.parametrize("axis", [0, 2])
def test_nsd_of_shifted_cubes_at_anisotropic_spacing(axis, tolerance_mm, tolerance_voxels):
    reference, prediction = _shifted_cubes(axis)
    spacing = [5.0, 5.0, 5.0]
    spacing[axis] = 1.0  # 1 mm along the shift, 5 mm across: only the shift axis is within tolerance
    expected = _expected_nsd(side=10, shift=3, tolerance_voxels=tolerance_voxels)
    assert normalized_surface_distance(reference, prediction, spacing, tolerance_mm) == pytest.approx(expected)


def test_nsd_uses_the_spacing_of_the_shift_axis():
    reference, prediction = _shifted_cubes(axis=0)
    # shift of 3 voxels: 3 mm at 1 mm spacing (all within 3 mm), 6 mm at 2 mm spacing (not all)
    assert normalized_surface_distance(reference, prediction, (1.0, 5.0, 5.0), 3.0) == pytest.approx(1.0)
    coarse = normalized_surface_distance(reference, prediction, (2.0, 5.0, 5.0), 3.0)
    assert coarse == pytest.approx(_expected_nsd(10, 3, tolerance_voxels=1))


def test_nsd_empty_conventions_and_identity():
    empty = np.zeros((8, 8, 8), bool)
    blob = empty.copy()
    blob[2:5, 2:5, 2:5] = True
    assert normalized_surface_distance(empty, empty, (1, 1, 1), 1.0) == 1.0
    assert normalized_surface_distance(blob, empty, (1, 1, 1), 1.0) == 0.0
    assert normalized_surface_distance(empty, blob, (1, 1, 1), 1.0) == 0.0
    assert normalized_surface_distance(blob, blob, (1, 2, 3), 0.0) == 1.0


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
